//! The async chat runtime the HTTP server uses: one tokio task per room around a
//! [`ChatRoom`](crate::ChatRoom), bounded per-client queues, and persistence off the hot path.
//!
//! Transport-agnostic: no WebSocket here. The server turns a socket into a
//! [`ChatService::connect`] call, forwards the client's frames with [`ChatInbound::send`],
//! writes the frames of [`ChatConnection::outgoing`] to the socket, and closes the socket
//! with the [`CloseReason`] that [`ChatConnection::closed`] yields.
//!
//! # Rooms
//! A room's task starts on the first [`ChatService::connect`] (or [`ChatService::moderate`])
//! and first loads history, bans and gift totals through [`ChatPersistence::load_room`]
//! (connections wait for that). It owns the `ChatRoom` — no lock around it — and handles one
//! input at a time: joins, client frames, leaves, stream events, moderation, and the room's
//! timers ([`ChatRoom::tick`](crate::ChatRoom::tick) at
//! [`poll_timeout`](crate::ChatRoom::poll_timeout)). A room without connections for
//! [`ServiceLimits::room_idle_ms`] ends its task; the next connection starts a new one, which
//! loads again. What the service knows about the stream (live, its start, its position,
//! HLS-only viewers) is kept outside the task, so it survives that.
//!
//! # Fan-out and slow clients
//! Every frame is serialised once; a broadcast `try_send`s a clone of the same [`Frame`]
//! (shared bytes) into each connection's bounded queue ([`ServiceLimits::client_queue`]
//! frames). A connection whose queue is full is disconnected at once with
//! [`CloseReason::SLOW_CONSUMER`] (close code 4000, counted in
//! `roomcast_chat_dropped_slow_total`); the room never waits for anyone.
//!
//! # Persistence
//! Writes go through one writer task per service with a bounded queue; see
//! `service/persist.rs`. A failed write is retried with backoff, then dropped and counted;
//! it never stalls a room.
//!
//! # Metrics
//! `roomcast_chat_connections` and `roomcast_chat_rooms` (gauges),
//! `roomcast_chat_messages_in_total` (client frames), `roomcast_chat_messages_out_total`
//! (frames queued to clients), `roomcast_chat_dropped_slow_total`,
//! `roomcast_chat_persisted_events_total`, `roomcast_chat_persist_errors_total`,
//! `roomcast_chat_persist_dropped_total`, `roomcast_chat_load_errors_total`,
//! `roomcast_chat_room_panics_total`.

mod persist;
mod room_task;
mod store;

pub use persist::{ChatPersistence, LoadRequest, NoPersistence, PersistBatch, RoomSnapshot};

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::ChatConfig;
use crate::protocol::{Frame, Identity};
use crate::room::{ConnId, Refused};
use persist::{DynPersistence, PersistJob};
use room_task::{Ctl, RoomCmd};

/// Sizes and timings of the service. Every field has a default; the server's configuration can
/// embed it (`[chat.service]`, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceLimits {
    /// Frames queued for one client before it counts as too slow and is disconnected (at least
    /// 4 are used).
    pub client_queue: usize,
    /// Rooms with a running task; a connection to one more is refused with
    /// [`ChatError::TooManyRooms`].
    pub max_rooms: usize,
    /// Connections in one room; one more is refused with [`ChatError::RoomFull`].
    pub max_connections_per_room: usize,
    /// Client frames queued for a room's task. When it is full, [`ChatInbound::send`] waits:
    /// the server stops reading that socket, and nobody else is slowed.
    pub room_inbox: usize,
    /// Milliseconds a room without connections keeps its task.
    pub room_idle_ms: u64,
    /// Batches queued for the persistence writer, all rooms together.
    pub persist_queue: usize,
    /// Events one room keeps while the writer's queue is full; beyond it the oldest are
    /// dropped (and counted).
    pub persist_backlog: usize,
    /// Tries of one write before its events are dropped.
    pub persist_attempts: u32,
    /// Wait before the first retry of a failed write, milliseconds; doubled each time.
    pub persist_retry_ms: u64,
    /// Tries of loading a room before it starts empty.
    pub load_attempts: u32,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        Self {
            client_queue: 256,
            max_rooms: 10_000,
            max_connections_per_room: 50_000,
            room_inbox: 4_096,
            room_idle_ms: 60_000,
            persist_queue: 1_024,
            persist_backlog: 10_000,
            persist_attempts: 4,
            persist_retry_ms: 200,
            load_attempts: 3,
        }
    }
}

