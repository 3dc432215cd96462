//! Persistence behind the service: the [`ChatPersistence`] trait, and the writer task that
//! takes batches off the rooms' hot path.
//!
//! Room tasks never wait for the database. After every input a room drains
//! [`ChatRoom::take_persist`](crate::ChatRoom::take_persist) into a [`PersistBatch`] and
//! `try_send`s it to one bounded queue per service; when the queue is full the room keeps the
//! batch (up to [`ServiceLimits::persist_backlog`] events, then it drops the oldest, counted
//! in `roomcast_chat_persist_dropped_total`) and tries again shortly. The writer task takes
//! jobs off the queue, merges consecutive batches of a room, and writes them in order, retrying
//! a transient failure with backoff; a write that still fails is logged and dropped (counted),
//! and the next one goes ahead.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::protocol::{GiverTotal, StoredMessage};
use crate::room::PersistEvent;

use super::ServiceLimits;

/// What a room needs from the database when its task starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomSnapshot {
    /// Recent chat and danmaku lines, in any order (the room sorts them); deleted ones left out.
    pub history: Vec<StoredMessage>,
    /// Banned names (any case).
    pub bans: Vec<String>,
    /// The stream the gift totals belong to (see [`PersistBatch::stream_ms`]).
    pub gift_stream: Option<i64>,
    /// Per-giver totals of that stream.
    pub gift_totals: Vec<GiverTotal>,
}

/// What [`ChatPersistence::load_room`] is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadRequest {
    /// How many of the newest messages to return ([`crate::ChatConfig::history_len`]).
    pub history_len: usize,
    /// The stream whose gift totals to return, when the service knows it (a stream started
    /// since the service did). `None`: the room's most recent stream with gifts, if any.
    pub stream_ms: Option<i64>,
}

/// Events of one room to write, oldest first, all from the same stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersistBatch {
    /// The stream the events happened in: when it started, unix milliseconds (`None` before
    /// the first stream this service or the database knows of). Gifts are recorded under it.
    pub stream_ms: Option<i64>,
    /// The room's events, oldest first.
    pub events: Vec<PersistEvent>,
}

/// Where a [`super::ChatService`] loads rooms from and writes their events to.
///
/// Implemented for [`roomcast_store::Store`] (in this crate, `service/store.rs`) and for
/// [`NoPersistence`]. The service calls `load_room` once when a room's task starts and
/// `persist` from its single writer task, so writes of one room arrive in order and never
/// concurrently.
pub trait ChatPersistence: Send + Sync + 'static {
    /// What goes wrong.
    type Error: StdError + Send + Sync + 'static;

    /// Loads what a room needs to continue after a restart.
    fn load_room(
        &self,
        room: &str,
        request: LoadRequest,
    ) -> impl Future<Output = Result<RoomSnapshot, Self::Error>> + Send;

    /// Writes one batch of a room's events, in order.
    fn persist(
        &self,
        room: &str,
        batch: &PersistBatch,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether trying the same call again may succeed (a lost connection, a busy database).
    /// A permanent error is logged and the batch dropped without retries. Default: always
    /// transient.
    fn is_transient(error: &Self::Error) -> bool {
        let _ = error;
        true
    }
}

/// Keeps nothing: rooms start empty and events are dropped. For tests and for a chat that
/// runs without a database.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPersistence;

impl ChatPersistence for NoPersistence {
    type Error = std::convert::Infallible;

    async fn load_room(
        &self,
        _room: &str,
        _request: LoadRequest,
    ) -> Result<RoomSnapshot, Self::Error> {
        Ok(RoomSnapshot::default())
    }

    async fn persist(&self, _room: &str, _batch: &PersistBatch) -> Result<(), Self::Error> {
        Ok(())
    }
}

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A failed call, and whether to retry it.
pub(crate) struct Failure {
    pub error: BoxError,
    pub transient: bool,
}

/// [`ChatPersistence`] with boxed futures, so the service holds any implementation behind one
/// non-generic type.
pub(crate) trait DynPersistence: Send + Sync + 'static {
    fn load_room<'a>(
        &'a self,
        room: &'a str,
        request: LoadRequest,
    ) -> BoxFuture<'a, Result<RoomSnapshot, Failure>>;

    fn persist<'a>(
        &'a self,
        room: &'a str,
        batch: &'a PersistBatch,
    ) -> BoxFuture<'a, Result<(), Failure>>;
}

fn failure<P: ChatPersistence>(error: P::Error) -> Failure {
    Failure {
        transient: P::is_transient(&error),
        error: Box::new(error),
    }
}

impl<P: ChatPersistence> DynPersistence for P {
    fn load_room<'a>(
        &'a self,
        room: &'a str,
        request: LoadRequest,
    ) -> BoxFuture<'a, Result<RoomSnapshot, Failure>> {
        Box::pin(async move {
            ChatPersistence::load_room(self, room, request)
                .await
                .map_err(failure::<P>)
        })
    }

    fn persist<'a>(
        &'a self,
        room: &'a str,
        batch: &'a PersistBatch,
    ) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            ChatPersistence::persist(self, room, batch)
                .await
                .map_err(failure::<P>)
        })
    }
}

