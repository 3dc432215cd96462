//! Who may publish, and what happens to a publisher that must stop: wrong keys, a key store
//! that is down, takeover, revocation, shutdown, wrong app, play requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use roomcast_hub::KickReason;
use roomcast_ingest::publisher::{Connection, PublishError, PublishOptions, publish_flv};

const SMALL: &str = "h264-baseline-aac44k-mono-360p25.flv";

fn realtime_forever() -> PublishOptions {
    PublishOptions {
        realtime: true,
        loops: 1000,
        ..PublishOptions::default()
    }
}

fn assert_rejected(r: Result<impl std::fmt::Debug, PublishError>, code: &str, description: &str) {
    match r {
        Err(PublishError::Rejected {
            code: c,
            description: d,
        }) => {
            assert_eq!(c, code);
            assert_eq!(d, description);
        }
        other => panic!("expected {code}, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_key_is_refused_and_the_connection_closed() {
    let server = Server::start().await;
    let r = publish_flv(
        server.addr,
        "live",
        "not-a-key",
        fixture(SMALL),
        &PublishOptions::default(),
    )
    .await;
    assert_rejected(r, "NetStream.Publish.BadName", "invalid stream key");

    // Step by step, to see the close.
    let mut c = Connection::open(server.addr).await.unwrap();
    c.handshake().await.unwrap();
    c.connect_app("live", 4096).await.unwrap();
    assert_rejected(
        c.publish("wrong?with=query").await,
        "NetStream.Publish.BadName",
        "invalid stream key",
    );
    c.wait_closed(Duration::from_secs(2)).await.unwrap();
    assert!(!server.hub.is_live("main"));
    server.stop().await;
}

#[tokio::test]
async fn key_with_query_suffix_is_accepted() {
    let server = Server::start().await;
    let key = format!("{KEY_MAIN}?bandwidthtest=false");
    let collector = collect_next_publish(&server.hub, "main");
    publish_flv(
        server.addr,
        "live",
        &key,
        fixture(SMALL),
        &PublishOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(collector.await.unwrap().video.len(), 150);
    server.stop().await;
}

#[tokio::test]
async fn key_store_down_refuses_with_a_clear_status_and_the_server_stays_up() {
    let server = Server::start().await;
    server.auth.fail.store(true, Ordering::SeqCst);
    let r = publish_flv(
        server.addr,
        "live",
        KEY_MAIN,
        fixture(SMALL),
        &PublishOptions::default(),
    )
    .await;
    assert_rejected(
        r,
        "NetStream.Publish.Failed",
        "server could not check the stream key",
    );
    server.auth.fail.store(false, Ordering::SeqCst);
    let (_, got) =
        publish_and_collect(&server, "main", KEY_MAIN, SMALL, &PublishOptions::default()).await;
    assert_eq!(got.video.len(), 150);
    server.stop().await;
}

#[tokio::test]
async fn unknown_app_is_rejected() {
    let server = Server::start().await;
    let r = publish_flv(
        server.addr,
        "other",
        KEY_MAIN,
        fixture(SMALL),
        &PublishOptions::default(),
    )
    .await;
    assert!(
        matches!(r, Err(PublishError::ConnectRejected { .. })),
        "{r:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn play_is_refused() {
    let server = Server::start().await;
    let mut c = Connection::open(server.addr).await.unwrap();
    c.handshake().await.unwrap();
    c.connect_app("live", 4096).await.unwrap();
    let r = c.play(KEY_MAIN).await;
    assert!(
        matches!(&r, Err(PublishError::Rejected { code, .. }) if code == "NetStream.Play.Failed"),
        "{r:?}"
    );
    c.wait_closed(Duration::from_secs(2)).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn second_publisher_takes_over_and_the_first_is_closed() {
    let server = Server::start().await;
    let addr = server.addr;
    let first = tokio::spawn(async move {
        publish_flv(addr, "live", KEY_MAIN, fixture(SMALL), &realtime_forever()).await
    });
    server.wait_live("main").await;
    let live = server.hub.live();
    assert_eq!(live[0].credential, ID_MAIN);

    // An OBS reconnecting with the other key of the room: never "busy".
    let collector = collect_next_publish(&server.hub, "main");
    let started = Instant::now();
    let second = tokio::spawn(async move {
        publish_flv(
            addr,
            "live",
            KEY_MAIN_2,
            fixture(SMALL),
            &realtime_forever(),
        )
        .await
    });
    let r = tokio::time::timeout(Duration::from_secs(2), first)
        .await
        .expect("first publisher was not disconnected")
        .unwrap();
    match r {
        Err(PublishError::Disconnected {
            status: Some(s), ..
        }) => {
            assert_eq!(s.code, "NetStream.Unpublish.Success");
            assert_eq!(s.description, "another publisher took over this room");
        }
        other => panic!("expected a disconnect with a status, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    // The room stayed live with the second publisher, which delivers.
    assert!(server.hub.is_live("main"));
    assert_eq!(server.hub.live()[0].credential, ID_MAIN_2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished());
    server
        .hub
        .kick_credential(ID_MAIN_2, KickReason::KeyRevoked);
    let _ = second.await;
    let got = collector.await.unwrap();
    assert!(!got.video_configs.is_empty());
    assert!(!got.video.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn revoking_the_key_disconnects_within_a_second() {
    let server = Server::start().await;
    let addr = server.addr;
    let publisher = tokio::spawn(async move {
        publish_flv(addr, "live", KEY_MAIN, fixture(SMALL), &realtime_forever()).await
    });
    server.wait_live("main").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kicked_at = Instant::now();
    assert_eq!(
        server.hub.kick_credential(ID_MAIN, KickReason::KeyRevoked),
        1
    );
    let r = tokio::time::timeout(Duration::from_secs(1), publisher)
        .await
        .expect("not disconnected within 1 s")
        .unwrap();
    let took = kicked_at.elapsed();
    match r {
        Err(PublishError::Disconnected {
            status: Some(s), ..
        }) => {
            assert_eq!(s.level, "error");
            assert_eq!(s.code, "NetStream.Publish.BadName");
            assert_eq!(s.description, "the stream key was revoked");
        }
        other => panic!("expected a disconnect with a status, got {other:?}"),
    }
    assert!(took < Duration::from_secs(1), "took {took:?}");
    for _ in 0..100 {
        if !server.hub.is_live("main") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!server.hub.is_live("main"));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_tells_publishers_and_returns() {
    let server = Server::start().await;
    let addr = server.addr;
    let publisher = tokio::spawn(async move {
        publish_flv(addr, "live", KEY_MAIN, fixture(SMALL), &realtime_forever()).await
    });
    // An idle connection that never published must not hold shutdown up either.
    let mut idle = Connection::open(addr).await.unwrap();
    idle.handshake().await.unwrap();
    server.wait_live("main").await;
    let hub = server.hub.clone();
    let stopping = Instant::now();
    server.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(2));
    let r = publisher.await.unwrap();
    match r {
        Err(PublishError::Disconnected {
            status: Some(s), ..
        }) => {
            assert_eq!(s.code, "NetStream.Unpublish.Success");
            assert_eq!(s.description, "the server is shutting down");
        }
        other => panic!("expected a disconnect with a status, got {other:?}"),
    }
    idle.wait_closed(Duration::from_secs(1)).await.unwrap();
    assert!(!hub.is_live("main"));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
