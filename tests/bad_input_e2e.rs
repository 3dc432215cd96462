//! Hostile bytes on the public RTMP port of the real binary: each bad connection is closed with
//! a log line, the process stays up, and a healthy stream in another room keeps going.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{Server, poll_text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `bytes`, then waits (bounded) for the server to close the connection.
async fn send_and_expect_close(server: &Server, bytes: &[u8]) {
    let mut s = TcpStream::connect(server.rtmp).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut buf = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "server kept a hostile connection open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_does_not_disturb_other_rooms() {
    let server = Server::start();
    let key = server.first_key.clone().unwrap();
    let healthy = common::live_publisher(&server, &key);
    let stream = server.url("/live/main/stream.m3u8");
    poll_text(&stream, Duration::from_secs(15), |t| t.contains("#EXTINF")).await;

    // Wrong RTMP version byte, then plain garbage.
    send_and_expect_close(&server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut noise = vec![3u8];
    noise.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    send_and_expect_close(&server, &noise).await;
    // A truncated handshake: the handshake timeout closes it.
    send_and_expect_close(&server, &[3u8; 100]).await;

    // The healthy stream still produces new segments.
    let before = poll_text(&stream, Duration::from_secs(5), |_| true).await;
    let seq = |t: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
            + t.matches("#EXTINF").count() as u64
    };
    let n = seq(&before);
    poll_text(&stream, Duration::from_secs(10), |t| seq(t) > n).await;
    assert!(!healthy.is_finished(), "healthy publisher was disturbed");
    healthy.abort();
    assert!(!server.logs().contains("panicked"), "{}", server.logs());
}
