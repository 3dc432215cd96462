//! The HTTP origin: HLS, the watch page and its assets, the JSON API, metrics and health.
//!
//! Client mistakes (bad room names, unknown rooms or files) are answered with 4xx and are not
//! logged as errors; internal failures are logged and answered with a bare 500 that leaks
//! nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use roomcast_chat::ChatService;
use roomcast_packager::{
    MEDIA_PLAYLIST_NAME, PartState, PlaylistRequest, Readiness, Resource, ResourceKind,
};
use roomcast_store::{Store, valid_room_name};
use serde::Serialize;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::cors::{Any, CorsLayer};

use crate::config::Config;
use crate::rooms::{LiveRoom, RoomSnapshot, Rooms};
use crate::web;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    hls_viewers: crate::viewers::HlsViewers,
    held: Arc<AtomicUsize>,
    websockets: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
    config: Config,
    store: Store,
    chat: ChatService,
    rooms: Rooms,
    metrics: PrometheusHandle,
    playlist_cache_control: HeaderValue,
}

impl AppState {
    /// Bundles what the handlers need.
    pub fn new(
        config: Config,
        store: Store,
        chat: ChatService,
        rooms: Rooms,
        metrics: PrometheusHandle,
    ) -> Self {
        let playlist_cache_control = HeaderValue::from_str(&format!(
            "public, max-age={}",
            config.http.playlist_max_age_s
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("no-cache"));
        Self {
            inner: Arc::new(StateInner {
                held: Arc::new(AtomicUsize::new(0)),
                websockets: std::sync::Mutex::new(std::collections::HashMap::new()),
                hls_viewers: crate::viewers::HlsViewers::new(
                    Duration::from_millis(config.http.viewer_window_ms),
                    config.http.max_tracked_players,
                ),
                config,
                store,
                chat,
                rooms,
                metrics,
                playlist_cache_control,
            }),
        }
    }
}

impl AppState {
    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The room chat.
    pub fn chat(&self) -> &ChatService {
        &self.inner.chat
    }

    /// Takes a chat WebSocket place for `ip`, or `None` at `http.max_websockets_per_ip`.
    pub fn websocket_slot(&self, ip: IpAddr) -> Option<WebSocketSlot> {
        let mut map = self
            .inner
            .websockets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.inner.config.http.max_websockets_per_ip {
            metrics::counter!("roomcast_http_refused_total", "reason" => "max_websockets_per_ip")
                .increment(1);
            return None;
        }
        *n += 1;
        Some(WebSocketSlot {
            state: self.clone(),
            ip,
        })
    }

