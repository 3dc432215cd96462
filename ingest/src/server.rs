//! The listener and the task that runs each RTMP connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use roomcast_hub::{Hub, KickReason, Publisher};
use roomcast_media::flv::{FlvError, TagDemuxer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, debug, error, info, info_span, warn};

use crate::limit::{ConnSlot, LogLimiter, PublisherSlot, Refusal};
use crate::protocol::{
    Event, MediaKind, ProtocolConfig, ProtocolError, ServerProtocol, StreamName,
};
use crate::{AuthError, IngestConfig, IngestStats, PublishAuth};

/// Read buffer growth step. A read never asks for less than a quarter of it.
const READ_CHUNK: usize = 64 * 1024;

/// Bytes of a failed handshake shown in the log (enough to recognise HTTP, TLS, ...).
const HANDSHAKE_EXCERPT: usize = 16;

struct Shared<A> {
    config: IngestConfig,
    auth: Arc<A>,
    hub: Hub,
    shutdown: CancellationToken,
    stats: IngestStats,
    /// `max_publishers` permits, one per publishing session.
    publishers: Arc<Semaphore>,
    /// Refused connections (max_connections) and accept errors.
    refused_log: LogLimiter,
    /// Connections refused by `max_connections_per_ip`.
    per_ip_log: LogLimiter,
    /// Publishes refused by `max_publishers`.
    publishers_log: LogLimiter,
    /// Connections closed by `publish_deadline`.
    deadline_log: LogLimiter,
    /// Failed handshakes: scanners and other non-RTMP clients.
    handshake_log: LogLimiter,
    /// Connections closed for bad input or a limit after the handshake.
    error_log: LogLimiter,
}

