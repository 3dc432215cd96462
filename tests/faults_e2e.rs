//! Faults against the real binary: a thousand RTMP connect/drop cycles leave no memory or
//! connection behind, and a database that goes away refuses publishes with a clear error while
//! the server stays up.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{Server, ServerOptions, fixture};
use roomcast_ingest::publisher::PublishError;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_connect_drop_cycles_leave_nothing_behind() {
    let server = Server::start_with(ServerOptions {
        args: vec!["--set".into(), "rtmp.max_connections_per_ip=100".into()],
        ..ServerOptions::default()
    });
    let key = server.first_key.clone().unwrap();
    // Warm up allocator pools with one real publish first, so growth below is not start-up.
    server
        .publish_fixture(&key, "h264-main-video-only-360p30.flv")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kb(server.pid());
    for i in 0..1000u32 {
        let mut s = TcpStream::connect(server.rtmp).await.unwrap();
        match i % 4 {
            0 => {}
            1 => {
                let _ = s.write_all(&[3]).await;
            }
            2 => {
                let _ = s.write_all(&[3u8; 1537]).await;
            }
            _ => {
                let _ = s.write_all(&[3u8; 900]).await;
            }
        }
        drop(s);
    }
    // Every connection is accounted for again.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while common::metric(&server, "roomcast_ingest_connections").await > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "RTMP connections left open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = rss_kb(server.pid());
    eprintln!("server RSS around 1,000 RTMP connect/drop cycles: {before} kB -> {after} kB");
    assert!(
        after < before + 20 * 1024,
        "RSS grew from {before} kB to {after} kB"
    );
    // And it still serves.
    server
        .publish_fixture(&key, "aac-audio-only-48k.flv")
        .await
        .unwrap();
}

fn psql(sql: &str) -> bool {
    std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "postgres://postgres@127.0.0.1:5432/test",
            "-c",
            sql,
        ])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_refuses_publishes_and_the_server_stays_up() {
    if std::env::var("ROOMCAST_TEST_PG_URL").as_deref() == Ok("skip") {
        eprintln!("skipped: ROOMCAST_TEST_PG_URL=skip");
        return;
    }
    // A role of its own, whose schema (named after it) is its default search path.
    let role = format!("rc_outage_{}", std::process::id());
    assert!(psql(&format!(
        "CREATE ROLE {role} LOGIN; CREATE SCHEMA AUTHORIZATION {role};"
    )));
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let r = &self.0;
            psql(&format!("ALTER ROLE {r} LOGIN"));
            psql(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{r}'"
            ));
            psql(&format!("DROP SCHEMA {r} CASCADE; DROP ROLE {r};"));
        }
    }
    let _cleanup = Cleanup(role.clone());
    let url = format!("postgres://{role}@127.0.0.1:5432/test");
    let server = Server::start_with(ServerOptions {
        args: vec!["--database-url".into(), url],
        ..ServerOptions::default()
    });
    let key = server.first_key.clone().unwrap();
    server
        .publish_fixture(&key, "aac-audio-only-48k.flv")
        .await
        .expect("publishes while the database is up");

    // The database goes away: no new logins, existing sessions killed.
    assert!(psql(&format!("ALTER ROLE {role} NOLOGIN")));
    assert!(psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
    )));
    let r = server.publish_fixture(&key, "aac-audio-only-48k.flv").await;
    match r {
        Err(PublishError::Rejected { code, .. }) => assert_eq!(code, "NetStream.Publish.Failed"),
        other => panic!("expected a refusal while the database is down, got {other:?}"),
    }
    let health = common::client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the server stays up");
    assert!(
        server.logs().contains("stream key"),
        "a clear log line: {}",
        server.logs()
    );

    // It comes back: publishing works again without a restart.
    assert!(psql(&format!("ALTER ROLE {role} LOGIN")));
    let mut ok = false;
    for _ in 0..20 {
        if server
            .publish_fixture(&key, "aac-audio-only-48k.flv")
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        ok,
        "publishing did not recover after the database came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_killed_mid_message_ends_its_room_cleanly() {
    use roomcast_ingest::publisher::Connection;
    use roomcast_media::flv::{FlvReader, FlvTagKind};

    let server = Server::start();
    let key = server.first_key.clone().unwrap();
    let mut c = Connection::open(server.rtmp).await.unwrap();
    c.handshake().await.unwrap();
    c.connect_app("live", 4096).await.unwrap();
    c.publish(&key).await.unwrap();
    // About 2.5 s of media, then half of the next keyframe's bytes, then the socket dies.
    let mut cut = None;
    for tag in FlvReader::new(fixture("h264-high-aac48k-720p30.flv")).unwrap() {
        let tag = tag.unwrap();
        let video = match tag.kind {
            FlvTagKind::Video => true,
            FlvTagKind::Audio => false,
            _ => continue,
        };
        let keyframe =
            video && tag.body.first().is_some_and(|b| b >> 4 == 1) && tag.body.get(1) == Some(&1);
        c.queue_media(video, tag.timestamp, tag.body.clone())
            .unwrap();
        if keyframe && tag.timestamp > 2500 {
            let bytes = c.take_queued();
            cut = Some(bytes);
            break;
        }
        c.flush().await.unwrap();
    }
    let bytes = cut.expect("a keyframe after 2.5 s");
    c.send_raw(&bytes[..bytes.len() / 2]).await.unwrap();
    drop(c);

    // The room ends cleanly: the playlist closes with what arrived whole.
    let playlist = common::poll_text(
        &server.url("/live/main/stream.m3u8"),
        Duration::from_secs(15),
        |t| t.contains("#EXT-X-ENDLIST"),
    )
    .await;
    assert!(playlist.contains("#EXTINF"), "{playlist}");
    let room: serde_json::Value = common::client()
        .get(server.url("/api/rooms/main"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(room["live"], false, "{room}");
    // The same key publishes again at once.
    server
        .publish_fixture(&key, "aac-audio-only-48k.flv")
        .await
        .expect("a new publish after the killed one");
    assert!(!server.logs().contains("panicked"), "{}", server.logs());
}
