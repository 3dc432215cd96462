//! The room hub: the neutral point between ingest and everything that consumes a live stream.
//!
//! Ingest calls [`Hub::publish`] and pushes [`MediaEvent`]s into the returned [`Publisher`];
//! consumers (the packager, later recorders and chat) learn about publishes through
//! [`Hub::watch_rooms`] and read media from a [`MediaSubscription`]. The hub knows nothing about
//! RTMP or HLS.
//!
//! Fan-out is a bounded [`tokio::sync::broadcast`] channel per publish: sending never waits, so a
//! slow subscriber can never slow the publisher down. A subscriber that falls more than
//! [`HubConfig::channel_capacity`] events behind is told how many it lost and must resynchronise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use roomcast_media::MediaEvent;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Hub tuning.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Events buffered per publish for each subscriber before the slowest one starts losing
    /// events. At 30 fps video plus AAC this is roughly `capacity / 77` seconds of media.
    pub channel_capacity: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            channel_capacity: 1024,
        }
    }
}

/// Why a publisher was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// Another publisher with a valid key took the room over.
    TakenOver,
    /// The stream key it used was revoked.
    KeyRevoked,
    /// The server is shutting down.
    Shutdown,
}

/// A room going live or offline, as seen by [`Hub::watch_rooms`] listeners.
#[derive(Debug)]
pub enum RoomEvent {
    /// A publish started. `media` was subscribed before the publisher could send anything, so
    /// the listener sees the stream from its first event.
    Live {
        /// Room name.
        room: String,
        /// Unique id of this publish.
        publish_id: u64,
        /// The stream's events.
        media: MediaSubscription,
    },
    /// A publish ended (the publisher disconnected, or was kicked without a successor).
    Offline {
        /// Room name.
        room: String,
        /// The publish that ended.
        publish_id: u64,
    },
}

/// What one receive from a [`MediaSubscription`] gave.
#[derive(Debug)]
pub enum Received {
    /// The next event.
    Event(MediaEvent),
    /// This subscriber fell behind and lost `n` events; the next receive continues after the gap.
    Lagged(u64),
    /// The publish is over.
    Ended,
}

/// A consumer's view of one publish.
#[derive(Debug)]
pub struct MediaSubscription {
    rx: broadcast::Receiver<MediaEvent>,
}

impl MediaSubscription {
    /// Waits for the next event.
    pub async fn recv(&mut self) -> Received {
        match self.rx.recv().await {
            Ok(ev) => Received::Event(ev),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                metrics::counter!("roomcast_hub_lagged_events_total").increment(n);
                Received::Lagged(n)
            }
            Err(broadcast::error::RecvError::Closed) => Received::Ended,
        }
    }
}

/// A live publish as listed by [`Hub::live`].
#[derive(Debug, Clone)]
pub struct LivePublish {
    /// Room name.
    pub room: String,
    /// Unique id of this publish.
    pub publish_id: u64,
    /// The credential (stream key id) the publisher authenticated with.
    pub credential: i64,
    /// When the publish started.
    pub since: SystemTime,
}

struct Slot {
    publish_id: u64,
    credential: i64,
    since: SystemTime,
    tx: broadcast::Sender<MediaEvent>,
    kick: CancellationToken,
    reason: Arc<Mutex<Option<KickReason>>>,
}

struct Inner {
    config: HubConfig,
    next_id: AtomicU64,
    rooms: Mutex<HashMap<String, Slot>>,
    listeners: Mutex<Vec<mpsc::UnboundedSender<RoomEvent>>>,
}

/// The per-process hub of live rooms. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

