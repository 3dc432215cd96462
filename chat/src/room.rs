//! [`ChatRoom`]: the state machine of one room's chat.
//!
//! Inputs are method calls carrying `now_ms` (unix milliseconds); outputs are [`Outgoing`]
//! frames addressed to the room, one connection or the hosts, plus [`PersistEvent`]s the server
//! drains with [`ChatRoom::take_persist`]. Nothing here reads a clock, touches a socket or
//! awaits, so the server can keep a room behind a short synchronous lock and tests can run on a
//! fake clock.
//!
//! # Ids
//! Every server frame gets `id = max(previous id + 1, now_ms × 1000)`. Ids therefore increase
//! strictly within a room and keep increasing across a restart without a persisted counter (as
//! long as the clock does not go back and the room averages under 1000 frames per
//! millisecond), so a message id in the database is never reused. They stay below 2^53, which
//! JavaScript reads exactly, until the year 2255. Ids are room-wide, so a single receiver sees
//! gaps.
//!
//! # Who a "user" is
//! There are no accounts: a user is a connection with a display name. Rate limits, slow mode
//! and lottery entries follow the connection (a rename keeps them); bans follow the name,
//! without regard to case. A banned connection can read but not send, and cannot rename
//! itself out of the ban.
//!
//! # Ban semantics
//! Banning a name (1) marks the connection with that name banned, so its chat, danmaku and
//! gifts are refused with `banned` and its likes are ignored; (2) deletes, with a `delete`
//! frame to everyone, every history line written under that name and the connection's last
//! [`ChatConfig::ban_purge_messages`] messages under any name, so pages that are already open
//! drop them too; (3) removes the user from an open lottery; (4) records
//! [`PersistEvent::Banned`] and one [`PersistEvent::Deleted`] per removed message. Hosts cannot
//! be banned. A ban of a name nobody uses yet is kept and applies when someone takes it.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

use rand::distr::{Distribution, Uniform};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{CryptoRng, SeedableRng};

use crate::config::{ChatConfig, GiftKind};
use crate::limit::{Limiter, ms};
use crate::protocol::{
    ChatLine, ClientMessage, DanmakuLine, ErrorCode, Frame, GiftEvent, GiverTotal, Identity, Line,
    LotteryInfo, ServerFrame, ServerMessage, StoredMessage, SystemEvent, Welcome, parse_client,
};
use crate::text::{NameError, TextError, clean_text, name_key, parse_color, validate_name};

/// Persist events kept when the server does not drain them; older ones are dropped (and
/// counted by [`ChatRoom::persist_dropped`]) so a stalled database cannot exhaust memory.
pub const MAX_PENDING_PERSIST: usize = 100_000;

/// Ids handed out per millisecond of wall clock before ids run ahead of it.
const IDS_PER_MS: u64 = 1_000;

/// Guest name characters: lower case (names compare without case anyway) without the look-alikes
/// `l`, `o`, `0`, `1`.
const GUEST_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// Random characters in a guest name: 32^6 ≈ 10^9 names, so collisions are rare and retried.
const GUEST_SUFFIX_LEN: usize = 6;

/// Identifies one connection (one WebSocket) to the server; chosen by the server, unique among
/// a room's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// A frame and who receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Every connection of the room, the sender included (its page shows the message when it
    /// comes back with an id).
    Broadcast(Frame),
    /// One connection.
    To(ConnId, Frame),
    /// Every connection that joined as a host.
    ToHosts(Frame),
}

impl Outgoing {
    /// The frame, whoever receives it.
    pub fn frame(&self) -> &Frame {
        match self {
            Outgoing::Broadcast(f) | Outgoing::To(_, f) | Outgoing::ToHosts(f) => f,
        }
    }
}

/// Something the server should write to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistEvent {
    /// A chat or danmaku line was sent.
    Message(StoredMessage),
    /// A message was deleted by a host or by a ban.
    Deleted {
        /// Id of the deleted message.
        message_id: u64,
        /// Who deleted it.
        by: String,
        /// Unix milliseconds.
        ts: i64,
    },
    /// A name was banned.
    Banned {
        /// The name, lower-cased (bans ignore case).
        user: String,
        /// Who banned it.
        by: String,
        /// Unix milliseconds.
        ts: i64,
    },
    /// A ban was lifted.
    Unbanned {
        /// The name, lower-cased.
        user: String,
        /// Who lifted it.
        by: String,
        /// Unix milliseconds.
        ts: i64,
    },
    /// A gift was sent.
    Gift {
        /// Giver's display name.
        user: String,
        /// Catalogue id.
        gift: String,
        /// How many.
        count: u32,
        /// Coins the message is worth.
        value: u64,
        /// Unix milliseconds.
        ts: i64,
    },
    /// A lottery was drawn.
    LotteryResult {
        /// The lottery's keyword.
        keyword: String,
        /// How many entered (after bans removed theirs).
        entrants: u64,
        /// Winner's display name; `None` when nobody entered.
        winner: Option<String>,
        /// Who opened it.
        opened_by: String,
        /// Who drew it (`auto` when the timer did).
        drawn_by: String,
        /// When it opened, unix milliseconds.
        opened_at: i64,
        /// When it was drawn, unix milliseconds.
        drawn_at: i64,
    },
    /// A lottery was cancelled.
    LotteryCancelled {
        /// The lottery's keyword.
        keyword: String,
        /// How many had entered.
        entrants: u64,
        /// Who opened it.
        opened_by: String,
        /// Who cancelled it.
        by: String,
        /// When it opened, unix milliseconds.
        opened_at: i64,
        /// When it was cancelled, unix milliseconds.
        cancelled_at: i64,
    },
}

/// A refused request: what the sender's `error` frame says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Refused {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// Human-readable reason.
    pub message: String,
    /// When trying again can succeed, milliseconds from now.
    pub retry_after_ms: Option<u64>,
}

impl Refused {
    /// A refusal without a retry hint.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    fn not_joined() -> Self {
        Self::new(ErrorCode::BadRequest, "join the room first")
    }

    fn banned() -> Self {
        Self::new(ErrorCode::Banned, "you are banned from this chat")
    }

    fn forbidden() -> Self {
        Self::new(ErrorCode::Forbidden, "only the room's host can do that")
    }

    fn text(e: TextError, what: &str) -> Self {
        match e {
            TextError::Empty => Self::new(ErrorCode::Empty, format!("{what} is empty")),
            TextError::TooLong { max } => Self::new(
                ErrorCode::TooLong,
                format!("{what} is longer than {max} characters"),
            ),
        }
    }
}

