//! A real encoder: FFmpeg's own RTMP client publishes a fixture (`-c copy`, no encoding).
//! Skipped when `ffmpeg` is not installed; the other tests never need it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

fn ffmpeg_available() -> bool {
    std::process::Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs FFmpeg; returns its exit status and what it printed.
async fn ffmpeg_publish(url: &str, name: &str) -> (std::process::ExitStatus, String) {
    let input = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let child = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i", &input])
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .expect("ffmpeg hung")
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn ffmpeg_publishes_every_fixture() {
    if !ffmpeg_available() {
        eprintln!("ffmpeg not installed: skipped");
        return;
    }
    let server = Server::start().await;
    let url = format!("rtmp://{}/live/{KEY_MAIN}", server.addr);
    for name in FIXTURES {
        let want = expected(&fixture(name));
        let collector = collect_next_publish(&server.hub, "main");
        let (status, stderr) = ffmpeg_publish(&url, name).await;
        assert!(
            status.success(),
            "{name}: ffmpeg failed: {status}: {stderr}"
        );
        let got = tokio::time::timeout(Duration::from_secs(10), collector)
            .await
            .expect("publish never ended")
            .unwrap();
        assert_eq!(got.video, want.video, "{name}: video");
        assert_eq!(got.audio, want.audio, "{name}: audio");
        assert_eq!(got.video_configs, want.video_configs, "{name}");
        assert_eq!(got.audio_configs, want.audio_configs, "{name}");
        assert_eq!(got.metadata, 1, "{name}: onMetaData");
    }
    let bad = format!("rtmp://{}/live/not-the-key", server.addr);
    let (status, stderr) = ffmpeg_publish(&bad, "aac-audio-only-48k.flv").await;
    assert!(!status.success(), "ffmpeg published with a wrong key");
    // The streamer sees why.
    assert!(stderr.contains("invalid stream key"), "{stderr}");
    server.stop().await;
}