pub(crate) async fn serve<A: PublishAuth>(
    listener: TcpListener,
    config: IngestConfig,
    auth: Arc<A>,
    hub: Hub,
    shutdown: CancellationToken,
    stats: IngestStats,
) -> io::Result<()> {
    let interval = config.log_interval;
    let shared = Arc::new(Shared {
        auth,
        hub,
        shutdown,
        stats,
        publishers: Arc::new(Semaphore::new(
            config.max_publishers.min(Semaphore::MAX_PERMITS),
        )),
        refused_log: LogLimiter::new(interval),
        per_ip_log: LogLimiter::new(interval),
        publishers_log: LogLimiter::new(interval),
        deadline_log: LogLimiter::new(interval),
        handshake_log: LogLimiter::new(interval),
        error_log: LogLimiter::new(interval),
        config,
    });
    let permits = Arc::new(Semaphore::new(
        shared.config.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let mut tasks = JoinSet::new();
    let mut next_id: u64 = 0;
    info!(
        addr = ?listener.local_addr().ok(),
        app = %shared.config.app,
        max_connections = shared.config.max_connections,
        max_connections_per_ip = shared.config.max_connections_per_ip,
        max_publishers = shared.config.max_publishers,
        publish_deadline = ?shared.config.publish_deadline,
        "RTMP ingest listening"
    );
    loop {
        tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => reap(joined),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    next_id += 1;
                    metrics::counter!("roomcast_ingest_connections_total").increment(1);
                    let admitted = crate::limit::admit(
                        &shared.stats,
                        peer.ip(),
                        shared.config.max_connections_per_ip,
                        &permits,
                    );
                    match admitted {
                        Ok(slot) => {
                            let span = info_span!(
                                "rtmp",
                                conn_id = next_id,
                                %peer,
                                room = tracing::field::Empty,
                            );
                            tasks.spawn(
                                connection(Arc::clone(&shared), stream, peer, slot).instrument(span),
                            );
                        }
                        Err(refusal) => {
                            refused(&shared, refusal, peer);
                            drop(stream);
                        }
                    }
                }
                Err(e) => {
                    // Usually out of file descriptors: back off rather than spin, and keep serving.
                    metrics::counter!("roomcast_ingest_accept_errors_total").increment(1);
                    if let Some(suppressed) = shared.refused_log.allow(std::time::Instant::now()) {
                        warn!(error = %e, suppressed, "cannot accept an RTMP connection");
                    }
                    tokio::select! {
                        () = shared.shutdown.cancelled() => break,
                        () = sleep(Duration::from_millis(50)) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    info!(
        connections = tasks.len(),
        "RTMP ingest stopping: closing connections"
    );
    // Each task sees the same token, says goodbye and closes, bounded by its own timeouts.
    while let Some(joined) = tasks.join_next().await {
        reap(joined);
    }
    info!("RTMP ingest stopped");
    Ok(())
}

/// Counts and (rate-limited) logs a connection refused at accept.
fn refused<A>(shared: &Shared<A>, refusal: Refusal, peer: SocketAddr) {
    let (reason, limit, log) = match refusal {
        Refusal::Global => (
            "max_connections",
            shared.config.max_connections,
            &shared.refused_log,
        ),
        Refusal::PerIp => (
            "max_connections_per_ip",
            shared.config.max_connections_per_ip,
            &shared.per_ip_log,
        ),
    };
    metrics::counter!("roomcast_ingest_refused_total", "reason" => reason).increment(1);
    if let Some(suppressed) = log.allow(std::time::Instant::now()) {
        warn!(
            %peer,
            limit,
            suppressed,
            "connection refused: {reason} reached"
        );
    }
}

/// `now + d`, saturating: a configured "forever" must not overflow the clock.
fn deadline_in(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

fn reap(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined
        && e.is_panic()
    {
        metrics::counter!("roomcast_ingest_task_panics_total").increment(1);
        error!("an RTMP connection task panicked; other connections are unaffected");
    }
}

/// Why a connection ended, when it was not an error.
#[derive(Debug)]
enum End {
    PeerClosed,
    /// Refused with a status or `_error` already queued (and counted).
    Refused,
    Kicked(KickReason),
    Shutdown,
    /// The stream cannot be packaged (unsupported codec); a status is already queued.
    Unusable,
    Error(ConnError),
}

/// Why a connection was closed on our side. The span around every log line carries the
/// connection id, peer and room.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error(
        "handshake not completed within {after:?} (handshake_timeout), {received} bytes received"
    )]
    HandshakeTimeout { after: Duration, received: usize },
    #[error("client closed the connection during the handshake, after {received} bytes")]
    HandshakeEof { received: usize },
    #[error("handshake failed after {received} bytes: {reason} (first bytes {first})")]
    Handshake {
        received: usize,
        reason: String,
        first: String,
    },
    #[error("nothing received for {0:?} (idle_timeout)")]
    Idle(Duration),
    #[error("no publish started within {0:?} (publish_deadline)")]
    PublishDeadline(Duration),
    #[error("a write to the client did not complete within {0:?} (write_timeout)")]
    WriteTimeout(Duration),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl ConnError {
    /// Metric label.
    fn kind(&self) -> &'static str {
        use crate::chunk::ChunkError;
        match self {
            ConnError::HandshakeTimeout { .. } => "handshake_timeout",
            ConnError::HandshakeEof { .. } => "handshake_eof",
            ConnError::Handshake { .. } => "handshake",
            ConnError::Idle(_) => "idle_timeout",
            ConnError::PublishDeadline(_) => "publish_deadline",
            ConnError::WriteTimeout(_) => "write_timeout",
            ConnError::Io(_) => "io",
            ConnError::Protocol(p) => match p {
                ProtocolError::Chunk(c) => match c {
                    ChunkError::MessageTooLarge { .. } => "max_message_size",
                    ChunkError::ChunkSizeOutOfRange { .. } => "max_chunk_size",
                    ChunkError::TooManyChunkStreams { .. } => "max_chunk_streams",
                    ChunkError::PendingTooLarge { .. } => "max_pending_bytes",
                    _ => "chunk_stream",
                },
                ProtocolError::AmfTooDeep { .. } => "amf_depth",
                ProtocolError::ShortCommand { .. } => "short_command",
                ProtocolError::TooManyStreams => "create_stream",
                _ => "protocol",
            },
        }
    }

    fn is_handshake(&self) -> bool {
        matches!(
            self,
            ConnError::HandshakeTimeout { .. }
                | ConnError::HandshakeEof { .. }
                | ConnError::Handshake { .. }
        )
    }
}

/// What to do with a media message the demuxer rejects.
enum Policy {
    Drop,
    Close,
}

fn policy(e: &FlvError) -> Policy {
    match e {
        // The video is in a codec we cannot package (or its configuration cannot be read):
        // nothing watchable can come of this publish. Closing makes the encoder report an
        // error instead of streaming into the void; the log line says what to change.
        FlvError::UnknownVideoCodec { .. }
        | FlvError::EnhancedRtmp { .. }
        | FlvError::AvcConfig { .. } => Policy::Close,
        // Audio we cannot package: the room goes on video-only rather than not at all, and the
        // (rate-limited) warning tells the operator why it is silent.
        FlvError::UnknownAudioFormat { .. } | FlvError::AacConfig { .. } => Policy::Drop,
        // One unusable message (a frame before its sequence header, truncated, bad NAL unit
        // lengths, unknown packet type): drop it and keep the stream.
        _ => Policy::Drop,
    }
}

/// An authorised publish on this connection.
struct Publish {
    publisher: Publisher,
    /// Dropped after `publisher`: the room is offline by the time the slot is free.
    _slot: PublisherSlot,
    demuxer: TagDemuxer,
    stream_id: u32,
    room: String,
    key_id: i64,
}

struct Conn<A> {
    shared: Arc<Shared<A>>,
    stream: TcpStream,
    buf: BytesMut,
    publish: Option<Publish>,
    /// When the connection is closed unless a publish has started (`publish_deadline`).
    publish_by: Instant,
    /// Dropped media and messages on this connection.
    drop_log: LogLimiter,
}

async fn connection<A: PublishAuth>(
    shared: Arc<Shared<A>>,
    stream: TcpStream,
    peer: SocketAddr,
    // Released however this task ends; a panic unwinds through it too.
    _slot: ConnSlot,
) {
    debug!("connection accepted");
    // Status messages and acknowledgements are small and should not wait for Nagle.
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, %peer, "cannot set TCP_NODELAY");
    }
    let interval = shared.config.log_interval;
    let publish_by = deadline_in(shared.config.publish_deadline);
    let mut conn = Conn {
        shared,
        stream,
        buf: BytesMut::new(),
        publish: None,
        publish_by,
        drop_log: LogLimiter::new(interval),
    };
    let end = conn.run().await;
    conn.log_end(&end);
    conn.close().await;
}

