//! Fixture accounting: each real encoder recording goes through roomcast-media's FLV demuxer
//! into the packager as one publish; every segment is read back and every frame of the fixture
//! must come out exactly once, byte for byte, with continuous timing and the right durations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ReadSample, listed_segments, package_fixture, read_init, tracks_of};
use roomcast_media::{Frame, MediaEvent, TrackKind};
use roomcast_packager::{Packager, PackagerConfig};

/// Everything listed: a window large enough for a whole fixture.
fn config() -> PackagerConfig {
    PackagerConfig {
        window_segments: 100,
        ..common::config("fx")
    }
}

fn frames(name: &str, track: TrackKind) -> Vec<Frame> {
    common::fixture_events(name, common::epoch())
        .into_iter()
        .filter_map(|(e, _)| match e {
            MediaEvent::Frame(f) if f.track == track => Some(f),
            _ => None,
        })
        .collect()
}

struct Expect {
    video_frames: usize,
    audio_frames: usize,
    audio_rate: u32,
    codecs: &'static str,
    resolution: Option<&'static str>,
    /// Video frame indices where segments start.
    segment_starts: Option<Vec<usize>>,
}

/// The accounting every fixture must pass. Returns the packager for fixture-specific checks.
fn account(name: &str, expect: &Expect) -> Packager {
    let p = package_fixture(name, config());
    let video_in = frames(name, TrackKind::Video);
    let audio_in = frames(name, TrackKind::Audio);
    assert_eq!(
        video_in.len(),
        expect.video_frames,
        "{name}: fixture video frames"
    );
    assert_eq!(
        audio_in.len(),
        expect.audio_frames,
        "{name}: fixture audio frames"
    );

    let segments = listed_segments(&p);
    assert!(!segments.is_empty());
    let init = p
        .get(segments[0].map.as_deref().unwrap())
        .unwrap()
        .to_bytes();
    let (_, moov) = read_init(&init);
    let tracks = tracks_of(&moov);
    let video_id = tracks.iter().find(|t| t.2).map(|t| t.0);
    let audio_id = tracks.iter().find(|t| !t.2).map(|t| t.0);
    assert_eq!(
        video_id.is_some(),
        expect.video_frames > 0,
        "{name}: video track"
    );
    assert_eq!(
        audio_id.is_some(),
        expect.audio_frames > 0,
        "{name}: audio track"
    );
    if let Some(id) = audio_id {
        assert_eq!(
            tracks.iter().find(|t| t.0 == id).unwrap().1,
            expect.audio_rate
        );
    }

    let mut out: [Vec<ReadSample>; 3] = Default::default();
    let mut next_tfdt: [Option<u64>; 3] = [None; 3];
    let mut starts = Vec::new();
    let mut extinf_total = 0.0;
    for (i, seg) in segments.iter().enumerate() {
        assert!(!seg.discontinuity, "{name}: one publish, no discontinuity");
        extinf_total += seg.duration;
        if let Some(vid) = video_id {
            let first_video = seg
                .fragments
                .iter()
                .flat_map(|f| f.runs.iter())
                .find(|r| r.track_id == vid)
                .and_then(|r| r.samples.first())
                .unwrap_or_else(|| panic!("{name}: segment {i} has video"));
            assert!(
                first_video.sync,
                "{name}: segment {i} starts with a sync sample"
            );
            starts.push(out[vid as usize].len());
        }
        for fragment in &seg.fragments {
            for run in &fragment.runs {
                let id = run.track_id as usize;
                if let Some(expected) = next_tfdt[id] {
                    assert_eq!(run.tfdt, expected, "{name}: tfdt continuous (track {id})");
                }
                let total: u64 = run.samples.iter().map(|s| u64::from(s.duration)).sum();
                next_tfdt[id] = Some(run.tfdt + total);
                out[id].extend(run.samples.iter().cloned());
            }
        }
    }

    if let Some(vid) = video_id {
        let video = &out[vid as usize];
        assert_eq!(
            video.len(),
            expect.video_frames,
            "{name}: every video frame once"
        );
        for (i, (got, want)) in video.iter().zip(&video_in).enumerate() {
            assert_eq!(got.data, want.data, "{name}: video frame {i} bytes");
            assert_eq!(got.sync, want.keyframe, "{name}: video frame {i} sync flag");
            assert_eq!(
                got.cts,
                (want.pts - want.dts) * 90,
                "{name}: video frame {i} cts"
            );
            assert!(got.duration > 0);
        }
        // Durations follow the dts differences; the last one repeats the one before it.
        for (i, w) in video_in.windows(2).enumerate() {
            assert_eq!(
                i64::from(video[i].duration),
                (w[1].dts - w[0].dts) * 90,
                "{name}: video frame {i} duration"
            );
        }
        let n = video.len();
        assert_eq!(video[n - 1].duration, video[n - 2].duration);
        let total: u64 = video.iter().map(|s| u64::from(s.duration)).sum();
        let span_ms = video_in[n - 1].dts - video_in[0].dts;
        assert_eq!(
            total as i64,
            span_ms * 90 + i64::from(video[n - 2].duration)
        );
        // EXTINF is the video duration.
        assert!((extinf_total - total as f64 / 90_000.0).abs() < 0.001 * segments.len() as f64);
        if let Some(want) = &expect.segment_starts {
            assert_eq!(&starts, want, "{name}: segments start at the keyframes");
        }
    }
    if let Some(aid) = audio_id {
        let audio = &out[aid as usize];
        assert_eq!(
            audio.len(),
            expect.audio_frames,
            "{name}: every audio frame once"
        );
        for (i, (got, want)) in audio.iter().zip(&audio_in).enumerate() {
            assert_eq!(got.data, want.data, "{name}: audio frame {i} bytes");
            assert!(got.sync);
            // The fixtures have no audio gaps: every duration is one AAC frame.
            assert_eq!(got.duration, 1024, "{name}: audio frame {i} duration");
        }
        // Audio sits where its timestamps say, within a millisecond of rounding.
        let rate = i64::from(expect.audio_rate);
        // The timeline starts at the earliest kept frame (audio overlapping the first keyframe
        // counts).
        let origin_ms = video_in
            .first()
            .map_or(audio_in[0].dts, |v| v.dts.min(audio_in[0].dts));
        for (got, want) in audio.iter().zip(&audio_in) {
            let expected = (want.dts - origin_ms) * rate / 1000;
            assert!(
                (got.dts as i64 - expected).abs() <= rate / 1000,
                "{name}: audio placement"
            );
        }
    }

    let mv = p.multivariant_playlist().unwrap();
    let parsed: m3u8_parser::m3u8::playlist::Playlist = mv.parse().unwrap();
    parsed.validate().unwrap();
    assert!(
        mv.contains(&format!("CODECS=\"{}\"", expect.codecs)),
        "{name}: {mv}"
    );
    if let Some(res) = expect.resolution {
        assert!(mv.contains(&format!("RESOLUTION={res}")), "{name}: {mv}");
    }
    assert!(p.media_playlist().unwrap().ends_with("#EXT-X-ENDLIST\n"));
    p
}

