//! roomcast chat: a room's WebSocket chat, as a sans-IO core and an async service around it.
//!
//! [`ChatRoom`] is one room's state machine — names, history, rate limits, slow mode, bans,
//! deletions, aggregated likes, gifts with a top-givers board, the lottery and the viewer
//! count. [`protocol`] holds the JSON frames of `/chat/ROOM`. Time is an input (`now_ms`, unix
//! milliseconds) to every call; the core modules (`protocol`, `room`, `config`, `text`) use no
//! tokio, no socket and no database. Whoever drives a room feeds frames in with
//! [`ChatRoom::handle_frame`], delivers the [`Outgoing`] frames it gets back (one shared
//! buffer per frame, however many receivers), calls [`ChatRoom::tick`] at
//! [`ChatRoom::poll_timeout`], and writes [`ChatRoom::take_persist`] to the database.
//!
//! [`service`] is that driver for the server: [`ChatService`] runs one tokio task per room,
//! with bounded per-client queues that disconnect slow clients, and persistence through
//! [`ChatPersistence`] (implemented for `roomcast_store::Store`) off the rooms' hot path. It
//! knows no WebSocket: the HTTP server converts frames to and from its calls.
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
pub mod service;
pub mod text;

pub use config::{ChatConfig, GiftKind, RateLimit};
pub use protocol::{
    ClientMessage, DEFAULT_MAX_FRAME_BYTES, ErrorCode, Frame, Identity, ParseError, ServerFrame,
    ServerMessage, StoredMessage, parse_client,
};
pub use room::{ChatRoom, ConnId, JoinError, Outgoing, PersistEvent, Refused};
pub use service::{
    ChatConnection, ChatError, ChatInbound, ChatPersistence, ChatService, CloseReason, CloseSignal,
    ModerationCommand, NoPersistence, RoomClosed, ServiceLimits,
};