/// Smallest per-client queue: the welcome and a refusal of the requested name must fit.
const MIN_CLIENT_QUEUE: usize = 4;

/// Why the service closed a connection: a WebSocket close code and reason (under 123 bytes, as
/// a close frame requires).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    /// WebSocket close code.
    pub code: u16,
    /// Short text for the close frame.
    pub reason: &'static str,
}

impl CloseReason {
    /// 4000: the client did not read its frames fast enough; its queue filled up. A page may
    /// reconnect (it gets the history again in `welcome`).
    pub const SLOW_CONSUMER: CloseReason = CloseReason {
        code: 4000,
        reason: "too slow: chat frames were not read in time",
    };
    /// 1000 (normal closure): the connection left the room (its [`ChatInbound`] was dropped).
    pub const NORMAL: CloseReason = CloseReason {
        code: 1000,
        reason: "left the room",
    };
    /// 1001 (going away): the server is shutting down.
    pub const GOING_AWAY: CloseReason = CloseReason {
        code: 1001,
        reason: "server shutting down",
    };
    /// 1011 (internal error): the room's task failed. Reconnecting starts it again.
    pub const INTERNAL: CloseReason = CloseReason {
        code: 1011,
        reason: "chat room failed",
    };
}

/// Why a service call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// The room name is not `[a-z0-9_-]{1,64}`.
    #[error("invalid room name {0:?}")]
    InvalidRoom(String),
    /// [`ChatService::shutdown`] was called.
    #[error("the chat is shutting down")]
    ShuttingDown,
    /// [`ServiceLimits::max_rooms`] rooms are running.
    #[error("too many chat rooms are open (at most {max})")]
    TooManyRooms {
        /// The limit.
        max: usize,
    },
    /// The room has [`ServiceLimits::max_connections_per_room`] connections.
    #[error("the room's chat is full (at most {max} connections)")]
    RoomFull {
        /// The limit.
        max: usize,
    },
    /// The room's task ended while the call waited (it failed, or the service shut down).
    #[error("the room's chat is unavailable")]
    Unavailable,
    /// The room refused a moderation command (for example `not_found` for an unknown message).
    #[error("refused: {0}")]
    Refused(Refused),
}

/// A host or operator command for [`ChatService::moderate`]; the same as the host commands a
/// host connection sends as frames. It is the store's moderation request: what the CLI queues in
/// the database is handed to the room as it is.
pub use roomcast_store::ModerationRequest as ModerationCommand;

/// One client in a room, as [`ChatService::connect`] returns it. The fields are public so the
/// server can hand them to separate tasks.
#[derive(Debug)]
pub struct ChatConnection {
    /// The connection's id (for logs).
    pub id: ConnId,
    /// Who the client is in the room (a guest name if it asked for none, or for one that was
    /// invalid or taken).
    pub identity: Identity,
    /// Frames for the client, in order; the `welcome` frame is first. When the room drops the
    /// client this ends (after the frames already queued), and [`ChatConnection::closed`]
    /// says why; prefer `closed` so a slow client is closed without draining its backlog.
    pub outgoing: mpsc::Receiver<Frame>,
    /// Where the client's frames go. Dropping it (and all its clones) leaves the room.
    pub inbound: ChatInbound,
    /// Resolves when the service disconnects the client, with the close code to send.
    pub closed: CloseSignal,
}

