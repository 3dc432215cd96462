//! Broken and hostile input: each bad connection is closed (or the bad message dropped, as
//! designed), nothing panics, and a healthy publisher in another room keeps delivering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use roomcast_ingest::IngestConfig;
use roomcast_ingest::chunk::{ChunkEncoder, MessageHeader, msg_type};
use roomcast_ingest::publisher::{Connection, PublishError};
use roomcast_media::flv::{FlvReader, FlvTagKind};

/// Names of the threads that panicked. Each test runs its server on its own thread (a
/// current-thread runtime), so a panic in a connection task is recorded under the test's name.
static PANICKED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn watch_panics() {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("?").to_owned();
            PANICKED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(name);
            default(info);
        }));
    });
}

fn panicked_here() -> bool {
    let me = std::thread::current().name().unwrap_or("?").to_owned();
    PANICKED.lock().unwrap().contains(&me)
}

fn config() -> IngestConfig {
    IngestConfig {
        handshake_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(500),
        // Every client here is 127.0.0.1, up to 40 at a time.
        max_connections_per_ip: 1000,
        ..IngestConfig::default()
    }
}

async fn setup() -> (Server, Healthy) {
    watch_panics();
    let server = Server::with_config(config()).await;
    let healthy = Healthy::start(&server).await;
    (server, healthy)
}

async fn finish(server: Server, healthy: Healthy) {
    healthy.assert_progress().await;
    assert!(!panicked_here(), "something panicked");
    healthy.publisher.abort();
    server.stop().await;
}

async fn connected(server: &Server) -> Connection {
    let mut c = Connection::open(server.addr).await.unwrap();
    c.handshake().await.unwrap();
    c.connect_app("live", 4096).await.unwrap();
    c
}

async fn publishing(server: &Server) -> Connection {
    let mut c = connected(server).await;
    c.publish(KEY_MAIN).await.unwrap();
    c
}

fn encode(h: MessageHeader, payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    ChunkEncoder::new().encode(&h, payload, &mut out);
    out
}

fn control(type_id: u8, payload: &[u8]) -> BytesMut {
    encode(
        MessageHeader {
            csid: 2,
            timestamp: 0,
            type_id,
            stream_id: 0,
        },
        payload,
    )
}

/// The connection is closed by the server within `within`.
async fn assert_closed(c: &mut Connection, within: Duration) -> Duration {
    c.wait_closed(within)
        .await
        .unwrap_or_else(|e| panic!("not closed within {within:?}: {e}"))
}

/// Deterministic pseudo-random bytes (xorshift), so failures can be replayed.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn truncated_handshake() {
    let (server, healthy) = setup().await;
    let mut c = Connection::open(server.addr).await.unwrap();
    let mut partial = vec![3u8];
    partial.extend_from_slice(&garbage(1, 700));
    c.send_raw(&partial).await.unwrap();
    drop(c);
    // And one that stalls: handshake_timeout closes it.
    let mut c = Connection::open(server.addr).await.unwrap();
    c.send_raw(&partial).await.unwrap();
    let started = Instant::now();
    assert_closed(&mut c, Duration::from_secs(2)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "closed before the timeout: {took:?}"
    );
    finish(server, healthy).await;
}

#[tokio::test]
async fn silent_connection_hits_handshake_timeout() {
    let (server, healthy) = setup().await;
    let mut c = Connection::open(server.addr).await.unwrap();
    let took = assert_closed(&mut c, Duration::from_secs(2)).await;
    assert!(took >= Duration::from_millis(250), "{took:?}");
    finish(server, healthy).await;
}

#[tokio::test]
async fn garbage_instead_of_a_handshake() {
    let (server, healthy) = setup().await;
    for bytes in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01],
        garbage(2, 5000),
    ] {
        let mut c = Connection::open(server.addr).await.unwrap();
        let _ = c.send_raw(&bytes).await;
        assert_closed(&mut c, Duration::from_secs(1)).await;
    }
    finish(server, healthy).await;
}

