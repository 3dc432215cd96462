//! Connection and publisher limits: `max_connections_per_ip`, `max_publishers` and
//! `publish_deadline`. A limit closes the connection it hits, and only that one; the counts are
//! released however a connection ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::*;
use roomcast_ingest::IngestConfig;
use roomcast_ingest::chunk::{ChunkEncoder, MessageHeader, msg_type};
use roomcast_ingest::publisher::{Connection, PublishError};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SMALL: &str = "h264-baseline-aac44k-mono-360p25.flv";

async fn connected(server: &Server) -> Connection {
    let mut c = Connection::open(server.addr).await.unwrap();
    c.handshake().await.unwrap();
    c.connect_app("live", 4096).await.unwrap();
    c
}

/// A connection the server closes at accept: the handshake cannot complete.
async fn assert_refused_at_accept(server: &Server) {
    let mut c = Connection::open(server.addr).await.unwrap();
    let r = c.handshake().await;
    assert!(
        matches!(r, Err(PublishError::Handshake(_) | PublishError::Io { .. })),
        "connection over the limit was served: {r:?}"
    );
}

/// Each connection is still open: nothing closed it from the server's side.
fn assert_all_open(conns: &mut [Connection]) {
    for (i, c) in conns.iter_mut().enumerate() {
        assert!(c.poll_incoming().unwrap(), "connection {i} was closed");
    }
}

async fn wait_from_local(server: &Server, n: usize) {
    let ok = server
        .wait_for(Duration::from_secs(5), |s| {
            s.stats.connections_from(LOCAL) == n
        })
        .await;
    assert!(
        ok,
        "expected {n} connections from 127.0.0.1, the server counts {}",
        server.stats.connections_from(LOCAL)
    );
}

/// `limit` full connections (handshake + connect) are accepted, the next one is refused, and
/// nothing is left counted once they are dropped.
async fn fill_and_check(server: &Server, limit: usize) {
    let mut conns = Vec::new();
    for _ in 0..limit {
        conns.push(connected(server).await);
    }
    wait_from_local(server, limit).await;
    assert_refused_at_accept(server).await;
    assert_all_open(&mut conns);
    drop(conns);
    wait_from_local(server, 0).await;
}

fn control(type_id: u8, payload: &[u8]) -> bytes::BytesMut {
    let mut out = bytes::BytesMut::new();
    ChunkEncoder::new().encode(
        &MessageHeader {
            csid: 2,
            timestamp: 0,
            type_id,
            stream_id: 0,
        },
        payload,
        &mut out,
    );
    out
}

#[tokio::test]
async fn per_ip_limit_refuses_the_eleventh_and_releases_on_every_exit_path() {
    let server = Server::with_config(IngestConfig {
        max_connections_per_ip: 10,
        handshake_timeout: Duration::from_millis(300),
        ..IngestConfig::default()
    })
    .await;
    assert_eq!(IngestConfig::default().max_connections_per_ip, 10);

    // Ten stay, the eleventh is closed at once, the ten are untouched.
    let mut conns = Vec::new();
    for _ in 0..10 {
        conns.push(connected(&server).await);
    }
    wait_from_local(&server, 10).await;
    for _ in 0..3 {
        assert_refused_at_accept(&server).await;
    }
    assert_all_open(&mut conns);
    assert_eq!(server.stats.connections(), 10);

    // Closing some frees their places, and only theirs.
    conns.truncate(7);
    wait_from_local(&server, 7).await;
    for _ in 0..3 {
        conns.push(connected(&server).await);
    }
    wait_from_local(&server, 10).await;
    assert_refused_at_accept(&server).await;
    assert_all_open(&mut conns);
    drop(conns);
    wait_from_local(&server, 0).await;

    // Exit path: the handshake never starts (handshake_timeout).
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(Connection::open(server.addr).await.unwrap());
    }
    wait_from_local(&server, 10).await;
    assert_refused_at_accept(&server).await;
    for c in &mut silent {
        c.wait_closed(Duration::from_secs(5)).await.unwrap();
    }
    drop(silent);
    wait_from_local(&server, 0).await;
    fill_and_check(&server, 10).await;

    // Exit path: a broken handshake (an HTTP request).
    for _ in 0..10 {
        let mut c = Connection::open(server.addr).await.unwrap();
        let _ = c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        c.wait_closed(Duration::from_secs(5)).await.unwrap();
    }
    wait_from_local(&server, 0).await;
    fill_and_check(&server, 10).await;

    // Exit path: a protocol error after the handshake (an absurd chunk size).
    for _ in 0..10 {
        let mut c = connected(&server).await;
        c.send_raw(&control(
            msg_type::SET_CHUNK_SIZE,
            &0x7fff_ffffu32.to_be_bytes(),
        ))
        .await
        .unwrap();
        c.wait_closed(Duration::from_secs(5)).await.unwrap();
    }
    wait_from_local(&server, 0).await;

    // Exit path: a refused publish (wrong key) and a publish that ends normally.
    for _ in 0..5 {
        let mut c = connected(&server).await;
        assert!(c.publish("not-a-key").await.is_err());
        c.wait_closed(Duration::from_secs(5)).await.unwrap();
        let mut c = connected(&server).await;
        c.publish(KEY_MAIN).await.unwrap();
        c.finish().await.unwrap();
    }
    wait_from_local(&server, 0).await;
    fill_and_check(&server, 10).await;
    assert_eq!(server.stats.addresses(), 0);
    assert_eq!(server.stats.connections(), 0);
    server.stop().await;
}

