//! Hitting a limit is logged at most once per `log_interval` per limit, the next line carrying
//! the count of the ones left out, and every hit is counted in a metric; the connection and
//! publisher gauges return to 0.
//!
//! Own test binary: it installs the global tracing subscriber. Metrics go to a recorder local
//! to the test's thread, which runs the whole server (a current-thread runtime).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use roomcast_ingest::IngestConfig;
use roomcast_ingest::publisher::{Connection, PublishError};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const INTERVAL: Duration = Duration::from_secs(1);

/// Counters and gauges by `name{label=value,...}`.
#[derive(Default)]
struct Metrics {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

fn key_string(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

impl Metrics {
    fn counter(&self, key: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(key)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }

    fn gauge(&self, key: &str) -> f64 {
        self.gauges
            .lock()
            .unwrap()
            .get(key)
            .map_or(0.0, |g| f64::from_bits(g.load(Ordering::SeqCst)))
    }
}

impl Recorder for Metrics {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut m = self.counters.lock().unwrap();
        Counter::from_arc(Arc::clone(m.entry(key_string(key)).or_default()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut m = self.gauges.lock().unwrap();
        Gauge::from_arc(Arc::clone(
            m.entry(key_string(key))
                .or_insert_with(|| Arc::new(AtomicU64::new(0f64.to_bits()))),
        ))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

async fn connected(server: &Server) -> Connection {
    let mut c = Connection::open(server.addr).await.unwrap();
    c.handshake().await.unwrap();
    c.connect_app("live", 4096).await.unwrap();
    c
}

async fn refused_at_accept(server: &Server) {
    let mut c = Connection::open(server.addr).await.unwrap();
    assert!(c.handshake().await.is_err(), "not refused");
}

async fn wait_local(server: &Server, n: usize) {
    assert!(
        server
            .wait_for(Duration::from_secs(5), |s| s.stats.connections_from(LOCAL)
                <= n)
            .await,
        "{} connections from 127.0.0.1",
        server.stats.connections_from(LOCAL)
    );
}

#[tokio::test]
async fn limits_are_logged_once_per_interval_and_counted() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let metrics: &'static Metrics = Box::leak(Box::default());
    let _recorder = metrics::set_default_local_recorder(metrics);

    let server = Server::with_config(IngestConfig {
        max_connections_per_ip: 2,
        max_publishers: 1,
        // The first two steps are not about it.
        publish_deadline: Duration::from_secs(60),
        log_interval: INTERVAL,
        ..IngestConfig::default()
    })
    .await;

    // max_connections_per_ip: 4 refusals in a burst, one line; the next interval's line
    // counts the 3 left out.
    let a = connected(&server).await;
    let b = connected(&server).await;
    for _ in 0..4 {
        refused_at_accept(&server).await;
    }
    tokio::time::sleep(INTERVAL).await;
    refused_at_accept(&server).await;
    let lines = capture.lines_with("connection refused: max_connections_per_ip reached");
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("limit=2") && lines[0].contains("suppressed=0"));
    assert!(lines[1].contains("suppressed=3"), "{}", lines[1]);
    assert_eq!(
        metrics.counter("roomcast_ingest_refused_total{reason=max_connections_per_ip}"),
        5
    );
    assert_eq!(metrics.gauge("roomcast_ingest_connections"), 2.0);
    drop((a, b));
    wait_local(&server, 0).await;

    // max_publishers: one publishes, three more are refused with a status; one line.
    let mut p = connected(&server).await;
    p.publish(KEY_MAIN).await.unwrap();
    assert_eq!(metrics.gauge("roomcast_ingest_publishers"), 1.0);
    for _ in 0..3 {
        wait_local(&server, 1).await;
        let mut c = connected(&server).await;
        assert!(matches!(
            c.publish(KEY_HEALTHY).await,
            Err(PublishError::Rejected { .. })
        ));
        c.wait_closed(Duration::from_secs(5)).await.unwrap();
    }
    let lines = capture.lines_with("publish refused: max_publishers reached");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("limit=1") && lines[0].contains("room=healthy"),
        "{}",
        lines[0]
    );
    assert_eq!(
        metrics.counter("roomcast_ingest_refused_total{reason=max_publishers}"),
        3
    );
    p.finish().await.unwrap();
    wait_local(&server, 0).await;
    assert_eq!(metrics.gauge("roomcast_ingest_publishers"), 0.0);

    // publish_deadline (a second server, same recorder): two idle clients closed, one line.
    let server2 = Server::with_config(IngestConfig {
        publish_deadline: Duration::from_millis(300),
        log_interval: Duration::from_secs(60),
        ..IngestConfig::default()
    })
    .await;
    let mut a = connected(&server2).await;
    let mut b = connected(&server2).await;
    a.wait_closed(Duration::from_secs(10)).await.unwrap();
    b.wait_closed(Duration::from_secs(10)).await.unwrap();
    let lines = capture.lines_with("(publish_deadline)");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("no publish started within 300ms"));
    assert_eq!(
        metrics.counter("roomcast_ingest_closed_total{reason=publish_deadline}"),
        2
    );
    drop((a, b));
    wait_local(&server2, 0).await;

    assert_eq!(metrics.gauge("roomcast_ingest_connections"), 0.0);
    assert_eq!(metrics.gauge("roomcast_ingest_publishers"), 0.0);
    server.stop().await;
    server2.stop().await;
    if std::env::var_os("SHOW_LOGS").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&capture.0.lock().unwrap()));
    }
}