#[tokio::test]
async fn garbage_after_the_handshake() {
    let (server, healthy) = setup().await;
    let mut tasks = Vec::new();
    for seed in 0..40u64 {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Connection::open(addr).await.unwrap();
            c.handshake().await.unwrap();
            let _ = c
                .send_raw(&garbage(seed + 100, 64 + (seed as usize * 97) % 4000))
                .await;
            // Closed at once (bad header) or by idle_timeout (waiting for bytes that never come).
            assert_closed(&mut c, Duration::from_secs(3)).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    finish(server, healthy).await;
}

#[tokio::test]
async fn absurd_chunk_size() {
    let (server, healthy) = setup().await;
    for size in [0x7fff_ffffu32, 64 * 1024 * 1024, 0] {
        let mut c = connected(&server).await;
        c.send_raw(&control(msg_type::SET_CHUNK_SIZE, &size.to_be_bytes()))
            .await
            .unwrap();
        assert_closed(&mut c, Duration::from_secs(1)).await;
    }
    finish(server, healthy).await;
}

#[tokio::test]
async fn absurd_message_length() {
    let (server, healthy) = setup().await;
    let mut c = publishing(&server).await;
    // A header announcing 16 MiB - 1 bytes of video, and only a few of them.
    let header = [
        0x06,
        0,
        0,
        0,
        0xff,
        0xff,
        0xff,
        msg_type::VIDEO,
        1,
        0,
        0,
        0,
        0x17,
        0,
        0,
        0,
        0,
    ];
    c.send_raw(&header).await.unwrap();
    let took = assert_closed(&mut c, Duration::from_secs(1)).await;
    assert!(
        took < Duration::from_millis(400),
        "closed by a timeout instead: {took:?}"
    );
    finish(server, healthy).await;
}

#[tokio::test]
async fn deeply_nested_amf_command() {
    let (server, healthy) = setup().await;
    let mut c = Connection::open(server.addr).await.unwrap();
    c.handshake().await.unwrap();
    let mut body = vec![2, 0, 7];
    body.extend_from_slice(b"connect");
    body.extend_from_slice(&[0; 9]);
    for _ in 0..200_000 {
        body.extend_from_slice(&[3, 0, 1, b'a']);
    }
    let msg = encode(
        MessageHeader {
            csid: 3,
            timestamp: 0,
            type_id: msg_type::COMMAND_AMF0,
            stream_id: 0,
        },
        &body,
    );
    let _ = c.send_raw(&msg).await;
    assert_closed(&mut c, Duration::from_secs(1)).await;
    finish(server, healthy).await;
}

#[tokio::test]
async fn unknown_video_codec_closes_with_a_status() {
    let (server, healthy) = setup().await;
    // Sorenson H.263 (codec id 2), then an Enhanced RTMP HEVC header.
    for body in [vec![0x12, 0, 0, 0, 0, 0], b"\x90hvc1\x01\x02".to_vec()] {
        let mut c = publishing(&server).await;
        c.queue_message(8, msg_type::VIDEO, 0, &body);
        c.flush().await.unwrap();
        assert_closed(&mut c, Duration::from_secs(1)).await;
        let last = c.statuses().last().unwrap();
        assert_eq!(last.level, "error");
        assert_eq!(last.code, "NetStream.Publish.Failed");
    }
    finish(server, healthy).await;
}

/// Sends the first `n` media tags of a fixture through the session.
fn queue_fixture(c: &mut Connection, name: &str, n: usize) {
    for tag in FlvReader::new(fixture(name))
        .unwrap()
        .map(Result::unwrap)
        .filter(|t| matches!(t.kind, FlvTagKind::Audio | FlvTagKind::Video))
        .take(n)
    {
        c.queue_media(tag.kind == FlvTagKind::Video, tag.timestamp, tag.body)
            .unwrap();
    }
}

#[tokio::test]
async fn bad_messages_are_dropped_and_the_stream_goes_on() {
    let (server, healthy) = setup().await;
    let collector = collect_next_publish(&server.hub, "main");
    let mut c = publishing(&server).await;
    // A video frame before any sequence header, an MP3 audio frame, truncated tags, an
    // unknown AVC packet type, and bad NAL unit lengths: each dropped alone.
    c.queue_media(
        true,
        0,
        bytes::Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]),
    )
    .unwrap();
    c.queue_media(
        false,
        0,
        bytes::Bytes::from_static(&[0x2f, 0xff, 0xfb, 0x90]),
    )
    .unwrap();
    c.queue_media(false, 0, bytes::Bytes::new()).unwrap();
    c.queue_media(true, 0, bytes::Bytes::from_static(&[0x17]))
        .unwrap();
    c.flush().await.unwrap();
    queue_fixture(&mut c, "h264-baseline-aac44k-mono-360p25.flv", 60);
    c.queue_media(true, 2000, bytes::Bytes::from_static(&[0x27, 9, 0, 0, 0]))
        .unwrap();
    c.queue_media(
        true,
        2000,
        bytes::Bytes::from_static(&[0x27, 1, 0, 0, 0, 0, 0, 0, 99, 1]),
    )
    .unwrap();
    c.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(c.poll_incoming().unwrap(), "connection was closed");
    c.finish().await.unwrap();
    let got = collector.await.unwrap();
    let want_all = expected(&fixture("h264-baseline-aac44k-mono-360p25.flv"));
    assert_eq!(got.video_configs.len(), 1);
    assert_eq!(got.audio_configs.len(), 1);
    assert!(got.video.len() > 10);
    assert_eq!(got.video[..], want_all.video[..got.video.len()]);
    assert_eq!(got.audio[..], want_all.audio[..got.audio.len()]);
    finish(server, healthy).await;
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let (server, healthy) = setup().await;
    let mut c = connected(&server).await;
    let took = assert_closed(&mut c, Duration::from_secs(2)).await;
    assert!(took >= Duration::from_millis(400), "{took:?}");
    finish(server, healthy).await;
}

#[tokio::test]
async fn publisher_killed_mid_message() {
    let (server, healthy) = setup().await;
    let mut c = publishing(&server).await;
    server.wait_live("main").await;
    queue_fixture(&mut c, "h264-high-aac48k-720p30.flv", 3);
    let mut keyframe = vec![0x17, 1, 0, 0, 0];
    keyframe.extend_from_slice(&garbage(7, 50_000));
    c.queue_media(true, 100, bytes::Bytes::from(keyframe))
        .unwrap();
    let mut partial = c.take_queued();
    partial.truncate(partial.len() - 20_000);
    c.send_raw(&partial).await.unwrap();
    drop(c);
    for _ in 0..200 {
        if !server.hub.is_live("main") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!server.hub.is_live("main"), "room still live");
    finish(server, healthy).await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once() {
    watch_panics();
    let server = Server::with_config(IngestConfig {
        max_connections: 3,
        ..IngestConfig::default()
    })
    .await;
    let healthy = Healthy::start(&server).await;
    let a = connected(&server).await;
    let _b = connected(&server).await;
    let mut over = Connection::open(server.addr).await.unwrap();
    let r = over.handshake().await;
    assert!(
        matches!(r, Err(PublishError::Handshake(_) | PublishError::Io { .. })),
        "{r:?}"
    );
    drop(a);
    // The slot frees once the server has closed that connection.
    let mut ok = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut c = Connection::open(server.addr).await.unwrap();
        if c.handshake().await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "slot never freed");
    finish(server, healthy).await;
}
