//! The path a streamer and a viewer take, with real tools: ffmpeg publishes a live encode over
//! RTMP, ffprobe and ffmpeg read the live HLS, and hls.js plays the watch page in headless
//! Chromium.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, poll_text, repo_root, run_with_timeout};

fn ffmpeg_publisher(server: &Server, key: &str, seconds: u32) -> std::process::Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-b:v",
            "800k",
        ])
        .args([
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-ar", "48000",
        ])
        .args(["-f", "flv"])
        .arg(format!("rtmp://{}/live/{key}", server.rtmp))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg must be installed (scripts/setup-test-deps)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_in_ffprobe_ffmpeg_and_hlsjs_out() {
    let server = Server::start();
    let key = server.first_key.clone().expect("first start prints a key");
    let started = Instant::now();
    let mut ff = ffmpeg_publisher(&server, &key, 22);
    let index = server.url("/live/main/index.m3u8");

    // The first playlist request waits for the first segment.
    poll_text(&index, Duration::from_secs(20), |t| {
        t.contains("#EXT-X-STREAM-INF")
    })
    .await;
    eprintln!(
        "time from publish start to first playable segment: {} ms",
        started.elapsed().as_millis()
    );

    let probe = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height,sample_rate",
            "-of",
            "json",
            &index,
        ]),
        Duration::from_secs(30),
    );
    let probe_out = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&probe_out).unwrap();
    let streams = v["streams"].as_array().unwrap();
    assert!(
        streams
            .iter()
            .any(|s| s["codec_name"] == "h264" && s["width"] == 640 && s["height"] == 360),
        "{probe_out}"
    );
    assert!(
        streams
            .iter()
            .any(|s| s["codec_name"] == "aac" && s["sample_rate"] == "48000"),
        "{probe_out}"
    );

    // hls.js in Chromium plays the watch page: currentTime advances.
    let play = run_with_timeout(
        Command::new("node")
            .arg(repo_root().join("tests/browser/play.mjs"))
            .arg(server.url("/watch/main"))
            .arg("7"),
        Duration::from_secs(60),
    );
    let play_out = String::from_utf8_lossy(&play.stdout);
    assert!(
        play.status.success(),
        "browser: {}",
        String::from_utf8_lossy(&play.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(play_out.trim()).unwrap();
    eprintln!(
        "hls.js: currentTime {} → {}, latency {} s",
        r["first"], r["last"], r["latency"]
    );
    assert_eq!(r["advanced"], true, "video did not play: {play_out}");
    assert_eq!(r["videoWidth"], 640, "{play_out}");

    // The publisher goes away: the playlist ends, and ffmpeg decodes every segment cleanly.
    let _ = ff.kill();
    let _ = ff.wait();
    poll_text(
        &server.url("/live/main/stream.m3u8"),
        Duration::from_secs(10),
        |t| t.contains("#EXT-X-ENDLIST"),
    )
    .await;
    let decode = run_with_timeout(
        Command::new("ffmpeg").args(["-v", "error", "-i", &index, "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    let errors = String::from_utf8_lossy(&decode.stderr);
    assert!(decode.status.success(), "ffmpeg decode failed: {errors}");
    assert!(
        errors.trim().is_empty(),
        "ffmpeg reported decode errors:\n{errors}"
    );
}
