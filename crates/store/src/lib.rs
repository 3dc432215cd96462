//! roomcast's database: rooms, stream keys and chat (history, bans, gifts, lottery results), on
//! SQLite or PostgreSQL.
//!
//! One [`Store`] type over `sqlx::Any`, so every query is written once in portable SQL
//! (`$1` placeholders, `BIGINT`/`TEXT` columns, timestamps as `i64` unix milliseconds) and runs
//! on both engines. The schema lives in one set of migrations, embedded in the binary and
//! applied by [`Store::connect`]; see `src/migrate.rs` for why it is portable and how to add to
//! it.
//!
//! Stream keys are secrets: the store generates them (`rc_<lookup>_<secret>`, 160 random bits),
//! hands the full key out exactly once in [`NewKey`], keeps only SHA-256 of the secret part,
//! and checks a presented key in constant time in [`Store::authorize_key`]. No other value this
//! crate returns, logs or prints (including `Debug` and error messages) contains a key.
//!
//! Each room may have one host token (`rh_<lookup>_<secret>`, same design and code as stream
//! keys, distinct prefix): [`Store::rotate_host_token`] issues it once, only its hash is kept,
//! and [`Store::verify_host_token`] checks it in constant time. It proves that a watch-page user
//! is the room's host (moderation, lottery); it never allows publishing, and a stream key never
//! passes for it.
//!
//! Chat persistence is in [`Store::write_chat`] and the methods next to it; see the `chat`
//! module's types ([`ChatMessage`], [`ChatWrite`], ...).
//!
//! Moderation from another process (the CLI) goes through a queue in the database:
//! [`Store::enqueue_moderation`] adds a [`ModerationRequest`], the server claims pending ones
//! with [`Store::take_moderation`] (each exactly once, even with several servers), reports with
//! [`Store::finish_moderation`], and the CLI reads the outcome with
//! [`Store::moderation_status`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), roomcast_store::StoreError> {
//! let store = roomcast_store::Store::connect("sqlite://roomcast.db").await?;
//! let key = store.add_key("main", Some("studio OBS")).await?;
//! println!("stream key (shown once): {}", key.secret);
//! let grant = store.authorize_key(&key.secret).await?;
//! assert_eq!(grant.map(|g| g.room).as_deref(), Some("main"));
//! # Ok(()) }
//! ```

mod chat;
mod dburl;
mod error;
mod host;
mod key;
mod migrate;
mod moderation;
#[cfg(test)]
mod tests;

pub use chat::{
    CHAT_NAME_MAX_CHARS, ChatBan, ChatKind, ChatMessage, ChatWrite, GiftRecord, GiftTotal,
    LotteryOutcome, LotteryRecord, LotteryResult, ban_key,
};
pub use error::StoreError;
pub use host::NewHostToken;
pub use moderation::{
    MODERATION_ERROR_MAX_CHARS, ModerationRequest, ModerationStatus, QueuedModeration,
};

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use error::QueryContext;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, AssertSqlSafe, Connection, Row, Transaction};

use dburl::Target;

/// Longest room name, in bytes (= characters: names are ASCII).
pub const ROOM_NAME_MAX_LEN: usize = 64;
/// Longest key label or room title, in characters.
pub const LABEL_MAX_CHARS: usize = 128;

/// Every table with a `room_id` column referencing `rooms (id)`: [`Store::remove_room`] deletes
/// their rows of the room.
const ROOM_TABLES: &[&str] = &[
    "stream_keys",
    "chat_messages",
    "chat_bans",
    "chat_gifts",
    "chat_lotteries",
    "room_host_tokens",
    "moderation_queue",
];

/// How many ids go into one `IN (...)` list (well below SQLite's and PostgreSQL's parameter
/// limits).
const IN_LIST_CHUNK: usize = 500;
/// How long [`Store::connect`] waits for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a key or host token is redrawn when its public lookup id is already taken (40 random bits:
/// a redraw is needed about once per trillion keys; more than a few means a broken RNG).
const LOOKUP_ATTEMPTS: usize = 8;