/// Locks a mutex, recovering from poisoning: every critical section here leaves the maps
/// consistent, so a panic elsewhere must not take the whole hub down with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                next_id: AtomicU64::new(1),
                rooms: Mutex::new(HashMap::new()),
                listeners: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Registers a listener for rooms going live and offline. Each listener gets its own
    /// [`MediaSubscription`] for every publish that starts after this call.
    pub fn watch_rooms(&self) -> mpsc::UnboundedReceiver<RoomEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.inner.listeners).push(tx);
        rx
    }

    /// Starts a publish in `room`. A publisher already live there is kicked with
    /// [`KickReason::TakenOver`] at once: an encoder reconnecting after a network drop must
    /// never be refused as "busy" while its old, half-dead connection times out.
    pub fn publish(&self, room: &str, credential: i64) -> Publisher {
        let publish_id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, _) = broadcast::channel(self.inner.config.channel_capacity.max(1));
        let kick = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        let slot = Slot {
            publish_id,
            credential,
            since: SystemTime::now(),
            tx: tx.clone(),
            kick: kick.clone(),
            reason: reason.clone(),
        };
        // Subscriptions are made under the rooms lock, before the publisher exists, so that
        // no listener can miss the first events and the Live events of a room stay in order.
        let mut rooms = lock(&self.inner.rooms);
        if let Some(old) = rooms.insert(room.to_owned(), slot) {
            *lock(&old.reason) = Some(KickReason::TakenOver);
            old.kick.cancel();
            tracing::info!(
                room,
                old = old.publish_id,
                new = publish_id,
                "publish taken over"
            );
        }
        self.notify(|| RoomEvent::Live {
            room: room.to_owned(),
            publish_id,
            media: MediaSubscription { rx: tx.subscribe() },
        });
        drop(rooms);
        metrics::gauge!("roomcast_live_rooms").set(self.live_count() as f64);
        Publisher {
            hub: self.clone(),
            room: room.to_owned(),
            publish_id,
            tx,
            kick,
            reason,
        }
    }

    fn notify(&self, event: impl Fn() -> RoomEvent) {
        lock(&self.inner.listeners).retain(|l| l.send(event()).is_ok());
    }

    fn live_count(&self) -> usize {
        lock(&self.inner.rooms).len()
    }

    /// Every live publish.
    pub fn live(&self) -> Vec<LivePublish> {
        lock(&self.inner.rooms)
            .iter()
            .map(|(room, s)| LivePublish {
                room: room.clone(),
                publish_id: s.publish_id,
                credential: s.credential,
                since: s.since,
            })
            .collect()
    }

    /// Whether `room` has a publisher now.
    pub fn is_live(&self, room: &str) -> bool {
        lock(&self.inner.rooms).contains_key(room)
    }

    /// Subscribes to the current publish of `room`, from now on.
    pub fn subscribe(&self, room: &str) -> Option<MediaSubscription> {
        lock(&self.inner.rooms)
            .get(room)
            .map(|s| MediaSubscription {
                rx: s.tx.subscribe(),
            })
    }

    /// Kicks every publisher that authenticated with `credential`; returns how many.
    pub fn kick_credential(&self, credential: i64, reason: KickReason) -> usize {
        let rooms = lock(&self.inner.rooms);
        let mut n = 0;
        for s in rooms.values().filter(|s| s.credential == credential) {
            *lock(&s.reason) = Some(reason);
            s.kick.cancel();
            n += 1;
        }
        n
    }

    /// Kicks every publisher (server shutdown).
    pub fn kick_all(&self, reason: KickReason) {
        for s in lock(&self.inner.rooms).values() {
            *lock(&s.reason) = Some(reason);
            s.kick.cancel();
        }
    }

    fn finish(&self, room: &str, publish_id: u64) {
        let mut rooms = lock(&self.inner.rooms);
        // After a takeover the slot belongs to the successor: the room stays live.
        if rooms.get(room).is_some_and(|s| s.publish_id == publish_id) {
            rooms.remove(room);
            self.notify(|| RoomEvent::Offline {
                room: room.to_owned(),
                publish_id,
            });
        }
        drop(rooms);
        metrics::gauge!("roomcast_live_rooms").set(self.live_count() as f64);
    }
}

