//! One room's task: owns the [`ChatRoom`], handles one input at a time, fans frames out with
//! `try_send`, and hands persist events to the writer without waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::protocol::{Frame, Identity};
use crate::room::{ChatRoom, ConnId, JoinError, Outgoing, Refused};

use super::persist::{LoadRequest, PersistBatch, PersistJob, RoomSnapshot};
use super::{ChatError, CloseReason, Inner, ModerationCommand, StreamState, now_ms};

/// How long a room waits before offering a batch to a full writer queue again.
const PERSIST_RETRY: Duration = Duration::from_millis(50);

/// First wait before retrying a failed load; grows with each attempt.
const LOAD_RETRY: Duration = Duration::from_millis(200);

/// Service-side inputs of a room: joins, stream events, moderation, shutdown. Unbounded: they
/// come from the service (one per connect or server event), never from a client's frames.
#[derive(Debug)]
pub(crate) enum Ctl {
    Join {
        conn: ConnId,
        name: Option<String>,
        host: bool,
        frames: mpsc::Sender<Frame>,
        close: oneshot::Sender<CloseReason>,
        reply: oneshot::Sender<Result<Joined, ChatError>>,
    },
    /// A leave that could not wait for room in the frame queue.
    Leave(ConnId),
    StreamStarted {
        at: i64,
    },
    StreamEnded {
        at: i64,
    },
    Position {
        position_ms: i64,
        at: i64,
    },
    ExternalViewers(u64),
    Moderate {
        by: String,
        command: ModerationCommand,
        reply: oneshot::Sender<Result<(), ChatError>>,
    },
    Shutdown {
        ack: oneshot::Sender<()>,
    },
}

/// A client's inputs, through the bounded inbox, in the order the client sent them.
#[derive(Debug)]
pub(crate) enum RoomCmd {
    Frame {
        conn: ConnId,
        frame: Bytes,
    },
    /// The transport refused something itself (e.g. a bad host token); the room sends the
    /// error so that it carries the room's next frame id.
    Refuse {
        conn: ConnId,
        refused: Refused,
    },
    Leave(ConnId),
}

/// The answer to a join: who the client is, and where its frames go.
#[derive(Debug)]
pub(crate) struct Joined {
    pub identity: Identity,
    pub cmd: mpsc::Sender<RoomCmd>,
    pub ctl: mpsc::UnboundedSender<Ctl>,
}

/// Everything a room's task starts with.
pub(crate) struct Start {
    pub inner: Arc<Inner>,
    pub name: Arc<str>,
    pub generation: u64,
    pub stream: StreamState,
    pub ctl_tx: mpsc::UnboundedSender<Ctl>,
    pub ctl_rx: mpsc::UnboundedReceiver<Ctl>,
    pub cmd_tx: mpsc::Sender<RoomCmd>,
    pub cmd_rx: mpsc::Receiver<RoomCmd>,
    pub connections: Arc<AtomicUsize>,
    pub persist_tx: mpsc::Sender<PersistJob>,
}

