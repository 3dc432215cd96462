//! Live rooms as the HTTP side sees them: one packager per room, fed by the hub.
//!
//! A room appears when its first publish starts and stays while it is live; after the publisher
//! leaves, its playlist ends with `EXT-X-ENDLIST` and stays fetchable for
//! `hls.offline_grace_ms`, then the room answers 404. A publisher that returns within the grace
//! period continues the same playlist after a discontinuity, so players keep playing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use roomcast_hub::{Hub, MediaSubscription, Received, RoomEvent};
use roomcast_packager::{
    Packager, PackagerConfig, PartProgress, PartState, PlaylistRequest, Readiness, Resource, Skip,
    StreamStatus,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::config::HlsConfig;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Packager calls are synchronous and leave no half-done state behind a panic worth
    // refusing every later request for.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// A rendered media playlist, plain and gzip-compressed, for one packager version.
#[derive(Clone)]
pub struct RenderedPlaylist {
    /// The playlist text.
    pub plain: Bytes,
    /// The same, gzip-compressed once for every client that accepts it.
    pub gzip: Option<Bytes>,
}

/// `data` gzip-compressed (fast level: playlists are small and mostly repeated lines).
pub(crate) fn gzip(data: &[u8]) -> Option<Bytes> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).ok()?;
    enc.finish().ok().map(Bytes::from)
}

/// One room's packaged stream.
pub struct LiveRoom {
    name: String,
    packager: RwLock<RoomState>,
    /// Bumped whenever something new became fetchable; HTTP requests that wait subscribe.
    version: watch::Sender<u64>,
    /// Bumped with `version` and whenever a chunk of the hinted part is made
    /// (`hls.stream_hinted_parts`): what streaming part requests wait on. A chunk alone does not
    /// bump `version`, so playlists are not re-rendered and blocking playlist requests do not
    /// wake for it.
    progress: watch::Sender<u64>,
    /// The last rendered media playlists, by (version, delta update): when thousands of held
    /// requests wake for the same part, one renders and compresses, the rest share it.
    playlists: Mutex<Vec<(u64, Skip, RenderedPlaylist)>>,
}

struct RoomState {
    packager: Packager,
    /// The publish currently feeding the packager; 0 when none.
    publish_id: u64,
    /// The publish that ended last, so a grace timer knows whether it is still the latest.
    ended_publish: u64,
    since: Option<SystemTime>,
}

impl std::fmt::Debug for LiveRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRoom")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A point-in-time view of a room for the API and the room list.
#[derive(Debug, Clone)]
pub struct RoomSnapshot {
    /// Room name.
    pub name: String,
    /// A publisher is connected now.
    pub publishing: bool,
    /// When the current (or last) publish started.
    pub since: Option<SystemTime>,
    /// What the packager knows about the stream.
    pub status: StreamStatus,
}

impl LiveRoom {
    /// Room name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A resource by its playlist URI.
    pub fn get(&self, name: &str) -> Option<Resource> {
        read(&self.packager).packager.get(name)
    }

    /// The multivariant playlist, once the first segment exists.
    pub fn multivariant_playlist(&self) -> Option<String> {
        read(&self.packager).packager.multivariant_playlist()
    }

    /// The media playlist answering `request`, once the first segment exists.
    pub fn media_playlist(&self, request: &PlaylistRequest) -> Option<RenderedPlaylist> {
        let delta = request.skip;
        let version = *self.version.borrow();
        {
            let cache = lock(&self.playlists);
            if let Some((_, _, p)) = cache.iter().find(|(v, d, _)| *v == version && *d == delta) {
                return Some(p.clone());
            }
        }
        let text = read(&self.packager).packager.media_playlist_for(request)?;
        let rendered = RenderedPlaylist {
            gzip: gzip(text.as_bytes()),
            plain: Bytes::from(text),
        };
        let mut cache = lock(&self.playlists);
        cache.retain(|(v, _, _)| *v == version);
        cache.push((version, delta, rendered.clone()));
        Some(rendered)
    }

    /// Whether a playlist answering `request` exists now, must be waited for, or is invalid.
    pub fn check(&self, request: &PlaylistRequest) -> Readiness {
        read(&self.packager).packager.check_request(request)
    }

    /// How far a resource that may still be being written has come (the hinted part while its
    /// chunks are made).
    pub fn part_progress(&self, name: &str) -> PartProgress {
        read(&self.packager).packager.part_progress(name)
    }