/// The client-to-room half of a connection. Clones share one membership: the connection
/// leaves the room when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct ChatInbound {
    conn: ConnId,
    cmd: mpsc::Sender<RoomCmd>,
    _leave: Arc<LeaveGuard>,
}

/// The room's task is gone (shutdown or failure); the connection is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the chat room is closed")]
pub struct RoomClosed;

impl ChatInbound {
    /// Delivers one client frame (the payload of a WebSocket text or binary message). Waits
    /// while the room's inbox is full, which pauses reading this client's socket. Frames of a
    /// connection the room has already dropped are ignored.
    pub async fn send(&self, frame: Bytes) -> Result<(), RoomClosed> {
        self.cmd
            .send(RoomCmd::Frame {
                conn: self.conn,
                frame,
            })
            .await
            .map_err(|_| RoomClosed)
    }

    /// The connection's id.
    /// Sends this client an `error` frame for something the transport refused itself.
    pub async fn refuse(&self, refused: Refused) -> Result<(), RoomClosed> {
        self.cmd
            .send(RoomCmd::Refuse {
                conn: self.conn,
                refused,
            })
            .await
            .map_err(|_| RoomClosed)
    }

    /// The connection's id in its room.
    pub fn conn_id(&self) -> ConnId {
        self.conn
    }
}

/// Tells the room that the connection left when the last [`ChatInbound`] clone is dropped. The
/// leave goes through the same queue as the client's frames, so frames sent before it are
/// handled first.
#[derive(Debug)]
struct LeaveGuard {
    conn: ConnId,
    cmd: mpsc::Sender<RoomCmd>,
    ctl: mpsc::UnboundedSender<Ctl>,
}

impl Drop for LeaveGuard {
    fn drop(&mut self) {
        let leave = RoomCmd::Leave(self.conn);
        match self.cmd.try_send(leave) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(leave)) => {
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        let cmd = self.cmd.clone();
                        runtime.spawn(async move {
                            let _ = cmd.send(leave).await;
                        });
                    }
                    // No runtime to wait in: overtake the queued frames instead.
                    Err(_) => {
                        let _ = self.ctl.send(Ctl::Leave(self.conn));
                    }
                }
            }
        }
    }
}

/// Resolves with the [`CloseReason`] when the service disconnects the client. Await it by
/// `&mut` in a `select!` loop; once resolved it stays resolved.
#[derive(Debug)]
pub struct CloseSignal {
    rx: oneshot::Receiver<CloseReason>,
    done: Option<CloseReason>,
}

impl CloseSignal {
    fn new(rx: oneshot::Receiver<CloseReason>) -> Self {
        Self { rx, done: None }
    }

    /// The reason, if the client was already disconnected.
    pub fn try_reason(&mut self) -> Option<CloseReason> {
        if self.done.is_none() {
            match self.rx.try_recv() {
                Ok(reason) => self.done = Some(reason),
                Err(oneshot::error::TryRecvError::Closed) => {
                    self.done = Some(CloseReason::INTERNAL);
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
        }
        self.done
    }
}

impl Future for CloseSignal {
    type Output = CloseReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseReason> {
        if let Some(reason) = self.done {
            return Poll::Ready(reason);
        }
        let reason = match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(reason)) => reason,
            // The room's task ended without saying why: it failed.
            Poll::Ready(Err(_)) => CloseReason::INTERNAL,
        };
        self.done = Some(reason);
        Poll::Ready(reason)
    }
}

/// The chat of every room. Cheap to clone; create one per server with [`ChatService::new`].
#[derive(Clone)]
pub struct ChatService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ChatService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reg = self.inner.registry();
        f.debug_struct("ChatService")
            .field("rooms", &reg.running)
            .field("closing", &reg.closing)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    config: ChatConfig,
    limits: ServiceLimits,
    persistence: Arc<dyn DynPersistence>,
    registry: Mutex<Registry>,
    next_conn: AtomicU64,
    next_generation: AtomicU64,
    persist_tx: Mutex<Option<mpsc::Sender<PersistJob>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