/// Why [`ChatRoom::join`] refused a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The connection id is already in the room.
    #[error("{0} already joined")]
    AlreadyJoined(ConnId),
    /// The requested name does not pass validation.
    #[error("invalid name: {0}")]
    InvalidName(#[from] NameError),
    /// Someone in the room has the name (without regard to case).
    #[error("name {0:?} is taken")]
    NameTaken(String),
}

impl JoinError {
    /// The refusal to send the connection (see [`ChatRoom::error_frame`]).
    pub fn refusal(&self) -> Refused {
        let code = match self {
            JoinError::AlreadyJoined(_) => ErrorCode::Conflict,
            JoinError::InvalidName(_) => ErrorCode::InvalidName,
            JoinError::NameTaken(_) => ErrorCode::NameTaken,
        };
        Refused::new(code, self.to_string())
    }
}

/// One connection in the room.
#[derive(Debug)]
struct Session {
    name: String,
    key: String,
    host: bool,
    banned: bool,
    chat: Limiter,
    danmaku: Limiter,
    gift: Limiter,
    like: Limiter,
    /// Last accepted chat or danmaku, for slow mode.
    last_message_at: Option<i64>,
    /// Ids of its last messages, deleted if it is banned.
    recent_ids: VecDeque<u64>,
    /// Sequence number of the last lottery it entered.
    lottery_entered: Option<u64>,
}

