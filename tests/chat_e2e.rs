//! The room chat over real WebSockets against the real binary: delivery and isolation, history
//! on join and across a restart, hostile frames, host authentication, and moderation from the
//! CLI reaching every page.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Server, ServerOptions};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Server, room: &str) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/chat/{room}", server.http))
        .await
        .unwrap();
    let welcome = next_of(&mut ws, "welcome").await;
    (ws, welcome)
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next server message of `kind`, skipping others (presence updates and the like).
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert!(v["id"].as_u64().is_some(), "server message without id: {v}");
                    assert!(v["ts"].as_i64().is_some(), "server message without ts: {v}");
                    if v["type"] == kind {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended waiting for {kind}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} within 10 s"))
}

/// Asserts no message of `kind` arrives within `wait`.
async fn none_of(ws: &mut Ws, kind: &str, wait: Duration) {
    let r = tokio::time::timeout(wait, next_of(ws, kind)).await;
    assert!(r.is_err(), "unexpected {kind}: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_delivery_history_moderation_and_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let server = Server::start_with(ServerOptions {
        dir: Some(dir.clone()),
        ..ServerOptions::default()
    });
    server.add_key("other");

    let (mut a, wa) = connect(&server, "main").await;
    let (mut b, _) = connect(&server, "main").await;
    let (mut elsewhere, _) = connect(&server, "other").await;
    assert!(
        wa["you"]["name"].as_str().unwrap().starts_with("guest"),
        "{wa}"
    );

    // Names: a valid one is taken, then unique in the room.
    send(&mut a, json!({"type": "join", "name": "alice"})).await;
    assert_eq!(next_of(&mut a, "identity").await["you"]["name"], "alice");
    send(&mut b, json!({"type": "join", "name": "ALICE"})).await;
    assert_eq!(next_of(&mut b, "error").await["code"], "name_taken");

    // Delivery to the room, and to nobody outside it.
    let payload = "<img src=x onerror=alert(1)> hi";
    send(&mut a, json!({"type": "chat", "text": payload})).await;
    let got = next_of(&mut b, "chat").await;
    assert_eq!(
        got["text"], payload,
        "text is data, passed through verbatim"
    );
    assert_eq!(got["user"], "alice");
    let msg_id = got["id"].as_u64().unwrap();
    none_of(&mut elsewhere, "chat", Duration::from_millis(500)).await;

    // Hostile frames get an error and leave the server working.
    a.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(next_of(&mut a, "error").await["code"], "bad_request");
    a.send(Message::Text(
        json!({"type": "chat", "text": "x".repeat(9000)})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_of(&mut a, "error").await["code"], "too_long");
    send(
        &mut a,
        json!({"type": "danmaku", "text": "bullet", "color": "red"}),
    )
    .await;
    assert_eq!(next_of(&mut a, "error").await["code"], "bad_request");

    // Viewers: two chat sockets in main.
    let rooms: Value = common::client()
        .get(server.url("/api/rooms/main"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rooms["viewers"], 2, "{rooms}");

    // A host token from the CLI makes a connection host; a wrong one is refused.
    let out = server.cli(&["room", "token", "main"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let token = text
        .split_whitespace()
        .find(|w| w.starts_with("rh_"))
        .unwrap()
        .to_owned();
    send(&mut b, json!({"type": "auth", "token": "rh_bogus_bogus"})).await;
    assert_eq!(next_of(&mut b, "error").await["code"], "forbidden");
    send(&mut b, json!({"type": "auth", "token": token})).await;
    let host_welcome = next_of(&mut b, "welcome").await;
    assert_eq!(host_welcome["you"]["host"], true, "{host_welcome}");
    assert!(
        !server.logs().contains(&token),
        "host token reached the log"
    );

    // The host deletes a message: everyone's page is told.
    send(&mut b, json!({"type": "delete", "id": msg_id})).await;
    assert_eq!(next_of(&mut a, "delete").await["message_id"], msg_id);

    // Moderation from the CLI goes through the running server.
    send(&mut a, json!({"type": "chat", "text": "still here"})).await;
    next_of(&mut b, "chat").await;
    let out = server.cli(&["chat", "ban", "main", "alice"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("done"));
    send(&mut a, json!({"type": "chat", "text": "am I banned?"})).await;
    assert_eq!(next_of(&mut a, "error").await["code"], "banned");

    // History survives a restart; deleted messages stay deleted; bans persist.
    drop((a, b, elsewhere));
    let mut server = server;
    server.stop();
    let server = Server::start_with(ServerOptions {
        dir: Some(dir.clone()),
        ..ServerOptions::default()
    });
    let (mut c, welcome) = connect(&server, "main").await;
    let history = welcome["history"].as_array().unwrap();
    assert!(
        history.iter().all(|m| m["text"] != payload),
        "deleted message came back: {welcome}"
    );
    assert!(
        !history.iter().any(|m| m["text"] == "still here"),
        "a ban deletes the user's messages"
    );
    send(&mut c, json!({"type": "join", "name": "Alice"})).await;
    next_of(&mut c, "identity").await;
    send(&mut c, json!({"type": "chat", "text": "back again"})).await;
    assert_eq!(
        next_of(&mut c, "error").await["code"],
        "banned",
        "the ban survived the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_room_and_bad_names_are_refused_before_upgrade() {
    let server = Server::start();
    let r = tokio_tungstenite::connect_async(format!("ws://{}/chat/nosuchroom", server.http)).await;
    assert!(r.is_err());
    let r = common::client()
        .get(server.url("/chat/Bad%20Name"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_page_chat_in_two_browsers() {
    use common::{repo_root, run_with_timeout};

    let server = Server::start();
    let key = server.first_key.clone().unwrap();
    let publisher = common::live_publisher(&server, &key);
    common::poll_text(
        &server.url("/live/main/stream.m3u8"),
        Duration::from_secs(15),
        |t| t.contains("#EXTINF"),
    )
    .await;
    let out = server.cli(&["room", "token", "main"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let token = text
        .split_whitespace()
        .find(|w| w.starts_with("rh_"))
        .unwrap()
        .to_owned();

    let shot = std::env::var("ROOMCAST_SCREENSHOT").unwrap_or_default();
    let run = run_with_timeout(
        std::process::Command::new("node")
            .arg(repo_root().join("tests/browser/chat.mjs"))
            .arg(format!("http://{}", server.http))
            .arg("main")
            .arg(&token)
            .arg(&shot),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "browser: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let r: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(r["errors"], json!([]), "{r}");
    assert_eq!(r["hostIsHost"], true, "{r}");
    assert_eq!(r["guestHasNoHostControls"], true, "{r}");
    assert_eq!(r["overlayHiddenWhilePlaying"], true, "{r}");
    assert_eq!(r["delivered"], true, "{r}");
    assert_eq!(r["xssInert"], true, "{r}");
    assert_eq!(r["danmaku"], true, "{r}");
    assert_eq!(r["deleted"], true, "{r}");
    publisher.abort();
}