pub(crate) struct Registry {
    closing: bool,
    /// Rooms with a running task.
    running: usize,
    rooms: HashMap<String, RoomEntry>,
}

/// What the service keeps about a room across its task's lifetimes.
#[derive(Default)]
pub(crate) struct RoomEntry {
    stream: StreamState,
    task: Option<RoomHandle>,
}

/// What the server told the service about a room's stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamState {
    pub live: bool,
    /// When the current (or last) stream started, unix milliseconds.
    pub started_ms: Option<i64>,
    /// The latest `(position_ms, at_ms)` of the live edge.
    pub position: Option<(i64, i64)>,
    pub external_viewers: u64,
}

impl StreamState {
    /// Nothing worth keeping without a task: a new task would load the same from the database.
    fn is_idle(&self) -> bool {
        !self.live && self.external_viewers == 0
    }
}

#[derive(Clone)]
pub(crate) struct RoomHandle {
    generation: u64,
    ctl: mpsc::UnboundedSender<Ctl>,
    cmd: mpsc::Sender<RoomCmd>,
    connections: Arc<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Now, unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Inner {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    /// Sends `ctl` to the room's task, starting one if `start` and none runs. Returns whether
    /// it was delivered (`false`: no task and `start` was false).
    fn send_ctl(self: &Arc<Self>, room: &str, ctl: Ctl, start: bool) -> Result<bool, ChatError> {
        let mut reg = self.registry();
        if reg.closing {
            return Err(ChatError::ShuttingDown);
        }
        let mut ctl = ctl;
        let mut died = false;
        if let Some(entry) = reg.rooms.get_mut(room)
            && let Some(handle) = &entry.task
        {
            match handle.ctl.send(ctl) {
                Ok(()) => return Ok(true),
                Err(mpsc::error::SendError(back)) => {
                    // The task failed without unregistering (a panic); start over.
                    ctl = back;
                    entry.task = None;
                    died = true;
                }
            }
        }
        if died {
            reg.running = reg.running.saturating_sub(1);
            metrics::gauge!("roomcast_chat_rooms").decrement(1.0);
        }
        if !start {
            return Ok(false);
        }
        if reg.running >= self.limits.max_rooms {
            return Err(ChatError::TooManyRooms {
                max: self.limits.max_rooms,
            });
        }
        let Some(persist_tx) = lock(&self.persist_tx).clone() else {
            return Err(ChatError::ShuttingDown);
        };
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::channel(self.limits.room_inbox.max(1));
        let handle = RoomHandle {
            generation,
            ctl: ctl_tx,
            cmd: cmd_tx,
            connections: Arc::new(AtomicUsize::new(0)),
        };
        // The receiver is alive: it is moved into the task below.
        let _ = handle.ctl.send(ctl);
        let entry = reg.rooms.entry(room.to_owned()).or_default();
        let stream = entry.stream;
        entry.task = Some(handle.clone());
        reg.running += 1;
        metrics::gauge!("roomcast_chat_rooms").increment(1.0);
        room_task::spawn(room_task::Start {
            inner: Arc::clone(self),
            name: room.into(),
            generation,
            stream,
            ctl_tx: handle.ctl,
            ctl_rx,
            cmd_tx: handle.cmd,
            cmd_rx,
            connections: handle.connections,
            persist_tx,
        });
        Ok(true)
    }

    /// Updates what the service knows of a room's stream and tells its task, if one runs.
    fn update_stream(&self, room: &str, update: impl FnOnce(&mut StreamState), ctl: Ctl) {
        if !roomcast_store::valid_room_name(room) {
            tracing::warn!(room, "stream event for an invalid room name ignored");
            return;
        }
        let mut reg = self.registry();
        if reg.closing {
            return;
        }
        let entry = reg.rooms.entry(room.to_owned()).or_default();
        update(&mut entry.stream);
        match &entry.task {
            Some(handle) => {
                // A failed task is replaced on the next connect, with this state.
                let _ = handle.ctl.send(ctl);
            }
            None if entry.stream.is_idle() => {
                reg.rooms.remove(room);
            }
            None => {}
        }
    }

    /// Called by a room's task, under the registry lock, when it ends: forgets its handle.
    pub(crate) fn unregister(reg: &mut Registry, room: &str, generation: u64) {
        let Some(entry) = reg.rooms.get_mut(room) else {
            return;
        };
        if entry
            .task
            .as_ref()
            .is_some_and(|h| h.generation == generation)
        {
            entry.task = None;
            reg.running = reg.running.saturating_sub(1);
            metrics::gauge!("roomcast_chat_rooms").decrement(1.0);
            if entry.stream.is_idle() {
                reg.rooms.remove(room);
            }
        }
    }
}

impl ChatService {
    /// Creates the service and starts its persistence writer. Call it inside a tokio runtime.
    ///
    /// Pass `Arc::new(store.clone())` for the database ([`roomcast_store::Store`] implements
    /// [`ChatPersistence`]) or `Arc::new(NoPersistence)`.
    pub fn new<P: ChatPersistence>(
        config: ChatConfig,
        persistence: Arc<P>,
        limits: ServiceLimits,
    ) -> Self {
        let persistence: Arc<dyn DynPersistence> = persistence;
        let (persist_tx, persist_rx) = mpsc::channel(limits.persist_queue.max(1));
        let writer = tokio::spawn(persist::run_writer(
            Arc::clone(&persistence),
            persist_rx,
            limits.clone(),
        ));
        Self {
            inner: Arc::new(Inner {
                config,
                limits,
                persistence,
                registry: Mutex::new(Registry::default()),
                next_conn: AtomicU64::new(1),
                next_generation: AtomicU64::new(1),
                persist_tx: Mutex::new(Some(persist_tx)),
                writer: Mutex::new(Some(writer)),
            }),
        }
    }