    /// A receiver that sees every change and every new chunk of the hinted part.
    pub fn watch_progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// Whether an unknown part name is the next part (worth waiting for).
    pub fn part_state(&self, name: &str) -> PartState {
        read(&self.packager).packager.part_state(name)
    }

    /// How long a blocking request may be held.
    pub fn hold_limit(&self) -> Duration {
        read(&self.packager).packager.hold_limit()
    }

    /// Waits until `ready` holds or `timeout` passes; true when it holds. One waiter per
    /// request on the room's version channel: nothing spins, and all wake together.
    pub async fn wait_for(&self, timeout: Duration, ready: impl Fn(&Self) -> bool) -> bool {
        let mut rx = self.version.subscribe();
        let wait = async {
            loop {
                rx.borrow_and_update();
                if ready(self) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// Whether the first segment exists.
    pub fn is_ready(&self) -> bool {
        read(&self.packager).packager.is_ready()
    }

    /// Status for the API.
    pub fn snapshot(&self) -> RoomSnapshot {
        let s = read(&self.packager);
        RoomSnapshot {
            name: self.name.clone(),
            publishing: s.publish_id != 0,
            since: s.since,
            status: s.packager.status(),
        }
    }

    /// Waits until the room is ready (has a segment) or `timeout` passes.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        self.wait_for(timeout, Self::is_ready).await
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
        self.chunk_made();
    }

    /// A chunk of the hinted part was made, and nothing else changed.
    fn chunk_made(&self) {
        self.progress.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Wakes what waits on the room after the packager ran: every waiter when something became
    /// fetchable, only streamed hinted-part requests when just a chunk was made.
    fn wake(&self, changed: bool, chunk_made: bool) {
        if changed {
            self.changed();
        } else if chunk_made {
            self.chunk_made();
        }
    }
}

#[cfg(test)]
impl LiveRoom {
    /// A room outside the hub, fed by a test through [`LiveRoom::update`].
    pub(crate) fn detached(name: &str, packager: Packager) -> Arc<LiveRoom> {
        Arc::new(LiveRoom {
            name: name.to_owned(),
            playlists: Mutex::new(Vec::new()),
            packager: RwLock::new(RoomState {
                packager,
                publish_id: 0,
                ended_publish: 0,
                since: None,
            }),
            version: watch::channel(0).0,
            progress: watch::channel(0).0,
        })
    }

    /// The packager's count of chunks made.
    pub(crate) fn read_chunks_made(&self) -> u64 {
        read(&self.packager).packager.chunks_made()
    }

    /// Runs `f` on the packager (it returns whether something changed, as `handle` does) and
    /// wakes waiters as the feed task does.
    pub(crate) fn update(&self, f: impl FnOnce(&mut Packager) -> bool) {
        let mut s = write(&self.packager);
        let chunks = s.packager.chunks_made();
        let changed = f(&mut s.packager);
        let chunk_made = s.packager.chunks_made() != chunks;
        drop(s);
        self.wake(changed, chunk_made);
    }
}

struct Inner {
    config: HlsConfig,
    rooms: Mutex<HashMap<String, Arc<LiveRoom>>>,
    /// Makes every packager's resource names unique across rooms and server runs, so a CDN
    /// that cached `…-12.m4s` from an earlier run never serves it for a new one.
    boot: String,
    packagers_made: AtomicU64,
}

/// All rooms that are live or within their offline grace period.
#[derive(Clone)]
pub struct Rooms {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms").finish_non_exhaustive()
    }
}

fn base36(mut n: u128) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

impl Rooms {
    /// Starts following `hub`: every publish feeds its room's packager.
    pub fn start(hub: &Hub, config: HlsConfig, shutdown: CancellationToken) -> Self {
        let boot_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let rooms = Rooms {
            inner: Arc::new(Inner {
                config,
                rooms: Mutex::new(HashMap::new()),
                boot: base36(boot_ms),
                packagers_made: AtomicU64::new(0),
            }),
        };
        let mut events = hub.watch_rooms();
        let this = rooms.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = events.recv() => e,
                    () = shutdown.cancelled() => None,
                };
                match event {
                    Some(RoomEvent::Live {
                        room,
                        publish_id,
                        media,
                    }) => this.on_live(room, publish_id, media),
                    // The feed task sees the end of the media itself and ends the playlist.
                    Some(RoomEvent::Offline { .. }) => {}
                    None => break,
                }
            }
        });
        rooms
    }

    /// The room, if it is live or within its grace period.
    pub fn get(&self, name: &str) -> Option<Arc<LiveRoom>> {
        lock(&self.inner.rooms).get(name).cloned()
    }

    /// Every room currently known.
    pub fn all(&self) -> Vec<Arc<LiveRoom>> {
        let mut v: Vec<_> = lock(&self.inner.rooms).values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Ends every playlist (server shutdown), so players see `EXT-X-ENDLIST`.
    pub fn end_all(&self) {
        let now = SystemTime::now();
        for room in self.all() {
            let mut s = write(&room.packager);
            if s.publish_id != 0 {
                s.ended_publish = s.publish_id;
                s.publish_id = 0;
                s.packager.end_publish(now);
                drop(s);
                room.changed();
            }
        }
    }

    fn packager_config(&self) -> PackagerConfig {
        let n = self.inner.packagers_made.fetch_add(1, Ordering::Relaxed);
        let c = &self.inner.config;
        PackagerConfig {
            target_duration: Duration::from_millis(c.target_duration_ms),
            part_target: Duration::from_millis(c.part_target_ms),
            window_segments: c.window_segments,
            retain_segments: c.retain_segments,
            name_prefix: format!("{}{}", self.inner.boot, base36(u128::from(n))),
            stream_parts: c.stream_hinted_parts,
        }
    }

    fn on_live(&self, name: String, publish_id: u64, media: MediaSubscription) {
        let room = {
            let mut rooms = lock(&self.inner.rooms);
            rooms
                .entry(name.clone())
                .or_insert_with(|| {
                    Arc::new(LiveRoom {
                        name: name.clone(),
                        playlists: Mutex::new(Vec::new()),
                        packager: RwLock::new(RoomState {
                            packager: Packager::new(self.packager_config()),
                            publish_id: 0,
                            ended_publish: 0,
                            since: None,
                        }),
                        version: watch::channel(0).0,
                        progress: watch::channel(0).0,
                    })
                })
                .clone()
        };
        {
            let now = SystemTime::now();
            let mut s = write(&room.packager);
            // A takeover: the old publish's feed stops at its next event because the id moved.
            s.publish_id = publish_id;
            s.since = Some(now);
            s.packager.begin_publish(now);
        }
        room.changed();
        info!(room = %name, publish_id, "room live");
        let span = info_span!("room", room = %name, publish_id);
        let rooms = self.clone();
        tokio::spawn(rooms.feed(room, publish_id, media).instrument(span));
    }

    async fn feed(self, room: Arc<LiveRoom>, publish_id: u64, mut media: MediaSubscription) {
        loop {
            let received = media.recv().await;
            let now = SystemTime::now();
            let mut s = write(&room.packager);
            if s.publish_id != publish_id {
                return;
            }
            let chunks = s.packager.chunks_made();
            let changed = match received {
                Received::Event(ev) => s.packager.handle(&ev, now),
                Received::Lagged(n) => {
                    warn!(
                        lost = n,
                        "packager fell behind the publisher; resynchronising at the next keyframe"
                    );
                    s.packager.resync(now)
                }
                Received::Ended => {
                    s.publish_id = 0;
                    s.ended_publish = publish_id;
                    s.packager.end_publish(now);
                    drop(s);
                    room.changed();
                    info!("room offline; playlist ended");
                    self.expire_later(room, publish_id);
                    return;
                }
            };
            let chunk_made = s.packager.chunks_made() != chunks;
            drop(s);
            room.wake(changed, chunk_made);
        }
    }

    fn expire_later(&self, room: Arc<LiveRoom>, ended_publish: u64) {
        let grace = Duration::from_millis(self.inner.config.offline_grace_ms);
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let mut rooms = lock(&this.inner.rooms);
            let still_offline = {
                let s = read(&room.packager);
                s.publish_id == 0 && s.ended_publish == ended_publish
            };
            if still_offline && rooms.get(&room.name).is_some_and(|r| Arc::ptr_eq(r, &room)) {
                rooms.remove(&room.name);
                info!(room = %room.name, ended_publish, "room removed after its offline grace period");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::base36;

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }
}
