//! The wire protocol of `/chat/ROOM`: JSON text frames tagged by `"type"`.
//!
//! Client frames are parsed with [`parse_client`], which never panics: oversize frames, invalid
//! JSON, unknown types and wrongly typed fields all come back as a [`ParseError`] that maps to
//! an `error` frame. Server frames are [`ServerFrame`]s — an `id` (increasing per room), a `ts`
//! (unix milliseconds) and the [`ServerMessage`] fields side by side — encoded once into a
//! [`Frame`] whose buffer every receiver shares.
//!
//! Unknown fields in a client frame are ignored, so an older server keeps working with a newer
//! page.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::GiftKind;

/// Default cap on a client frame, bytes: a full-length chat message of four-byte characters,
/// JSON-escaped, fits with room to spare.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 8 * 1024;

/// Longest excerpt of a rejected frame kept in a [`ParseError`] for the logs, bytes.
const EXCERPT_BYTES: usize = 64;

/// A frame a client sends.
///
/// Host commands (`delete` … `lottery_cancel`) arrive on the same socket; the room refuses them
/// with `forbidden` unless the connection joined as a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Take a display name; without one, keep (or get) a guest name.
    Join {
        /// Requested display name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// A chat line.
    Chat {
        /// The message, as typed.
        text: String,
    },
    /// A bullet comment flown over the video.
    Danmaku {
        /// The comment, as typed.
        text: String,
        /// `#rrggbb`; white when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        color: Option<String>,
        /// The stream position the viewer is watching, milliseconds. A player's clock is
        /// fractional, so a JSON float is accepted and rounded.
        #[serde(
            default,
            deserialize_with = "lenient_position",
            skip_serializing_if = "Option::is_none"
        )]
        position_ms: Option<i64>,
    },
    /// One press of the like button.
    Like,
    /// A gift from the catalogue.
    Gift {
        /// Catalogue id, e.g. `rose`.
        gift: String,
        /// How many; 1 when absent.
        #[serde(default = "one")]
        count: u32,
    },
    /// Host: remove a message from every page and from the history.
    Delete {
        /// Id of the chat or danmaku frame to remove.
        id: u64,
    },
    /// Host: refuse a user's messages and delete their recent ones.
    Ban {
        /// Display name, matched without regard to case.
        user: String,
    },
    /// Host: lift a ban.
    Unban {
        /// Display name, matched without regard to case.
        user: String,
    },
    /// Host: allow one message per `seconds` per viewer; `0` turns slow mode off.
    SlowMode {
        /// Seconds between two messages of one viewer.
        seconds: u32,
    },
    /// Host: open a lottery that viewers enter by sending `keyword` as a chat message.
    LotteryOpen {
        /// Word to send to enter.
        keyword: String,
        /// Draw automatically after this many seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_s: Option<u32>,
    },
    /// Host: draw the open lottery now.
    LotteryDraw,
    /// Host: close the open lottery without a winner.
    LotteryCancel,
}

fn one() -> u32 {
    1
}

/// Accepts an integer or a float (rounded); anything else is a type error.
fn lenient_position<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(v) = number.as_i64() {
        return Ok(Some(v));
    }
    match number.as_f64() {
        // The range check keeps the `as` conversion exact rather than saturating silently.
        Some(v) if v.is_finite() && v.abs() < 9.0e15 => Ok(Some(v.round() as i64)),
        _ => Err(serde::de::Error::custom("position_ms out of range")),
    }
}

/// Why a client frame was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The frame is over the size cap; it was not parsed.
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Frame length, bytes.
        len: usize,
        /// The cap, bytes.
        max: usize,
    },
    /// Not JSON, not an object, an unknown `type`, or a field of the wrong type.
    #[error("invalid frame at line {line} column {column}: {reason} (starts {excerpt:?})")]
    Invalid {
        /// 1-based line of the error, as serde_json reports it.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// serde_json's description.
        reason: String,
        /// The first bytes of the frame (lossy UTF-8), for whoever reads the log.
        excerpt: String,
    },
}

impl ParseError {
    /// The `error` code a client is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ParseError::TooLarge { .. } => ErrorCode::TooLong,
            ParseError::Invalid { .. } => ErrorCode::BadRequest,
        }
    }

    /// Text for the client's `error` frame: the reason without the excerpt, which the client
    /// already has.
    pub fn client_message(&self) -> String {
        match self {
            ParseError::TooLarge { len, max } => {
                format!("frame of {len} bytes is over the {max}-byte limit")
            }
            ParseError::Invalid { reason, .. } => format!("invalid message: {reason}"),
        }
    }
}