/// Whether `name` is a valid room name: 1 to 64 characters from `a-z`, `0-9`, `_` and `-`.
pub fn valid_room_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= ROOM_NAME_MAX_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A room: the public name viewers see in URLs and chat.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Room {
    /// Database id.
    pub id: i64,
    /// Public name, `[a-z0-9_-]{1,64}`.
    pub name: String,
    /// Optional display title.
    pub title: Option<String>,
    /// Creation time, unix milliseconds.
    pub created_ms: i64,
}

/// A freshly created stream key. `secret` is the full key to give to the streamer
/// (`rc_<lookup>_<secret>`); it is shown once and cannot be recovered later. `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Key id, for `key list` and `key revoke`.
    pub id: i64,
    /// The room this key publishes to.
    pub room: String,
    /// The full stream key. Never log it.
    pub secret: String,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("id", &self.id)
            .field("room", &self.room)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What `key list` shows about a key: never the secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// Key id.
    pub id: i64,
    /// Room name.
    pub room: String,
    /// Operator's label, if any.
    pub label: Option<String>,
    /// Creation time, unix milliseconds.
    pub created_ms: i64,
    /// Last successful authorization, unix milliseconds.
    pub last_used_ms: Option<i64>,
    /// When the key was revoked, unix milliseconds; `None` while it is active.
    pub revoked_ms: Option<i64>,
}

/// A successful authorization: which key, for which room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    /// The key's id; poll [`Store::active_key_ids`] with it to notice a revocation.
    pub key_id: i64,
    /// The room the publisher may publish to.
    pub room: String,
}