    /// The configuration every room runs with.
    pub fn config(&self) -> &ChatConfig {
        &self.inner.config
    }

    /// The service's limits.
    pub fn limits(&self) -> &ServiceLimits {
        &self.inner.limits
    }

    /// Joins a client to `room`, starting the room's task if needed (which first loads its
    /// history and bans). `is_host` when the client proved it holds the room's host token.
    ///
    /// A requested name that is invalid or taken does not fail the call: the client joins
    /// under a guest name and gets an `error` frame (`invalid_name` or `name_taken`) right
    /// after its `welcome`; it can ask again with a `join` frame.
    pub async fn connect(
        &self,
        room: &str,
        is_host: bool,
        requested_name: Option<String>,
    ) -> Result<ChatConnection, ChatError> {
        if !roomcast_store::valid_room_name(room) {
            return Err(ChatError::InvalidRoom(room.chars().take(80).collect()));
        }
        let conn = ConnId(self.inner.next_conn.fetch_add(1, Ordering::Relaxed));
        let queue = self.inner.limits.client_queue.max(MIN_CLIENT_QUEUE);
        let (frames_tx, frames_rx) = mpsc::channel(queue);
        let (close_tx, close_rx) = oneshot::channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        let join = Ctl::Join {
            conn,
            name: requested_name,
            host: is_host,
            frames: frames_tx,
            close: close_tx,
            reply: reply_tx,
        };
        self.inner.send_ctl(room, join, true)?;
        let joined = reply_rx.await.map_err(|_| ChatError::Unavailable)??;
        let leave = Arc::new(LeaveGuard {
            conn,
            cmd: joined.cmd.clone(),
            ctl: joined.ctl,
        });
        Ok(ChatConnection {
            id: conn,
            identity: joined.identity,
            outgoing: frames_rx,
            inbound: ChatInbound {
                conn,
                cmd: joined.cmd,
                _leave: leave,
            },
            closed: CloseSignal::new(close_rx),
        })
    }

