//! The `packager_sequence` fuzz target's findings (fuzz/regressions/README.md, section 2),
//! replayed as plain events: after every step, a step that returned `false` must not have
//! changed the media playlist, and every EXTINF must be > 0 and round to ≤ TARGETDURATION.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use roomcast_media::{AudioConfig, Frame, MediaEvent, TrackKind};

use super::{at, video_config};
use crate::fmp4::tests::aac_config;
use crate::{Packager, PackagerConfig};

fn fuzz_config(target_ms: u64, part_ms: u64, window: usize, retain: usize) -> PackagerConfig {
    PackagerConfig {
        target_duration: Duration::from_millis(target_ms),
        part_target: Duration::from_millis(part_ms),
        window_segments: window,
        retain_segments: retain,
        name_prefix: "fz".to_owned(),
        stream_parts: false,
    }
}

/// One step of a script, as the fuzz target runs it.
enum Step {
    Event(MediaEvent),
    BeginPublish,
}

fn video(dts: i64, pts: i64, keyframe: bool) -> Step {
    Step::Event(MediaEvent::Frame(Frame {
        track: TrackKind::Video,
        dts,
        pts,
        keyframe,
        data: Bytes::from_static(&[0x65, 0x88, 0x84, 0x00]),
    }))
}

/// Runs the steps (the wall clock advancing 1 ms a step) and checks the playlist after each.
fn run_checked(config: PackagerConfig, steps: Vec<Step>) -> Packager {
    let mut p = Packager::new(config);
    let mut before = p.media_playlist();
    for (i, step) in steps.into_iter().enumerate() {
        let now = at(i64::try_from(i).unwrap() + 1);
        let changed = match step {
            Step::Event(e) => p.handle(&e, now),
            Step::BeginPublish => p.begin_publish(now),
        };
        let after = p.media_playlist();
        assert!(
            changed || after == before,
            "step {i}: the playlist changed but the step returned false:\n{}\n->\n{}",
            before.as_deref().unwrap_or("(none)"),
            after.as_deref().unwrap_or("(none)"),
        );
        if let Some(text) = &after {
            check_extinf(text, i);
        }
        before = after;
    }
    p
}

fn check_extinf(text: &str, step: usize) {
    let target: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
        .expect("TARGETDURATION")
        .parse()
        .unwrap();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXTINF:") {
            let d: f64 = v.trim_end_matches(',').parse().unwrap();
            assert!(d > 0.0, "step {step}: EXTINF {d}:\n{text}");
            assert!(
                d.round() <= target,
                "step {step}: EXTINF {d} rounds above TARGETDURATION {target}:\n{text}"
            );
        }
    }
}

/// 2a: a takeover while the next part will use a new init segment: `begin_publish` makes the
/// playlist hint the new init (`EXT-X-PRELOAD-HINT:TYPE=MAP`), so it must return true.
#[test]
fn begin_publish_reports_a_new_preload_map_hint() {
    let steps = vec![
        Step::Event(MediaEvent::VideoConfig(video_config())),
        video(0, 32, true),
        video(4096, 4096 + 4_262_912, false),
        Step::BeginPublish,
    ];
    let p = run_checked(fuzz_config(2000, 500, 7, 30), steps);
    let text = p.media_playlist().unwrap();
    assert!(
        text.contains("#EXT-X-PRELOAD-HINT:TYPE=MAP,URI=\"fz-init-1.mp4\""),
        "{text}"
    );
}

/// A resync then new codecs while waiting for a keyframe: the hint moves from the reused init
/// to a new one, so the config event must report a change.
#[test]
fn config_change_while_starting_reports_a_new_preload_map_hint() {
    let mut steps = vec![Step::Event(MediaEvent::VideoConfig(video_config()))];
    for i in 0..70 {
        let dts = i * 100 / 3;
        steps.push(video(dts, dts, i % 60 == 0));
    }
    let mut p = run_checked(fuzz_config(2000, 500, 7, 30), steps);
    assert!(p.is_ready());
    p.resync(at(3000));
    let before = p.media_playlist().unwrap();
    assert!(!before.contains("TYPE=MAP"), "{before}");
    let changed = p.handle(
        &MediaEvent::AudioConfig(Arc::new(AudioConfig::Aac(aac_config(48_000)))),
        at(3001),
    );
    let after = p.media_playlist().unwrap();
    assert_ne!(before, after);
    assert!(after.contains("TYPE=MAP"), "{after}");
    assert!(changed, "the playlist changed:\n{before}\n->\n{after}");
}