    /// HLS players seen per room.
    pub fn hls_viewers(&self) -> &crate::viewers::HlsViewers {
        &self.inner.hls_viewers
    }
}

/// One chat WebSocket's place in the per-address count, given back on drop.
pub struct WebSocketSlot {
    state: AppState,
    ip: IpAddr,
}

impl Drop for WebSocketSlot {
    fn drop(&mut self) {
        let mut map = self
            .state
            .inner
            .websockets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// An HTTP failure. Only [`AppError::Internal`] is logged.
#[derive(Debug)]
pub enum AppError {
    /// The request itself is wrong.
    BadRequest(&'static str),
    /// No such room, or it is offline, or no such resource.
    NotFound(&'static str),
    /// A malformed or out-of-range LL-HLS delivery directive.
    BadQuery(String),
    /// A per-client limit was reached.
    TooMany(&'static str),
    /// Something failed on our side.
    Internal(anyhow::Error),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.to_owned()),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, m.to_owned()),
            AppError::BadQuery(m) => (StatusCode::BAD_REQUEST, m),
            AppError::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, m.to_owned()),
            AppError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "internal error answering a request");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (
            status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                // Short, so a CDN re-asks soon after a room goes live.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            format!("{msg}\n"),
        )
            .into_response()
    }
}

impl From<roomcast_store::StoreError> for AppError {
    fn from(e: roomcast_store::StoreError) -> Self {
        AppError::Internal(e.into())
    }
}

/// Largest resource name accepted under `/live/ROOM/`; ours are far shorter.
const MAX_RESOURCE_NAME: usize = 128;

/// The whole HTTP origin: the viewers' hot path (`GET`/`HEAD /live/...` answered without the
/// router and its layers) first, then the router.
#[derive(Clone)]
pub struct HttpOrigin {
    state: AppState,
    router: Router,
}

impl HttpOrigin {
    /// The origin for `state`.
    pub fn new(state: AppState) -> Self {
        Self {
            router: router(state.clone()),
            state,
        }
    }
}

impl crate::listener::Origin for HttpOrigin {
    async fn answer(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> Response {
        if let Some(resp) = live_fast_path(&self.state, &req, peer).await {
            return resp;
        }
        self.router.answer(req, peer).await
    }
}

/// Every route, with its layers ([`HttpOrigin`] answers `GET`/`HEAD /live/...` before it).
pub fn router(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers(Any);
    let live = Router::new()
        .route("/live/{room}/{file}", get(hls))
        .layer(cors);
    // Video is already compressed: gzip would burn CPU for nothing. Playlists shrink ~4x.
    let compress = CompressionLayer::new()
        .compress_when(DefaultPredicate::new().and(NotForContentType::new("video/")));
    Router::new()
        .route("/", get(|| async { web::page(web::INDEX_HTML) }))
        .route("/watch/{room}", get(watch))
        .route("/assets/{file}", get(asset))
        .route("/api/rooms", get(api_rooms))
        .route("/api/rooms/{room}", get(api_room))
        .route("/chat/{room}", get(crate::chat_ws::upgrade))
        .route("/healthz", get(|| async { "ok\n" }))
        // Browsers ask for it on every page; no icon rather than a 404 in every console.
        .route(
            "/favicon.ico",
            get(|| async {
                (
                    StatusCode::NO_CONTENT,
                    [(header::CACHE_CONTROL, "public, max-age=86400")],
                )
            }),
        )
        .route("/metrics", get(metrics))
        .merge(live)
        .fallback(|| async { AppError::NotFound("not found") })
        .layer(compress)
        .with_state(state)
}

async fn watch(Path(room): Path<String>) -> Result<Response, AppError> {
    if !valid_room_name(&room) {
        return Err(AppError::BadRequest(
            "invalid room name: use 1-64 of a-z 0-9 _ -",
        ));
    }
    // The page reads the room from its own URL, so nothing from the request is written into
    // the HTML.
    Ok(web::page(web::WATCH_HTML))
}

async fn asset(Path(file): Path<String>) -> Result<Response, AppError> {
    web::asset(&file).ok_or(AppError::NotFound("no such asset"))
}

/// 400 unless `room` is a valid room name.
pub fn check_room(room: &str) -> Result<(), AppError> {
    if valid_room_name(room) {
        Ok(())
    } else {
        Err(AppError::BadRequest(
            "invalid room name: use 1-64 of a-z 0-9 _ -",
        ))
    }
}

async fn hls(
    State(st): State<AppState>,
    Path((room, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    serve_hls(&st, &room, &file, query.as_deref(), peer, &headers).await
}

/// `GET`/`HEAD /live/ROOM/FILE` without the router: the hot path of every viewer (a part and a
/// blocking playlist request per part, per viewer), so it skips what the generic stack costs
/// per request (path and header copies, the CORS and compression layers; playlists are
/// gzipped once per version and media is never compressed). `None` hands the request to the
/// router: other methods (CORS preflight), percent-encoded or odd paths.
pub(crate) async fn live_fast_path(
    st: &AppState,
    req: &hyper::Request<hyper::body::Incoming>,
    peer: SocketAddr,
) -> Option<Response> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let rest = req.uri().path().strip_prefix("/live/")?;
    let (room, file) = rest.split_once('/')?;
    if file.contains('/') || rest.contains('%') {
        return None;
    }
    let mut resp = match serve_hls(st, room, file, req.uri().query(), peer, req.headers()).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    // What the router's CORS layer adds to a simple request from any origin.
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    Some(resp)
}

async fn serve_hls(
    st: &AppState,
    room: &str,
    file: &str,
    query: Option<&str>,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Response, AppError> {
    check_room(room)?;
    if file.is_empty()
        || file.len() > MAX_RESOURCE_NAME
        || !file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(AppError::BadRequest("invalid resource name"));
    }
    let live = st
        .inner
        .rooms
        .get(room)
        .ok_or(AppError::NotFound("room is offline or does not exist"))?;
    if file == "index.m3u8" || file == MEDIA_PLAYLIST_NAME {
        // A player that starts the moment the streamer goes live waits for the first segment
        // instead of failing on a 404 it would have to retry.
        let wait = Duration::from_millis(st.inner.config.http.startup_wait_ms);
        if !live.is_ready() && !live.wait_ready(wait).await {
            return Err(AppError::NotFound("stream has no segment yet"));
        }
        if file == "index.m3u8" {
            let text = live
                .multivariant_playlist()
                .ok_or(AppError::NotFound("stream has no segment yet"))?;
            // Asked for once per player start: compressed per request.
            let gzip = crate::rooms::gzip(text.as_bytes());
            return Ok(playlist_response(
                st,
                Bytes::from(text),
                gzip,
                headers,
                false,
            ));
        }
        count_player(st, room, peer, headers);
        return media_playlist(st, &live, query, headers).await;
    }
    if let Some(resource) = live.get(file) {
        return Ok(resource_response(resource));
    }
    // The part named by EXT-X-PRELOAD-HINT is requested before it exists: hold the request
    // until it does, so it arrives the moment the part is complete — or, with
    // hls.stream_hinted_parts, answer now and stream its chunks as they are made.
    if matches!(live.part_state(file), PartState::Pending) {
        let limit = live.hold_limit();
        let held = HeldRequest::new(st);
        if st.inner.config.hls.stream_hinted_parts
            && let Some(held) = held
        {
            return Ok(crate::part_stream::response(
                live,
                file.to_owned(),
                limit,
                held,
            ));
        }
        let ready = held.is_some() && live.wait_for(limit, |r| r.get(file).is_some()).await;
        if ready && let Some(resource) = live.get(file) {
            return Ok(resource_response(resource));
        }
    }
    Err(AppError::NotFound(
        "no such segment (it may have left the live window)",
    ))
}

/// Counts a held request for as long as it lives. A guard rather than a decrement after the
/// await, because a client that goes away drops the handler's future mid-await.
struct HeldRequest {
    count: Arc<AtomicUsize>,
}

impl HeldRequest {
    /// A place among the held requests, or `None` at `http.max_held_requests`.
    fn new(st: &AppState) -> Option<Self> {
        let count = st.inner.held.clone();
        let max = st.inner.config.http.max_held_requests;
        if count.fetch_add(1, Ordering::AcqRel) >= max {
            count.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("roomcast_http_refused_total", "reason" => "max_held_requests")
                .increment(1);
            return None;
        }
        metrics::gauge!("roomcast_hls_held_requests").increment(1.0);
        Some(HeldRequest { count })
    }
}

impl Drop for HeldRequest {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("roomcast_hls_held_requests").decrement(1.0);
    }
}

/// A media playlist request, blocking per LL-HLS when it carries `_HLS_msn`/`_HLS_part`.
async fn media_playlist(
    st: &AppState,
    live: &LiveRoom,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, AppError> {
    let request = PlaylistRequest::parse(query).map_err(|e| AppError::BadQuery(e.to_string()))?;
    let blocking = request.msn.is_some();
    match live.check(&request) {
        Readiness::Ready => {}
        Readiness::Invalid(e) => return Err(AppError::BadQuery(e.to_string())),
        Readiness::Wait => {
            // Held until the asked-for part exists. At the hold limit the current playlist is
            // answered (200): hls.js simply asks again, where a 503 would count toward its
            // retry budget and can end playback.
            let held = HeldRequest::new(st);
            let limit = live.hold_limit();
            let ready = held.is_some()
                && live
                    .wait_for(limit, |r| !matches!(r.check(&request), Readiness::Wait))
                    .await;
            if !ready {
                metrics::counter!("roomcast_hls_hold_timeouts_total").increment(1);
            }
        }
    }
    let playlist = live
        .media_playlist(&request)
        .ok_or(AppError::NotFound("stream has no segment yet"))?;
    Ok(playlist_response(
        st,
        playlist.plain,
        playlist.gzip,
        headers,
        blocking,
    ))
}

fn count_player(st: &AppState, room: &str, peer: SocketAddr, headers: &HeaderMap) {
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if crate::viewers::from_watch_page(header(header::REFERER)) {
        return;
    }
    let forwarded = st
        .inner
        .config
        .http
        .trust_forwarded_for
        .then(|| header(header::HeaderName::from_static("x-forwarded-for")))
        .flatten()
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    let ip = forwarded.unwrap_or(peer.ip());
    let ua = header(header::USER_AGENT).unwrap_or("");
    st.inner
        .hls_viewers
        .seen(room, ip, ua, std::time::Instant::now());
}

fn playlist_response(
    st: &AppState,
    plain: Bytes,
    gzip: Option<Bytes>,
    headers: &HeaderMap,
    blocking: bool,
) -> Response {
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    // The answer to a given _HLS_msn/_HLS_part always contains that part, so a cached copy
    // stays correct: a CDN may keep it for the shortest lifetime HTTP can express.
    let cache = if blocking {
        HeaderValue::from_static("public, max-age=1")
    } else {
        st.inner.playlist_cache_control.clone()
    };
    let mut resp = match gzip {
        Some(z) if accepts_gzip => {
            let mut r = Response::new(Body::from(z));
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        _ => Response::new(Body::from(plain)),
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apple.mpegurl"),
    );
    h.insert(header::CACHE_CONTROL, cache);
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    resp
}

fn resource_response(resource: Resource) -> Response {
    let len: usize = resource.chunks.iter().map(Bytes::len).sum();
    let content_type = match resource.kind {
        ResourceKind::Init | ResourceKind::Segment | ResourceKind::Part => "video/mp4",
    };
    // Segments are served as the chain of their parts' buffers: no copy per request.
    let body = if resource.chunks.len() == 1 {
        Body::from(resource.chunks.into_iter().next().unwrap_or_default())
    } else {
        Body::new(ChunksBody {
            remaining: len as u64,
            chunks: resource.chunks.into(),
        })
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Names are unique per server run and publish, so media never changes under its URL.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// A body of shared buffers sent one after another, with its exact length known: what a
/// stream adapter would do, without a boxed stream and a poll through it per buffer.
struct ChunksBody {
    chunks: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl http_body::Body for ChunksBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
        }
        std::task::Poll::Ready(next.map(|c| Ok(http_body::Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// A room as the JSON API shows it.
#[derive(Debug, Serialize)]
pub struct RoomInfo {
    /// Room name.
    pub name: String,
    /// Room title, if set.
    pub title: Option<String>,
    /// A publisher is connected now.
    pub live: bool,
    /// RFC 3339 time the current or last publish started, while the room is known to HLS.
    pub since: Option<String>,
    /// RFC 6381 codecs of the stream.
    pub codecs: Option<String>,
    /// `WIDTHxHEIGHT`.
    pub resolution: Option<String>,
    /// Frame rate.
    pub frame_rate: Option<f64>,
    /// Measured average bitrate, bits per second.
    pub bitrate: Option<u64>,
    /// People watching: chat connections plus HLS players that never opened the chat.
    pub viewers: usize,
    /// Playlist URL, relative to the server.
    pub hls: String,
    /// Watch page URL, relative to the server.
    pub watch: String,
}

fn room_info(
    name: &str,
    title: Option<String>,
    snap: Option<RoomSnapshot>,
    viewers: usize,
) -> RoomInfo {
    let since = snap.as_ref().and_then(|s| s.since).map(|t| {
        let ms = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        crate::serve::format_ms(ms)
    });
    let status = snap.as_ref().map(|s| &s.status);
    RoomInfo {
        name: name.to_owned(),
        title,
        live: snap.as_ref().is_some_and(|s| s.publishing),
        since,
        codecs: status.and_then(|s| s.codecs.clone()),
        resolution: status
            .and_then(|s| s.width.zip(s.height))
            .map(|(w, h)| format!("{w}x{h}")),
        frame_rate: status.and_then(|s| s.frame_rate),
        bitrate: status.and_then(|s| s.average_bandwidth),
        viewers,
        hls: format!("/live/{name}/index.m3u8"),
        watch: format!("/watch/{name}"),
    }
}

async fn api_rooms(State(st): State<AppState>) -> Result<Response, AppError> {
    let rooms = st.inner.store.list_rooms().await?;
    let list: Vec<RoomInfo> = rooms
        .into_iter()
        .map(|r| {
            let snap = st.inner.rooms.get(&r.name).map(|l| l.snapshot());
            let viewers = st.inner.chat.viewers(&r.name);
            room_info(&r.name, r.title, snap, viewers)
        })
        .collect();
    Ok(json_response(&list))
}

async fn api_room(
    State(st): State<AppState>,
    Path(room): Path<String>,
) -> Result<Response, AppError> {
    check_room(&room)?;
    let Some(r) = st.inner.store.room(&room).await? else {
        return Err(AppError::NotFound("no such room"));
    };
    let snap = st.inner.rooms.get(&room).map(|l| l.snapshot());
    let viewers = st.inner.chat.viewers(&r.name);
    Ok(json_response(&room_info(&r.name, r.title, snap, viewers)))
}

fn json_response<T: Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        Err(e) => AppError::Internal(e.into()).into_response(),
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.inner.metrics.render(),
    )
        .into_response()
}
