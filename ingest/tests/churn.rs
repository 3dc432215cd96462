//! 1,000 connect/drop cycles: clients that connect and vanish at every stage (before a byte,
//! halfway through the handshake, after it, after `connect`, in the middle of a publish). After
//! them no connection, publisher, per-IP entry, task or socket is left, and the process's RSS
//! is back near where it started.
//!
//! Alone in its test binary: RSS, open descriptors and the runtime's task count are
//! process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use roomcast_ingest::IngestConfig;
use roomcast_ingest::publisher::Connection;

const CYCLES: usize = 1000;
const WORKERS: usize = 8;
/// One room and key per worker: a publish in one worker does not take over another's.
fn churn_key(worker: usize) -> String {
    format!("churn-key-{worker}-0123456789")
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// One client that connects and drops at the stage `i` picks.
async fn cycle(server_addr: std::net::SocketAddr, worker: usize, i: usize) {
    let mut c = Connection::open(server_addr).await.unwrap();
    match i % 6 {
        // Connect and drop before sending a byte.
        0 => {}
        // Half a handshake: C0 and part of C1.
        1 => {
            let mut partial = vec![3u8];
            partial.extend((0..700u32).map(|b| b as u8));
            let _ = c.send_raw(&partial).await;
        }
        // Full handshake.
        2 => c.handshake().await.unwrap(),
        // Handshake and connect.
        3 => {
            c.handshake().await.unwrap();
            c.connect_app("live", 4096).await.unwrap();
        }
        // Garbage after the handshake.
        4 => {
            c.handshake().await.unwrap();
            let _ = c.send_raw(&[0xc7; 300]).await;
        }
        // Publishing, dropped in the middle of a video message.
        _ => {
            c.handshake().await.unwrap();
            c.connect_app("live", 4096).await.unwrap();
            c.publish(&churn_key(worker)).await.unwrap();
            let mut frame = vec![0x17, 1, 0, 0, 0];
            frame.resize(20_000, 0x55);
            c.queue_media(true, 0, Bytes::from(frame)).unwrap();
            let mut partial = c.take_queued();
            partial.truncate(9_000);
            let _ = c.send_raw(&partial).await;
        }
    }
    drop(c);
}

async fn run_cycles(server: &Server, total: usize) -> Duration {
    let started = Instant::now();
    let per_worker = total / WORKERS;
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let addr = server.addr;
        workers.push(tokio::spawn(async move {
            for i in 0..per_worker {
                cycle(addr, w, i).await;
            }
        }));
    }
    for w in workers {
        tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("cycles took over a minute")
            .unwrap();
    }
    started.elapsed()
}

async fn wait_drained(server: &Server) {
    let ok = server
        .wait_for(Duration::from_secs(5), |s| {
            s.stats.connections() == 0 && s.stats.publishers() == 0 && s.stats.addresses() == 0
        })
        .await;
    assert!(
        ok,
        "left after the cycles: {} connections, {} publishers, {} addresses",
        server.stats.connections(),
        server.stats.publishers(),
        server.stats.addresses()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_connect_drop_cycles_leave_nothing_behind() {
    // The hub sized as roomcast sizes it: the harness default (64 Ki events per publish)
    // allocates megabytes per publish, which would swamp what is measured here.
    let config = IngestConfig {
        // Every client is 127.0.0.1; the limit is not what this test is about.
        max_connections_per_ip: 1000,
        handshake_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(500),
        ..IngestConfig::default()
    };
    let server = Server::with_hub_capacity(config, 1024).await;
    for w in 0..WORKERS {
        server
            .auth
            .add(&churn_key(w), &format!("churn-{w}"), 100 + w as i64);
    }

    // Warm up (runtime, allocator arenas, lazily built tables), then measure.
    run_cycles(&server, 6 * WORKERS).await;
    wait_drained(&server).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_before = status_kb("VmRSS:");
    let fds_before = open_fds();
    let tasks_before = alive_tasks();

    let took = run_cycles(&server, CYCLES).await;
    wait_drained(&server).await;
    assert!(server.hub.live().is_empty(), "{:?}", server.hub.live());
    // The connection tasks are gone from the runtime, their sockets from the process.
    let settled = server
        .wait_for(Duration::from_secs(2), |_| {
            alive_tasks() <= tasks_before && open_fds() <= fds_before
        })
        .await;
    let (tasks_after, fds_after) = (alive_tasks(), open_fds());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_after = status_kb("VmRSS:");
    let hwm = status_kb("VmHWM:");
    eprintln!(
        "{CYCLES} connect/drop cycles in {took:?}: RSS before {rss_before} kB, after \
         {rss_after} kB ({:+} kB), peak {hwm} kB; tasks {tasks_before} -> {tasks_after}; \
         open fds {fds_before} -> {fds_after}",
        rss_after as i64 - rss_before as i64
    );
    assert!(
        settled,
        "tasks {tasks_before} -> {tasks_after}, fds {fds_before} -> {fds_after}"
    );
    assert!(
        rss_after < rss_before + 20 * 1024,
        "RSS grew from {rss_before} kB to {rss_after} kB"
    );

    // Still serving.
    let (_, got) = publish_and_collect(
        &server,
        "main",
        KEY_MAIN,
        "h264-baseline-aac44k-mono-360p25.flv",
        &roomcast_ingest::publisher::PublishOptions::default(),
    )
    .await;
    assert_eq!(got.video.len(), 150);
    server.stop().await;
}