/// 2b: an AAC config with an explicit 7.9 MHz sampling frequency (no encoder uses more than
/// 96 kHz): it is refused, so the audio is dropped and nothing with a 0.13 ms segment (listed
/// as `EXTINF:0.000`) is ever written.
#[test]
fn absurd_aac_sample_rate_is_refused() {
    let audio = |dts: i64| {
        Step::Event(MediaEvent::Frame(Frame {
            track: TrackKind::Audio,
            dts,
            pts: dts,
            keyframe: true,
            data: Bytes::from_static(&[0x68]),
        }))
    };
    let steps = vec![
        Step::Event(MediaEvent::AudioConfig(Arc::new(AudioConfig::Aac(
            aac_config(7_929_916),
        )))),
        audio(1_751_646_238),
        Step::BeginPublish,
    ];
    let p = run_checked(fuzz_config(65_287, 65_535, 255, 24), steps);
    assert!(!p.is_ready(), "{:?}", p.media_playlist());
}

/// The playlist writer never lists a segment that lasts less than half a millisecond as
/// `EXTINF:0.000`: at 96 kHz a single-frame flush can be 1 ms or less of audio at the end.
#[test]
fn extinf_is_never_printed_as_zero() {
    let audio = |dts: i64| {
        MediaEvent::Frame(Frame {
            track: TrackKind::Audio,
            dts,
            pts: dts,
            keyframe: true,
            data: Bytes::from_static(&[0x68]),
        })
    };
    let mut config = aac_config(96_000);
    config.samples_per_frame = 32;
    let mut p = Packager::new(fuzz_config(2000, 500, 7, 30));
    p.begin_publish(at(0));
    p.handle(
        &MediaEvent::AudioConfig(Arc::new(AudioConfig::Aac(config))),
        at(0),
    );
    p.handle(&audio(0), at(0));
    p.end_publish(at(1));
    let text = p.media_playlist().unwrap();
    check_extinf(&text, 0);
}

/// 2c: a keyframe, an 8.7 s jump with an absurd composition offset, 20 frames, a jump back by
/// 1009877231 ms and 55 more frames (30 fps): no segment may round above TARGETDURATION.
#[test]
fn extinf_stays_within_target_after_timestamp_jumps() {
    // (keyframe, dts delta, composition offset), as the fuzz input has them.
    let mut script: Vec<(bool, i64, i64)> =
        vec![(true, 34, 33), (false, 8704, 4_262_912), (true, 33, 67)];
    let thirty = [34, 33, 33];
    for i in 0..19 {
        script.push((false, thirty[i % 3], 16));
    }
    script.push((false, 33, 0));
    script.push((false, -1_009_877_231, -1_297_518));
    for i in 0..37 {
        script.push((false, thirty[i % 3], 16));
    }
    script.push((true, 33, 67));
    for i in 0..12 {
        script.push((false, thirty[i % 3], 16));
    }
    script.extend([(false, 34, 166), (false, 33, 67), (false, 33, 0)]);
    let mut steps = vec![Step::Event(MediaEvent::VideoConfig(video_config()))];
    let mut dts = 0i64;
    for (keyframe, delta, cts) in script {
        dts += delta;
        steps.push(video(dts, dts + cts, keyframe));
    }
    steps.push(Step::BeginPublish);
    let p = run_checked(fuzz_config(2000, 500, 4, 4), steps);
    // The long segment after the jump was cut without a keyframe just below the limit
    // (TARGETDURATION + 0.499 s): one more 33 ms frame would make it list as 2.500.
    let longest = p.listed().map(|s| s.seconds()).fold(0.0, f64::max);
    assert!(
        (2.4..2.4995).contains(&longest),
        "{longest}:\n{}",
        p.media_playlist().unwrap()
    );
}

/// An unusable audio config mid-publish: the audio that follows is coded with it, so it is not
/// written under the previous config either; the track leaves (new init, discontinuity).
#[test]
fn unusable_audio_config_mid_publish_drops_the_track() {
    let synth = super::Synth::av();
    let mut p = Packager::new(super::config());
    p.begin_publish(at(0));
    super::feed(&mut p, &synth.publish(3000), 0);
    let absurd = Arc::new(AudioConfig::Aac(aac_config(7_929_916)));
    assert!(p.handle(&MediaEvent::AudioConfig(absurd), at(3000)));
    let frames: Vec<MediaEvent> = synth
        .frames(3000, 6000)
        .into_iter()
        .map(MediaEvent::Frame)
        .collect();
    super::feed(&mut p, &frames, 0);
    p.end_publish(at(6000));
    super::check_invariants(&p);
    let last = p.listed().last().unwrap();
    assert!(last.init_gen > 0, "a new init without audio");
    assert_eq!(p.codecs().as_deref(), Some("avc1.64001f"));
    check_extinf(&p.media_playlist().unwrap(), 0);
}