async fn kicked(publish: &Option<Publish>) -> KickReason {
    match publish {
        Some(p) => p.publisher.kicked().await,
        None => std::future::pending().await,
    }
}

impl<A: PublishAuth> Conn<A> {
    async fn run(&mut self) -> End {
        match self.handshake().await {
            Ok(None) => {}
            Ok(Some(end)) => return end,
            Err(e) => return End::Error(e),
        }
        let config = ProtocolConfig {
            limits: self.shared.config.chunk_limits(),
            out_chunk_size: self.shared.config.out_chunk_size,
        };
        let mut proto = match ServerProtocol::new(&config) {
            Ok(p) => p,
            Err(e) => return End::Error(e.into()),
        };
        let end = match self.session(&mut proto).await {
            Ok(end) => end,
            Err(e) => End::Error(e),
        };
        if let Some(p) = &self.publish {
            let (level, code, description) = match &end {
                End::Kicked(KickReason::TakenOver) => (
                    "status",
                    "NetStream.Unpublish.Success",
                    "another publisher took over this room",
                ),
                End::Kicked(KickReason::KeyRevoked) => (
                    "error",
                    "NetStream.Publish.BadName",
                    "the stream key was revoked",
                ),
                End::Kicked(KickReason::Shutdown) | End::Shutdown => (
                    "status",
                    "NetStream.Unpublish.Success",
                    "the server is shutting down",
                ),
                _ => ("", "", ""),
            };
            if !code.is_empty() {
                proto.send_status(p.stream_id, level, code, description);
            }
        }
        // Refusals queued their status already; try to deliver whatever is pending.
        if let Err(e) = self.flush(&mut proto).await {
            debug!(error = %e, "could not deliver the last messages");
        }
        end
    }