/// The database engine behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite (a file, or in memory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// Handle to the database. Cheap to clone (a connection pool inside); share it freely.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The URL with any password replaced by `***`.
    url: Arc<str>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database at `url` and brings its schema up to date.
    ///
    /// * `sqlite://path/to/file.db` (or `sqlite:file.db`): the file is created if missing (its
    ///   directory must exist) and put in WAL mode, so the server and the CLI can use it at
    ///   once. An explicit `?mode=ro|rw` is respected.
    /// * `sqlite::memory:`: a private in-memory database, for tests. It lives in the pool's
    ///   single connection, so it is gone after [`Store::close`].
    /// * `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?options=...]`.
    ///
    /// Applies the embedded migrations (idempotent; concurrent starts are serialised by sqlx's
    /// migration lock on PostgreSQL).
    ///
    /// # Panics
    ///
    /// Calls `sqlx::any::install_default_drivers()`, which panics if some other code already
    /// installed a different driver list with `sqlx::any::install_drivers`.
    ///
    /// A PostgreSQL server that refuses connections is retried for up to 10 seconds (it may
    /// be starting next to us); after that the error says why the last attempt failed.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with_timeout(url, CONNECT_TIMEOUT).await
    }

    /// [`Store::connect`] with another bound on the wait for the first connection.
    pub(crate) async fn connect_with_timeout(
        url: &str,
        wait: Duration,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let shown = dburl::redact(url);
        let target = dburl::classify(url)
            .ok_or_else(|| StoreError::UnsupportedUrl { url: shown.clone() })?;

        let options = AnyPoolOptions::new().acquire_timeout(wait);
        let (options, connect_url, backend) = match target {
            // Through `Any`, every new connection re-parses the URL and so opens a new, empty
            // in-memory database: keep exactly one connection, forever.
            Target::SqliteMemory => (
                options
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None),
                url.to_owned(),
                Backend::Sqlite,
            ),
            Target::SqliteFile => {
                let connect_url =
                    dburl::sqlite_file_url(url).map_err(|reason| StoreError::Open {
                        url: shown.clone(),
                        reason,
                    })?;
                (options.max_connections(4), connect_url, Backend::Sqlite)
            }
            Target::Postgres => (
                options.max_connections(8),
                url.to_owned(),
                Backend::Postgres,
            ),
        };

        let pool = match options.connect(&connect_url).await {
            Ok(pool) => pool,
            Err(sqlx::Error::PoolTimedOut) => {
                return Err(explain_timeout(&connect_url, shown, wait).await);
            }
            Err(cause) => return Err(StoreError::Connect { url: shown, cause }),
        };

        if target == Target::SqliteFile {
            // WAL lets readers (the server polling keys every second) and a writer (the CLI)
            // work at the same time. The mode is stored in the file; failing to set it (a
            // read-only file, some network filesystems) only costs concurrency.
            if let Err(e) = sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&pool)
                .await
            {
                tracing::warn!(database = %shown, error = %e, "cannot enable SQLite WAL mode");
            }
        }

        if let Err(cause) = migrate::migrator().run(&pool).await {
            pool.close().await;
            return Err(StoreError::Migrate { url: shown, cause });
        }
        tracing::debug!(database = %shown, %backend, "database ready");

        Ok(Store {
            pool,
            backend,
            url: shown.into(),
        })
    }

    /// Closes every connection; operations after this fail. Waits for connections in use to
    /// be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Which engine this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database URL with any password replaced by `***`, for logs.
    pub fn redacted_url(&self) -> &str {
        &self.url
    }

    // ----- rooms -----

    /// Creates room `name`, or returns it unchanged if it exists.
    pub async fn create_room(&self, name: &str) -> Result<Room, StoreError> {
        const OP: &str = "creating a room";
        check_room_name(name)?;
        if let Some(room) = self.room(name).await? {
            return Ok(room);
        }
        let mut tx = self.begin_write().await.op(OP)?;
        let room = ensure_room(&mut tx, name, now_ms()).await.op(OP)?;
        tx.commit().await.op(OP)?;
        Ok(room)
    }

    /// The room called `name`, if it exists.
    pub async fn room(&self, name: &str) -> Result<Option<Room>, StoreError> {
        const OP: &str = "reading a room";
        check_room_name(name)?;
        let row = sqlx::query(SELECT_ROOM_BY_NAME)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .op(OP)?;
        row.as_ref().map(room_from_row).transpose().op(OP)
    }

    /// Every room, sorted by name (byte order, the same on both engines).
    pub async fn list_rooms(&self) -> Result<Vec<Room>, StoreError> {
        const OP: &str = "listing rooms";
        let rows = sqlx::query("SELECT id, name, title, created_ms FROM rooms")
            .fetch_all(&self.pool)
            .await
            .op(OP)?;
        let mut rooms = rows
            .iter()
            .map(room_from_row)
            .collect::<Result<Vec<_>, _>>()
            .op(OP)?;
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rooms)
    }

    /// Deletes room `name` with all its keys (revoked or not), its host token, its queued
    /// moderation commands and its chat: messages, bans, gift events and lottery results.
    /// Returns whether it existed.
    /// A publisher live on one of its keys is disconnected at the next
    /// [`Store::active_key_ids`] poll.
    pub async fn remove_room(&self, name: &str) -> Result<bool, StoreError> {
        const OP: &str = "removing a room";
        check_room_name(name)?;
        let mut tx = self.begin_write().await.op(OP)?;
        // Explicit, rather than relying on ON DELETE CASCADE alone: SQLite enforces foreign
        // keys only when the connection enables them. Every table that references rooms is
        // listed here (only constant table names are formatted in; the name is bound).
        for table in ROOM_TABLES {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE room_id IN (SELECT id FROM rooms WHERE name = $1)"
            )))
            .bind(name)
            .execute(&mut *tx)
            .await
            .op(OP)?;
        }
        let removed = sqlx::query("DELETE FROM rooms WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .op(OP)?
            .rows_affected();
        tx.commit().await.op(OP)?;
        Ok(removed > 0)
    }

    /// Number of rooms.
    pub async fn room_count(&self) -> Result<u64, StoreError> {
        const OP: &str = "counting rooms";
        let row = sqlx::query("SELECT COUNT(*) AS n FROM rooms")
            .fetch_one(&self.pool)
            .await
            .op(OP)?;
        let n: i64 = row.try_get("n").op(OP)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Sets or clears room `name`'s display title. Returns whether the room exists.
    /// The title is plain text of at most 128 characters without control characters.
    pub async fn set_room_title(
        &self,
        name: &str,
        title: Option<&str>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "setting a room title";
        check_room_name(name)?;
        let title = check_text(title, "title")?;
        let updated = sqlx::query("UPDATE rooms SET title = $1 WHERE name = $2")
            .bind(title)
            .bind(name)
            .execute(&self.pool)
            .await
            .op(OP)?
            .rows_affected();
        Ok(updated > 0)
    }

    // ----- keys -----

    /// Creates a stream key for `room` (creating the room if missing). The returned
    /// [`NewKey::secret`] is the only copy of the key: show it to the operator once.
    /// `label` is an optional note for `key list` (at most 128 characters, no control
    /// characters).
    pub async fn add_key(&self, room: &str, label: Option<&str>) -> Result<NewKey, StoreError> {
        const OP: &str = "adding a stream key";
        check_room_name(room)?;
        let label = check_text(label, "label")?;
        let now = now_ms();
        let mut tx = self.begin_write().await.op(OP)?;
        let room_row = ensure_room(&mut tx, room, now).await.op(OP)?;
        let (id, secret) = insert_new_key(&mut tx, room_row.id, label, now, OP).await?;
        tx.commit().await.op(OP)?;
        Ok(NewKey {
            id,
            room: room_row.name,
            secret,
        })
    }

    /// Keys of `room` (or of every room), revoked ones included, sorted by room name then id.
    /// A room that does not exist has no keys. Never returns a secret or a hash.
    pub async fn list_keys(&self, room: Option<&str>) -> Result<Vec<KeyInfo>, StoreError> {
        const OP: &str = "listing stream keys";
        const SELECT: &str = "SELECT k.id AS key_id, r.name AS room_name, k.label, k.created_ms, \
             k.last_used_ms, k.revoked_ms \
             FROM stream_keys k JOIN rooms r ON r.id = k.room_id";
        let rows = match room {
            Some(room) => {
                check_room_name(room)?;
                sqlx::query(AssertSqlSafe(format!("{SELECT} WHERE r.name = $1")))
                    .bind(room)
                    .fetch_all(&self.pool)
                    .await
            }
            None => sqlx::query(SELECT).fetch_all(&self.pool).await,
        }
        .op(OP)?;
        let mut keys = rows
            .iter()
            .map(|row| {
                Ok(KeyInfo {
                    id: row.try_get("key_id")?,
                    room: row.try_get("room_name")?,
                    label: row.try_get("label")?,
                    created_ms: row.try_get("created_ms")?,
                    last_used_ms: row.try_get("last_used_ms")?,
                    revoked_ms: row.try_get("revoked_ms")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .op(OP)?;
        keys.sort_by(|a, b| a.room.cmp(&b.room).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    /// Revokes key `key_id`. Returns `true` if it was active and now is revoked, `false` if it
    /// does not exist or was already revoked. A live publisher using it is disconnected at the
    /// next [`Store::active_key_ids`] poll.
    pub async fn revoke_key(&self, key_id: i64) -> Result<bool, StoreError> {
        const OP: &str = "revoking a stream key";
        let updated = sqlx::query(
            "UPDATE stream_keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        )
        .bind(now_ms())
        .bind(key_id)
        .execute(&self.pool)
        .await
        .op(OP)?
        .rows_affected();
        Ok(updated > 0)
    }

    /// In one transaction, revokes every active key of `room` and creates a new one.
    /// Fails with [`StoreError::RoomNotFound`] if the room does not exist (a typo should not
    /// create a room; [`Store::add_key`] does that).
    pub async fn rotate_keys(&self, room: &str) -> Result<NewKey, StoreError> {
        const OP: &str = "rotating stream keys";
        check_room_name(room)?;
        let now = now_ms();
        let mut tx = self.begin_write().await.op(OP)?;
        let Some(row) = sqlx::query(SELECT_ROOM_BY_NAME)
            .bind(room)
            .fetch_optional(&mut *tx)
            .await
            .op(OP)?
        else {
            return Err(StoreError::RoomNotFound(room.to_owned()));
        };
        let room_row = room_from_row(&row).op(OP)?;
        sqlx::query(
            "UPDATE stream_keys SET revoked_ms = $1 WHERE room_id = $2 AND revoked_ms IS NULL",
        )
        .bind(now)
        .bind(room_row.id)
        .execute(&mut *tx)
        .await
        .op(OP)?;
        let (id, secret) = insert_new_key(&mut tx, room_row.id, None, now, OP).await?;
        tx.commit().await.op(OP)?;
        Ok(NewKey {
            id,
            room: room_row.name,
            secret,
        })
    }

    /// Checks a presented stream key. Returns the grant if the key exists, is not revoked and
    /// its secret matches (compared in constant time); records the use in `last_used_ms`.
    ///
    /// Anything that is not a well-formed key returns `Ok(None)` at once, without a query.
    /// The key is never logged. Expects the key exactly as issued: strip any query string an
    /// encoder appended before calling.
    pub async fn authorize_key(&self, presented: &str) -> Result<Option<KeyGrant>, StoreError> {
        const OP: &str = "checking a stream key";
        let Some((lookup, secret)) = key::parse(presented) else {
            return Ok(None);
        };
        // The lookup id is public: whether it exists may show in timing, the secret does not.
        let Some(row) = sqlx::query(
            "SELECT k.id AS key_id, k.secret_hash, k.revoked_ms, r.name AS room_name \
             FROM stream_keys k JOIN rooms r ON r.id = k.room_id WHERE k.lookup = $1",
        )
        .bind(lookup)
        .fetch_optional(&self.pool)
        .await
        .op(OP)?
        else {
            return Ok(None);
        };
        let key_id: i64 = row.try_get("key_id").op(OP)?;
        let stored: String = row.try_get("secret_hash").op(OP)?;
        let revoked: Option<i64> = row.try_get("revoked_ms").op(OP)?;
        let room: String = row.try_get("room_name").op(OP)?;
        if !key::verify(secret, &stored) || revoked.is_some() {
            return Ok(None);
        }
        // `revoked_ms IS NULL` again: a revocation that committed since the read wins.
        let updated = sqlx::query(
            "UPDATE stream_keys SET last_used_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        )
        .bind(now_ms())
        .bind(key_id)
        .execute(&self.pool)
        .await
        .op(OP)?
        .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        Ok(Some(KeyGrant { key_id, room }))
    }

    /// Of `ids`, those that are still active (exist and are not revoked), ascending, without
    /// duplicates. Cheap enough to call every second with the ids of live publishers.
    pub async fn active_key_ids(&self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        const OP: &str = "checking active stream keys";
        let mut wanted = ids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut active = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(IN_LIST_CHUNK) {
            // Only placeholders are formatted into the SQL; the ids are bound.
            let placeholders = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT id FROM stream_keys WHERE revoked_ms IS NULL AND id IN ({placeholders})"
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for &id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await.op(OP)? {
                active.push(row.try_get::<i64, _>("id").op(OP)?);
            }
        }
        active.sort_unstable();
        Ok(active)
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later fails
    /// with `SQLITE_BUSY` instead of waiting when another process wrote in between.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }
}

const SELECT_ROOM_BY_NAME: &str = "SELECT id, name, title, created_ms FROM rooms WHERE name = $1";

fn room_from_row(row: &AnyRow) -> Result<Room, sqlx::Error> {
    Ok(Room {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        title: row.try_get("title")?,
        created_ms: row.try_get("created_ms")?,
    })
}

/// The room called `name`, created if missing, inside a write transaction.
async fn ensure_room(
    tx: &mut Transaction<'static, Any>,
    name: &str,
    now: i64,
) -> Result<Room, sqlx::Error> {
    if let Some(row) = sqlx::query(SELECT_ROOM_BY_NAME)
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
    {
        return room_from_row(&row);
    }
    let id = next_id(tx, "rooms").await?;
    // ON CONFLICT: on PostgreSQL another transaction may insert the same name between our
    // SELECT and this INSERT; then we take its row.
    let inserted = sqlx::query(
        "INSERT INTO rooms (id, name, title, created_ms) VALUES ($1, $2, NULL, $3) \
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(id)
    .bind(name)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    if inserted.is_some() {
        return Ok(Room {
            id,
            name: name.to_owned(),
            title: None,
            created_ms: now,
        });
    }
    let row = sqlx::query(SELECT_ROOM_BY_NAME)
        .bind(name)
        .fetch_one(&mut **tx)
        .await?;
    room_from_row(&row)
}

/// Generates a token of `format` whose public lookup id is not used yet in `table` (a
/// constant table name with a `lookup` column), inside a write transaction.
pub(crate) async fn draw_token(
    tx: &mut Transaction<'static, Any>,
    format: key::Format,
    table: &'static str,
    op: &'static str,
) -> Result<key::Generated, StoreError> {
    for _ in 0..LOOKUP_ATTEMPTS {
        let g = format
            .generate()
            .map_err(|cause| StoreError::Random { cause })?;
        // Only the constant table name is formatted in; the lookup id is bound.
        let taken = sqlx::query(AssertSqlSafe(format!(
            "SELECT lookup FROM {table} WHERE lookup = $1"
        )))
        .bind(&g.lookup)
        .fetch_optional(&mut **tx)
        .await
        .op(op)?;
        if taken.is_none() {
            return Ok(g);
        }
    }
    Err(StoreError::KeyIdExhausted {
        attempts: LOOKUP_ATTEMPTS,
    })
}

/// Generates a key and inserts its row; returns (key id, full key).
async fn insert_new_key(
    tx: &mut Transaction<'static, Any>,
    room_id: i64,
    label: Option<&str>,
    now: i64,
    op: &'static str,
) -> Result<(i64, String), StoreError> {
    let generated = draw_token(tx, key::STREAM_KEY, "stream_keys", op).await?;
    let id = next_id(tx, "stream_keys").await.op(op)?;
    sqlx::query(
        "INSERT INTO stream_keys (id, room_id, lookup, secret_hash, label, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(room_id)
    .bind(&generated.lookup)
    .bind(&generated.secret_hash)
    .bind(label)
    .bind(now)
    .execute(&mut **tx)
    .await
    .op(op)?;
    Ok((id, generated.key))
}

/// Allocates the next id of table `seq` from `id_sequences` (see `src/migrate.rs`).
async fn next_id(
    tx: &mut Transaction<'static, Any>,
    seq: &'static str,
) -> Result<i64, sqlx::Error> {
    sqlx::query("UPDATE id_sequences SET last_id = last_id + 1 WHERE name = $1 RETURNING last_id")
        .bind(seq)
        .fetch_one(&mut **tx)
        .await?
        .try_get("last_id")
}

fn check_room_name(name: &str) -> Result<(), StoreError> {
    if valid_room_name(name) {
        Ok(())
    } else {
        Err(StoreError::invalid_room_name(name))
    }
}

/// Validates an optional label or title; an empty string means none.
fn check_text<'a>(
    text: Option<&'a str>,
    what: &'static str,
) -> Result<Option<&'a str>, StoreError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > LABEL_MAX_CHARS {
        return Err(StoreError::InvalidText {
            what,
            reason: "longer than 128 characters",
        });
    }
    if text.chars().any(char::is_control) {
        return Err(StoreError::InvalidText {
            what,
            reason: "contains control characters",
        });
    }
    Ok(Some(text))
}

/// The pool only says "timed out" when every attempt failed in a way it retries (connection
/// refused) or hung. One more direct attempt finds the error an operator can act on.
async fn explain_timeout(url: &str, shown: String, waited: Duration) -> StoreError {
    let attempt = tokio::time::timeout(waited, sqlx::AnyConnection::connect(url)).await;
    match attempt {
        Ok(Err(cause)) => StoreError::Connect { url: shown, cause },
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            StoreError::Open {
                url: shown,
                reason: format!(
                    "no connection within {} s (the database server is slow or at its connection limit)",
                    waited.as_secs_f32()
                ),
            }
        }
        Err(_) => StoreError::Open {
            url: shown,
            reason: format!(
                "no answer within {} s (is the database server running and reachable?)",
                waited.as_secs_f32()
            ),
        },
    }
}

/// Now, in unix milliseconds (0 if the clock is before 1970).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