/// One room's batch on the writer's queue.
#[derive(Debug)]
pub(crate) struct PersistJob {
    pub room: Arc<str>,
    pub batch: PersistBatch,
}

/// Most jobs the writer takes off the queue before writing.
const JOBS_PER_ROUND: usize = 64;

/// Most events in one `persist` call (one transaction for the store).
const EVENTS_PER_WRITE: usize = 500;

/// The writer task: runs until every sender of `jobs` is gone and the queue is empty.
pub(crate) async fn run_writer(
    persistence: Arc<dyn DynPersistence>,
    mut jobs: mpsc::Receiver<PersistJob>,
    limits: ServiceLimits,
) {
    let mut round = Vec::with_capacity(JOBS_PER_ROUND);
    while jobs.recv_many(&mut round, JOBS_PER_ROUND).await > 0 {
        for job in merge(std::mem::take(&mut round)) {
            for chunk in split(job.batch) {
                write(&*persistence, &job.room, &chunk, &limits).await;
            }
        }
    }
    tracing::debug!("chat persistence writer finished");
}

/// Merges consecutive jobs of the same room and stream, keeping each room's order.
fn merge(jobs: Vec<PersistJob>) -> Vec<PersistJob> {
    let mut out: Vec<PersistJob> = Vec::with_capacity(jobs.len());
    for job in jobs {
        // The last job of this room so far; merging into an earlier one would reorder.
        match out.iter_mut().rev().find(|j| j.room == job.room) {
            Some(last) if last.batch.stream_ms == job.batch.stream_ms => {
                last.batch.events.extend(job.batch.events);
            }
            _ => out.push(job),
        }
    }
    out
}

fn split(batch: PersistBatch) -> Vec<PersistBatch> {
    if batch.events.len() <= EVENTS_PER_WRITE {
        return vec![batch];
    }
    let stream_ms = batch.stream_ms;
    let mut events = batch.events.into_iter().peekable();
    let mut out = Vec::new();
    while events.peek().is_some() {
        out.push(PersistBatch {
            stream_ms,
            events: events.by_ref().take(EVENTS_PER_WRITE).collect(),
        });
    }
    out
}

async fn write(
    persistence: &dyn DynPersistence,
    room: &str,
    batch: &PersistBatch,
    limits: &ServiceLimits,
) {
    let attempts = limits.persist_attempts.max(1);
    let mut delay = Duration::from_millis(limits.persist_retry_ms);
    for attempt in 1..=attempts {
        let failure = match persistence.persist(room, batch).await {
            Ok(()) => {
                metrics::counter!("roomcast_chat_persisted_events_total")
                    .increment(batch.events.len() as u64);
                return;
            }
            Err(f) => f,
        };
        metrics::counter!("roomcast_chat_persist_errors_total").increment(1);
        if !failure.transient || attempt == attempts {
            tracing::error!(
                room,
                events = batch.events.len(),
                attempts = attempt,
                error = %failure.error,
                "cannot save chat events; dropping them"
            );
            metrics::counter!("roomcast_chat_persist_dropped_total")
                .increment(batch.events.len() as u64);
            return;
        }
        tracing::warn!(
            room,
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            error = %failure.error,
            "cannot save chat events; retrying"
        );
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn job(room: &str, stream: Option<i64>, n: u64) -> PersistJob {
        PersistJob {
            room: room.into(),
            batch: PersistBatch {
                stream_ms: stream,
                events: (0..n)
                    .map(|i| PersistEvent::Unbanned {
                        user: format!("u{i}"),
                        by: "h".into(),
                        ts: 0,
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn merge_keeps_each_rooms_order_and_streams_apart() {
        let merged = merge(vec![
            job("a", None, 1),
            job("b", None, 2),
            job("a", None, 3),
            job("a", Some(5), 1),
            job("b", None, 1),
            job("a", Some(5), 2),
            job("a", None, 1),
        ]);
        let shape: Vec<(&str, Option<i64>, usize)> = merged
            .iter()
            .map(|j| (&*j.room, j.batch.stream_ms, j.batch.events.len()))
            .collect();
        assert_eq!(
            shape,
            [
                ("a", None, 4),
                ("b", None, 3),
                ("a", Some(5), 3),
                ("a", None, 1)
            ]
        );
    }

    #[test]
    fn big_batches_are_split_in_order() {
        let parts = split(job("a", Some(1), 1_234).batch);
        assert_eq!(
            parts.iter().map(|p| p.events.len()).collect::<Vec<_>>(),
            [500, 500, 234]
        );
        assert!(parts.iter().all(|p| p.stream_ms == Some(1)));
        let PersistEvent::Unbanned { user, .. } = &parts[1].events[0] else {
            panic!()
        };
        assert_eq!(user, "u500");
        assert_eq!(split(PersistBatch::default()).len(), 1);
    }
}