/// Parses one client frame (the payload of a text or binary WebSocket message).
///
/// The size is checked before any parsing. serde_json's recursion limit stops deeply nested
/// input, so no frame can exhaust the stack.
pub fn parse_client(frame: &[u8], max_frame_bytes: usize) -> Result<ClientMessage, ParseError> {
    if frame.len() > max_frame_bytes {
        return Err(ParseError::TooLarge {
            len: frame.len(),
            max: max_frame_bytes,
        });
    }
    serde_json::from_slice(frame).map_err(|e| ParseError::Invalid {
        line: e.line(),
        column: e.column(),
        reason: e.to_string(),
        excerpt: String::from_utf8_lossy(&frame[..frame.len().min(EXCERPT_BYTES)]).into_owned(),
    })
}

/// Who a connection is in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Display name, unique in the room without regard to case.
    pub name: String,
    /// Joined with the room's host token.
    pub host: bool,
    /// Banned: may read, may not send.
    pub banned: bool,
}

/// A chat line as sent and as kept in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLine {
    /// Author's display name at the time.
    pub user: String,
    /// Author is a host.
    pub host: bool,
    /// Cleaned text. Data, not markup: the page renders it with `textContent`.
    pub text: String,
}

/// A danmaku as sent and as kept in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DanmakuLine {
    /// Author's display name at the time.
    pub user: String,
    /// Author is a host.
    pub host: bool,
    /// Cleaned text.
    pub text: String,
    /// `#rrggbb`, lower case.
    pub color: String,
    /// Stream position the comment belongs to, milliseconds; `null` when no stream was live.
    pub position_ms: Option<i64>,
}

/// The part of a history line that differs between chat and danmaku.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// A chat line.
    Chat(ChatLine),
    /// A danmaku.
    Danmaku(DanmakuLine),
}

impl Line {
    /// Author's display name.
    pub fn user(&self) -> &str {
        match self {
            Line::Chat(l) => &l.user,
            Line::Danmaku(l) => &l.user,
        }
    }
}

/// A chat or danmaku line with the `id` and `ts` it went out with: what the history keeps, the
/// database stores and `welcome` replays. It serialises exactly like the live frame did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Frame id.
    pub id: u64,
    /// Unix milliseconds.
    pub ts: i64,
    /// The line.
    #[serde(flatten)]
    pub line: Line,
}

/// One entry of the top-givers board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GiverTotal {
    /// Display name.
    pub user: String,
    /// Coins given during the current stream.
    pub total: u64,
}

/// A gift as announced to the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GiftEvent {
    /// Giver's display name.
    pub user: String,
    /// Catalogue id.
    pub gift: String,
    /// Catalogue display name.
    pub gift_name: String,
    /// How many were sent.
    pub count: u32,
    /// Coins this message is worth (`count` × the gift's value).
    pub value: u64,
    /// Coins the giver has given during this stream.
    pub total: u64,
    /// Coins given by everyone during this stream.
    pub stream_total: u64,
    /// Top givers of this stream, largest first.
    pub top: Vec<GiverTotal>,
}

/// The open lottery, as a late joiner needs to see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotteryInfo {
    /// Word to send to enter.
    pub keyword: String,
    /// Entrants so far.
    pub entrants: u64,
    /// When it draws by itself, unix milliseconds.
    pub draw_at: Option<i64>,
}

/// The first frame a connection receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The connection's identity.
    pub you: Identity,
    /// Recent chat and danmaku, oldest first.
    pub history: Vec<StoredMessage>,
    /// Viewers now.
    pub viewers: u64,
    /// A stream is live.
    pub live: bool,
    /// Slow mode interval, seconds; 0 when off.
    pub slow_mode_s: u32,
    /// Likes during the current stream.
    pub likes: u64,
    /// The gift catalogue, for the gift picker.
    pub gifts: Vec<GiftKind>,
    /// The open lottery, if any.
    pub lottery: Option<LotteryInfo>,
}

/// What a `system` frame announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemEvent {
    /// The stream went live.
    StreamStarted,
    /// The stream ended.
    StreamEnded,
    /// Slow mode was set or turned off.
    SlowMode,
    /// A user was banned (to hosts).
    UserBanned,
    /// A ban was lifted (to hosts).
    UserUnbanned,
    /// Your lottery entry counted (to the entrant).
    LotteryEntered,
}