    /// The room's stream went live (from ingest): the stream clock starts at 0, likes and gift
    /// totals start afresh, and the room gets a `system` frame.
    pub fn stream_started(&self, room: &str) {
        let now = now_ms();
        self.inner.update_stream(
            room,
            |s| {
                s.live = true;
                s.started_ms = Some(now);
                s.position = Some((0, now));
            },
            Ctl::StreamStarted { at: now },
        );
    }

    /// The room's stream ended: a `system` frame; the gift board stays until the next start.
    pub fn stream_ended(&self, room: &str) {
        let now = now_ms();
        self.inner
            .update_stream(room, |s| s.live = false, Ctl::StreamEnded { at: now });
    }

    /// The live edge of the room's stream is at `position_ms` now (e.g. the packager's newest
    /// part); danmaku are stamped with the position, which advances with the clock between
    /// calls.
    pub fn set_stream_position(&self, room: &str, position_ms: i64) {
        let now = now_ms();
        self.inner.update_stream(
            room,
            |s| s.position = Some((position_ms, now)),
            Ctl::Position {
                position_ms,
                at: now,
            },
        );
    }

    /// Viewers of the room's stream that have no chat connection (HLS players such as VLC),
    /// as the server counts them; added to the viewer count.
    pub fn set_external_viewers(&self, room: &str, viewers: usize) {
        let viewers = u64::try_from(viewers).unwrap_or(u64::MAX);
        self.inner.update_stream(
            room,
            |s| s.external_viewers = viewers,
            Ctl::ExternalViewers(viewers),
        );
    }

    /// Runs a moderation command in `room` as `by` (a name for the logs and the `system`
    /// announcements, e.g. `operator`), starting the room's task if needed so that a ban or a
    /// deletion reaches the database even when nobody is connected.
    pub async fn moderate(
        &self,
        room: &str,
        by: &str,
        command: ModerationCommand,
    ) -> Result<(), ChatError> {
        if !roomcast_store::valid_room_name(room) {
            return Err(ChatError::InvalidRoom(room.chars().take(80).collect()));
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let ctl = Ctl::Moderate {
            by: by.to_owned(),
            command,
            reply: reply_tx,
        };
        self.inner.send_ctl(room, ctl, true)?;
        reply_rx.await.map_err(|_| ChatError::Unavailable)?
    }

    /// Viewers of the room: chat connections plus [`ChatService::set_external_viewers`].
    pub fn viewers(&self, room: &str) -> usize {
        let reg = self.inner.registry();
        let Some(entry) = reg.rooms.get(room) else {
            return 0;
        };
        let chat = entry
            .task
            .as_ref()
            .map_or(0, |h| h.connections.load(Ordering::Relaxed));
        usize::try_from(entry.stream.external_viewers)
            .unwrap_or(usize::MAX)
            .saturating_add(chat)
    }

    /// Rooms with a running task.
    pub fn running_rooms(&self) -> usize {
        self.inner.registry().running
    }

    /// Stops the chat: new connections are refused, every client gets
    /// [`CloseReason::GOING_AWAY`], every room's pending events are handed to the writer, and
    /// this returns when the writer has written (or given up on) all of them. Call it before
    /// closing the store.
    pub async fn shutdown(&self) {
        let acks: Vec<oneshot::Receiver<()>> = {
            let mut reg = self.inner.registry();
            reg.closing = true;
            reg.rooms
                .values()
                .filter_map(|e| e.task.as_ref())
                .filter_map(|h| {
                    let (tx, rx) = oneshot::channel();
                    h.ctl.send(Ctl::Shutdown { ack: tx }).ok().map(|()| rx)
                })
                .collect()
        };
        for ack in acks {
            let _ = ack.await;
        }
        // Rooms dropped their senders; with ours gone the writer ends after the last job.
        drop(lock(&self.inner.persist_tx).take());
        let writer = lock(&self.inner.writer).take();
        if let Some(writer) = writer
            && let Err(e) = writer.await
        {
            tracing::error!(error = %e, "chat persistence writer failed");
        }
    }
}