#[tokio::test]
async fn max_publishers_refuses_with_a_status_but_not_a_takeover() {
    let server = Server::with_config(IngestConfig {
        max_publishers: 2,
        ..IngestConfig::default()
    })
    .await;
    server.auth.add("key-third-room-77", "third", 4);

    let mut a = connected(&server).await;
    a.publish(KEY_MAIN).await.unwrap();
    let mut b = connected(&server).await;
    b.publish(KEY_HEALTHY).await.unwrap();
    assert_eq!(server.stats.publishers(), 2);

    // A third room: refused with a status saying why, then closed.
    for _ in 0..3 {
        let mut c = connected(&server).await;
        match c.publish("key-third-room-77").await {
            Err(PublishError::Rejected { code, description }) => {
                assert_eq!(code, "NetStream.Publish.Failed");
                assert_eq!(description, "server is at its publisher limit");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        c.wait_closed(Duration::from_secs(5)).await.unwrap();
    }
    assert!(!server.hub.is_live("third"));
    assert_eq!(server.stats.publishers(), 2);
    // The two publishers are untouched.
    assert_all_open(&mut [a, b]);
    assert!(server.hub.is_live("main") && server.hub.is_live("healthy"));
    server.stop().await;
}

#[tokio::test]
async fn max_publishers_lets_a_takeover_through_and_frees_slots() {
    let server = Server::with_config(IngestConfig {
        max_publishers: 2,
        ..IngestConfig::default()
    })
    .await;
    server.auth.add("key-third-room-77", "third", 4);
    let mut a = connected(&server).await;
    a.publish(KEY_MAIN).await.unwrap();
    let mut b = connected(&server).await;
    b.publish(KEY_HEALTHY).await.unwrap();

    // An encoder reconnecting into a live room while at the limit: it takes over, the old
    // connection gets its status.
    let mut a2 = connected(&server).await;
    let started = Instant::now();
    a2.publish(KEY_MAIN_2).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    a.wait_closed(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        a.statuses().last().unwrap().description,
        "another publisher took over this room"
    );
    assert_eq!(server.hub.live().len(), 2);
    assert!(
        server
            .wait_for(Duration::from_secs(5), |s| s.stats.publishers() == 2)
            .await
    );

    // Still full for a new room.
    let mut c = connected(&server).await;
    assert!(matches!(
        c.publish("key-third-room-77").await,
        Err(PublishError::Rejected { .. })
    ));

    // One publisher ends: its slot is free for the third room.
    b.finish().await.unwrap();
    assert!(
        server
            .wait_for(Duration::from_secs(5), |s| s.stats.publishers() == 1)
            .await
    );
    let mut c = connected(&server).await;
    c.publish("key-third-room-77").await.unwrap();
    server.wait_live("third").await;
    assert_eq!(server.stats.publishers(), 2);

    // A publish that ends but keeps its connection frees its slot too.
    c.stop_publishing().await.unwrap();
    assert!(
        server
            .wait_for(Duration::from_secs(5), |s| s.stats.publishers() == 1)
            .await
    );
    assert!(!server.hub.is_live("third"));
    drop((a2, c));
    assert!(
        server
            .wait_for(Duration::from_secs(5), |s| s.stats.publishers() == 0
                && s.stats.connections() == 0)
            .await
    );
    server.stop().await;
}

#[tokio::test]
async fn publish_deadline_closes_a_client_that_never_publishes() {
    let deadline = Duration::from_millis(400);
    let server = Server::with_config(IngestConfig {
        publish_deadline: deadline,
        handshake_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        ..IngestConfig::default()
    })
    .await;

    // Connected and pinging (window acknowledgement sizes) every 50 ms: idle_timeout would never
    // close it.
    let mut c = connected(&server).await;
    let started = Instant::now();
    let mut closed_after = None;
    for _ in 0..100 {
        if c.send_raw(&control(
            msg_type::WINDOW_ACK_SIZE,
            &2_500_000u32.to_be_bytes(),
        ))
        .await
        .is_err()
            || !c.poll_incoming().unwrap()
        {
            closed_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = closed_after.expect("a pinging client that never publishes was not closed");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );

    // Silent before the handshake: publish_deadline is shorter than handshake_timeout here.
    let mut c = Connection::open(server.addr).await.unwrap();
    let took = c.wait_closed(Duration::from_secs(5)).await.unwrap();
    assert!(took >= Duration::from_millis(300), "{took:?}");

    // A publisher is not subject to it.
    let mut p = connected(&server).await;
    p.publish(KEY_MAIN).await.unwrap();
    tokio::time::sleep(deadline * 2).await;
    assert!(p.poll_incoming().unwrap(), "a publisher was closed");
    assert!(server.hub.is_live("main"));

    // Once its publish is over, a connection that stays gets the deadline again.
    p.stop_publishing().await.unwrap();
    let took = p.wait_closed(Duration::from_secs(5)).await.unwrap();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(!server.hub.is_live("main"));

    assert!(
        server
            .wait_for(Duration::from_secs(5), |s| s.stats.connections() == 0)
            .await
    );
    // And the server still takes publishes.
    let (_, got) = publish_and_collect(
        &server,
        "main",
        KEY_MAIN,
        SMALL,
        &roomcast_ingest::publisher::PublishOptions::default(),
    )
    .await;
    assert_eq!(got.video.len(), 150);
    server.stop().await;
}
