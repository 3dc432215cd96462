//! Logs: the stream key never reaches a log line, at any level, whether the publish is
//! accepted, refused or kicked; limits that close a connection are named in the line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use rml_rtmp::rml_amf0::{self, Amf0Value};
use roomcast_hub::KickReason;
use roomcast_ingest::IngestConfig;
use roomcast_ingest::chunk::{ChunkEncoder, MessageHeader, msg_type};
use roomcast_ingest::publisher::{Connection, PublishOptions, publish_flv};

const WRONG_KEY: &str = "wrong-secret-KEY-4242";
const SMALL: &str = "h264-baseline-aac44k-mono-360p25.flv";

async fn send_command(c: &mut Connection, values: Vec<Amf0Value>) {
    let body = rml_amf0::serialize(&values).unwrap();
    let mut out = bytes::BytesMut::new();
    ChunkEncoder::new().encode(
        &MessageHeader {
            csid: 20,
            timestamp: 0,
            type_id: msg_type::COMMAND_AMF0,
            stream_id: 0,
        },
        &body,
        &mut out,
    );
    c.send_raw(&out).await.unwrap();
}

#[tokio::test]
async fn stream_key_never_logged_and_limits_are_named() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = Server::with_config(IngestConfig {
        handshake_timeout: Duration::from_millis(200),
        log_interval: Duration::from_millis(1),
        ..IngestConfig::default()
    })
    .await;
    let opts = PublishOptions::default();

    // Accepted, with options after the key as OBS users write them.
    let key = format!("{KEY_MAIN}?bandwidth=auto");
    publish_and_collect(&server, "main", &key, SMALL, &opts).await;

    // FCPublish / releaseStream carry the key as an argument (OBS sends them).
    let mut c = Connection::open(server.addr).await.unwrap();
    c.handshake().await.unwrap();
    c.connect_app("live", 4096).await.unwrap();
    for name in ["releaseStream", "FCPublish"] {
        send_command(
            &mut c,
            vec![
                Amf0Value::Utf8String(name.into()),
                Amf0Value::Number(2.0),
                Amf0Value::Null,
                Amf0Value::Utf8String(KEY_MAIN.into()),
            ],
        )
        .await;
    }
    c.publish(KEY_MAIN).await.unwrap();
    server.wait_live("main").await;
    server.hub.kick_credential(ID_MAIN, KickReason::KeyRevoked);
    c.wait_closed(Duration::from_secs(2)).await.unwrap();

    // Refused: wrong key, key store down, key pasted into the app name.
    assert!(
        publish_flv(server.addr, "live", WRONG_KEY, fixture(SMALL), &opts)
            .await
            .is_err()
    );
    server.auth.fail.store(true, Ordering::SeqCst);
    assert!(
        publish_flv(server.addr, "live", KEY_MAIN, fixture(SMALL), &opts)
            .await
            .is_err()
    );
    server.auth.fail.store(false, Ordering::SeqCst);
    let app = format!("live/{KEY_MAIN}");
    assert!(
        publish_flv(server.addr, &app, "", fixture(SMALL), &opts)
            .await
            .is_err()
    );

    // Limits.
    let mut c = Connection::open(server.addr).await.unwrap();
    c.handshake().await.unwrap();
    c.connect_app("live", 4096).await.unwrap();
    c.send_raw(&[2, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    c.wait_closed(Duration::from_secs(1)).await.unwrap();
    let mut c = Connection::open(server.addr).await.unwrap();
    c.handshake().await.unwrap();
    c.send_raw(&[3, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0])
        .await
        .unwrap();
    c.wait_closed(Duration::from_secs(1)).await.unwrap();
    let mut c = Connection::open(server.addr).await.unwrap();
    c.send_raw(&[3]).await.unwrap();
    c.wait_closed(Duration::from_secs(1)).await.unwrap();

    server.stop().await;
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    if std::env::var_os("SHOW_LOGS").is_some() {
        eprintln!("{logs}");
    }
    for secret in [KEY_MAIN, WRONG_KEY] {
        assert!(!logs.contains(secret), "stream key in the logs:\n{logs}");
        assert!(
            !logs.contains(&hex::encode(secret)),
            "hex stream key in the logs:\n{logs}"
        );
    }
    for line in [
        "publish started",
        "room=main",
        "key_id=1",
        "publish refused: unknown stream key",
        "publish refused: the stream key could not be checked",
        "connect refused: unknown RTMP application",
        "stream key revoked",
        "max_chunk_size",
        "max_message_size",
        "handshake_timeout",
        "RTMP command ignored command=FCPublish",
    ] {
        assert!(logs.contains(line), "no {line:?} in the logs:\n{logs}");
    }
}