/// The sending side of one publish. Dropping it ends the publish.
pub struct Publisher {
    hub: Hub,
    room: String,
    publish_id: u64,
    tx: broadcast::Sender<MediaEvent>,
    kick: CancellationToken,
    reason: Arc<Mutex<Option<KickReason>>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("room", &self.room)
            .field("publish_id", &self.publish_id)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Room this publish is in.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Unique id of this publish.
    pub fn publish_id(&self) -> u64 {
        self.publish_id
    }

    /// Sends an event to every subscriber. Never waits: subscribers that are too far behind
    /// lose events instead (see [`Received::Lagged`]).
    pub fn send(&self, event: MediaEvent) {
        // An error only means nobody is subscribed right now, which is fine for a publisher.
        let _ = self.tx.send(event);
    }

    /// Resolves when this publisher must stop: taken over, key revoked or shutdown.
    pub async fn kicked(&self) -> KickReason {
        self.kick.cancelled().await;
        self.kick_reason().unwrap_or(KickReason::Shutdown)
    }

    /// Why this publisher was kicked, if it was.
    pub fn kick_reason(&self) -> Option<KickReason> {
        *lock(&self.reason)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.hub.finish(&self.room, self.publish_id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use roomcast_media::{Frame, TrackKind};

    fn frame(dts: i64) -> MediaEvent {
        MediaEvent::Frame(Frame {
            track: TrackKind::Video,
            dts,
            pts: dts,
            keyframe: false,
            data: Bytes::from_static(b"x"),
        })
    }

    #[tokio::test]
    async fn listener_sees_first_event_and_offline() {
        let hub = Hub::new(HubConfig::default());
        let mut rooms = hub.watch_rooms();
        let p = hub.publish("main", 7);
        p.send(frame(0));
        let Some(RoomEvent::Live {
            room, mut media, ..
        }) = rooms.recv().await
        else {
            panic!("expected live");
        };
        assert_eq!(room, "main");
        assert!(matches!(media.recv().await, Received::Event(_)));
        assert!(hub.is_live("main"));
        drop(p);
        assert!(matches!(media.recv().await, Received::Ended));
        assert!(matches!(
            rooms.recv().await,
            Some(RoomEvent::Offline { .. })
        ));
        assert!(!hub.is_live("main"));
    }

    #[tokio::test]
    async fn takeover_kicks_old_and_keeps_room_live() {
        let hub = Hub::new(HubConfig::default());
        let mut rooms = hub.watch_rooms();
        let old = hub.publish("main", 1);
        let new = hub.publish("main", 2);
        assert_eq!(old.kicked().await, KickReason::TakenOver);
        drop(old);
        assert!(hub.is_live("main"));
        let ids: Vec<_> = std::iter::from_fn(|| rooms.try_recv().ok())
            .map(|e| matches!(e, RoomEvent::Live { .. }))
            .collect();
        assert_eq!(ids, vec![true, true], "no offline event after a takeover");
        assert!(new.kick_reason().is_none());
    }

    #[tokio::test]
    async fn slow_subscriber_lags_without_blocking_publisher() {
        let hub = Hub::new(HubConfig {
            channel_capacity: 8,
        });
        let p = hub.publish("main", 1);
        let mut sub = hub.subscribe("main").unwrap();
        for i in 0..100 {
            p.send(frame(i));
        }
        assert!(matches!(sub.recv().await, Received::Lagged(92)));
        assert!(matches!(sub.recv().await, Received::Event(_)));
    }

    #[tokio::test]
    async fn kick_by_credential() {
        let hub = Hub::new(HubConfig::default());
        let a = hub.publish("a", 1);
        let b = hub.publish("b", 2);
        assert_eq!(hub.kick_credential(1, KickReason::KeyRevoked), 1);
        assert_eq!(a.kicked().await, KickReason::KeyRevoked);
        assert!(b.kick_reason().is_none());
    }
}