impl Session {
    fn identity(&self) -> Identity {
        Identity {
            name: self.name.clone(),
            host: self.host,
            banned: self.banned,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Channel {
    Chat,
    Danmaku,
}

/// Where the live stream is: `position = anchor_pos + (now - anchor_at)` while live.
#[derive(Debug, Default)]
struct StreamClock {
    live: bool,
    anchor_pos: i64,
    anchor_at: i64,
}

#[derive(Debug, Default)]
struct Likes {
    pending: u64,
    /// When the first pending like arrived; the flush interval runs from here.
    since: Option<i64>,
    total: u64,
}

/// Per-stream gift totals and the top-givers board.
///
/// Totals only grow during a stream, so the board can be kept incrementally: only the giver
/// whose total just grew can enter it or move up, and someone pushed off it cannot come back
/// without giving again.
#[derive(Debug, Default)]
struct GiftBoard {
    totals: HashMap<String, u64>,
    top: Vec<(String, GiverTotal)>,
    stream_total: u64,
}

impl GiftBoard {
    fn add(&mut self, key: &str, user: &str, value: u64, top_n: usize) -> u64 {
        let total = self.totals.entry(key.to_owned()).or_insert(0);
        *total = total.saturating_add(value);
        let total = *total;
        self.stream_total = self.stream_total.saturating_add(value);
        self.place(key, user, total, top_n);
        total
    }

    fn place(&mut self, key: &str, user: &str, total: u64, top_n: usize) {
        let entry = GiverTotal {
            user: user.to_owned(),
            total,
        };
        match self.top.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = entry,
            None => self.top.push((key.to_owned(), entry)),
        }
        // Ties go to the name that sorts first, so the board does not depend on arrival order.
        self.top
            .sort_by(|a, b| b.1.total.cmp(&a.1.total).then_with(|| a.0.cmp(&b.0)));
        self.top.truncate(top_n);
    }

    fn top(&self) -> Vec<GiverTotal> {
        self.top.iter().map(|(_, g)| g.clone()).collect()
    }
}

#[derive(Debug)]
struct Lottery {
    seq: u64,
    keyword: String,
    key: String,
    opened_by: String,
    opened_at: i64,
    draw_at: Option<i64>,
    /// `(name key, display name)` in entry order.
    entrants: Vec<(String, String)>,
    /// Name keys that entered, so a rename cannot enter twice (and bans cannot re-enter).
    entered: HashSet<String>,
    announced: usize,
    announced_at: Option<i64>,
}

impl Lottery {
    fn info(&self) -> LotteryInfo {
        LotteryInfo {
            keyword: self.keyword.clone(),
            entrants: count(self.entrants.len()),
            draw_at: self.draw_at,
        }
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The chat of one room. See the [module documentation](self) for ids, identity and bans.
pub struct ChatRoom {
    name: String,
    config: ChatConfig,
    gift_index: HashMap<String, GiftKind>,
    /// Draws lotteries and guest names. A `CryptoRng` so a lottery winner cannot be predicted
    /// from earlier outputs.
    rng: Box<dyn CryptoRng + Send>,
    last_id: u64,
    sessions: HashMap<ConnId, Session>,
    /// Name key → the connection using it.
    names: HashMap<String, ConnId>,
    bans: HashSet<String>,
    history: VecDeque<StoredMessage>,
    persist: VecDeque<PersistEvent>,
    persist_dropped: u64,
    slow_mode_s: u32,
    stream: StreamClock,
    likes: Likes,
    gifts: GiftBoard,
    lottery: Option<Lottery>,
    lottery_seq: u64,
    external_viewers: u64,
    announced_viewers: u64,
    presence_at: Option<i64>,
}

impl fmt::Debug for ChatRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatRoom")
            .field("name", &self.name)
            .field("connections", &self.sessions.len())
            .field("viewers", &self.viewers())
            .field("live", &self.stream.live)
            .field("last_id", &self.last_id)
            .finish_non_exhaustive()
    }
}

impl ChatRoom {
    /// A room with a ChaCha12 generator seeded from the thread's OS-seeded generator.
    pub fn new(name: impl Into<String>, config: ChatConfig) -> Self {
        Self::with_rng(name, config, Box::new(StdRng::from_rng(&mut rand::rng())))
    }

    /// A room drawing lotteries and guest names from `rng`. The bound asks for a cryptographic
    /// generator so a predictable one cannot be passed by mistake; tests pass a seeded
    /// `StdRng` to replay a sequence.
    pub fn with_rng(
        name: impl Into<String>,
        config: ChatConfig,
        rng: Box<dyn CryptoRng + Send>,
    ) -> Self {
        let mut gift_index = HashMap::new();
        for kind in &config.gifts {
            if gift_index.insert(kind.id.clone(), kind.clone()).is_some() {
                tracing::warn!(gift = %kind.id, "gift listed twice in the catalogue; the last one counts");
            }
        }
        Self {
            name: name.into(),
            config,
            gift_index,
            rng,
            last_id: 0,
            sessions: HashMap::new(),
            names: HashMap::new(),
            bans: HashSet::new(),
            history: VecDeque::new(),
            persist: VecDeque::new(),
            persist_dropped: 0,
            slow_mode_s: 0,
            stream: StreamClock::default(),
            likes: Likes::default(),
            gifts: GiftBoard::default(),
            lottery: None,
            lottery_seq: 0,
            external_viewers: 0,
            announced_viewers: 0,
            presence_at: None,
        }
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The room's configuration.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    // ---- connections ------------------------------------------------------------------------

    /// Adds a connection. Without `requested_name` it gets a fresh guest name (`guest-xxxxxx`).
    /// Returns its identity and the `welcome` frame for it. A connection joining under a banned
    /// name is admitted read-only (unless it is a host).
    ///
    /// On an error the connection is not in the room; the server may send
    /// [`JoinError::refusal`] through [`ChatRoom::error_frame`] and retry without a name.
    pub fn join(
        &mut self,
        conn: ConnId,
        requested_name: Option<&str>,
        is_host: bool,
        now_ms: i64,
    ) -> Result<(Identity, Vec<Outgoing>), JoinError> {
        if self.sessions.contains_key(&conn) {
            return Err(JoinError::AlreadyJoined(conn));
        }
        let name = match requested_name {
            Some(name) => {
                validate_name(name, self.config.max_name_chars)?;
                if self.names.contains_key(&name_key(name)) {
                    return Err(JoinError::NameTaken(name.to_owned()));
                }
                name.to_owned()
            }
            None => self.guest_name(),
        };
        let key = name_key(&name);
        let session = Session {
            banned: !is_host && self.bans.contains(&key),
            name,
            key: key.clone(),
            host: is_host,
            chat: Limiter::default(),
            danmaku: Limiter::default(),
            gift: Limiter::default(),
            like: Limiter::default(),
            last_message_at: None,
            recent_ids: VecDeque::new(),
            lottery_entered: None,
        };
        let you = session.identity();
        self.names.insert(key, conn);
        self.sessions.insert(conn, session);
        let welcome = Welcome {
            you: you.clone(),
            history: self.history.iter().cloned().collect(),
            viewers: self.viewers(),
            live: self.stream.live,
            slow_mode_s: self.slow_mode_s,
            likes: self.likes.total,
            gifts: self.config.gifts.clone(),
            lottery: self.lottery.as_ref().map(Lottery::info),
        };
        let frame = self.frame(now_ms, ServerMessage::Welcome(welcome));
        Ok((you, vec![Outgoing::To(conn, frame)]))
    }

    /// Removes a connection; unknown ids are ignored. The viewer count change goes out from
    /// [`ChatRoom::tick`], so a burst of departures is one `presence` frame. `now_ms` is taken
    /// for symmetry with every other input.
    pub fn leave(&mut self, conn: ConnId, now_ms: i64) {
        let _ = now_ms;
        if let Some(session) = self.sessions.remove(&conn)
            && self.names.get(&session.key) == Some(&conn)
        {
            self.names.remove(&session.key);
        }
    }

    /// A connection's identity.
    pub fn identity(&self, conn: ConnId) -> Option<Identity> {
        self.sessions.get(&conn).map(Session::identity)
    }

    /// Connections in the room.
    pub fn connections(&self) -> usize {
        self.sessions.len()
    }

    /// Viewers: chat connections plus the HLS-only viewers the server reported.
    pub fn viewers(&self) -> u64 {
        count(self.sessions.len()).saturating_add(self.external_viewers)
    }

    /// Sets the number of viewers watching without a chat connection (e.g. VLC on the HLS URL),
    /// as counted by the server.
    pub fn set_external_viewers(&mut self, viewers: u64) {
        self.external_viewers = viewers;
    }

    fn guest_name(&mut self) -> String {
        for _ in 0..16 {
            let suffix: String = (0..GUEST_SUFFIX_LEN)
                .map(|_| char::from(*GUEST_ALPHABET.choose(&mut self.rng).unwrap_or(&b'x')))
                .collect();
            let name = format!("guest-{suffix}");
            if !self.names.contains_key(&name) {
                return name;
            }
        }
        // Sixteen collisions in a billion names: the room is implausibly full, so count.
        let mut n = self.sessions.len();
        loop {
            let name = format!("guest-{n}");
            if !self.names.contains_key(&name) {
                return name;
            }
            n += 1;
        }
    }

    // ---- client frames ----------------------------------------------------------------------

    /// Parses and handles one client frame; an unparseable one is answered with `error`
    /// (`too_long` over [`ChatConfig::max_frame_bytes`], else `bad_request`).
    pub fn handle_frame(&mut self, conn: ConnId, frame: &[u8], now_ms: i64) -> Vec<Outgoing> {
        match parse_client(frame, self.config.max_frame_bytes) {
            Ok(message) => self.handle(conn, message, now_ms),
            Err(e) => {
                tracing::debug!(room = %self.name, %conn, error = %e, "unparseable chat frame");
                let refused = Refused::new(e.code(), e.client_message());
                vec![self.refusal(conn, refused, now_ms)]
            }
        }
    }

    /// Handles one client message. Refusals come back as an `error` frame to the sender.
    pub fn handle(&mut self, conn: ConnId, message: ClientMessage, now_ms: i64) -> Vec<Outgoing> {
        let now = now_ms;
        let result = match message {
            ClientMessage::Join { name } => self.rename(conn, name, now),
            ClientMessage::Chat { text } => self.chat(conn, &text, now),
            ClientMessage::Danmaku {
                text,
                color,
                position_ms,
            } => self.danmaku(conn, &text, color.as_deref(), position_ms, now),
            ClientMessage::Like => self.like(conn, now),
            ClientMessage::Gift { gift, count } => self.gift(conn, &gift, count, now),
            ClientMessage::Delete { id } => self
                .host_name(conn)
                .and_then(|by| self.delete_message(id, &by, now)),
            ClientMessage::Ban { user } => self
                .host_name(conn)
                .and_then(|by| self.ban(&user, &by, now)),
            ClientMessage::Unban { user } => self
                .host_name(conn)
                .and_then(|by| self.unban(&user, &by, now)),
            ClientMessage::SlowMode { seconds } => self
                .host_name(conn)
                .and_then(|by| self.set_slow_mode(seconds, &by, now)),
            ClientMessage::LotteryOpen {
                keyword,
                duration_s,
            } => self
                .host_name(conn)
                .and_then(|by| self.open_lottery(&keyword, duration_s, &by, now)),
            ClientMessage::LotteryDraw => self
                .host_name(conn)
                .and_then(|by| self.draw_lottery(&by, now)),
            ClientMessage::LotteryCancel => self
                .host_name(conn)
                .and_then(|by| self.cancel_lottery(&by, now)),
        };
        result.unwrap_or_else(|refused| vec![self.refusal(conn, refused, now)])
    }

    /// An `error` frame with the next id, for refusals the server makes itself (e.g. a
    /// [`JoinError`]).
    pub fn error_frame(&mut self, refused: &Refused, now_ms: i64) -> Frame {
        self.frame(
            now_ms,
            ServerMessage::Error {
                code: refused.code,
                message: refused.message.clone(),
                retry_after_ms: refused.retry_after_ms,
            },
        )
    }

    fn refusal(&mut self, conn: ConnId, refused: Refused, now: i64) -> Outgoing {
        Outgoing::To(conn, self.error_frame(&refused, now))
    }

    fn session(&self, conn: ConnId) -> Result<&Session, Refused> {
        self.sessions.get(&conn).ok_or_else(Refused::not_joined)
    }

    fn session_mut(&mut self, conn: ConnId) -> Result<&mut Session, Refused> {
        self.sessions.get_mut(&conn).ok_or_else(Refused::not_joined)
    }

    /// The connection's name if it is a host.
    fn host_name(&self, conn: ConnId) -> Result<String, Refused> {
        let session = self.session(conn)?;
        if session.host {
            Ok(session.name.clone())
        } else {
            Err(Refused::forbidden())
        }
    }

    fn rename(
        &mut self,
        conn: ConnId,
        name: Option<String>,
        now: i64,
    ) -> Result<Vec<Outgoing>, Refused> {
        let session = self.session(conn)?;
        if let Some(name) = name {
            if session.banned {
                return Err(Refused::banned());
            }
            validate_name(&name, self.config.max_name_chars)
                .map_err(|e| Refused::new(ErrorCode::InvalidName, e.to_string()))?;
            let key = name_key(&name);
            if self.names.get(&key).is_some_and(|&other| other != conn) {
                return Err(Refused::new(
                    ErrorCode::NameTaken,
                    format!("the name {name:?} is taken"),
                ));
            }
            let banned = self.bans.contains(&key);
            let session = self.session_mut(conn)?;
            let old_key = std::mem::replace(&mut session.key, key.clone());
            session.name = name;
            session.banned = !session.host && banned;
            self.names.remove(&old_key);
            self.names.insert(key, conn);
        }
        let you = self.session(conn)?.identity();
        let frame = self.frame(now, ServerMessage::Identity { you });
        Ok(vec![Outgoing::To(conn, frame)])
    }

    /// Everything a chat or danmaku must pass, in an order that does not spend a rate-limit
    /// slot on a message that would be refused anyway: membership, ban, text, slow mode, rate.
    fn admit(
        &mut self,
        conn: ConnId,
        raw: &str,
        channel: Channel,
        now: i64,
    ) -> Result<String, Refused> {
        let (max_chars, rate, what) = match channel {
            Channel::Chat => (self.config.max_text_chars, self.config.chat_rate, "message"),
            Channel::Danmaku => (
                self.config.max_danmaku_chars,
                self.config.danmaku_rate,
                "danmaku",
            ),
        };
        let cooldown_ms = self.config.cooldown_ms;
        let slow_ms = ms(u64::from(self.slow_mode_s).saturating_mul(1_000));
        let session = self.session_mut(conn)?;
        if session.banned {
            return Err(Refused::banned());
        }
        let text = clean_text(raw, max_chars).map_err(|e| Refused::text(e, what))?;
        if !session.host
            && slow_ms > 0
            && let Some(last) = session.last_message_at
        {
            let next = last.saturating_add(slow_ms);
            if now < next {
                return Err(Refused {
                    code: ErrorCode::SlowMode,
                    message: format!("slow mode: one message every {} s", slow_ms / 1_000),
                    retry_after_ms: Some(next.abs_diff(now)),
                });
            }
        }
        let limiter = match channel {
            Channel::Chat => &mut session.chat,
            Channel::Danmaku => &mut session.danmaku,
        };
        limiter.check(rate, cooldown_ms, now).map_err(|l| Refused {
            code: ErrorCode::RateLimited,
            message: if l.cooldown_started {
                format!(
                    "too many messages: wait {} s",
                    l.retry_after_ms.div_ceil(1_000)
                )
            } else {
                "too many messages: slow down".to_owned()
            },
            retry_after_ms: Some(l.retry_after_ms),
        })?;
        session.last_message_at = Some(now);
        Ok(text)
    }

    /// Adds a sent line to the history, the sender's recent ids and the persist queue.
    fn record(&mut self, conn: ConnId, message: StoredMessage) {
        let purge = self.config.ban_purge_messages;
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.recent_ids.push_back(message.id);
            while session.recent_ids.len() > purge {
                session.recent_ids.pop_front();
            }
        }
        self.history.push_back(message.clone());
        while self.history.len() > self.config.history_len {
            self.history.pop_front();
        }
        self.push_persist(PersistEvent::Message(message));
    }

    fn chat(&mut self, conn: ConnId, raw: &str, now: i64) -> Result<Vec<Outgoing>, Refused> {
        let text = self.admit(conn, raw, Channel::Chat, now)?;
        let entered = self.enter_lottery(conn, &text);
        let session = self.session(conn)?;
        let line = ChatLine {
            user: session.name.clone(),
            host: session.host,
            text,
        };
        let id = self.next_id(now);
        let frame = ServerFrame {
            id,
            ts: now,
            message: ServerMessage::Chat(line.clone()),
        }
        .encode();
        self.record(
            conn,
            StoredMessage {
                id,
                ts: now,
                line: Line::Chat(line),
            },
        );
        let mut out = vec![Outgoing::Broadcast(frame)];
        if entered {
            let frame = self.frame(
                now,
                ServerMessage::System {
                    event: SystemEvent::LotteryEntered,
                    text: "You are in the draw. Good luck!".to_owned(),
                },
            );
            out.push(Outgoing::To(conn, frame));
        }
        Ok(out)
    }

    fn danmaku(
        &mut self,
        conn: ConnId,
        raw: &str,
        color: Option<&str>,
        position_ms: Option<i64>,
        now: i64,
    ) -> Result<Vec<Outgoing>, Refused> {
        let Some(color) = parse_color(color) else {
            return Err(Refused::new(ErrorCode::BadRequest, "color must be #rrggbb"));
        };
        let text = self.admit(conn, raw, Channel::Danmaku, now)?;
        let position_ms = self.stamp_position(position_ms, now);
        let session = self.session(conn)?;
        let line = DanmakuLine {
            user: session.name.clone(),
            host: session.host,
            text,
            color,
            position_ms,
        };
        let id = self.next_id(now);
        let frame = ServerFrame {
            id,
            ts: now,
            message: ServerMessage::Danmaku(line.clone()),
        }
        .encode();
        self.record(
            conn,
            StoredMessage {
                id,
                ts: now,
                line: Line::Danmaku(line),
            },
        );
        Ok(vec![Outgoing::Broadcast(frame)])
    }

    /// The client's position when it is within the last [`ChatConfig::danmaku_max_behind_ms`]
    /// of the live position, else the live position; `None` when nothing is live.
    fn stamp_position(&self, client: Option<i64>, now: i64) -> Option<i64> {
        let live = self.live_position(now)?;
        let earliest = live.saturating_sub(ms(self.config.danmaku_max_behind_ms));
        Some(match client {
            Some(p) if (earliest..=live).contains(&p) => p,
            _ => live,
        })
    }

    /// Likes never answer: a refused like would cost an error frame per click.
    fn like(&mut self, conn: ConnId, now: i64) -> Result<Vec<Outgoing>, Refused> {
        let rate = self.config.like_rate;
        let session = self.session_mut(conn)?;
        if !session.banned && session.like.check(rate, 0, now).is_ok() {
            self.likes.pending = self.likes.pending.saturating_add(1);
            self.likes.total = self.likes.total.saturating_add(1);
            self.likes.since.get_or_insert(now);
        }
        Ok(Vec::new())
    }

    fn gift(
        &mut self,
        conn: ConnId,
        gift: &str,
        gift_count: u32,
        now: i64,
    ) -> Result<Vec<Outgoing>, Refused> {
        if self.session(conn)?.banned {
            return Err(Refused::banned());
        }
        let Some(kind) = self.gift_index.get(gift).cloned() else {
            return Err(Refused::new(ErrorCode::UnknownGift, "no such gift"));
        };
        let max = self.config.max_gift_count;
        if !(1..=max).contains(&gift_count) {
            return Err(Refused::new(
                ErrorCode::BadRequest,
                format!("count must be 1 to {max}"),
            ));
        }
        let (rate, cooldown_ms, top_n) = (
            self.config.gift_rate,
            self.config.cooldown_ms,
            self.config.top_givers,
        );
        let session = self.session_mut(conn)?;
        session
            .gift
            .check(rate, cooldown_ms, now)
            .map_err(|l| Refused {
                code: ErrorCode::RateLimited,
                message: "too many gifts: slow down".to_owned(),
                retry_after_ms: Some(l.retry_after_ms),
            })?;
        let (key, user) = (session.key.clone(), session.name.clone());
        let value = kind.value.saturating_mul(u64::from(gift_count));
        let total = self.gifts.add(&key, &user, value, top_n);
        self.push_persist(PersistEvent::Gift {
            user: user.clone(),
            gift: kind.id.clone(),
            count: gift_count,
            value,
            ts: now,
        });
        let event = GiftEvent {
            user,
            gift: kind.id,
            gift_name: kind.name,
            count: gift_count,
            value,
            total,
            stream_total: self.gifts.stream_total,
            top: self.gifts.top(),
        };
        Ok(vec![Outgoing::Broadcast(
            self.frame(now, ServerMessage::Gift(event)),
        )])
    }

    // ---- moderation (from a host connection or the operator's CLI) --------------------------

    /// Deletes a message: removed from the history, a `delete` frame to everyone, and a
    /// [`PersistEvent::Deleted`]. An id not in the in-memory history is still announced (pages
    /// and the database may hold older messages); an id never issued is `not_found`.
    pub fn delete_message(
        &mut self,
        message_id: u64,
        by: &str,
        now_ms: i64,
    ) -> Result<Vec<Outgoing>, Refused> {
        if message_id == 0 || message_id > self.last_id {
            return Err(Refused::new(ErrorCode::NotFound, "no such message"));
        }
        self.history.retain(|m| m.id != message_id);
        tracing::debug!(room = %self.name, message_id, by, "message deleted");
        self.push_persist(PersistEvent::Deleted {
            message_id,
            by: by.to_owned(),
            ts: now_ms,
        });
        let frame = self.frame(now_ms, ServerMessage::Delete { message_id });
        Ok(vec![Outgoing::Broadcast(frame)])
    }

    /// Bans a name (see the [module documentation](self#ban-semantics)).
    pub fn ban(&mut self, user: &str, by: &str, now_ms: i64) -> Result<Vec<Outgoing>, Refused> {
        let key = self.moderation_target(user)?;
        let target = self.names.get(&key).copied();
        if let Some(conn) = target
            && self.sessions.get(&conn).is_some_and(|s| s.host)
        {
            return Err(Refused::new(ErrorCode::Forbidden, "hosts cannot be banned"));
        }
        self.bans.insert(key.clone());
        let mut doomed: BTreeSet<u64> = self
            .history
            .iter()
            .filter(|m| name_key(m.line.user()) == key)
            .map(|m| m.id)
            .collect();
        let mut you = None;
        if let Some(session) = target.and_then(|c| self.sessions.get_mut(&c)) {
            session.banned = true;
            doomed.extend(session.recent_ids.drain(..));
            you = Some(session.identity());
        }
        self.history.retain(|m| !doomed.contains(&m.id));
        if let Some(lottery) = self.lottery.as_mut() {
            lottery.entrants.retain(|(k, _)| *k != key);
        }
        tracing::debug!(room = %self.name, user = %key, by, deleted = doomed.len(), "user banned");
        let mut out = Vec::with_capacity(doomed.len() + 2);
        for message_id in doomed {
            self.push_persist(PersistEvent::Deleted {
                message_id,
                by: by.to_owned(),
                ts: now_ms,
            });
            out.push(Outgoing::Broadcast(
                self.frame(now_ms, ServerMessage::Delete { message_id }),
            ));
        }
        self.push_persist(PersistEvent::Banned {
            user: key,
            by: by.to_owned(),
            ts: now_ms,
        });
        if let (Some(conn), Some(you)) = (target, you) {
            out.push(Outgoing::To(
                conn,
                self.frame(now_ms, ServerMessage::Identity { you }),
            ));
        }
        let text = format!("{} was banned by {by}", user.trim());
        out.push(Outgoing::ToHosts(self.frame(
            now_ms,
            ServerMessage::System {
                event: SystemEvent::UserBanned,
                text,
            },
        )));
        Ok(out)
    }

    /// Lifts a ban; `not_found` if the name is not banned.
    pub fn unban(&mut self, user: &str, by: &str, now_ms: i64) -> Result<Vec<Outgoing>, Refused> {
        let key = self.moderation_target(user)?;
        if !self.bans.remove(&key) {
            return Err(Refused::new(ErrorCode::NotFound, "that name is not banned"));
        }
        tracing::debug!(room = %self.name, user = %key, by, "user unbanned");
        let mut out = Vec::with_capacity(2);
        let target = self.names.get(&key).copied();
        if let Some(conn) = target
            && let Some(session) = self.sessions.get_mut(&conn)
        {
            session.banned = false;
            let you = session.identity();
            out.push(Outgoing::To(
                conn,
                self.frame(now_ms, ServerMessage::Identity { you }),
            ));
        }
        self.push_persist(PersistEvent::Unbanned {
            user: key,
            by: by.to_owned(),
            ts: now_ms,
        });
        let text = format!("{} was unbanned by {by}", user.trim());
        out.push(Outgoing::ToHosts(self.frame(
            now_ms,
            ServerMessage::System {
                event: SystemEvent::UserUnbanned,
                text,
            },
        )));
        Ok(out)
    }

    fn moderation_target(&self, user: &str) -> Result<String, Refused> {
        let user = user.trim();
        if user.is_empty() || user.chars().count() > self.config.max_name_chars {
            return Err(Refused::new(ErrorCode::BadRequest, "no such user name"));
        }
        Ok(name_key(user))
    }

    /// Names banned in this room (lower-cased), in no particular order.
    pub fn bans(&self) -> impl Iterator<Item = &str> {
        self.bans.iter().map(String::as_str)
    }

    /// Whether a name is banned.
    pub fn is_banned(&self, user: &str) -> bool {
        self.bans.contains(&name_key(user.trim()))
    }

    /// Restores bans from the database; connected users with those names become banned.
    pub fn load_bans(&mut self, users: impl IntoIterator<Item = String>) {
        for user in users {
            let key = name_key(user.trim());
            if let Some(session) = self
                .names
                .get(&key)
                .and_then(|conn| self.sessions.get_mut(conn))
            {
                session.banned = !session.host;
            }
            self.bans.insert(key);
        }
    }

    /// Sets slow mode: one chat or danmaku per `seconds` per viewer (hosts exempt); `0` turns
    /// it off. Announced to everyone with a `system` frame.
    pub fn set_slow_mode(
        &mut self,
        seconds: u32,
        by: &str,
        now_ms: i64,
    ) -> Result<Vec<Outgoing>, Refused> {
        let max = self.config.max_slow_mode_s;
        if seconds > max {
            return Err(Refused::new(
                ErrorCode::BadRequest,
                format!("slow mode is at most {max} s"),
            ));
        }
        self.slow_mode_s = seconds;
        tracing::debug!(room = %self.name, seconds, by, "slow mode set");
        let text = if seconds == 0 {
            "Slow mode is off".to_owned()
        } else {
            format!("Slow mode: one message every {seconds} s")
        };
        let frame = self.frame(
            now_ms,
            ServerMessage::System {
                event: SystemEvent::SlowMode,
                text,
            },
        );
        Ok(vec![Outgoing::Broadcast(frame)])
    }

    /// Slow mode interval, seconds; 0 when off.
    pub fn slow_mode_s(&self) -> u32 {
        self.slow_mode_s
    }

    // ---- lottery ----------------------------------------------------------------------------

    /// Opens a lottery: viewers (not hosts, not banned) enter by sending `keyword` as a chat
    /// message — compared trimmed and without case — once each. With `duration_s` it draws by
    /// itself from [`ChatRoom::tick`]. `conflict` if one is already open.
    pub fn open_lottery(
        &mut self,
        keyword: &str,
        duration_s: Option<u32>,
        by: &str,
        now_ms: i64,
    ) -> Result<Vec<Outgoing>, Refused> {
        if self.lottery.is_some() {
            return Err(Refused::new(
                ErrorCode::Conflict,
                "a lottery is already open",
            ));
        }
        let keyword = clean_text(keyword, self.config.max_keyword_chars)
            .map_err(|e| Refused::text(e, "keyword"))?;
        let max = self.config.max_lottery_duration_s;
        let draw_at = match duration_s {
            None => None,
            Some(s) if (1..=max).contains(&s) => {
                Some(now_ms.saturating_add(i64::from(s).saturating_mul(1_000)))
            }
            Some(_) => {
                return Err(Refused::new(
                    ErrorCode::BadRequest,
                    format!("duration_s must be 1 to {max}"),
                ));
            }
        };
        self.lottery_seq += 1;
        tracing::debug!(room = %self.name, by, "lottery opened");
        self.lottery = Some(Lottery {
            seq: self.lottery_seq,
            key: name_key(&keyword),
            keyword: keyword.clone(),
            opened_by: by.to_owned(),
            opened_at: now_ms,
            draw_at,
            entrants: Vec::new(),
            entered: HashSet::new(),
            announced: 0,
            announced_at: None,
        });
        let frame = self.frame(now_ms, ServerMessage::LotteryOpened { keyword, draw_at });
        Ok(vec![Outgoing::Broadcast(frame)])
    }

    /// Draws the open lottery now; `conflict` if none is open.
    pub fn draw_lottery(&mut self, by: &str, now_ms: i64) -> Result<Vec<Outgoing>, Refused> {
        let lottery = self.lottery.take().ok_or_else(no_lottery)?;
        Ok(self.draw(lottery, by, now_ms))
    }

    /// Closes the open lottery without a winner; `conflict` if none is open.
    pub fn cancel_lottery(&mut self, by: &str, now_ms: i64) -> Result<Vec<Outgoing>, Refused> {
        let lottery = self.lottery.take().ok_or_else(no_lottery)?;
        let entrants = count(lottery.entrants.len());
        self.push_persist(PersistEvent::LotteryCancelled {
            keyword: lottery.keyword.clone(),
            entrants,
            opened_by: lottery.opened_by.clone(),
            by: by.to_owned(),
            opened_at: lottery.opened_at,
            cancelled_at: now_ms,
        });
        let frame = self.frame(
            now_ms,
            ServerMessage::LotteryCancelled {
                keyword: lottery.keyword,
                entrants,
            },
        );
        Ok(vec![Outgoing::Broadcast(frame)])
    }

    /// The open lottery.
    pub fn lottery(&self) -> Option<LotteryInfo> {
        self.lottery.as_ref().map(Lottery::info)
    }

    /// Enters the connection if `text` is the open lottery's keyword; true if this entry
    /// counted.
    fn enter_lottery(&mut self, conn: ConnId, text: &str) -> bool {
        let (Some(lottery), Some(session)) = (self.lottery.as_mut(), self.sessions.get_mut(&conn))
        else {
            return false;
        };
        if session.host
            || session.banned
            || name_key(text) != lottery.key
            || session.lottery_entered == Some(lottery.seq)
            || lottery.entered.contains(&session.key)
        {
            return false;
        }
        session.lottery_entered = Some(lottery.seq);
        lottery.entered.insert(session.key.clone());
        lottery
            .entrants
            .push((session.key.clone(), session.name.clone()));
        true
    }

    fn draw(&mut self, lottery: Lottery, by: &str, now: i64) -> Vec<Outgoing> {
        let entrants = count(lottery.entrants.len());
        // `Uniform` samples without bias (Lemire's method), unlike a plain modulo; it is an
        // error only for an empty range, which is the no-entrant case.
        let winner = Uniform::new(0, lottery.entrants.len())
            .ok()
            .map(|d| d.sample(&mut self.rng))
            .and_then(|i| lottery.entrants.get(i))
            .map(|(_, name)| name.clone());
        let text = match &winner {
            Some(w) => format!(
                "{w} won the draw for \"{}\" ({entrants} entrant{})",
                lottery.keyword,
                if entrants == 1 { "" } else { "s" }
            ),
            None => format!("No entrants for \"{}\": no winner", lottery.keyword),
        };
        tracing::debug!(room = %self.name, by, entrants, "lottery drawn");
        self.push_persist(PersistEvent::LotteryResult {
            keyword: lottery.keyword.clone(),
            entrants,
            winner: winner.clone(),
            opened_by: lottery.opened_by,
            drawn_by: by.to_owned(),
            opened_at: lottery.opened_at,
            drawn_at: now,
        });
        let frame = self.frame(
            now,
            ServerMessage::LotteryResult {
                keyword: lottery.keyword,
                entrants,
                winner,
                text,
            },
        );
        vec![Outgoing::Broadcast(frame)]
    }

    // ---- the stream -------------------------------------------------------------------------

    /// The stream went live: the position clock starts at 0, likes and gift totals start
    /// afresh (pending likes are flushed first, as the old stream's), and everyone gets a
    /// `system` frame.
    pub fn stream_started(&mut self, now_ms: i64) -> Vec<Outgoing> {
        let mut out = Vec::with_capacity(2);
        if self.likes.pending > 0 {
            out.push(self.flush_likes(now_ms));
        }
        self.likes = Likes::default();
        self.gifts = GiftBoard::default();
        self.stream = StreamClock {
            live: true,
            anchor_pos: 0,
            anchor_at: now_ms,
        };
        out.push(Outgoing::Broadcast(self.frame(
            now_ms,
            ServerMessage::System {
                event: SystemEvent::StreamStarted,
                text: "The stream is live".to_owned(),
            },
        )));
        out
    }

    /// The stream ended. Totals stay until the next start so the final board can be shown.
    pub fn stream_ended(&mut self, now_ms: i64) -> Vec<Outgoing> {
        self.stream.live = false;
        vec![Outgoing::Broadcast(self.frame(
            now_ms,
            ServerMessage::System {
                event: SystemEvent::StreamEnded,
                text: "The stream has ended".to_owned(),
            },
        ))]
    }

    /// Tells the room that the live edge of the stream is at `position_ms` at `now_ms` (e.g.
    /// from the packager's latest part); between calls the position advances with the clock.
    pub fn set_stream_position(&mut self, position_ms: i64, now_ms: i64) {
        self.stream.anchor_pos = position_ms;
        self.stream.anchor_at = now_ms;
    }

    /// The live position at `now_ms`, milliseconds; `None` when no stream is live.
    pub fn live_position(&self, now_ms: i64) -> Option<i64> {
        self.stream.live.then(|| {
            let elapsed = now_ms.saturating_sub(self.stream.anchor_at).max(0);
            self.stream.anchor_pos.saturating_add(elapsed)
        })
    }

    /// Whether a stream is live.
    pub fn is_live(&self) -> bool {
        self.stream.live
    }

    // ---- timers -----------------------------------------------------------------------------

    /// Runs what is due: the aggregated `like` update, a lottery's auto-draw or entrant count,
    /// and a `presence` update when the viewer count changed. Call it at
    /// [`ChatRoom::poll_timeout`] (or on a steady short interval).
    pub fn tick(&mut self, now_ms: i64) -> Vec<Outgoing> {
        let now = now_ms;
        let mut out = Vec::new();
        if self
            .likes
            .since
            .is_some_and(|since| now.saturating_sub(since) >= ms(self.config.like_flush_ms))
        {
            out.push(self.flush_likes(now));
        }
        if let Some(lottery) = &self.lottery {
            if lottery.draw_at.is_some_and(|at| now >= at) {
                if let Some(lottery) = self.lottery.take() {
                    out.extend(self.draw(lottery, "auto", now));
                }
            } else if lottery.entrants.len() != lottery.announced
                && lottery
                    .announced_at
                    .is_none_or(|at| now.saturating_sub(at) >= ms(self.config.lottery_update_ms))
            {
                let message = ServerMessage::LotteryEntrants {
                    keyword: lottery.keyword.clone(),
                    count: count(lottery.entrants.len()),
                };
                let announced = lottery.entrants.len();
                let frame = self.frame(now, message);
                if let Some(lottery) = self.lottery.as_mut() {
                    lottery.announced = announced;
                    lottery.announced_at = Some(now);
                }
                out.push(Outgoing::Broadcast(frame));
            }
        }
        let viewers = self.viewers();
        if viewers != self.announced_viewers
            && self
                .presence_at
                .is_none_or(|at| now.saturating_sub(at) >= ms(self.config.presence_ms))
        {
            self.announced_viewers = viewers;
            self.presence_at = Some(now);
            out.push(Outgoing::Broadcast(
                self.frame(now, ServerMessage::Presence { viewers }),
            ));
        }
        out
    }

    /// When [`ChatRoom::tick`] next has something to do, unix milliseconds (possibly already
    /// past); `None` when nothing is pending.
    pub fn poll_timeout(&self) -> Option<i64> {
        let mut next: Option<i64> = None;
        let mut consider = |at: i64| next = Some(next.map_or(at, |n| n.min(at)));
        if let Some(since) = self.likes.since {
            consider(since.saturating_add(ms(self.config.like_flush_ms)));
        }
        if let Some(lottery) = &self.lottery {
            if let Some(at) = lottery.draw_at {
                consider(at);
            }
            if lottery.entrants.len() != lottery.announced {
                consider(lottery.announced_at.map_or(i64::MIN, |at| {
                    at.saturating_add(ms(self.config.lottery_update_ms))
                }));
            }
        }
        if self.viewers() != self.announced_viewers {
            consider(self.presence_at.map_or(i64::MIN, |at| {
                at.saturating_add(ms(self.config.presence_ms))
            }));
        }
        next
    }

    fn flush_likes(&mut self, now: i64) -> Outgoing {
        let count = std::mem::take(&mut self.likes.pending);
        self.likes.since = None;
        let total = self.likes.total;
        Outgoing::Broadcast(self.frame(now, ServerMessage::Like { count, total }))
    }

    /// Likes during the current stream.
    pub fn likes_total(&self) -> u64 {
        self.likes.total
    }

    /// The current stream's top givers, largest first.
    pub fn top_givers(&self) -> Vec<GiverTotal> {
        self.gifts.top()
    }

    /// Coins given during the current stream.
    pub fn gift_total(&self) -> u64 {
        self.gifts.stream_total
    }

    /// Restores the current stream's per-user gift totals (after a restart mid-stream).
    /// Entries for the same name (without regard to case) are added up.
    pub fn load_gift_totals(&mut self, totals: Vec<GiverTotal>) {
        self.gifts = GiftBoard::default();
        let top_n = self.config.top_givers;
        for giver in totals {
            let key = name_key(&giver.user);
            self.gifts.add(&key, &giver.user, giver.total, top_n);
        }
    }

    // ---- history and persistence ------------------------------------------------------------

    /// The recent chat and danmaku lines `welcome` replays, oldest first.
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &StoredMessage> + ExactSizeIterator {
        self.history.iter()
    }

    /// Replaces the history with lines from the database (any order; the newest
    /// [`ChatConfig::history_len`] are kept) and moves the id counter past them.
    pub fn load_history(&mut self, mut messages: Vec<StoredMessage>) {
        messages.sort_by_key(|m| m.id);
        messages.dedup_by_key(|m| m.id);
        if let Some(last) = messages.last() {
            self.last_id = self.last_id.max(last.id);
        }
        let skip = messages.len().saturating_sub(self.config.history_len);
        self.history = messages.into_iter().skip(skip).collect();
    }

    /// Takes what should be written to the database, oldest first.
    pub fn take_persist(&mut self) -> Vec<PersistEvent> {
        self.persist.drain(..).collect()
    }

    /// Persist events dropped because more than [`MAX_PENDING_PERSIST`] were waiting.
    pub fn persist_dropped(&self) -> u64 {
        self.persist_dropped
    }

    fn push_persist(&mut self, event: PersistEvent) {
        if self.persist.len() >= MAX_PENDING_PERSIST {
            self.persist.pop_front();
            self.persist_dropped += 1;
            if self.persist_dropped.is_power_of_two() {
                tracing::warn!(
                    room = %self.name,
                    dropped = self.persist_dropped,
                    "chat persist queue full; dropping the oldest events"
                );
            }
        }
        self.persist.push_back(event);
    }

    // ---- frames -----------------------------------------------------------------------------

    /// The id of the last frame this room produced.
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    fn next_id(&mut self, now: i64) -> u64 {
        let floor = u64::try_from(now).unwrap_or(0).saturating_mul(IDS_PER_MS);
        self.last_id = self.last_id.saturating_add(1).max(floor);
        self.last_id
    }

    fn frame(&mut self, now: i64, message: ServerMessage) -> Frame {
        let id = self.next_id(now);
        ServerFrame {
            id,
            ts: now,
            message,
        }
        .encode()
    }
}

fn no_lottery() -> Refused {
    Refused::new(ErrorCode::Conflict, "no lottery is open")
}

#[cfg(test)]
mod tests;
