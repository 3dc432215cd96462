//! `/chat/ROOM`: the WebSocket transport of the room chat. The chat itself (rooms, limits,
//! moderation, fan-out, persistence) is `roomcast-chat`; this file only moves frames between a
//! socket and a [`ChatConnection`].
//!
//! The host proves itself with a frame `{"type":"auth","token":"rh_..."}` after the welcome
//! (the watch page reads the token from its URL fragment, which no server or CDN log sees); a
//! valid token re-joins the connection as host, which answers with a fresh `welcome`.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use roomcast_chat::{ChatConnection, ChatError, CloseReason};
use serde::Deserialize;
use tracing::{debug, warn};

use crate::http::{AppError, AppState, check_room};

/// The one frame the transport reads itself.
#[derive(Deserialize)]
struct AuthFrame {
    #[serde(rename = "type")]
    kind: String,
    token: String,
}

/// Per-socket read buffer. tungstenite's default (128 KiB) made an idle chat socket cost
/// ~140 KB of server memory; chat frames are at most a few KB and reads loop as needed.
const READ_BUFFER: usize = 4 * 1024;

/// Bytes gathered before a write goes to the socket; a flushed burst is usually smaller.
const WRITE_BUFFER: usize = 16 * 1024;

/// Frames written to a socket per flush at most.
const WRITE_BATCH: usize = 64;

/// Frames whose JSON is larger than the chat's limit still reach the chat (which answers
/// `too_long`) up to this many times the limit; beyond it the socket is closed.
const FRAME_SLACK: usize = 4;

/// `GET /chat/ROOM` with a WebSocket upgrade.
pub async fn upgrade(
    State(st): State<AppState>,
    Path(room): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Result<Response, AppError> {
    check_room(&room)?;
    let slot = st.websocket_slot(peer.ip()).ok_or(AppError::TooMany(
        "too many chat connections from this address",
    ))?;
    // Chat belongs to rooms that exist; otherwise messages could not be kept.
    if st.store().room(&room).await?.is_none() {
        return Err(AppError::NotFound("no such room"));
    }
    let max = st
        .chat()
        .config()
        .max_frame_bytes
        .saturating_mul(FRAME_SLACK);
    Ok(ws
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| async move {
            serve(st, room, socket).await;
            drop(slot);
        }))
}

fn close_for(e: &ChatError) -> (u16, &'static str) {
    match e {
        ChatError::TooManyRooms { .. } | ChatError::RoomFull { .. } => {
            (1013, "chat is full, try again later")
        }
        ChatError::ShuttingDown => (1001, "server shutting down"),
        _ => (1011, "chat unavailable"),
    }
}

async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })))
        .await;
}

async fn serve(st: AppState, room: String, socket: WebSocket) {
    let mut conn = match st.chat().connect(&room, false, None).await {
        Ok(c) => c,
        Err(e) => {
            debug!(room, error = %e, "chat connection refused");
            let (code, reason) = close_for(&e);
            close(socket, code, reason).await;
            return;
        }
    };
    let write_timeout = Duration::from_millis(st.config().chat_server.write_timeout_ms);
    let (mut sink, mut stream) = socket.split();
    let close_reason: Option<CloseReason> = loop {
        tokio::select! {
            biased;
            reason = &mut conn.closed => break Some(reason),
            frame = conn.outgoing.recv() => {
                let Some(frame) = frame else { break Some(CloseReason::INTERNAL) };
                // Feed everything already queued and flush once: one write for a burst
                // instead of one per frame, which is what lets a client keep up with a busy
                // room.
                let mut batch = vec![frame];
                while batch.len() < WRITE_BATCH {
                    match conn.outgoing.try_recv() {
                        Ok(f) => batch.push(f),
                        Err(_) => break,
                    }
                }
                let write = async {
                    for frame in batch {
                        let Ok(text) = Utf8Bytes::try_from(frame.into_bytes()) else {
                            warn!(room, "chat produced a frame that is not UTF-8; dropped");
                            continue;
                        };
                        sink.feed(Message::Text(text)).await?;
                    }
                    sink.flush().await
                };
                match tokio::time::timeout(write_timeout, write).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break None,
                    Err(_) => {
                        metrics::counter!("roomcast_chat_write_timeouts_total").increment(1);
                        break None;
                    }
                }
            }
            msg = stream.next() => {
                let payload: Bytes = match msg {
                    Some(Ok(Message::Text(t))) => Bytes::from(t),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(e)) => {
                        // Oversize frames and protocol violations end here.
                        debug!(room, error = %e, "chat socket error");
                        break Some(CloseReason { code: 1009, reason: "frame too large or malformed" });
                    }
                };
                if let Some(token) = auth_token(&payload) {
                    match authenticate(&st, &room, &token, &mut conn).await {
                        Ok(_) => {}
                        Err(e) => {
                            let (code, reason) = close_for(&e);
                            break Some(CloseReason { code, reason });
                        }
                    }
                    continue;
                }
                if conn.inbound.send(payload).await.is_err() {
                    break Some(CloseReason::INTERNAL);
                }
            }
        }
    };
    if let Some(reason) = close_reason {
        let _ = tokio::time::timeout(
            write_timeout,
            sink.send(Message::Close(Some(CloseFrame {
                code: reason.code,
                reason: Utf8Bytes::from_static(reason.reason),
            }))),
        )
        .await;
    }
    // Dropping `conn` leaves the room.
}

/// The token of an `auth` frame, if this is one. Cheap for ordinary frames: only frames that
/// mention "auth" are parsed here.
fn auth_token(payload: &[u8]) -> Option<String> {
    if !payload.windows(6).any(|w| w == b"\"auth\"") {
        return None;
    }
    let f: AuthFrame = serde_json::from_slice(payload).ok()?;
    (f.kind == "auth").then_some(f.token)
}

/// Re-joins as host when `token` is the room's host token; tells the client otherwise.
async fn authenticate(
    st: &AppState,
    room: &str,
    token: &str,
    conn: &mut ChatConnection,
) -> Result<bool, ChatError> {
    let valid = match st.store().verify_host_token(room, token).await {
        Ok(v) => v,
        Err(e) => {
            warn!(room, error = %e, "cannot check a host token");
            false
        }
    };
    if !valid {
        metrics::counter!("roomcast_chat_host_auth_failed_total").increment(1);
        let _ = conn
            .inbound
            .refuse(roomcast_chat::Refused {
                code: roomcast_chat::ErrorCode::Forbidden,
                message: "invalid host token".into(),
                retry_after_ms: None,
            })
            .await;
        return Ok(false);
    }
    let name = Some(conn.identity.name.clone());
    let host = st.chat().connect(room, true, name).await?;
    // The guest connection leaves when it is replaced.
    *conn = host;
    Ok(true)
}
