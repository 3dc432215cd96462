//! Chat persistence: history, bans, gift events and lottery results of a room.
//!
//! The store knows nothing of the chat's protocol; the chat crate converts its events into the
//! plain records here. Every write names the room by its public name and fails with
//! [`StoreError::RoomNotFound`] when the room does not exist (chatting does not create rooms:
//! `roomcast key add` does). Reads of a missing room return nothing.
//!
//! [`Store::write_chat`] applies a batch of [`ChatWrite`]s in one transaction; the single-record
//! methods ([`Store::insert_chat_message`], [`Store::ban_chat_user`], ...) are the same code with
//! a batch of one. Writes are idempotent where the data allows it: a message id already stored
//! is skipped, deleting a deleted message and banning a banned name change nothing. Gift and
//! lottery rows have no natural key, so a batch retried after an ambiguous commit failure could
//! store them twice.
//!
//! Names in bans are compared without regard to case, with the chat's rule: trimmed, then
//! lower-cased with Unicode case folding ([`ban_key`]).

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::error::QueryContext;
use crate::{Store, StoreError, check_room_name, next_id};

/// Longest user name, keyword or moderator name the chat tables accept, in characters (the chat
/// allows far shorter ones; this only stops absurd input).
pub const CHAT_NAME_MAX_CHARS: usize = 128;

/// What kind of line a chat message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    /// A chat line.
    Chat,
    /// A danmaku (bullet comment) flown over the video.
    Danmaku,
}

impl ChatKind {
    /// The spelling stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatKind::Chat => "chat",
            ChatKind::Danmaku => "danmaku",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "chat" => Some(ChatKind::Chat),
            "danmaku" => Some(ChatKind::Danmaku),
            _ => None,
        }
    }
}

/// A chat or danmaku line as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    /// The chat core's frame id: unique and increasing per room, below 2^53.
    pub id: i64,
    /// When it was sent, unix milliseconds.
    pub ts_ms: i64,
    /// Chat or danmaku.
    pub kind: ChatKind,
    /// Author's display name at the time.
    pub user: String,
    /// The author was a host.
    pub host: bool,
    /// The cleaned text, as sent to the room.
    pub text: String,
    /// Danmaku colour `#rrggbb`; `None` for chat.
    pub color: Option<String>,
    /// Stream position a danmaku belongs to, milliseconds; `None` for chat or when nothing was
    /// live.
    pub position_ms: Option<i64>,
}

/// A banned name of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatBan {
    /// The name key (trimmed, lower-cased): see [`ban_key`].
    pub user: String,
    /// Who banned it.
    pub by: String,
    /// When, unix milliseconds.
    pub created_ms: i64,
}

/// One gift message, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiftRecord {
    /// The stream the gift belongs to: when it started, unix milliseconds; 0 when no stream had
    /// started. [`Store::gift_totals`] adds up one stream's gifts.
    pub stream_ms: i64,
    /// Giver's display name.
    pub user: String,
    /// Catalogue id, e.g. `rose`.
    pub gift: String,
    /// How many were sent.
    pub count: i64,
    /// Coins the message is worth (count × value of one).
    pub value: i64,
    /// When, unix milliseconds.
    pub ts_ms: i64,
}

/// One giver's total over a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiftTotal {
    /// Display name (the most recent spelling the giver used).
    pub user: String,
    /// Coins given during the stream.
    pub total: i64,
}

/// How a lottery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LotteryOutcome {
    /// Drawn, by a host or by its timer; the winner is `None` when nobody entered.
    Drawn,
    /// Closed by a host without a draw.
    Cancelled,
}

impl LotteryOutcome {
    /// The spelling stored in the `outcome` column.
    pub fn as_str(self) -> &'static str {
        match self {
            LotteryOutcome::Drawn => "drawn",
            LotteryOutcome::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "drawn" => Some(LotteryOutcome::Drawn),
            "cancelled" => Some(LotteryOutcome::Cancelled),
            _ => None,
        }
    }
}

/// A lottery that ended, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotteryRecord {
    /// The word viewers sent to enter.
    pub keyword: String,
    /// Drawn or cancelled.
    pub outcome: LotteryOutcome,
    /// How many entered.
    pub entrants: i64,
    /// Winner's display name; `None` when cancelled or when nobody entered.
    pub winner: Option<String>,
    /// Who opened it.
    pub opened_by: String,
    /// Who drew or cancelled it (`auto` when its timer drew it).
    pub closed_by: String,
    /// When it opened, unix milliseconds.
    pub opened_ms: i64,
    /// When it was drawn or cancelled, unix milliseconds.
    pub closed_ms: i64,
}

