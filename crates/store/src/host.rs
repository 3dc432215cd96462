//! Room host tokens: the secret that proves a watch-page user is the room's host.
//!
//! A host token reads `rh_<lookup>_<secret>`: the same format, generator, hashing and
//! constant-time check as stream keys (`src/key.rs`, [`key::HOST_TOKEN`]), with its own prefix,
//! so a stream key never passes for a host token and the other way round. A room has at most
//! one token; [`Store::rotate_host_token`] replaces it and shows the new one once. Only
//! SHA-256 of the secret part is stored (`room_host_tokens.secret_hash`).
//!
//! The token allows moderating and running the lottery in its room, nothing else: it never
//! authorizes publishing, and the stream key never authorizes moderating.

use std::fmt;

use sqlx::Row;

use crate::chat::room_id;
use crate::error::QueryContext;
use crate::{Store, StoreError, check_room_name, draw_token, key, now_ms};

/// A freshly issued host token. `secret` is the full token (`rh_<lookup>_<secret>`) to give to
/// the room's host; it is shown once and cannot be recovered later. `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct NewHostToken {
    /// The room the token moderates.
    pub room: String,
    /// The full host token. Never log it.
    pub secret: String,
    /// When it was issued, unix milliseconds.
    pub created_ms: i64,
}

impl fmt::Debug for NewHostToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewHostToken")
            .field("room", &self.room)
            .field("secret", &"<redacted>")
            .field("created_ms", &self.created_ms)
            .finish()
    }
}

impl Store {
    /// Issues a new host token for `room`, replacing (and so invalidating) any previous one, in
    /// one transaction. The returned [`NewHostToken::secret`] is the only copy of the token:
    /// show it to the operator once.
    ///
    /// Fails with [`StoreError::RoomNotFound`] if the room does not exist (a typo should not
    /// create a room). Hosts already connected with the old token keep their session until the
    /// chat checks again; the store has no say in that.
    pub async fn rotate_host_token(&self, room: &str) -> Result<NewHostToken, StoreError> {
        const OP: &str = "issuing a host token";
        check_room_name(room)?;
        let now = now_ms();
        let mut tx = self.begin_write().await.op(OP)?;
        let room_id = room_id(&mut tx, room).await?;
        let generated = draw_token(&mut tx, key::HOST_TOKEN, "room_host_tokens", OP).await?;
        // An upsert, not DELETE then INSERT: two concurrent rotations on PostgreSQL both
        // succeed (the later one wins) instead of one failing on the primary key.
        sqlx::query(
            "INSERT INTO room_host_tokens (room_id, lookup, secret_hash, created_ms) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (room_id) DO UPDATE SET lookup = excluded.lookup, \
             secret_hash = excluded.secret_hash, created_ms = excluded.created_ms",
        )
        .bind(room_id)
        .bind(&generated.lookup)
        .bind(&generated.secret_hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .op(OP)?;
        tx.commit().await.op(OP)?;
        Ok(NewHostToken {
            room: room.to_owned(),
            secret: generated.key,
            created_ms: now,
        })
    }

    /// Whether `presented` is the current host token of `room`. The secret is compared in
    /// constant time; the lookup id is public and only finds the row.
    ///
    /// A token of another room, a replaced or revoked token, a stream key, and anything that is
    /// not a well-formed host token return `Ok(false)`; malformed input does so at once,
    /// without a query. Fails with [`StoreError::InvalidRoomName`] for an invalid room name.
    /// The token is never logged.
    pub async fn verify_host_token(&self, room: &str, presented: &str) -> Result<bool, StoreError> {
        const OP: &str = "checking a host token";
        check_room_name(room)?;
        let Some((lookup, secret)) = key::HOST_TOKEN.parse(presented) else {
            return Ok(false);
        };
        // Room and lookup in one query: a token of another room finds no row.
        let Some(row) = sqlx::query(
            "SELECT t.secret_hash FROM room_host_tokens t JOIN rooms r ON r.id = t.room_id \
             WHERE r.name = $1 AND t.lookup = $2",
        )
        .bind(room)
        .bind(lookup)
        .fetch_optional(&self.pool)
        .await
        .op(OP)?
        else {
            return Ok(false);
        };
        let stored: String = row.try_get("secret_hash").op(OP)?;
        Ok(key::verify(secret, &stored))
    }

    /// Revokes `room`'s host token. Returns whether it had one. Fails with
    /// [`StoreError::RoomNotFound`] if the room does not exist.
    pub async fn revoke_host_token(&self, room: &str) -> Result<bool, StoreError> {
        const OP: &str = "revoking a host token";
        check_room_name(room)?;
        let mut tx = self.begin_write().await.op(OP)?;
        let room_id = room_id(&mut tx, room).await?;
        let removed = sqlx::query("DELETE FROM room_host_tokens WHERE room_id = $1")
            .bind(room_id)
            .execute(&mut *tx)
            .await
            .op(OP)?
            .rows_affected();
        tx.commit().await.op(OP)?;
        Ok(removed > 0)
    }

    /// When `room`'s current host token was issued (unix milliseconds), or `None` if it has
    /// none or does not exist. Never returns the token or its hash.
    pub async fn host_token_issued_ms(&self, room: &str) -> Result<Option<i64>, StoreError> {
        const OP: &str = "reading a host token's date";
        check_room_name(room)?;
        let row = sqlx::query(
            "SELECT t.created_ms FROM room_host_tokens t JOIN rooms r ON r.id = t.room_id \
             WHERE r.name = $1",
        )
        .bind(room)
        .fetch_optional(&self.pool)
        .await
        .op(OP)?;
        row.map(|r| r.try_get("created_ms")).transpose().op(OP)
    }
}
