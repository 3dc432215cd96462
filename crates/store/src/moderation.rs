//! The moderation queue: commands for the running server from another process (the CLI).
//!
//! The CLI cannot reach the rooms a server holds in memory, so it writes a
//! [`ModerationRequest`] to the `moderation_queue` table ([`Store::enqueue_moderation`]) and
//! polls [`Store::moderation_status`] for the outcome. The server polls
//! [`Store::take_moderation`], applies each command to its room and reports with
//! [`Store::finish_moderation`].
//!
//! A row moves `pending` → `taken` → `done` | `failed`. Taking claims the rows in the
//! transaction that reads them (SQLite: `BEGIN IMMEDIATE`, the database's write lock;
//! PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED`), so a command is handed out at most once
//! even with several servers (or CLIs) taking at the same time. A server that stops between
//! taking and finishing leaves the row `taken`; it is not handed out again (at most once, never
//! twice), and [`Store::prune_moderation`] removes it in time.
//!
//! Commands are stored as JSON text, e.g. `{"type":"ban","user":"bob"}`; a row this version
//! cannot read (written by a newer roomcast) is marked failed when taken, never returned.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::chat::{check_name, room_id};
use crate::error::QueryContext;
use crate::{Backend, IN_LIST_CHUNK, Store, StoreError, check_room_name, next_id, now_ms};

/// Longest failure message [`Store::finish_moderation`] keeps, in characters; longer ones are
/// cut (with `...`).
pub const MODERATION_ERROR_MAX_CHARS: usize = 500;

const PENDING: &str = "pending";
const TAKEN: &str = "taken";
const DONE: &str = "done";
const FAILED: &str = "failed";

/// A moderation command for a room, as the CLI queues it. The JSON form (the `command` column)
/// is tagged like the chat protocol's host frames: `{"type":"slow_mode","seconds":10}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ModerationRequest {
    /// Remove a message from every page and from the history.
    Delete {
        /// Id of the chat or danmaku frame.
        message_id: u64,
    },
    /// Refuse a user's messages.
    Ban {
        /// Display name, matched without regard to case.
        user: String,
    },
    /// Lift a ban.
    Unban {
        /// Display name, matched without regard to case.
        user: String,
    },
    /// One message per `seconds` per viewer; `0` turns slow mode off.
    SlowMode {
        /// Seconds between two messages of one viewer.
        seconds: u32,
    },
    /// Open a lottery that viewers enter by sending `keyword`.
    LotteryOpen {
        /// Word to send to enter.
        keyword: String,
        /// Draw automatically after this many seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_s: Option<u32>,
    },
    /// Draw the open lottery now.
    LotteryDraw,
    /// Close the open lottery without a winner.
    LotteryCancel,
}

/// A command handed to a server by [`Store::take_moderation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedModeration {
    /// Queue id: report the outcome with [`Store::finish_moderation`].
    pub id: i64,
    /// The room's name.
    pub room: String,
    /// What to do.
    pub command: ModerationRequest,
    /// When it was queued, unix milliseconds (a server may refuse stale commands).
    pub created_ms: i64,
}

/// Where a queued command is, for the CLI waiting on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "state", content = "error", rename_all = "snake_case")]
pub enum ModerationStatus {
    /// Queued; no server has taken it yet.
    Pending,
    /// A server took it and is applying it.
    Taken,
    /// Applied.
    Done,
    /// Refused or failed, with the server's message (or `cancelled`).
    Failed(String),
}

impl ModerationStatus {
    /// Whether the command is done or failed (it will not change any more).
    pub fn is_finished(&self) -> bool {
        matches!(self, ModerationStatus::Done | ModerationStatus::Failed(_))
    }
}