#[test]
fn h264_high_aac48k_720p30() {
    let p = account(
        "h264-high-aac48k-720p30.flv",
        &Expect {
            video_frames: 180,
            audio_frames: 283,
            audio_rate: 48_000,
            codecs: "avc1.64001f,mp4a.40.2",
            resolution: Some("1280x720"),
            segment_starts: Some(vec![0, 60, 120]),
        },
    );
    let mv = p.multivariant_playlist().unwrap();
    assert!(mv.contains("FRAME-RATE=30.000"), "{mv}");
    let text = p.media_playlist().unwrap();
    assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
}

#[test]
fn h264_baseline_aac44k_mono_360p25() {
    let p = account(
        "h264-baseline-aac44k-mono-360p25.flv",
        &Expect {
            video_frames: 150,
            audio_frames: 260,
            audio_rate: 44_100,
            codecs: "avc1.42c01e,mp4a.40.2",
            resolution: Some("640x360"),
            segment_starts: Some(vec![0, 50, 100]),
        },
    );
    assert!(
        p.multivariant_playlist()
            .unwrap()
            .contains("FRAME-RATE=25.000")
    );
}

#[test]
fn h264_main_video_only_360p30() {
    account(
        "h264-main-video-only-360p30.flv",
        &Expect {
            video_frames: 180,
            audio_frames: 0,
            audio_rate: 0,
            codecs: "avc1.4d401e",
            resolution: Some("640x360"),
            segment_starts: Some(vec![0, 60, 120]),
        },
    );
}

#[test]
fn aac_audio_only_48k() {
    let p = account(
        "aac-audio-only-48k.flv",
        &Expect {
            video_frames: 0,
            audio_frames: 283,
            audio_rate: 48_000,
            codecs: "mp4a.40.2",
            resolution: None,
            segment_starts: None,
        },
    );
    // Cut by audio time: 94 frames ≈ 2.005 s per segment.
    for seg in &listed_segments(&p)[..2] {
        assert!((seg.duration - 2.005).abs() < 0.001, "{}", seg.duration);
    }
}

#[test]
fn h264_main_aac48k_1080p60() {
    let p = account(
        "h264-main-aac48k-1080p60.flv",
        &Expect {
            video_frames: 240,
            audio_frames: frames("h264-main-aac48k-1080p60.flv", TrackKind::Audio).len(),
            audio_rate: 48_000,
            codecs: "avc1.4d402a,mp4a.40.2",
            resolution: Some("1920x1080"),
            segment_starts: Some(vec![0, 120]),
        },
    );
    assert!(
        p.multivariant_playlist()
            .unwrap()
            .contains("FRAME-RATE=60.000")
    );
}

#[test]
fn five_second_gop_fixes_target_duration() {
    let p = account(
        "h264-high-5s-gop-aac48k-480p30.flv",
        &Expect {
            video_frames: 240,
            audio_frames: 376,
            audio_rate: 48_000,
            codecs: "avc1.64001f,mp4a.40.2",
            resolution: Some("854x480"),
            segment_starts: Some(vec![0, 150]),
        },
    );
    let text = p.media_playlist().unwrap();
    let target: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(target >= 5, "{text}");
    for seg in listed_segments(&p) {
        assert!(seg.duration.round() as u64 <= target, "{text}");
    }
    assert_eq!(p.status().target_duration, Some(target));
}

/// ffmpeg (when installed) decodes init + every segment of the 720p fixture without an error
/// and sees both streams: the bytes are not just well-formed, they play.
#[test]
fn ffmpeg_decodes_the_output() {
    use std::process::Command;
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        eprintln!("ffmpeg not installed; skipped");
        return;
    }
    let p = package_fixture("h264-high-aac48k-720p30.flv", config());
    let dir = std::env::temp_dir().join(format!("roomcast-packager-ffmpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut file = p.get("fx-init-0.mp4").unwrap().to_bytes().to_vec();
    for seg in listed_segments(&p) {
        file.extend_from_slice(&p.get(&seg.uri).unwrap().to_bytes());
    }
    let path = dir.join("all.mp4");
    std::fs::write(&path, &file).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(text.contains("h264,180"), "{text}");
    assert!(text.contains("aac,283"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
