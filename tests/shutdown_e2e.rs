//! Stopping the server: SIGTERM ends every live playlist with EXT-X-ENDLIST, tells publishers
//! with an RTMP status, closes chat sockets with a close frame and exits cleanly; `kill -9`
//! loses no room, key or chat history.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Server, ServerOptions, poll_text};
use futures_util::{SinkExt, StreamExt};
use roomcast_ingest::publisher::PublishError;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_everything_in_order() {
    let mut server = Server::start();
    let key = server.first_key.clone().unwrap();
    let publisher = common::live_publisher(&server, &key);
    let base = server.url("/live/main/stream.m3u8");
    let playlist = poll_text(&base, Duration::from_secs(15), |t| t.contains("#EXTINF")).await;
    let msn: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .trim()
        .parse::<u64>()
        .unwrap()
        + playlist.matches("#EXTINF").count() as u64;
    let held = tokio::spawn(async move {
        common::client()
            .get(format!("{base}?_HLS_msn={}", msn + 1))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/chat/main", server.http))
        .await
        .unwrap();
    ws.send(Message::Text(
        r#"{"type":"chat","text":"last words"}"#.into(),
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let status = tokio::task::spawn_blocking(move || {
        let s = server.stop();
        (s, server)
    })
    .await
    .unwrap();
    let (exit, server) = status;
    assert!(
        exit.is_some_and(|s| s.success()),
        "exit status {exit:?}\n{}",
        server.logs()
    );

    // The publisher was told, with a status, before its socket closed.
    match publisher.await.unwrap() {
        Err(PublishError::Disconnected {
            status: Some(s), ..
        }) => {
            assert_eq!(s.code, "NetStream.Unpublish.Success", "{s:?}")
        }
        other => panic!("publisher should see a status then a close: {other:?}"),
    }
    // The chat socket got a close frame saying the server is going away.
    let mut close_code = None;
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Close(Some(f)) = m {
            close_code = Some(u16::from(f.code));
            break;
        }
    }
    assert_eq!(close_code, Some(1001));
    // The held request was answered (the playlist, ended) rather than cut off.
    let held = held.await.unwrap();
    assert_eq!(held.ok(), Some(200));
    assert!(server.logs().contains("stopped"), "{}", server.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_restart_keeps_rooms_keys_and_history() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let server = Server::start_with(ServerOptions {
        dir: Some(dir.clone()),
        ..ServerOptions::default()
    });
    let key = server.add_key("studio");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/chat/studio", server.http))
        .await
        .unwrap();
    ws.send(Message::Text(
        r#"{"type":"chat","text":"before the crash"}"#.into(),
    ))
    .await
    .unwrap();
    // Wait until the message is back to us (and so in the room's persistence queue), then
    // give the writer a moment.
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Text(t) = m
            && t.contains("before the crash")
        {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = server.pid();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    drop(server);

    let server = Server::start_with(ServerOptions {
        dir: Some(dir),
        ..ServerOptions::default()
    });
    let rooms = server.cli(&["room", "list"]);
    assert!(String::from_utf8_lossy(&rooms.stdout).contains("studio"));
    server
        .publish_fixture(&key, "aac-audio-only-48k.flv")
        .await
        .expect("the key still publishes after kill -9");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/chat/studio", server.http))
        .await
        .unwrap();
    let Some(Ok(Message::Text(welcome))) = ws.next().await else {
        panic!("no welcome")
    };
    assert!(
        welcome.contains("before the crash"),
        "history lost: {welcome}"
    );
}