/// A stored lottery result: its id and the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotteryResult {
    /// Database id, increasing.
    pub id: i64,
    /// What was recorded.
    pub record: LotteryRecord,
}

/// One write of [`Store::write_chat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatWrite {
    /// Store a chat or danmaku line (skipped if its id is already stored).
    Message(ChatMessage),
    /// Mark a message deleted: it never comes back in [`Store::recent_chat_messages`].
    Delete {
        /// The message's id.
        message_id: i64,
        /// Who deleted it.
        by: String,
        /// When, unix milliseconds.
        ts_ms: i64,
    },
    /// Ban a name (any case; stored as its [`ban_key`]).
    Ban {
        /// The name.
        user: String,
        /// Who banned it.
        by: String,
        /// When, unix milliseconds.
        ts_ms: i64,
    },
    /// Lift a ban.
    Unban {
        /// The name (any case).
        user: String,
    },
    /// Record a gift.
    Gift(GiftRecord),
    /// Record a lottery result.
    Lottery(LotteryRecord),
}

/// The key a name is banned under: trimmed and lower-cased (Unicode), the chat's comparison
/// rule.
pub fn ban_key(user: &str) -> String {
    user.trim().to_lowercase()
}

impl Store {
    /// Applies `writes` to room `room`, in order, in one transaction: all or nothing.
    ///
    /// Fails with [`StoreError::RoomNotFound`] if the room does not exist and with
    /// [`StoreError::InvalidText`] for an empty or absurdly long name or keyword (over
    /// [`CHAT_NAME_MAX_CHARS`]); nothing is written then.
    pub async fn write_chat(&self, room: &str, writes: &[ChatWrite]) -> Result<(), StoreError> {
        const OP: &str = "writing chat records";
        check_room_name(room)?;
        for write in writes {
            check_write(write)?;
        }
        if writes.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await.op(OP)?;
        let room_id = room_id(&mut tx, room).await?;
        for write in writes {
            apply(&mut tx, room_id, write).await.op(OP)?;
        }
        tx.commit().await.op(OP)
    }

    /// Stores one chat or danmaku line (see [`Store::write_chat`]). A message whose id is
    /// already stored is left as it is.
    pub async fn insert_chat_message(
        &self,
        room: &str,
        message: &ChatMessage,
    ) -> Result<(), StoreError> {
        self.write_chat(room, &[ChatWrite::Message(message.clone())])
            .await
    }

