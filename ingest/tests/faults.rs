//! Publishers that fail: one that stalls with its socket open, one killed in the middle of a
//! message. Each is closed, its room goes offline (its `Publisher` is dropped, so the hub ends
//! the room's media stream), what it sent before the fault is delivered intact, nothing is left
//! counted, and a publisher in another room never notices.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use roomcast_ingest::IngestConfig;
use roomcast_ingest::publisher::Connection;
use roomcast_media::flv::{FlvReader, FlvTagKind};

const FILE: &str = "h264-high-aac48k-720p30.flv";

/// A short idle timeout, for the stall to be noticed quickly.
fn stall_config() -> IngestConfig {
    IngestConfig {
        idle_timeout: Duration::from_millis(500),
        ..IngestConfig::default()
    }
}

/// Queues the first `n` media tags of `FILE`.
fn queue_fixture(c: &mut Connection, n: usize) {
    for tag in FlvReader::new(fixture(FILE))
        .unwrap()
        .map(Result::unwrap)
        .filter(|t| matches!(t.kind, FlvTagKind::Audio | FlvTagKind::Video))
        .take(n)
    {
        c.queue_media(tag.kind == FlvTagKind::Video, tag.timestamp, tag.body)
            .unwrap();
    }
}

async fn publishing(server: &Server) -> Connection {
    let mut c = Connection::open(server.addr).await.unwrap();
    c.handshake().await.unwrap();
    c.connect_app("live", 4096).await.unwrap();
    c.publish(KEY_MAIN).await.unwrap();
    c
}

/// What the hub delivered is exactly the start of the file, and at least `min_video` frames.
fn assert_prefix(got: &Summary, min_video: usize) {
    let want = expected(&fixture(FILE));
    assert_eq!(got.video_configs, want.video_configs);
    assert_eq!(got.audio_configs, want.audio_configs);
    assert!(
        got.video.len() >= min_video,
        "{} video frames delivered",
        got.video.len()
    );
    assert_eq!(got.video[..], want.video[..got.video.len()]);
    assert_eq!(got.audio[..], want.audio[..got.audio.len()]);
}

async fn assert_nothing_left(server: &Server) {
    let ok = server
        .wait_for(Duration::from_secs(5), |s| {
            s.stats.publishers() == 1 && s.stats.connections() == 1
        })
        .await;
    // Only the healthy publisher is left.
    assert!(
        ok,
        "publishers {}, connections {}",
        server.stats.publishers(),
        server.stats.connections()
    );
    assert_eq!(server.hub.live().len(), 1);
}

#[tokio::test]
async fn stalled_publisher_is_closed_by_idle_timeout_and_its_room_goes_offline() {
    let server = Server::with_config(stall_config()).await;
    let healthy = Healthy::start(&server).await;
    let collector = collect_next_publish(&server.hub, "main");
    let mut c = publishing(&server).await;
    queue_fixture(&mut c, 60);
    c.flush().await.unwrap();
    server.wait_live("main").await;
    let stalled_at = Instant::now();

    // It stops sending and keeps its socket open (and keeps reading, like a hung encoder
    // whose kernel still acknowledges).
    let took = c.wait_closed(Duration::from_secs(5)).await.unwrap();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
    // The room's media stream ends: the Publisher was dropped.
    let got = tokio::time::timeout(Duration::from_secs(5), collector)
        .await
        .expect("the room's stream never ended")
        .unwrap();
    assert!(!server.hub.is_live("main"));
    assert!(stalled_at.elapsed() < Duration::from_secs(5));
    assert_prefix(&got, 20);
    assert_nothing_left(&server).await;
    healthy.assert_progress().await;

    // The room can go live again.
    let mut again = publishing(&server).await;
    server.wait_live("main").await;
    again.finish().await.unwrap();
    healthy.publisher.abort();
    server.stop().await;
}

#[tokio::test]
async fn publisher_killed_mid_message_ends_its_room_and_leaves_nothing() {
    // The default idle timeout (10 s): the room must end at the close, not by a timeout.
    let server = Server::with_config(IngestConfig::default()).await;
    let healthy = Healthy::start(&server).await;
    for round in 0..3u64 {
        let collector = collect_next_publish(&server.hub, "main");
        let mut c = publishing(&server).await;
        queue_fixture(&mut c, 40);
        c.flush().await.unwrap();
        server.wait_live("main").await;
        // A large keyframe, cut at a different place each round (within the chunk header,
        // within its first chunk, a few chunks in), then the process dies.
        let mut keyframe = vec![0x17, 1, 0, 0, 0];
        keyframe.extend((0..60_000u32).map(|i| (i * 7 + round as u32) as u8));
        c.queue_media(true, 2000, Bytes::from(keyframe)).unwrap();
        let mut partial = c.take_queued();
        let cut = [5, 3000, 30_000][round as usize];
        partial.truncate(cut);
        c.send_raw(&partial).await.unwrap();
        let killed_at = Instant::now();
        drop(c);

        let got = tokio::time::timeout(Duration::from_secs(5), collector)
            .await
            .expect("the room's stream never ended")
            .unwrap();
        assert!(
            killed_at.elapsed() < Duration::from_secs(5),
            "the room ended by a timeout, not at the close: {:?}",
            killed_at.elapsed()
        );
        assert!(!server.hub.is_live("main"));
        // Everything before the cut arrived; the cut message did not.
        assert_prefix(&got, 10);
        assert!(got.video.iter().all(|f| f.dts < 2000));
        assert_nothing_left(&server).await;
        healthy.assert_progress().await;
    }
    healthy.publisher.abort();
    server.stop().await;
}
