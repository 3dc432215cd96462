//! Golden outputs for the 720p30 fixture (fixed wall clock, fixed name prefix): the init
//! segment, the first segment, the first part, the first media playlist revision, a live LL-HLS
//! revision in the middle of a segment, the final media playlist, a delta update and the
//! multivariant playlist, compared byte for byte with the files under `tests/golden/720p30/`.
//! Regenerate only on request: `UPDATE_GOLDEN=1 cargo test -p roomcast-packager --test
//! golden`, then review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use std::time::Duration;

use roomcast_packager::{Packager, PlaylistRequest, Skip};

const FIXTURE: &str = "h264-high-aac48k-720p30.flv";

fn golden_dir() -> PathBuf {
    common::repo_root().join("tests/golden/720p30")
}

fn check(name: &str, actual: &[u8]) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with UPDATE_GOLDEN=1 and review it",
            path.display()
        )
    });
    if expected == actual {
        return;
    }
    if let (Ok(want), Ok(got)) = (std::str::from_utf8(&expected), std::str::from_utf8(actual)) {
        panic!("{name} differs from its golden file\n--- golden\n{want}\n--- actual\n{got}");
    }
    let at = expected
        .iter()
        .zip(actual)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(actual.len()));
    panic!(
        "{name} differs from its golden file at byte {at} (golden {} bytes, actual {} bytes)",
        expected.len(),
        actual.len()
    );
}

/// Runs the fixture, capturing on the way the first media playlist revision and the live one
/// when the third segment has five parts.
fn run() -> (Packager, String, String) {
    let mut p = Packager::new(common::config("golden"));
    let start = common::epoch();
    p.begin_publish(start);
    let mut first_revision = None;
    let mut live_revision = None;
    let mut now = start;
    for (event, at) in common::fixture_events(FIXTURE, start) {
        p.handle(&event, at);
        now = at;
        if first_revision.is_none() && p.is_ready() {
            first_revision = p.media_playlist();
        }
        if live_revision.is_none() && p.segment_info(2).is_some_and(|s| s.parts.len() == 5) {
            live_revision = p.media_playlist();
        }
    }
    p.end_publish(now);
    (p, first_revision.unwrap(), live_revision.unwrap())
}

/// The fixture published three times, 10 s apart; the third publish is still live. Its delta
/// update skips the first two segments (they end more than CAN-SKIP-UNTIL = 12 s before the
/// end of the playlist).
fn delta_update() -> String {
    let mut p = Packager::new(common::config("golden"));
    for publish in 0..3u64 {
        let start = common::epoch() + Duration::from_secs(10 * publish);
        p.begin_publish(start);
        let mut now = start;
        for (event, at) in common::fixture_events(FIXTURE, start) {
            p.handle(&event, at);
            now = at;
        }
        if publish < 2 {
            p.end_publish(now);
        }
    }
    let request = PlaylistRequest {
        skip: Skip::Yes,
        ..PlaylistRequest::default()
    };
    p.media_playlist_for(&request).unwrap()
}

#[test]
fn golden_720p30() {
    let (p, first_revision, live_revision) = run();
    check("init.mp4", &p.get("golden-init-0.mp4").unwrap().to_bytes());
    check("seg0.m4s", &p.get("golden-0.m4s").unwrap().to_bytes());
    check("seg0.0.m4s", &p.get("golden-0.0.m4s").unwrap().to_bytes());
    check("stream-first.m3u8", first_revision.as_bytes());
    check("stream-live.m3u8", live_revision.as_bytes());
    check("stream.m3u8", p.media_playlist().unwrap().as_bytes());
    check("stream-delta.m3u8", delta_update().as_bytes());
    check("index.m3u8", p.multivariant_playlist().unwrap().as_bytes());
}

#[test]
fn golden_playlists_are_valid_ll_hls() {
    let (_, first_revision, live_revision) = run();
    let first = common::model(&first_revision);
    assert_eq!(first.complete().count(), 1);
    assert_eq!(first.hints.len(), 1);
    let live = common::model(&live_revision);
    assert_eq!(live.open().map(|s| s.parts.len()), Some(5));
    let delta = common::model(&delta_update());
    assert_eq!(delta.skip, Some((2, None)));
    assert_eq!(delta.media_sequence, 0);
    assert_eq!(delta.complete().next().map(|s| s.msn), Some(2));
}

#[test]
fn output_is_deterministic() {
    let (a, _, _) = run();
    let (b, _, _) = run();
    assert_eq!(a.media_playlist(), b.media_playlist());
    for name in [
        "golden-init-0.mp4",
        "golden-0.m4s",
        "golden-1.m4s",
        "golden-2.m4s",
    ] {
        assert_eq!(a.get(name), b.get(name), "{name}");
    }
}

/// The golden segment is what the tree says it is: a decoded view, so that a reviewer of a
/// golden change can see what moved.
#[test]
fn golden_segment_tree() {
    let (p, _, _) = run();
    let segment = p.get("golden-0.m4s").unwrap().to_bytes();
    let fragments = common::read_fragments(&segment);
    assert_eq!(fragments.len(), 10, "ten 200 ms parts");
    assert_eq!(
        fragments.iter().map(|f| f.sequence).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    let video: Vec<_> = fragments
        .iter()
        .flat_map(|f| &f.runs)
        .filter(|r| r.track_id == 1)
        .collect();
    assert_eq!(video[0].tfdt, 0);
    assert_eq!(video.iter().map(|r| r.samples.len()).sum::<usize>(), 60);
    assert!(video[0].samples[0].sync);
    assert_eq!(video[0].samples[0].cts, 67 * 90);
    let audio: Vec<_> = fragments
        .iter()
        .flat_map(|f| &f.runs)
        .filter(|r| r.track_id == 2)
        .collect();
    assert_eq!(audio[0].tfdt, 46 * 48);
}
