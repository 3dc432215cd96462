//! Hostile clients against the real binary: slowloris headers, a viewer that reads nothing,
//! connection floods from one address, and the stream key through every log level.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, ServerOptions, fixture, playlist_uris, poll_text};
use roomcast_ingest::publisher::{PublishOptions, publish_flv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn server_with(sets: &[&str], rust_log: &str) -> Server {
    let mut args = vec!["--set".to_owned(), "hls.offline_grace_ms=3000".to_owned()];
    for s in sets {
        args.push("--set".into());
        args.push((*s).into());
    }
    Server::start_with(ServerOptions {
        args,
        env: vec![("RUST_LOG".into(), rust_log.into())],
        dir: None,
    })
}

/// Reads until EOF or error; returns the bytes read and whether the peer closed in `limit`.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (usize, bool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0;
    let r = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => n += k,
            }
        }
    })
    .await;
    (n, r.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_stalled_readers_are_cut_off() {
    let server = server_with(
        &[
            "http.header_read_timeout_ms=1000",
            "http.write_stall_timeout_ms=1000",
        ],
        "info",
    );
    // Headers that never finish.
    let mut s = TcpStream::connect(server.http).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let t0 = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "a slowloris connection stayed open");
    eprintln!(
        "slowloris connection closed after {} ms",
        t0.elapsed().as_millis()
    );

    // A viewer that asks for lots of media and reads none of it.
    let key = server.first_key.clone().unwrap();
    server
        .publish_fixture(&key, "h264-main-aac48k-1080p60.flv")
        .await
        .unwrap();
    let playlist = poll_text(
        &server.url("/live/main/stream.m3u8"),
        Duration::from_secs(10),
        |t| t.contains("#EXT-X-ENDLIST"),
    )
    .await;
    let (_, segs) = playlist_uris(&playlist);
    let seg = &segs[0];
    let one = common::get_bytes(&server.url(&format!("/live/main/{seg}")))
        .await
        .len();
    let mut s = TcpStream::connect(server.http).await.unwrap();
    let requests = 400;
    let req = format!("GET /live/main/{seg} HTTP/1.1\r\nHost: x\r\n\r\n").repeat(requests);
    let _ = s.write_all(req.as_bytes()).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (n, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "the stalled connection was not closed");
    assert!(
        n < requests * one,
        "all {requests} responses were delivered: nothing stalled?"
    );
    // The server is unharmed.
    let r = common::client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_connection_limits() {
    let server = server_with(
        &[
            "http.max_connections_per_ip=4",
            "http.max_websockets_per_ip=2",
        ],
        "info",
    );
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(server.http).await.unwrap());
    }
    let mut fifth = TcpStream::connect(server.http).await.unwrap();
    let (_, closed) = read_until_closed(&mut fifth, Duration::from_secs(3)).await;
    assert!(closed, "the connection over the per-address limit was kept");
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = common::client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a freed place is usable again");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let url = format!("ws://{}/chat/main", server.http);
    let a = tokio_tungstenite::connect_async(&url).await.unwrap();
    let b = tokio_tungstenite::connect_async(&url).await.unwrap();
    let c = tokio_tungstenite::connect_async(&url).await;
    assert!(c.is_err(), "third chat socket from one address accepted");
    drop((a, b));
    let metrics = common::get_text(&server.url("/metrics")).await;
    assert!(
        metrics.contains("max_connections_per_ip"),
        "refusals are counted"
    );
    assert!(
        metrics.contains("max_websockets_per_ip"),
        "refusals are counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_key_never_leaks_at_any_log_level() {
    let server = server_with(&[], "trace");
    let key = server.first_key.clone().unwrap();
    let secret = key.rsplit('_').next().unwrap().to_owned();
    assert!(secret.len() >= 20);
    let addr = server.rtmp;
    let k = key.clone();
    let publisher = tokio::spawn(async move {
        let opts = PublishOptions {
            realtime: true,
            loops: 3,
            ..PublishOptions::default()
        };
        publish_flv(
            addr,
            "live",
            &k,
            fixture("h264-high-aac48k-720p30.flv"),
            &opts,
        )
        .await
    });
    poll_text(
        &server.url("/live/main/stream.m3u8"),
        Duration::from_secs(15),
        |t| t.contains("#EXTINF"),
    )
    .await;
    // A wrong key with the right lookup part, and the key pasted into the app name.
    let wrong = format!("{}{}", &key[..key.len() - 4], "zzzz");
    let _ = server
        .publish_fixture(&wrong, "aac-audio-only-48k.flv")
        .await;
    let _ = publish_flv(
        server.rtmp,
        &format!("live/{key}"),
        &key,
        fixture("aac-audio-only-48k.flv"),
        &PublishOptions::default(),
    )
    .await;
    let c = common::client();
    let mut seen = String::new();
    for path in [
        "/api/rooms",
        "/api/rooms/main",
        "/metrics",
        "/live/main/index.m3u8",
        "/live/main/stream.m3u8",
    ] {
        seen.push_str(
            &c.get(server.url(path))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    let list = server.cli(&["key", "list", "--json"]);
    seen.push_str(&String::from_utf8_lossy(&list.stdout));
    publisher.abort();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = server.logs();
    assert!(
        logs.lines().count() > 20,
        "trace logging produced almost nothing"
    );
    // The first start prints the key on stdout once, for the operator; nowhere else.
    for (what, text) in [
        ("logs", &logs),
        ("API, metrics, playlists, key list", &seen),
    ] {
        assert!(
            !text.contains(&secret),
            "the stream key's secret appears in the {what}"
        );
        assert!(
            !text.contains(&wrong[wrong.len() - 20..]),
            "a presented key appears in the {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_client_that_reads_nothing_is_dropped_without_stalling_the_room() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let server = server_with(
        &[
            "chat_limits.client_queue=256",
            "chat_server.write_timeout_ms=1000",
            "chat.chat_rate={max=100000,window_ms=1000}",
            "chat.max_text_chars=4000",
        ],
        "info",
    );
    let url = format!("ws://{}/chat/main", server.http);
    // The stalled viewer: a tiny receive buffer, and it never reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(server.http).await.unwrap();
    let (stalled, _) = tokio_tungstenite::client_async(&url, stream).await.unwrap();
    let (sender, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut sender, mut echoes) = sender.split();
    // The sender reads its echoes like any page does; only the stalled client does not.
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = echoes.next().await {} });
    let (mut watcher, _) = tokio_tungstenite::connect_async(&url).await.unwrap();

    // 12 MB in all: more than the kernel's socket buffers can hide.
    let text = "x".repeat(3900);
    let total = 3000;
    let send = async {
        for i in 0..total {
            let m = serde_json::json!({"type": "chat", "text": format!("{i} {text}")});
            sender
                .send(Message::Text(m.to_string().into()))
                .await
                .unwrap();
            // A busy room (about 1,000 messages a second, 4 MB/s to each reader), not one
            // burst that no reader could absorb.
            if i % 4 == 3 {
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
        }
    };
    // The healthy watcher keeps receiving every message while the stalled one is dropped.
    let watch = async {
        let mut got = 0;
        while got < total {
            match tokio::time::timeout(Duration::from_secs(20), watcher.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"type\":\"chat\"") => got += 1,
                Ok(Some(Ok(_))) => {}
                other => panic!("watcher stopped after {got}: {other:?}"),
            }
        }
        got
    };
    let ((), got) = tokio::join!(send, watch);
    assert_eq!(got, total);
    drain.abort();

    // Now read what the stalled client was sent: it ends early, with the slow-consumer close
    // or a cut connection, never all 3000 messages.
    let (_, mut rx) = stalled.split();
    let mut chats = 0;
    let mut close = None;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), rx.next()).await {
        match m {
            Ok(Message::Text(t)) if t.contains("\"type\":\"chat\"") => chats += 1,
            Ok(Message::Close(f)) => {
                close = f.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(
        chats < total,
        "the stalled client got everything ({chats}): nothing was dropped"
    );
    eprintln!("stalled chat client: {chats} of {total} messages, then close {close:?}");
    let metrics = common::get_text(&server.url("/metrics")).await;
    assert!(
        metrics.contains("roomcast_chat_dropped_slow_total")
            || metrics.contains("roomcast_chat_write_timeouts_total"),
        "the drop is counted"
    );
}
