//! The store's error type.

/// What went wrong in the store. Messages are written for an operator: they name the database
/// (with any password replaced by `***`) and what was being done, and they never contain a
/// stream key, a host token or their hashes.
///
/// The underlying cause is part of the message (`cause` fields), so it is not repeated through
/// [`std::error::Error::source`]; match on the variant to get at it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no supported database engine.
    #[error(
        "unsupported database URL {url}: use sqlite://FILE, sqlite::memory: or postgres://USER@HOST/DATABASE"
    )]
    UnsupportedUrl {
        /// The URL, password redacted.
        url: String,
    },
    /// The database could not be opened, for a reason found before asking the driver.
    #[error("cannot open database {url}: {reason}")]
    Open {
        /// The URL, password redacted.
        url: String,
        /// What to fix.
        reason: String,
    },
    /// The driver could not connect to or open the database.
    #[error("cannot open database {url}: {cause}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The driver's error.
        cause: sqlx::Error,
    },
    /// The schema migrations could not be applied (for example a database written by a newer
    /// roomcast, or a migration that fails on this engine).
    #[error("cannot apply schema migrations to database {url}: {cause}")]
    Migrate {
        /// The URL, password redacted.
        url: String,
        /// sqlx's migration error.
        cause: sqlx::migrate::MigrateError,
    },
    /// A room name outside `[a-z0-9_-]{1,64}`.
    #[error("invalid room name {0:?}: use 1 to 64 characters from a-z, 0-9, '_' and '-'")]
    InvalidRoomName(
        /// The name as given (cut to 80 characters).
        String,
    ),
    /// A key label or room title that is too long or contains control characters.
    #[error("invalid {what}: {reason}")]
    InvalidText {
        /// Which text: "label" or "title".
        what: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The operation needs an existing room.
    #[error("room {0:?} does not exist")]
    RoomNotFound(
        /// The room name.
        String,
    ),
    /// A query failed.
    #[error("database error while {op}: {cause}")]
    Query {
        /// What the store was doing, e.g. "adding a stream key".
        op: &'static str,
        /// The driver's error.
        cause: sqlx::Error,
    },
    /// Every freshly drawn public lookup id of a stream key or host token was already taken:
    /// the random number generator is broken.
    #[error(
        "could not draw an unused stream key or host token id in {attempts} attempts; the system's random number generator looks broken"
    )]
    KeyIdExhausted {
        /// How many ids were drawn.
        attempts: usize,
    },
    /// A moderation command could not be encoded as JSON (a bug: every
    /// [`ModerationRequest`](crate::ModerationRequest) encodes).
    #[error("cannot encode a moderation command: {cause}")]
    Encode {
        /// serde_json's error.
        cause: serde_json::Error,
    },
    /// The operating system's random number generator failed (no key or token was created).
    #[error("cannot read random bytes from the operating system: {cause}")]
    Random {
        /// The OS error.
        cause: rand::rand_core::OsError,
    },
}

impl StoreError {
    pub(crate) fn invalid_room_name(name: &str) -> Self {
        const MAX: usize = 80;
        let shown = match name.char_indices().nth(MAX) {
            Some((cut, _)) => format!("{}...", &name[..cut]),
            None => name.to_owned(),
        };
        StoreError::InvalidRoomName(shown)
    }
}

/// Attaches "what the store was doing" to a driver error.
pub(crate) trait QueryContext<T> {
    fn op(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> QueryContext<T> for Result<T, sqlx::Error> {
    fn op(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|cause| StoreError::Query { op, cause })
    }
}