/// Starts the room's task, and a watcher that unregisters it if it panics.
pub(crate) fn spawn(start: Start) {
    let inner = Arc::clone(&start.inner);
    let name = Arc::clone(&start.name);
    let generation = start.generation;
    let span = tracing::info_span!("chat_room", room = %name);
    let task = tokio::spawn(run(start).instrument(span));
    tokio::spawn(async move {
        if let Err(e) = task.await {
            if e.is_panic() {
                tracing::error!(room = %name, error = %e, "chat room task panicked");
                metrics::counter!("roomcast_chat_room_panics_total").increment(1);
            }
            let mut reg = inner.registry();
            Inner::unregister(&mut reg, &name, generation);
        }
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// Why a connection leaves the room.
#[derive(Debug, Clone, Copy)]
enum Departure {
    /// Its queue was full.
    Slow,
    /// Its receiver is gone, or it said goodbye.
    Left,
    /// The service closes it.
    Closed(CloseReason),
}

struct Conn {
    frames: mpsc::Sender<Frame>,
    close: Option<oneshot::Sender<CloseReason>>,
    host: bool,
}

struct RoomTask {
    inner: Arc<Inner>,
    name: Arc<str>,
    generation: u64,
    room: ChatRoom,
    conns: HashMap<ConnId, Conn>,
    connections: Arc<AtomicUsize>,
    ctl_tx: mpsc::UnboundedSender<Ctl>,
    cmd_tx: mpsc::Sender<RoomCmd>,
    /// The stream gifts are recorded under.
    gift_stream: Option<i64>,
    /// Batches the writer's queue had no room for, oldest first.
    pending: VecDeque<PersistBatch>,
    pending_events: usize,
    persist_tx: Option<mpsc::Sender<PersistJob>>,
    retry_persist_at: Option<Instant>,
    /// Since when the room has had no connection (and no moderation).
    idle_since: Option<Instant>,
    shutdown_ack: Option<oneshot::Sender<()>>,
}

async fn run(start: Start) {
    let Start {
        inner,
        name,
        generation,
        stream,
        ctl_tx,
        mut ctl_rx,
        cmd_tx,
        mut cmd_rx,
        connections,
        persist_tx,
    } = start;
    let room = ChatRoom::new(name.to_string(), inner.config.clone());
    let mut task = RoomTask {
        inner,
        name,
        generation,
        room,
        conns: HashMap::new(),
        connections,
        ctl_tx,
        cmd_tx,
        gift_stream: None,
        pending: VecDeque::new(),
        pending_events: 0,
        persist_tx: Some(persist_tx),
        retry_persist_at: None,
        idle_since: Some(Instant::now()),
        shutdown_ack: None,
    };
    task.load(stream).await;
    tracing::debug!("chat room started");
    loop {
        let wake = task.next_wake();
        let sleep = async move {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let flow = tokio::select! {
            biased;
            ctl = ctl_rx.recv() => match ctl {
                Some(ctl) => task.on_ctl(ctl),
                // Unreachable: the task holds a sender itself.
                None => Flow::Stop,
            },
            Some(cmd) = cmd_rx.recv() => {
                task.on_cmd(cmd);
                Flow::Continue
            }
            () = sleep => task.on_wake(&mut ctl_rx),
        };
        task.after_input();
        if flow == Flow::Stop {
            break;
        }
    }
    task.finish().await;
    tracing::debug!("chat room stopped");
}

/// The tokio instant of a unix-millisecond deadline.
fn instant_at(at_ms: i64) -> Instant {
    let wait = u64::try_from(at_ms.saturating_sub(now_ms())).unwrap_or(0);
    Instant::now() + Duration::from_millis(wait)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl RoomTask {
    async fn load(&mut self, stream: StreamState) {
        let request = LoadRequest {
            history_len: self.inner.config.history_len,
            stream_ms: stream.started_ms,
        };
        let attempts = self.inner.limits.load_attempts.max(1);
        let mut snapshot = RoomSnapshot::default();
        for attempt in 1..=attempts {
            match self.inner.persistence.load_room(&self.name, request).await {
                Ok(s) => {
                    snapshot = s;
                    break;
                }
                Err(failure) => {
                    metrics::counter!("roomcast_chat_load_errors_total").increment(1);
                    if !failure.transient || attempt == attempts {
                        tracing::error!(
                            error = %failure.error,
                            attempts = attempt,
                            "cannot load the chat room; it starts without history, bans or gift totals"
                        );
                        break;
                    }
                    tracing::warn!(error = %failure.error, attempt, "cannot load the chat room; retrying");
                    tokio::time::sleep(LOAD_RETRY.saturating_mul(attempt)).await;
                }
            }
        }
        self.room.load_history(snapshot.history);
        self.room.load_bans(snapshot.bans);
        if stream.live {
            let started = stream.started_ms.unwrap_or_else(now_ms);
            let _ = self.room.stream_started(started);
        }
        if let Some((position_ms, at)) = stream.position {
            self.room.set_stream_position(position_ms, at);
        }
        self.room.set_external_viewers(stream.external_viewers);
        self.gift_stream = stream.started_ms.or(snapshot.gift_stream);
        if self.gift_stream.is_some() && self.gift_stream == snapshot.gift_stream {
            self.room.load_gift_totals(snapshot.gift_totals);
        }
        // Nothing happened yet that needs saving.
        let _ = self.room.take_persist();
    }

    fn next_wake(&self) -> Option<Instant> {
        let mut wake = self.room.poll_timeout().map(instant_at);
        wake = earliest(wake, self.retry_persist_at);
        if self.conns.is_empty() {
            let idle = Duration::from_millis(self.inner.limits.room_idle_ms);
            wake = earliest(wake, self.idle_since.map(|since| since + idle));
        }
        wake
    }

    fn on_ctl(&mut self, ctl: Ctl) -> Flow {
        match ctl {
            Ctl::Join {
                conn,
                name,
                host,
                frames,
                close,
                reply,
            } => self.join(conn, name, host, frames, close, reply),
            Ctl::Leave(conn) => self.depart(conn, Departure::Left),
            Ctl::StreamStarted { at } => {
                self.gift_stream = Some(at);
                let out = self.room.stream_started(at);
                self.deliver(out);
            }
            Ctl::StreamEnded { at } => {
                let out = self.room.stream_ended(at);
                self.deliver(out);
            }
            Ctl::Position { position_ms, at } => self.room.set_stream_position(position_ms, at),
            Ctl::ExternalViewers(n) => self.room.set_external_viewers(n),
            Ctl::Moderate { by, command, reply } => {
                let result = self.moderate(&by, command);
                let _ = reply.send(result);
                self.idle_since = Some(Instant::now());
            }
            Ctl::Shutdown { ack } => {
                let conns: Vec<ConnId> = self.conns.keys().copied().collect();
                for conn in conns {
                    self.depart(conn, Departure::Closed(CloseReason::GOING_AWAY));
                }
                let mut reg = self.inner.registry();
                Inner::unregister(&mut reg, &self.name, self.generation);
                self.shutdown_ack = Some(ack);
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    fn join(
        &mut self,
        conn: ConnId,
        name: Option<String>,
        host: bool,
        frames: mpsc::Sender<Frame>,
        close: oneshot::Sender<CloseReason>,
        reply: oneshot::Sender<Result<Joined, ChatError>>,
    ) {
        let max = self.inner.limits.max_connections_per_room;
        if self.conns.len() >= max {
            let _ = reply.send(Err(ChatError::RoomFull { max }));
            return;
        }
        let now = now_ms();
        let joined = match self.room.join(conn, name.as_deref(), host, now) {
            Ok((you, out)) => Ok((you, out, None)),
            Err(e @ (JoinError::InvalidName(_) | JoinError::NameTaken(_))) => self
                .room
                .join(conn, None, host, now)
                .map(|(you, out)| (you, out, Some(e.refusal()))),
            Err(e @ JoinError::AlreadyJoined(_)) => Err(e),
        };
        let (identity, out, refusal) = match joined {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(%conn, error = %e, "chat join failed");
                let _ = reply.send(Err(ChatError::Unavailable));
                return;
            }
        };
        self.conns.insert(
            conn,
            Conn {
                frames,
                close: Some(close),
                host,
            },
        );
        self.connections.store(self.conns.len(), Ordering::Relaxed);
        metrics::gauge!("roomcast_chat_connections").increment(1.0);
        self.deliver(out);
        if let Some(refused) = refusal {
            let frame = self.room.error_frame(&refused, now);
            self.deliver(vec![Outgoing::To(conn, frame)]);
        }
        let joined = Joined {
            identity,
            cmd: self.cmd_tx.clone(),
            ctl: self.ctl_tx.clone(),
        };
        if reply.send(Ok(joined)).is_err() {
            // The caller gave up waiting (its future was dropped): nobody will read this one.
            self.depart(conn, Departure::Left);
        }
    }

    fn moderate(&mut self, by: &str, command: ModerationCommand) -> Result<(), ChatError> {
        let now = now_ms();
        let room = &mut self.room;
        let result = match command {
            ModerationCommand::Delete { message_id } => room.delete_message(message_id, by, now),
            ModerationCommand::Ban { user } => room.ban(&user, by, now),
            ModerationCommand::Unban { user } => room.unban(&user, by, now),
            ModerationCommand::SlowMode { seconds } => room.set_slow_mode(seconds, by, now),
            ModerationCommand::LotteryOpen {
                keyword,
                duration_s,
            } => room.open_lottery(&keyword, duration_s, by, now),
            ModerationCommand::LotteryDraw => room.draw_lottery(by, now),
            ModerationCommand::LotteryCancel => room.cancel_lottery(by, now),
        };
        match result {
            Ok(out) => {
                self.deliver(out);
                Ok(())
            }
            Err(refused) => Err(ChatError::Refused(refused)),
        }
    }

    fn on_cmd(&mut self, cmd: RoomCmd) {
        match cmd {
            RoomCmd::Frame { conn, frame } => {
                // Frames of a connection already dropped (slow, or leaving) are ignored.
                if !self.conns.contains_key(&conn) {
                    return;
                }
                metrics::counter!("roomcast_chat_messages_in_total").increment(1);
                let out = self.room.handle_frame(conn, &frame, now_ms());
                self.deliver(out);
            }
            RoomCmd::Refuse { conn, refused } => {
                if !self.conns.contains_key(&conn) {
                    return;
                }
                let frame = self.room.error_frame(&refused, now_ms());
                self.deliver(vec![Outgoing::To(conn, frame)]);
            }
            RoomCmd::Leave(conn) => self.depart(conn, Departure::Left),
        }
    }

    fn on_wake(&mut self, ctl_rx: &mut mpsc::UnboundedReceiver<Ctl>) -> Flow {
        // Cheap when nothing is due; the deadline may be a millisecond off either way.
        let out = self.room.tick(now_ms());
        self.deliver(out);
        let idle_for = Duration::from_millis(self.inner.limits.room_idle_ms);
        let idle = self.conns.is_empty()
            && self
                .idle_since
                .is_some_and(|since| since.elapsed() >= idle_for);
        if !idle {
            return Flow::Continue;
        }
        // Under the registry lock, so no join can slip in between the check and the exit: a
        // connect sends its join under the same lock.
        let inner = Arc::clone(&self.inner);
        let mut reg = inner.registry();
        match ctl_rx.try_recv() {
            Ok(ctl) => {
                drop(reg);
                self.on_ctl(ctl)
            }
            Err(_) => {
                Inner::unregister(&mut reg, &self.name, self.generation);
                Flow::Stop
            }
        }
    }

    /// After every input: persist what the room produced, note whether the room is idle.
    fn after_input(&mut self) {
        let events = self.room.take_persist();
        if !events.is_empty() {
            self.queue_persist(events);
        }
        if !self.pending.is_empty() && self.retry_persist_at.is_none_or(|at| at <= Instant::now()) {
            self.flush_persist();
        }
        if !self.conns.is_empty() {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(Instant::now());
        }
    }

    fn queue_persist(&mut self, events: Vec<crate::room::PersistEvent>) {
        self.pending_events += events.len();
        match self.pending.back_mut() {
            Some(batch) if batch.stream_ms == self.gift_stream => batch.events.extend(events),
            _ => self.pending.push_back(PersistBatch {
                stream_ms: self.gift_stream,
                events,
            }),
        }
        let backlog = self.inner.limits.persist_backlog.max(1);
        let mut dropped = 0;
        while self.pending_events > backlog {
            let excess = self.pending_events - backlog;
            let Some(front) = self.pending.front_mut() else {
                break;
            };
            let n = excess.min(front.events.len());
            front.events.drain(..n);
            if front.events.is_empty() {
                self.pending.pop_front();
            }
            self.pending_events -= n;
            dropped += n;
        }
        if dropped > 0 {
            metrics::counter!("roomcast_chat_persist_dropped_total").increment(dropped as u64);
            tracing::warn!(
                dropped,
                "chat persistence is behind; dropping the oldest unsaved events"
            );
        }
    }

    fn flush_persist(&mut self) {
        let Some(tx) = &self.persist_tx else {
            return;
        };
        while let Some(batch) = self.pending.pop_front() {
            let n = batch.events.len();
            let job = PersistJob {
                room: Arc::clone(&self.name),
                batch,
            };
            match tx.try_send(job) {
                Ok(()) => self.pending_events -= n,
                Err(mpsc::error::TrySendError::Full(job)) => {
                    self.pending.push_front(job.batch);
                    self.retry_persist_at = Some(Instant::now() + PERSIST_RETRY);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.pending_events -= n;
                    metrics::counter!("roomcast_chat_persist_dropped_total").increment(n as u64);
                }
            }
        }
        self.retry_persist_at = None;
    }

    /// Before the task ends: hand every pending batch to the writer, waiting for queue space
    /// (nobody is connected any more), then let the writer go.
    async fn finish(&mut self) {
        if let Some(tx) = self.persist_tx.take() {
            while let Some(batch) = self.pending.pop_front() {
                let n = batch.events.len();
                let job = PersistJob {
                    room: Arc::clone(&self.name),
                    batch,
                };
                if tx.send(job).await.is_err() {
                    metrics::counter!("roomcast_chat_persist_dropped_total").increment(n as u64);
                }
            }
        }
        self.pending_events = 0;
        // Connections still here (the task is stopping for a reason other than shutdown or
        // idleness) are told so rather than left hanging.
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.depart(conn, Departure::Closed(CloseReason::GOING_AWAY));
        }
        if let Some(ack) = self.shutdown_ack.take() {
            let _ = ack.send(());
        }
    }

    /// Sends each frame to its receivers; a receiver whose queue is full is dropped.
    fn deliver(&mut self, out: Vec<Outgoing>) {
        for outgoing in out {
            let mut doomed: Vec<(ConnId, Departure)> = Vec::new();
            let mut sent = 0_u64;
            let mut push = |conn: ConnId, c: &Conn, frame: Frame| match c.frames.try_send(frame) {
                Ok(()) => sent += 1,
                Err(mpsc::error::TrySendError::Full(_)) => doomed.push((conn, Departure::Slow)),
                Err(mpsc::error::TrySendError::Closed(_)) => doomed.push((conn, Departure::Left)),
            };
            match outgoing {
                Outgoing::Broadcast(frame) => {
                    for (&conn, c) in &self.conns {
                        push(conn, c, frame.clone());
                    }
                }
                Outgoing::To(conn, frame) => {
                    if let Some(c) = self.conns.get(&conn) {
                        push(conn, c, frame);
                    }
                }
                Outgoing::ToHosts(frame) => {
                    for (&conn, c) in self.conns.iter().filter(|(_, c)| c.host) {
                        push(conn, c, frame.clone());
                    }
                }
            }
            if sent > 0 {
                metrics::counter!("roomcast_chat_messages_out_total").increment(sent);
            }
            for (conn, why) in doomed {
                self.depart(conn, why);
            }
        }
    }

    fn depart(&mut self, conn: ConnId, why: Departure) {
        let Some(mut c) = self.conns.remove(&conn) else {
            return;
        };
        self.room.leave(conn, now_ms());
        self.connections.store(self.conns.len(), Ordering::Relaxed);
        metrics::gauge!("roomcast_chat_connections").decrement(1.0);
        let reason = match why {
            Departure::Slow => {
                metrics::counter!("roomcast_chat_dropped_slow_total").increment(1);
                tracing::debug!(%conn, "chat client too slow; disconnected");
                CloseReason::SLOW_CONSUMER
            }
            Departure::Left => CloseReason::NORMAL,
            Departure::Closed(reason) => reason,
        };
        if let Some(close) = c.close.take() {
            let _ = close.send(reason);
        }
    }
}