/// Machine-readable reason of an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Unparseable frame, a field out of range, or a message before joining.
    BadRequest,
    /// Frame or text over its limit.
    TooLong,
    /// Nothing left after trimming.
    Empty,
    /// Over the rate limit or in the cool-down; see `retry_after_ms`.
    RateLimited,
    /// Slow mode; see `retry_after_ms`.
    SlowMode,
    /// The connection is banned.
    Banned,
    /// A host command from a non-host, or an action on a host.
    Forbidden,
    /// The requested name does not pass validation.
    InvalidName,
    /// Someone in the room already has the name.
    NameTaken,
    /// The gift is not in the catalogue.
    UnknownGift,
    /// No such message.
    NotFound,
    /// The command does not fit the room's state (e.g. a second lottery).
    Conflict,
    /// The server failed; not the client's fault.
    Internal,
}

impl ErrorCode {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLong => "too_long",
            ErrorCode::Empty => "empty",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SlowMode => "slow_mode",
            ErrorCode::Banned => "banned",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::UnknownGift => "unknown_gift",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The body of a server frame, tagged by `"type"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First frame of a connection.
    Welcome(Welcome),
    /// The connection's identity changed (rename, ban, unban).
    Identity {
        /// The new identity.
        you: Identity,
    },
    /// A chat line.
    Chat(ChatLine),
    /// A danmaku.
    Danmaku(DanmakuLine),
    /// Likes gathered over one flush interval.
    Like {
        /// Likes in this interval.
        count: u64,
        /// Likes during the current stream.
        total: u64,
    },
    /// A gift.
    Gift(GiftEvent),
    /// The viewer count changed.
    Presence {
        /// Viewers now.
        viewers: u64,
    },
    /// Something happened to the room.
    System {
        /// What.
        event: SystemEvent,
        /// Human-readable text.
        text: String,
    },
    /// Remove a message from the page. The target is `message_id` because `id` is this frame's.
    Delete {
        /// Id of the chat or danmaku frame to remove.
        message_id: u64,
    },
    /// A host opened a lottery.
    LotteryOpened {
        /// Word to send to enter.
        keyword: String,
        /// When it draws by itself, unix milliseconds.
        draw_at: Option<i64>,
    },
    /// The entrant count of the open lottery changed.
    LotteryEntrants {
        /// The lottery's keyword.
        keyword: String,
        /// Entrants so far.
        count: u64,
    },
    /// The lottery was drawn.
    LotteryResult {
        /// The lottery's keyword.
        keyword: String,
        /// How many entered.
        entrants: u64,
        /// Winner's display name; `null` when nobody entered.
        winner: Option<String>,
        /// Human-readable announcement.
        text: String,
    },
    /// A host closed the lottery without drawing.
    LotteryCancelled {
        /// The lottery's keyword.
        keyword: String,
        /// How many had entered.
        entrants: u64,
    },
    /// A request was refused.
    Error {
        /// Why, for code.
        code: ErrorCode,
        /// Why, for people.
        message: String,
        /// When trying again can succeed, milliseconds from now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl ServerMessage {
    /// The `"type"` tag, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMessage::Welcome(_) => "welcome",
            ServerMessage::Identity { .. } => "identity",
            ServerMessage::Chat(_) => "chat",
            ServerMessage::Danmaku(_) => "danmaku",
            ServerMessage::Like { .. } => "like",
            ServerMessage::Gift(_) => "gift",
            ServerMessage::Presence { .. } => "presence",
            ServerMessage::System { .. } => "system",
            ServerMessage::Delete { .. } => "delete",
            ServerMessage::LotteryOpened { .. } => "lottery_opened",
            ServerMessage::LotteryEntrants { .. } => "lottery_entrants",
            ServerMessage::LotteryResult { .. } => "lottery_result",
            ServerMessage::LotteryCancelled { .. } => "lottery_cancelled",
            ServerMessage::Error { .. } => "error",
        }
    }
}

/// A server frame: `id` and `ts` beside the message's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFrame {
    /// Increasing per room, unique across restarts (see [`crate::ChatRoom`]).
    pub id: u64,
    /// Unix milliseconds.
    pub ts: i64,
    /// The message.
    #[serde(flatten)]
    pub message: ServerMessage,
}

impl ServerFrame {
    /// Serialises the frame once; clones of the result share the buffer.
    pub fn encode(&self) -> Frame {
        let kind = self.message.kind();
        let bytes = match serde_json::to_vec(self) {
            Ok(v) => Bytes::from(v),
            Err(e) => {
                // Unreachable with these types (string keys only), but a frame must still go
                // out with its id so the client's sequence stays intact.
                tracing::error!(id = self.id, kind, error = %e, "chat frame failed to serialise");
                Bytes::from(format!(
                    r#"{{"type":"error","id":{},"ts":{},"code":"internal","message":"internal error"}}"#,
                    self.id, self.ts
                ))
            }
        };
        Frame {
            id: self.id,
            kind,
            bytes,
        }
    }
}

/// One encoded server frame (UTF-8 JSON). Cloning is cheap: every receiver of a broadcast
/// holds the same buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    id: u64,
    kind: &'static str,
    bytes: Bytes,
}

impl Frame {
    /// The frame's `id`.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The frame's `"type"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The JSON bytes, for a WebSocket text message (valid UTF-8).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The JSON bytes, owned.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        // The buffer always comes from serde_json or `format!`, so this never falls back.
        std::str::from_utf8(&self.bytes).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ClientMessage, ParseError> {
        parse_client(s.as_bytes(), DEFAULT_MAX_FRAME_BYTES)
    }

