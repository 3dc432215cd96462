//! Stream keys from the operator's side: the CLI manages them, a wrong key is refused, a second
//! publisher takes over at once, and revoking a key disconnects its live publisher.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, poll_text};
use roomcast_ingest::publisher::PublishError;

fn long_publish(server: &Server, key: &str) -> tokio::task::JoinHandle<Result<(), PublishError>> {
    let publisher = common::live_publisher(server, key);
    tokio::spawn(async move { publisher.await.unwrap().map(|_| ()) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_refused_with_an_rtmp_error() {
    let server = Server::start();
    let r = server
        .publish_fixture(
            "rc_notakey_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "aac-audio-only-48k.flv",
        )
        .await;
    match r {
        Err(PublishError::Rejected { code, .. }) => assert_eq!(code, "NetStream.Publish.BadName"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let logs = server.logs();
    assert!(logs.contains("publish refused"), "{logs}");
    assert!(
        !logs.contains("rc_notakey"),
        "the presented key reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_publisher_takes_over_at_once() {
    let server = Server::start();
    let key = server.first_key.clone().unwrap();
    let first = long_publish(&server, &key);
    let stream = server.url("/live/main/stream.m3u8");
    poll_text(&stream, Duration::from_secs(15), |t| t.contains("#EXTINF")).await;

    let t0 = Instant::now();
    let second = long_publish(&server, &key);
    let r = tokio::time::timeout(Duration::from_secs(3), first)
        .await
        .expect("first publisher still connected 3 s after the takeover");
    assert!(
        r.unwrap().is_err(),
        "first publisher should have been disconnected"
    );
    eprintln!(
        "takeover closed the old publisher in {} ms",
        t0.elapsed().as_millis()
    );

    // The new publish continues the same playlist after a discontinuity.
    poll_text(&stream, Duration::from_secs(15), |t| {
        t.contains("#EXT-X-DISCONTINUITY")
    })
    .await;
    assert!(!second.is_finished());
    second.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_disconnects_its_live_publisher() {
    let server = Server::start();
    let key = server.add_key("studio");
    let publisher = long_publish(&server, &key);
    poll_text(
        &server.url("/live/studio/stream.m3u8"),
        Duration::from_secs(15),
        |t| t.contains("#EXTINF"),
    )
    .await;

    let list = server.cli(&["key", "list", "studio", "--json"]);
    let keys: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let id = keys[0]["id"].as_i64().unwrap();
    assert!(
        keys[0]["last_used_ms"].as_i64().is_some(),
        "last_used recorded: {keys}"
    );

    let t0 = Instant::now();
    let out = server.cli(&["key", "revoke", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = tokio::time::timeout(Duration::from_secs(2), publisher)
        .await
        .expect("publisher still connected 2 s after its key was revoked");
    assert!(r.unwrap().is_err());
    eprintln!(
        "revoked key's publisher disconnected after {} ms",
        t0.elapsed().as_millis()
    );

    // And the key cannot publish again.
    let again = server.publish_fixture(&key, "aac-audio-only-48k.flv").await;
    assert!(
        matches!(again, Err(PublishError::Rejected { .. })),
        "{again:?}"
    );
}

#[test]
fn cli_manages_rooms_and_keys_without_showing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env_remove("ROOMCAST_DATABASE_URL")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["key", "add", "show", "--label", "studio OBS"]);
    assert!(ok, "{err}");
    let secret = common::parse_key(&out).unwrap();
    assert!(secret.len() >= 32, "{secret}");
    assert!(out.contains("rtmp://"), "{out}");
    assert!(out.contains("/watch/show"), "{out}");

    let (ok, list, _) = run(&["key", "list"]);
    assert!(ok);
    assert!(
        list.contains("studio OBS") && list.contains("active"),
        "{list}"
    );
    let (_, json, _) = run(&["key", "list", "show", "--json"]);
    assert!(
        !json.contains(&secret) && !list.contains(&secret),
        "a listing showed the secret"
    );

    let (ok, rotated, _) = run(&["key", "rotate", "show"]);
    assert!(ok);
    let new_secret = common::parse_key(&rotated).unwrap();
    assert_ne!(new_secret, secret);
    let (_, list, _) = run(&["key", "list", "show"]);
    assert_eq!(list.matches("revoked").count(), 1, "{list}");
    assert_eq!(list.matches("active").count(), 1, "{list}");

    let (ok, rooms, _) = run(&["room", "list", "--json"]);
    assert!(ok);
    let rooms: serde_json::Value = serde_json::from_str(&rooms).unwrap();
    assert_eq!(rooms[0]["name"], "show");

    let (ok, _, err) = run(&["key", "add", "Not A Room!"]);
    assert!(!ok);
    assert!(err.to_lowercase().contains("room name"), "{err}");
    let (ok, _, _) = run(&["key", "revoke", "999999"]);
    assert!(!ok);

    let (ok, _, _) = run(&["room", "remove", "show"]);
    assert!(ok);
    let (_, list, _) = run(&["key", "list"]);
    assert!(!list.contains("show"), "keys removed with the room: {list}");
    let (ok, _, _) = run(&["room", "remove", "show"]);
    assert!(!ok, "removing a missing room is an error");
}