    /// The newest `limit` messages of `room` that are not deleted, oldest first (newest last),
    /// to rebuild the chat history after a restart. Empty for a room that does not exist.
    pub async fn recent_chat_messages(
        &self,
        room: &str,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        const OP: &str = "reading chat history";
        check_room_name(room)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT m.message_id, m.ts_ms, m.kind, m.user_name, m.host, m.body, m.color, \
             m.position_ms \
             FROM chat_messages m JOIN rooms r ON r.id = m.room_id \
             WHERE r.name = $1 AND m.deleted_ms IS NULL \
             ORDER BY m.message_id DESC LIMIT $2",
        )
        .bind(room)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .op(OP)?;
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows.iter().rev() {
            if let Some(m) = message_from_row(row).op(OP)? {
                messages.push(m);
            }
        }
        Ok(messages)
    }

    /// Marks message `message_id` of `room` deleted. Returns whether a stored, not yet deleted
    /// message was marked. Fails with [`StoreError::RoomNotFound`] if the room does not exist.
    pub async fn delete_chat_message(
        &self,
        room: &str,
        message_id: i64,
        by: &str,
        ts_ms: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "deleting a chat message";
        check_room_name(room)?;
        check_name(by, "moderator name")?;
        let mut tx = self.begin_write().await.op(OP)?;
        let room_id = room_id(&mut tx, room).await?;
        let changed = mark_deleted(&mut tx, room_id, message_id, by, ts_ms)
            .await
            .op(OP)?;
        tx.commit().await.op(OP)?;
        Ok(changed)
    }

    /// Deletes every chat message (of every room) sent before `before_ms` (unix milliseconds),
    /// deleted ones included. Returns how many rows went. The server calls it periodically with
    /// `now - retention`.
    pub async fn prune_chat_messages(&self, before_ms: i64) -> Result<u64, StoreError> {
        const OP: &str = "pruning chat history";
        let done = sqlx::query("DELETE FROM chat_messages WHERE ts_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .op(OP)?;
        Ok(done.rows_affected())
    }

    /// Bans `user` (any case) in `room`. Returns whether the name was not banned before (a
    /// second ban keeps the first one's author and time).
    pub async fn ban_chat_user(
        &self,
        room: &str,
        user: &str,
        by: &str,
        ts_ms: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "banning a chat user";
        check_room_name(room)?;
        check_name(user, "user name")?;
        check_name(by, "moderator name")?;
        let mut tx = self.begin_write().await.op(OP)?;
        let room_id = room_id(&mut tx, room).await?;
        let added = insert_ban(&mut tx, room_id, user, by, ts_ms).await.op(OP)?;
        tx.commit().await.op(OP)?;
        Ok(added)
    }

    /// Lifts the ban of `user` (any case) in `room`. Returns whether it was banned.
    pub async fn unban_chat_user(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        const OP: &str = "lifting a chat ban";
        check_room_name(room)?;
        check_name(user, "user name")?;
        let mut tx = self.begin_write().await.op(OP)?;
        let room_id = room_id(&mut tx, room).await?;
        let removed = delete_ban(&mut tx, room_id, user).await.op(OP)?;
        tx.commit().await.op(OP)?;
        Ok(removed)
    }

    /// The banned names of `room`, sorted by name key. Empty for a room that does not exist.
    pub async fn chat_bans(&self, room: &str) -> Result<Vec<ChatBan>, StoreError> {
        const OP: &str = "listing chat bans";
        check_room_name(room)?;
        let rows = sqlx::query(
            "SELECT b.user_key, b.banned_by, b.created_ms \
             FROM chat_bans b JOIN rooms r ON r.id = b.room_id WHERE r.name = $1",
        )
        .bind(room)
        .fetch_all(&self.pool)
        .await
        .op(OP)?;
        let mut bans = rows
            .iter()
            .map(|row| {
                Ok(ChatBan {
                    user: row.try_get("user_key")?,
                    by: row.try_get("banned_by")?,
                    created_ms: row.try_get("created_ms")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .op(OP)?;
        // In Rust, not SQL: byte order, the same on both engines.
        bans.sort_by(|a, b| a.user.cmp(&b.user));
        Ok(bans)
    }

    /// Appends one gift event to `room`'s record.
    pub async fn record_gift(&self, room: &str, gift: &GiftRecord) -> Result<(), StoreError> {
        self.write_chat(room, &[ChatWrite::Gift(gift.clone())])
            .await
    }

    /// Per-giver totals of `room` over the stream `stream_ms` (see [`GiftRecord::stream_ms`]),
    /// largest first (ties by name). Givers are matched without regard to case, under the most
    /// recent spelling of their name. This is what the chat's `load_gift_totals` takes after a
    /// restart.
    pub async fn gift_totals(
        &self,
        room: &str,
        stream_ms: i64,
    ) -> Result<Vec<GiftTotal>, StoreError> {
        const OP: &str = "adding up gifts";
        check_room_name(room)?;
        // PostgreSQL's SUM(BIGINT) is NUMERIC: cast back so both engines return a BIGINT.
        let rows = sqlx::query(
            "SELECT g.user_name, CAST(SUM(g.gift_value) AS BIGINT) AS total, \
             MAX(g.id) AS last_id \
             FROM chat_gifts g JOIN rooms r ON r.id = g.room_id \
             WHERE r.name = $1 AND g.stream_ms = $2 GROUP BY g.user_name",
        )
        .bind(room)
        .bind(stream_ms)
        .fetch_all(&self.pool)
        .await
        .op(OP)?;
        let mut by_name = rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<i64, _>("last_id")?,
                    row.try_get::<String, _>("user_name")?,
                    row.try_get::<i64, _>("total")?,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .op(OP)?;
        // Oldest spelling first, so the newest one names the merged total.
        by_name.sort_unstable();
        let mut totals: HashMap<String, GiftTotal> = HashMap::with_capacity(by_name.len());
        for (_, user, total) in by_name {
            let entry = totals.entry(ban_key(&user)).or_insert(GiftTotal {
                user: String::new(),
                total: 0,
            });
            entry.total = entry.total.saturating_add(total);
            entry.user = user;
        }
        let mut totals: Vec<GiftTotal> = totals.into_values().collect();
        totals.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.user.cmp(&b.user)));
        Ok(totals)
    }

    /// The stream (see [`GiftRecord::stream_ms`]) of `room`'s most recent gift, if any: whose
    /// totals to show after a restart when no stream is live.
    pub async fn latest_gift_stream(&self, room: &str) -> Result<Option<i64>, StoreError> {
        const OP: &str = "finding the latest gift";
        check_room_name(room)?;
        let row = sqlx::query(
            "SELECT g.stream_ms FROM chat_gifts g JOIN rooms r ON r.id = g.room_id \
             WHERE r.name = $1 ORDER BY g.id DESC LIMIT 1",
        )
        .bind(room)
        .fetch_optional(&self.pool)
        .await
        .op(OP)?;
        row.map(|r| r.try_get("stream_ms")).transpose().op(OP)
    }

    /// Records a lottery result; returns its id.
    pub async fn insert_lottery_result(
        &self,
        room: &str,
        record: &LotteryRecord,
    ) -> Result<i64, StoreError> {
        const OP: &str = "recording a lottery result";
        check_room_name(room)?;
        let write = ChatWrite::Lottery(record.clone());
        check_write(&write)?;
        let mut tx = self.begin_write().await.op(OP)?;
        let room_id = room_id(&mut tx, room).await?;
        let id = insert_lottery(&mut tx, room_id, record).await.op(OP)?;
        tx.commit().await.op(OP)?;
        Ok(id)
    }

    /// The newest `limit` lottery results of `room`, newest first. Empty for a room that does
    /// not exist.
    pub async fn lottery_results(
        &self,
        room: &str,
        limit: usize,
    ) -> Result<Vec<LotteryResult>, StoreError> {
        const OP: &str = "listing lottery results";
        check_room_name(room)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT l.id, l.keyword, l.outcome, l.entrants, l.winner, l.opened_by, \
             l.closed_by, l.opened_ms, l.closed_ms \
             FROM chat_lotteries l JOIN rooms r ON r.id = l.room_id \
             WHERE r.name = $1 ORDER BY l.id DESC LIMIT $2",
        )
        .bind(room)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .op(OP)?;
        let mut results = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(result) = lottery_from_row(row).op(OP)? {
                results.push(result);
            }
        }
        Ok(results)
    }
}

