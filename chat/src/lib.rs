//! roomcast chat: the sans-IO core of a room's WebSocket chat.
//!
//! [`ChatRoom`] is one room's state machine — names, history, rate limits, slow mode, bans,
//! deletions, aggregated likes, gifts with a top-givers board, the lottery and the viewer
//! count. [`protocol`] holds the JSON frames of `/chat/ROOM`. Time is an input (`now_ms`, unix
//! milliseconds) to every call; there is no tokio, no socket and no database here. The server
//! owns the sockets: it feeds frames in with [`ChatRoom::handle_frame`], delivers the
//! [`Outgoing`] frames it gets back (one shared buffer per frame, however many receivers),
//! calls [`ChatRoom::tick`] at [`ChatRoom::poll_timeout`], and writes
//! [`ChatRoom::take_persist`] to the database.
//!
//! ```
//! use roomcast_chat::{ChatConfig, ChatRoom, ConnId, Outgoing};
//!
//! let mut room = ChatRoom::new("main", ChatConfig::default());
//! let (you, _welcome) = room.join(ConnId(1), Some("alice"), false, 1_000).unwrap();
//! assert_eq!(you.name, "alice");
//! let out = room.handle_frame(ConnId(1), br#"{"type":"chat","text":"hi"}"#, 1_001);
//! let Outgoing::Broadcast(frame) = &out[0] else { panic!() };
//! assert!(frame.as_str().contains(r#""text":"hi""#));
//! ```

pub mod config;
mod limit;
pub mod protocol;
pub mod room;
pub mod text;

pub use config::{ChatConfig, GiftKind, RateLimit};
pub use protocol::{
    ClientMessage, DEFAULT_MAX_FRAME_BYTES, ErrorCode, Frame, Identity, ParseError, ServerFrame,
    ServerMessage, StoredMessage, parse_client,
};
pub use room::{ChatRoom, ConnId, JoinError, Outgoing, PersistEvent, Refused};