impl Store {
    /// Queues `command` for room `room`; returns its queue id for
    /// [`Store::moderation_status`].
    ///
    /// Fails with [`StoreError::RoomNotFound`] if the room does not exist and with
    /// [`StoreError::InvalidText`] for an empty or absurdly long user name or keyword. Whether
    /// the command makes sense (the message exists, a lottery is open, ...) is the server's to
    /// say, in the outcome.
    pub async fn enqueue_moderation(
        &self,
        room: &str,
        command: &ModerationRequest,
    ) -> Result<i64, StoreError> {
        const OP: &str = "queueing a moderation command";
        check_room_name(room)?;
        check_request(command)?;
        let json = serde_json::to_string(command).map_err(|cause| StoreError::Encode { cause })?;
        let mut tx = self.begin_write().await.op(OP)?;
        let room_id = room_id(&mut tx, room).await?;
        let id = next_id(&mut tx, "moderation_queue").await.op(OP)?;
        sqlx::query(
            "INSERT INTO moderation_queue (id, room_id, command, state, created_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(room_id)
        .bind(json)
        .bind(PENDING)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .op(OP)?;
        tx.commit().await.op(OP)?;
        Ok(id)
    }

    /// Claims up to `limit` pending commands of every room, oldest first, and marks them taken
    /// in the same transaction: each command is returned to exactly one caller, even with
    /// several servers taking at once. Report each one's outcome with
    /// [`Store::finish_moderation`].
    ///
    /// A row whose command this version cannot read is marked failed and skipped.
    pub async fn take_moderation(&self, limit: usize) -> Result<Vec<QueuedModeration>, StoreError> {
        const OP: &str = "taking queued moderation commands";
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let now = now_ms();
        // SQLite: `begin_write` holds the database's write lock from the start, so no other
        // taker reads between our SELECT and UPDATE. PostgreSQL: lock the rows we read and skip
        // the ones another taker has locked; a row it already marked no longer matches.
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE OF q SKIP LOCKED",
        };
        let mut tx = self.begin_write().await.op(OP)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT q.id, r.name AS room_name, q.command, q.created_ms \
             FROM moderation_queue q JOIN rooms r ON r.id = q.room_id \
             WHERE q.state = $1 ORDER BY q.id LIMIT $2{lock}"
        )))
        .bind(PENDING)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .op(OP)?;

        let mut taken = Vec::with_capacity(rows.len());
        let mut unreadable = Vec::new();
        for row in &rows {
            match queued_from_row(row).op(OP)? {
                Ok(queued) => taken.push(queued),
                Err(id) => unreadable.push(id),
            }
        }
        let ids: Vec<i64> = taken.iter().map(|q| q.id).collect();
        for chunk in ids.chunks(IN_LIST_CHUNK) {
            // Only placeholders are formatted into the SQL; the ids are bound.
            let placeholders = (3..chunk.len() + 3)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut query = sqlx::query(AssertSqlSafe(format!(
                "UPDATE moderation_queue SET state = $1, taken_ms = $2 WHERE id IN ({placeholders})"
            )))
            .bind(TAKEN)
            .bind(now);
            for &id in chunk {
                query = query.bind(id);
            }
            query.execute(&mut *tx).await.op(OP)?;
        }
        for id in unreadable {
            tracing::warn!(
                id,
                "failing a queued moderation command this version cannot read"
            );
            sqlx::query(
                "UPDATE moderation_queue SET state = $1, error = $2, taken_ms = $3, \
                 finished_ms = $3 WHERE id = $4",
            )
            .bind(FAILED)
            .bind("unknown moderation command (queued by a newer roomcast?)")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .op(OP)?;
        }
        tx.commit().await.op(OP)?;
        Ok(taken)
    }

    /// Records the outcome of taken command `id`: `Ok(())` is done, `Err(message)` failed with
    /// the message (cut to [`MODERATION_ERROR_MAX_CHARS`] characters) for the CLI to print.
    /// Returns whether a taken command was finished (`false` for an unknown id, or one that is
    /// pending or already finished: nothing changes then).
    pub async fn finish_moderation(
        &self,
        id: i64,
        outcome: Result<(), String>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "recording a moderation outcome";
        let (state, error) = match outcome {
            Ok(()) => (DONE, None),
            Err(message) => (FAILED, Some(cut(message, MODERATION_ERROR_MAX_CHARS))),
        };
        let updated = sqlx::query(
            "UPDATE moderation_queue SET state = $1, error = $2, finished_ms = $3 \
             WHERE id = $4 AND state = $5",
        )
        .bind(state)
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .bind(TAKEN)
        .execute(&self.pool)
        .await
        .op(OP)?
        .rows_affected();
        Ok(updated > 0)
    }

    /// Withdraws command `id` if no server has taken it yet (for a CLI that gave up waiting, so
    /// the command does not run by surprise when a server starts later): it becomes failed
    /// with the message `cancelled`. Returns whether it was pending.
    pub async fn cancel_moderation(&self, id: i64) -> Result<bool, StoreError> {
        const OP: &str = "cancelling a moderation command";
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE moderation_queue SET state = $1, error = $2, finished_ms = $3 \
             WHERE id = $4 AND state = $5",
        )
        .bind(FAILED)
        .bind("cancelled")
        .bind(now)
        .bind(id)
        .bind(PENDING)
        .execute(&self.pool)
        .await
        .op(OP)?
        .rows_affected();
        Ok(updated > 0)
    }

    /// Where command `id` is; `None` if there is no such command (never queued, pruned, or its
    /// room was removed).
    pub async fn moderation_status(&self, id: i64) -> Result<Option<ModerationStatus>, StoreError> {
        const OP: &str = "reading a moderation command's state";
        let Some(row) = sqlx::query("SELECT state, error FROM moderation_queue WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .op(OP)?
        else {
            return Ok(None);
        };
        let state: String = row.try_get("state").op(OP)?;
        let error: Option<String> = row.try_get("error").op(OP)?;
        let status = match state.as_str() {
            PENDING => ModerationStatus::Pending,
            TAKEN => ModerationStatus::Taken,
            DONE => ModerationStatus::Done,
            FAILED => ModerationStatus::Failed(error.unwrap_or_default()),
            other => {
                return Err(StoreError::Query {
                    op: OP,
                    cause: sqlx::Error::Decode(
                        format!("unknown moderation state {other:?}").into(),
                    ),
                });
            }
        };
        Ok(Some(status))
    }

    /// Deletes queued commands whose last change is before `before_ms` (unix milliseconds):
    /// finished ones (done, failed, cancelled) by when they finished, taken ones that never
    /// finished (their server stopped) by when they were taken, and pending ones nobody took
    /// by when they were queued (too stale to run). Returns how many rows went. The server
    /// calls it periodically with `now - retention`.
    pub async fn prune_moderation(&self, before_ms: i64) -> Result<u64, StoreError> {
        const OP: &str = "pruning the moderation queue";
        let done = sqlx::query(
            "DELETE FROM moderation_queue WHERE COALESCE(finished_ms, taken_ms, created_ms) < $1",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await
        .op(OP)?;
        Ok(done.rows_affected())
    }
}

fn check_request(command: &ModerationRequest) -> Result<(), StoreError> {
    match command {
        ModerationRequest::Ban { user } | ModerationRequest::Unban { user } => {
            check_name(user, "user name")
        }
        ModerationRequest::LotteryOpen { keyword, .. } => check_name(keyword, "keyword"),
        ModerationRequest::Delete { .. }
        | ModerationRequest::SlowMode { .. }
        | ModerationRequest::LotteryDraw
        | ModerationRequest::LotteryCancel => Ok(()),
    }
}

/// A pending row: `Ok` with the command, or `Err(id)` when the command cannot be read.
fn queued_from_row(row: &AnyRow) -> Result<Result<QueuedModeration, i64>, sqlx::Error> {
    let id: i64 = row.try_get("id")?;
    let json: String = row.try_get("command")?;
    let Ok(command) = serde_json::from_str(&json) else {
        return Ok(Err(id));
    };
    Ok(Ok(QueuedModeration {
        id,
        room: row.try_get("room_name")?,
        command,
        created_ms: row.try_get("created_ms")?,
    }))
}

/// `text` cut to `max` characters, with `...` when cut.
fn cut(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}