    #[test]
    fn parses_every_client_message() {
        let cases = [
            (r#"{"type":"join"}"#, ClientMessage::Join { name: None }),
            (
                r#"{"type":"join","name":"alice"}"#,
                ClientMessage::Join {
                    name: Some("alice".into()),
                },
            ),
            (
                r#"{"type":"chat","text":"hi"}"#,
                ClientMessage::Chat { text: "hi".into() },
            ),
            (
                r##"{"type":"danmaku","text":"wow","color":"#ff0000","position_ms":41234.6}"##,
                ClientMessage::Danmaku {
                    text: "wow".into(),
                    color: Some("#ff0000".into()),
                    position_ms: Some(41235),
                },
            ),
            (
                r#"{"type":"danmaku","text":"wow"}"#,
                ClientMessage::Danmaku {
                    text: "wow".into(),
                    color: None,
                    position_ms: None,
                },
            ),
            (r#"{"type":"like"}"#, ClientMessage::Like),
            (
                r#"{"type":"gift","gift":"rose"}"#,
                ClientMessage::Gift {
                    gift: "rose".into(),
                    count: 1,
                },
            ),
            (
                r#"{"type":"delete","id":7}"#,
                ClientMessage::Delete { id: 7 },
            ),
            (
                r#"{"type":"ban","user":"bob"}"#,
                ClientMessage::Ban { user: "bob".into() },
            ),
            (
                r#"{"type":"unban","user":"bob"}"#,
                ClientMessage::Unban { user: "bob".into() },
            ),
            (
                r#"{"type":"slow_mode","seconds":10}"#,
                ClientMessage::SlowMode { seconds: 10 },
            ),
            (
                r#"{"type":"lottery_open","keyword":"gg","duration_s":60}"#,
                ClientMessage::LotteryOpen {
                    keyword: "gg".into(),
                    duration_s: Some(60),
                },
            ),
            (r#"{"type":"lottery_draw"}"#, ClientMessage::LotteryDraw),
            (r#"{"type":"lottery_cancel"}"#, ClientMessage::LotteryCancel),
        ];
        for (json, want) in cases {
            assert_eq!(parse(json).unwrap(), want, "{json}");
            // Round trip: what a Rust test client writes, the server reads.
            let again = serde_json::to_string(&want).unwrap();
            assert_eq!(parse(&again).unwrap(), want, "{again}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert_eq!(
            parse(r#"{"type":"like","burst":5}"#).unwrap(),
            ClientMessage::Like
        );
        assert_eq!(
            parse(r#"{"text":"hi","type":"chat","extra":{"a":[1,2]}}"#).unwrap(),
            ClientMessage::Chat { text: "hi".into() }
        );
    }

    #[test]
    fn hostile_frames_are_typed_errors() {
        let nested = "[".repeat(100_000) + &"]".repeat(100_000);
        let nested_obj = format!(
            r#"{{"type":"chat","text":{}}}"#,
            "{\"a\":".repeat(500) + "1" + &"}".repeat(500)
        );
        let bad = [
            "",
            "not json",
            "null",
            "42",
            "[]",
            "{}",
            r#"{"type":"nope"}"#,
            r#"{"type":42}"#,
            r#"{"type":"chat"}"#,
            r#"{"type":"chat","text":5}"#,
            r#"{"type":"chat","text":null}"#,
            r#"{"type":"gift","gift":"rose","count":-1}"#,
            r#"{"type":"gift","gift":"rose","count":1.5}"#,
            r#"{"type":"gift","gift":"rose","count":99999999999}"#,
            r#"{"type":"delete","id":"7"}"#,
            r#"{"type":"danmaku","text":"x","position_ms":"now"}"#,
            r#"{"type":"danmaku","text":"x","position_ms":1e300}"#,
            r#"{"type":"chat","text":"unterminated"#,
            "\u{feff}{\"type\":\"like\"}",
        ];
        for json in bad
            .iter()
            .map(|s| s.to_string())
            .chain([nested, nested_obj])
        {
            let err = parse_client(json.as_bytes(), usize::MAX).unwrap_err();
            assert_eq!(err.code(), ErrorCode::BadRequest, "{json:.80}");
            assert!(!err.client_message().is_empty());
        }
        // Invalid UTF-8 as a binary frame.
        let err = parse_client(b"{\"type\":\"chat\",\"text\":\"\xff\"}", 1024).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest);
    }

    #[test]
    fn size_cap_is_checked_before_parsing() {
        let text = "a".repeat(DEFAULT_MAX_FRAME_BYTES);
        let frame = format!(r#"{{"type":"chat","text":"{text}"}}"#);
        let err = parse(&frame).unwrap_err();
        assert_eq!(
            err,
            ParseError::TooLarge {
                len: frame.len(),
                max: DEFAULT_MAX_FRAME_BYTES
            }
        );
        assert_eq!(err.code(), ErrorCode::TooLong);
        // Exactly at the cap is fine.
        let frame = r#"{"type":"like"}"#;
        assert!(parse_client(frame.as_bytes(), frame.len()).is_ok());
        assert!(parse_client(frame.as_bytes(), frame.len() - 1).is_err());
    }

    #[test]
    fn error_keeps_an_excerpt_for_the_log() {
        let err = parse(r#"{"type":"warp","speed":9}"#).unwrap_err();
        let ParseError::Invalid {
            excerpt, reason, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert!(excerpt.starts_with(r#"{"type":"warp""#));
        assert!(reason.contains("warp"), "{reason}");
        assert!(!err.client_message().contains("speed"));
    }

    #[test]
    fn server_frame_layout() {
        let frame = ServerFrame {
            id: 12,
            ts: 1_700_000_000_000,
            message: ServerMessage::Delete { message_id: 9 },
        };
        let encoded = frame.encode();
        assert_eq!(encoded.id(), 12);
        assert_eq!(encoded.kind(), "delete");
        let value: serde_json::Value = serde_json::from_str(encoded.as_str()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"type":"delete","id":12,"ts":1_700_000_000_000_i64,"message_id":9})
        );
        let back: ServerFrame = serde_json::from_slice(encoded.bytes()).unwrap();
        assert_eq!(back, frame);
    }

    #[test]
    fn stored_message_serialises_like_the_live_frame() {
        let line = ChatLine {
            user: "alice".into(),
            host: false,
            text: "<img src=x onerror=alert(1)>".into(),
        };
        let live = ServerFrame {
            id: 3,
            ts: 5,
            message: ServerMessage::Chat(line.clone()),
        };
        let stored = StoredMessage {
            id: 3,
            ts: 5,
            line: Line::Chat(line),
        };
        let a: serde_json::Value = serde_json::from_str(live.encode().as_str()).unwrap();
        let b = serde_json::to_value(&stored).unwrap();
        assert_eq!(a, b);
        assert_eq!(b["text"], "<img src=x onerror=alert(1)>");
    }

    #[test]
    fn error_codes_spell_like_serde() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::TooLong,
            ErrorCode::Empty,
            ErrorCode::RateLimited,
            ErrorCode::SlowMode,
            ErrorCode::Banned,
            ErrorCode::Forbidden,
            ErrorCode::InvalidName,
            ErrorCode::NameTaken,
            ErrorCode::UnknownGift,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::Internal,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::from(code.as_str())
            );
        }
    }
}