/// The id of room `name` inside a write transaction, or [`StoreError::RoomNotFound`].
pub(crate) async fn room_id(
    tx: &mut Transaction<'static, Any>,
    name: &str,
) -> Result<i64, StoreError> {
    const OP: &str = "finding the room";
    let row = sqlx::query("SELECT id FROM rooms WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .op(OP)?;
    match row {
        Some(row) => row.try_get("id").op(OP),
        None => Err(StoreError::RoomNotFound(name.to_owned())),
    }
}

pub(crate) fn check_name(name: &str, what: &'static str) -> Result<(), StoreError> {
    if name.trim().is_empty() {
        return Err(StoreError::InvalidText {
            what,
            reason: "empty",
        });
    }
    if name.chars().count() > CHAT_NAME_MAX_CHARS {
        return Err(StoreError::InvalidText {
            what,
            reason: "longer than 128 characters",
        });
    }
    Ok(())
}

fn check_write(write: &ChatWrite) -> Result<(), StoreError> {
    match write {
        ChatWrite::Message(m) => check_name(&m.user, "user name"),
        ChatWrite::Delete { by, .. } => check_name(by, "moderator name"),
        ChatWrite::Ban { user, by, .. } => {
            check_name(user, "user name")?;
            check_name(by, "moderator name")
        }
        ChatWrite::Unban { user } => check_name(user, "user name"),
        ChatWrite::Gift(g) => {
            check_name(&g.user, "user name")?;
            check_name(&g.gift, "gift id")
        }
        ChatWrite::Lottery(l) => {
            check_name(&l.keyword, "keyword")?;
            check_name(&l.opened_by, "moderator name")?;
            check_name(&l.closed_by, "moderator name")?;
            match &l.winner {
                Some(w) => check_name(w, "user name"),
                None => Ok(()),
            }
        }
    }
}

async fn apply(
    tx: &mut Transaction<'static, Any>,
    room_id: i64,
    write: &ChatWrite,
) -> Result<(), sqlx::Error> {
    match write {
        ChatWrite::Message(m) => insert_message(tx, room_id, m).await,
        ChatWrite::Delete {
            message_id,
            by,
            ts_ms,
        } => mark_deleted(tx, room_id, *message_id, by, *ts_ms)
            .await
            .map(drop),
        ChatWrite::Ban { user, by, ts_ms } => {
            insert_ban(tx, room_id, user, by, *ts_ms).await.map(drop)
        }
        ChatWrite::Unban { user } => delete_ban(tx, room_id, user).await.map(drop),
        ChatWrite::Gift(g) => insert_gift(tx, room_id, g).await,
        ChatWrite::Lottery(l) => insert_lottery(tx, room_id, l).await.map(drop),
    }
}

async fn insert_message(
    tx: &mut Transaction<'static, Any>,
    room_id: i64,
    m: &ChatMessage,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO chat_messages \
         (room_id, message_id, ts_ms, kind, user_name, host, body, color, position_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (room_id, message_id) DO NOTHING",
    )
    .bind(room_id)
    .bind(m.id)
    .bind(m.ts_ms)
    .bind(m.kind.as_str())
    .bind(&m.user)
    .bind(i64::from(m.host))
    .bind(&m.text)
    .bind(m.color.as_deref())
    .bind(m.position_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn mark_deleted(
    tx: &mut Transaction<'static, Any>,
    room_id: i64,
    message_id: i64,
    by: &str,
    ts_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE chat_messages SET deleted_ms = $1, deleted_by = $2 \
         WHERE room_id = $3 AND message_id = $4 AND deleted_ms IS NULL",
    )
    .bind(ts_ms)
    .bind(by)
    .bind(room_id)
    .bind(message_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

async fn insert_ban(
    tx: &mut Transaction<'static, Any>,
    room_id: i64,
    user: &str,
    by: &str,
    ts_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO chat_bans (room_id, user_key, banned_by, created_ms) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (room_id, user_key) DO NOTHING",
    )
    .bind(room_id)
    .bind(ban_key(user))
    .bind(by)
    .bind(ts_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

async fn delete_ban(
    tx: &mut Transaction<'static, Any>,
    room_id: i64,
    user: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM chat_bans WHERE room_id = $1 AND user_key = $2")
        .bind(room_id)
        .bind(ban_key(user))
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

async fn insert_gift(
    tx: &mut Transaction<'static, Any>,
    room_id: i64,
    g: &GiftRecord,
) -> Result<(), sqlx::Error> {
    let id = next_id(tx, "chat_gifts").await?;
    sqlx::query(
        "INSERT INTO chat_gifts \
         (id, room_id, stream_ms, user_name, gift, gift_count, gift_value, ts_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(room_id)
    .bind(g.stream_ms)
    .bind(&g.user)
    .bind(&g.gift)
    .bind(g.count)
    .bind(g.value)
    .bind(g.ts_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_lottery(
    tx: &mut Transaction<'static, Any>,
    room_id: i64,
    l: &LotteryRecord,
) -> Result<i64, sqlx::Error> {
    let id = next_id(tx, "chat_lotteries").await?;
    sqlx::query(
        "INSERT INTO chat_lotteries \
         (id, room_id, keyword, outcome, entrants, winner, opened_by, closed_by, opened_ms, \
         closed_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id)
    .bind(room_id)
    .bind(&l.keyword)
    .bind(l.outcome.as_str())
    .bind(l.entrants)
    .bind(l.winner.as_deref())
    .bind(&l.opened_by)
    .bind(&l.closed_by)
    .bind(l.opened_ms)
    .bind(l.closed_ms)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// A lottery row; `None` (with a warning) for an outcome this version does not know.
fn lottery_from_row(row: &AnyRow) -> Result<Option<LotteryResult>, sqlx::Error> {
    let outcome: String = row.try_get("outcome")?;
    let Some(outcome) = LotteryOutcome::parse(&outcome) else {
        tracing::warn!(outcome, "skipping a lottery row with an unknown outcome");
        return Ok(None);
    };
    Ok(Some(LotteryResult {
        id: row.try_get("id")?,
        record: LotteryRecord {
            keyword: row.try_get("keyword")?,
            outcome,
            entrants: row.try_get("entrants")?,
            winner: row.try_get("winner")?,
            opened_by: row.try_get("opened_by")?,
            closed_by: row.try_get("closed_by")?,
            opened_ms: row.try_get("opened_ms")?,
            closed_ms: row.try_get("closed_ms")?,
        },
    }))
}

/// A message row; `None` (with a warning) for a kind this version does not know.
fn message_from_row(row: &AnyRow) -> Result<Option<ChatMessage>, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let Some(kind) = ChatKind::parse(&kind) else {
        tracing::warn!(kind, "skipping a chat message of unknown kind");
        return Ok(None);
    };
    let host: i64 = row.try_get("host")?;
    Ok(Some(ChatMessage {
        id: row.try_get("message_id")?,
        ts_ms: row.try_get("ts_ms")?,
        kind,
        user: row.try_get("user_name")?,
        host: host != 0,
        text: row.try_get("body")?,
        color: row.try_get("color")?,
        position_ms: row.try_get("position_ms")?,
    }))
}