    async fn handshake(&mut self) -> Result<Option<End>, ConnError> {
        let after = self.shared.config.handshake_timeout;
        let deadline = deadline_in(after);
        let mut handshake = Handshake::new(PeerType::Server);
        let mut received = 0usize;
        let mut first = Vec::with_capacity(HANDSHAKE_EXCERPT);
        self.buf.reserve(8 * 1024);
        let publish_deadline = self.shared.config.publish_deadline;
        loop {
            let read = tokio::select! {
                biased;
                () = self.shared.shutdown.cancelled() => return Ok(Some(End::Shutdown)),
                () = tokio::time::sleep_until(self.publish_by) => {
                    return Err(ConnError::PublishDeadline(publish_deadline));
                }
                r = timeout_at(deadline, self.stream.read_buf(&mut self.buf)) => r,
            };
            let n = read.map_err(|_| ConnError::HandshakeTimeout { after, received })??;
            if n == 0 {
                return Err(ConnError::HandshakeEof { received });
            }
            received += n;
            if first.len() < HANDSHAKE_EXCERPT {
                let take = (HANDSHAKE_EXCERPT - first.len()).min(self.buf.len());
                first.extend_from_slice(&self.buf[..take]);
            }
            let result = handshake
                .process_bytes(&self.buf)
                .map_err(|e| ConnError::Handshake {
                    received,
                    reason: e.to_string(),
                    first: hex::encode(&first),
                })?;
            self.buf.clear();
            match result {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.write(&response_bytes).await?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.write(&response_bytes).await?;
                    self.buf.extend_from_slice(&remaining_bytes);
                    debug!("handshake completed");
                    return Ok(None);
                }
            }
        }
    }

    async fn session(&mut self, proto: &mut ServerProtocol) -> Result<End, ConnError> {
        if let Some(end) = self.process(proto).await? {
            return Ok(end);
        }
        self.flush(proto).await?;
        let idle_timeout = self.shared.config.idle_timeout;
        let idle = tokio::time::sleep_until(deadline_in(idle_timeout));
        tokio::pin!(idle);
        let publish_deadline = self.shared.config.publish_deadline;
        let unpublished = tokio::time::sleep_until(self.publish_by);
        tokio::pin!(unpublished);
        let mut was_publishing = self.publish.is_some();
        loop {
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            tokio::select! {
                biased;
                () = self.shared.shutdown.cancelled() => return Ok(End::Shutdown),
                reason = kicked(&self.publish) => return Ok(End::Kicked(reason)),
                () = &mut idle => return Err(ConnError::Idle(idle_timeout)),
                () = &mut unpublished, if self.publish.is_none() => {
                    return Err(ConnError::PublishDeadline(publish_deadline));
                }
                read = self.stream.read_buf(&mut self.buf) => {
                    let n = read?;
                    if n == 0 {
                        return Ok(End::PeerClosed);
                    }
                    metrics::counter!("roomcast_ingest_bytes_total").increment(n as u64);
                    idle.as_mut().reset(deadline_in(idle_timeout));
                    if let Some(end) = self.process(proto).await? {
                        return Ok(end);
                    }
                    self.flush(proto).await?;
                }
            }
            // A client that ended its publish and stays gets the same time to start another.
            let publishing = self.publish.is_some();
            if was_publishing && !publishing {
                unpublished.as_mut().reset(deadline_in(publish_deadline));
            }
            was_publishing = publishing;
        }
    }

    /// Handles every complete message in the read buffer.
    async fn process(&mut self, proto: &mut ServerProtocol) -> Result<Option<End>, ConnError> {
        while let Some(event) = proto.poll(&mut self.buf)? {
            match event {
                Event::Media {
                    kind,
                    timestamp,
                    payload,
                } => {
                    if let Some(end) = self.media(proto, kind, timestamp, payload) {
                        return Ok(Some(end));
                    }
                }
                Event::Metadata(m) => {
                    if let Some(p) = &mut self.publish {
                        debug!(metadata = ?m, "stream metadata");
                        p.publisher.send(p.demuxer.metadata(m));
                    }
                }
                Event::ConnectRequested { request_id, app } => {
                    if app == self.shared.config.app {
                        proto.accept(request_id)?;
                        debug!(app = %app, "RTMP connect accepted");
                    } else {
                        proto.reject_connect(
                            request_id,
                            "NetConnection.Connect.Rejected",
                            "unknown application",
                        )?;
                        // The app is not logged: people paste the stream key into the server
                        // URL, which puts it in the app name.
                        info!(
                            expected = %self.shared.config.app,
                            app_len = app.len(),
                            "connect refused: unknown RTMP application"
                        );
                        metrics::counter!("roomcast_ingest_refused_total", "reason" => "unknown_app")
                            .increment(1);
                        return Ok(Some(End::Refused));
                    }
                }
                Event::PublishRequested {
                    request_id,
                    stream_id,
                    name,
                } => {
                    if let Some(end) = self.publish(proto, request_id, stream_id, name).await? {
                        return Ok(Some(end));
                    }
                }
                Event::PlayRequested { stream_id } => {
                    proto.send_status(
                        stream_id,
                        "error",
                        "NetStream.Play.Failed",
                        "RTMP playback is not supported: watch this room over HLS",
                    );
                    info!("play refused: RTMP playback is not supported");
                    metrics::counter!("roomcast_ingest_refused_total", "reason" => "play")
                        .increment(1);
                    return Ok(Some(End::Refused));
                }
                Event::PublishFinished => {
                    if let Some(p) = self.publish.take() {
                        info!(room = %p.room, key_id = p.key_id, "publish ended by the client");
                    }
                }
                Event::Dropped { type_id, reason } => {
                    metrics::counter!("roomcast_ingest_dropped_messages_total", "reason" => reason)
                        .increment(1);
                    if let Some(suppressed) = self.drop_log.allow(std::time::Instant::now()) {
                        debug!(type_id, reason, suppressed, "RTMP message dropped");
                    }
                }
            }
        }
        Ok(None)
    }

    async fn publish(
        &mut self,
        proto: &mut ServerProtocol,
        request_id: u32,
        stream_id: u32,
        name: StreamName,
    ) -> Result<Option<End>, ConnError> {
        if self.publish.is_some() {
            proto.send_status(
                stream_id,
                "error",
                "NetStream.Publish.BadConnection",
                "this connection is already publishing",
            );
            return Ok(None);
        }
        let key = name.key();
        let auth_timeout = self.shared.config.auth_timeout;
        let verdict = if key.is_empty() {
            Ok(None)
        } else {
            tokio::select! {
                biased;
                () = self.shared.shutdown.cancelled() => return Ok(Some(End::Shutdown)),
                r = timeout(auth_timeout, self.shared.auth.authorize(key)) => r.unwrap_or_else(|_| {
                    Err(AuthError::Unavailable(format!(
                        "no answer within {auth_timeout:?} (auth_timeout)"
                    )))
                }),
            }
        };
        match verdict {
            Ok(Some(grant)) => {
                let permits = &self.shared.publishers;
                let permit = Arc::clone(permits).try_acquire_owned().ok();
                // At the limit, a publish that takes over a live room (an encoder reconnecting
                // while its old connection lingers) adds no session: it is let through and
                // waits below for the slot of the publisher it replaces.
                let takeover = permit.is_none() && self.shared.hub.is_live(&grant.room);
                if permit.is_none() && !takeover {
                    return Ok(Some(self.at_publisher_limit(proto, stream_id, &grant.room)));
                }
                // The session first: if it refuses (a publish on a stream never created), the
                // room's current publisher must not have been kicked for nothing.
                proto.accept_publish(request_id, stream_id)?;
                let publisher = self.shared.hub.publish(&grant.room, grant.credential);
                let permit = match permit {
                    Some(p) => p,
                    None => {
                        // The publisher kicked just now frees its slot as its connection closes,
                        // within its write timeout.
                        let wait = self.shared.config.write_timeout;
                        let acquired = tokio::select! {
                            biased;
                            () = self.shared.shutdown.cancelled() => return Ok(Some(End::Shutdown)),
                            r = timeout(wait, Arc::clone(permits).acquire_owned()) => r,
                        };
                        match acquired {
                            Ok(Ok(p)) => p,
                            _ => {
                                drop(publisher);
                                return Ok(Some(self.at_publisher_limit(
                                    proto,
                                    stream_id,
                                    &grant.room,
                                )));
                            }
                        }
                    }
                };
                let slot = PublisherSlot::new(&self.shared.stats, permit);
                Span::current().record("room", grant.room.as_str());
                info!(
                    room = %grant.room,
                    key_id = grant.credential,
                    publish_id = publisher.publish_id(),
                    "publish started"
                );
                metrics::counter!("roomcast_ingest_publishes_total").increment(1);
                self.publish = Some(Publish {
                    publisher,
                    _slot: slot,
                    demuxer: TagDemuxer::new(),
                    stream_id,
                    room: grant.room,
                    key_id: grant.credential,
                });
                Ok(None)
            }
            Ok(None) => {
                proto.send_status(
                    stream_id,
                    "error",
                    "NetStream.Publish.BadName",
                    "invalid stream key",
                );
                metrics::counter!("roomcast_ingest_refused_total", "reason" => "bad_key")
                    .increment(1);
                if let Some(suppressed) = self.shared.refused_log.allow(std::time::Instant::now()) {
                    warn!(suppressed, "publish refused: unknown stream key");
                }
                Ok(Some(End::Refused))
            }
            Err(e) => {
                proto.send_status(
                    stream_id,
                    "error",
                    "NetStream.Publish.Failed",
                    "server could not check the stream key",
                );
                metrics::counter!("roomcast_ingest_refused_total", "reason" => "auth_unavailable")
                    .increment(1);
                error!(error = %e, "publish refused: the stream key could not be checked");
                Ok(Some(End::Refused))
            }
        }
    }

    /// Refuses a publish because `max_publishers` sessions are live: queues the status, counts
    /// and (rate-limited) logs it.
    fn at_publisher_limit(&self, proto: &mut ServerProtocol, stream_id: u32, room: &str) -> End {
        proto.send_status(
            stream_id,
            "error",
            "NetStream.Publish.Failed",
            "server is at its publisher limit",
        );
        metrics::counter!("roomcast_ingest_refused_total", "reason" => "max_publishers")
            .increment(1);
        if let Some(suppressed) = self.shared.publishers_log.allow(std::time::Instant::now()) {
            warn!(
                %room,
                limit = self.shared.config.max_publishers,
                suppressed,
                "publish refused: max_publishers reached"
            );
        }
        End::Refused
    }

    fn media(
        &mut self,
        proto: &mut ServerProtocol,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
    ) -> Option<End> {
        let p = self.publish.as_mut()?;
        let result = match kind {
            MediaKind::Video => p.demuxer.video(timestamp, payload),
            MediaKind::Audio => p.demuxer.audio(timestamp, payload),
        };
        match result {
            Ok(Some(event)) => p.publisher.send(event),
            Ok(None) => {}
            Err(e) => match policy(&e) {
                Policy::Close => {
                    proto.send_status(
                        p.stream_id,
                        "error",
                        "NetStream.Publish.Failed",
                        "unsupported media: publish H.264 video and AAC audio",
                    );
                    metrics::counter!("roomcast_ingest_closed_total", "reason" => "unsupported_media")
                        .increment(1);
                    warn!(error = %e, "closing the connection: the stream cannot be packaged");
                    return Some(End::Unusable);
                }
                Policy::Drop => {
                    metrics::counter!("roomcast_ingest_dropped_messages_total", "reason" => "media")
                        .increment(1);
                    if let Some(suppressed) = self.drop_log.allow(std::time::Instant::now()) {
                        warn!(error = %e, suppressed, "media message dropped");
                    }
                }
            },
        }
        None
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        let limit = self.shared.config.write_timeout;
        match timeout(limit, self.stream.write_all(bytes)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ConnError::WriteTimeout(limit)),
        }
    }

    async fn flush(&mut self, proto: &mut ServerProtocol) -> Result<(), ConnError> {
        while let Some(out) = proto.take_output() {
            self.write(&out).await?;
        }
        Ok(())
    }

    fn log_end(&self, end: &End) {
        let publishing = self.publish.as_ref();
        match end {
            End::PeerClosed => match publishing {
                Some(p) => {
                    info!(room = %p.room, key_id = p.key_id, "publish ended: the client closed the connection")
                }
                None => debug!("connection closed by the client"),
            },
            End::Refused | End::Unusable => {}
            End::Kicked(reason) => {
                let why = match reason {
                    KickReason::TakenOver => "taken over by a new publisher",
                    KickReason::KeyRevoked => "stream key revoked",
                    KickReason::Shutdown => "server shutting down",
                };
                info!(reason = why, "publish ended: disconnecting the publisher");
            }
            End::Shutdown => {
                if publishing.is_some() {
                    info!("publish ended: server shutting down");
                }
            }
            End::Error(e) => {
                metrics::counter!("roomcast_ingest_closed_total", "reason" => e.kind())
                    .increment(1);
                let limiter = if matches!(e, ConnError::PublishDeadline(_)) {
                    &self.shared.deadline_log
                } else if e.is_handshake() {
                    &self.shared.handshake_log
                } else {
                    &self.shared.error_log
                };
                if let Some(suppressed) = limiter.allow(std::time::Instant::now()) {
                    warn!(error = %e, suppressed, "closing the connection");
                }
            }
        }
    }

    /// Ends the connection without destroying what we just wrote: send our FIN, then read and
    /// discard until the client closes or `close_linger` passes. Closing with unread input
    /// would send a reset, and a reset can discard the status message still in flight.
    async fn close(mut self) {
        // The publish ends (and the hub hears of it) now, not after the linger.
        drop(self.publish.take());
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let linger = self.shared.config.close_linger;
        let mut sink = [0u8; 4096];
        let _ = timeout(linger, async {
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}
