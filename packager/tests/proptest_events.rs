//! Arbitrary event sequences — timestamps that jump or go backwards, configs that are missing,
//! invalid or changing, garbage payloads, publishes that begin, end, resync or are taken over —
//! never panic, and after every step everything the packager lists still holds together:
//! playlists parse, every listed resource is fetchable and well-formed, sample durations are
//! positive, and each track's decode time never goes backwards (and is exactly continuous
//! between segments that are not separated by a discontinuity). The LL-HLS view holds too: tag
//! order, parts within PART-TARGET, the preload hint, blocking-reload readiness and delta
//! updates that are the full playlist minus its oldest segments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use roomcast_media::{
    AacConfig, AudioConfig, AvcConfig, Frame, MediaEvent, StreamMetadata, TrackKind, VideoConfig,
};
use roomcast_packager::{Packager, PackagerConfig, PartProgress, PlaylistRequest, Readiness, Skip};

#[derive(Debug, Clone)]
enum Op {
    Video {
        dt: i64,
        cts: i64,
        key: bool,
        len: usize,
        fill: u8,
    },
    Audio {
        dt: i64,
        len: usize,
        fill: u8,
    },
    VideoConfig(u8),
    AudioConfig {
        rate: u32,
        spf: u32,
    },
    Metadata(Option<bool>, Option<bool>),
    Begin,
    End,
    Resync,
    Wall(u64),
}

/// Mostly a steady clock, sometimes broken: backwards, repeated, gaps, absurd jumps.
fn dt() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => 0i64..45,
        2 => -600i64..0,
        1 => 500i64..4_000,
        1 => prop_oneof![Just(3_600_000i64), Just(-3_600_000i64), Just(i64::from(u32::MAX))],
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (dt(), prop_oneof![5 => 0i64..200, 1 => -20_000i64..20_000], proptest::bool::weighted(0.08), 0usize..64, any::<u8>())
            .prop_map(|(dt, cts, key, len, fill)| Op::Video { dt, cts, key, len, fill }),
        30 => (dt(), 0usize..32, any::<u8>()).prop_map(|(dt, len, fill)| Op::Audio { dt, len, fill }),
        2 => (0u8..3).prop_map(Op::VideoConfig),
        2 => (prop_oneof![Just(48_000u32), Just(44_100), Just(0)], prop_oneof![Just(1024u32), Just(960), Just(0)])
            .prop_map(|(rate, spf)| Op::AudioConfig { rate, spf }),
        1 => (any::<Option<bool>>(), any::<Option<bool>>()).prop_map(|(v, a)| Op::Metadata(v, a)),
        1 => Just(Op::Begin),
        1 => Just(Op::End),
        1 => Just(Op::Resync),
        1 => (0u64..5_000).prop_map(Op::Wall),
    ]
}

fn video_config(variant: u8) -> Arc<VideoConfig> {
    let sps = Bytes::from(vec![0x67, 0x64, 0x00, 0x1f + variant, 0xac]);
    let pps = Bytes::from_static(&[0x68, 0xeb, 0xe3]);
    let mut record = vec![1, 0x64, 0x00, 0x1f + variant, 0xff, 0xe1, 0, 5];
    record.extend_from_slice(&sps);
    record.extend_from_slice(&[1, 0, 3]);
    record.extend_from_slice(&pps);
    if variant == 2 {
        // A record mp4-atom cannot re-encode as is: rebuilt from SPS/PPS.
        record.truncate(3);
    }
    Arc::new(VideoConfig::Avc(AvcConfig {
        record: Bytes::from(record),
        profile_idc: 0x64,
        constraint_flags: 0,
        level_idc: 0x1f + variant,
        width: 640 * (u32::from(variant) + 1),
        height: 360,
        frame_rate: (variant != 1).then_some(30.0),
        nal_length_size: 4,
        sps: vec![sps],
        pps: vec![pps],
    }))
}

fn audio_config(rate: u32, spf: u32) -> Arc<AudioConfig> {
    Arc::new(AudioConfig::Aac(AacConfig {
        asc: Bytes::from_static(&[0x11, 0x90]),
        object_type: 2,
        sample_rate: rate,
        channels: 2,
        samples_per_frame: spf,
    }))
}

fn apply(p: &mut Packager, op: &Op, clock: &mut i64, wall: &mut SystemTime) -> bool {
    *wall += Duration::from_millis(20);
    match op {
        Op::Video {
            dt,
            cts,
            key,
            len,
            fill,
        } => {
            *clock = clock.saturating_add(*dt);
            let frame = Frame {
                track: TrackKind::Video,
                dts: *clock,
                pts: clock.saturating_add(*cts),
                keyframe: *key,
                data: Bytes::from(vec![*fill; *len]),
            };
            p.handle(&MediaEvent::Frame(frame), *wall)
        }
        Op::Audio { dt, len, fill } => {
            *clock = clock.saturating_add(*dt);
            let frame = Frame {
                track: TrackKind::Audio,
                dts: *clock,
                pts: *clock,
                keyframe: true,
                data: Bytes::from(vec![*fill; *len]),
            };
            p.handle(&MediaEvent::Frame(frame), *wall)
        }
        Op::VideoConfig(v) => p.handle(&MediaEvent::VideoConfig(video_config(*v)), *wall),
        Op::AudioConfig { rate, spf } => {
            p.handle(&MediaEvent::AudioConfig(audio_config(*rate, *spf)), *wall)
        }
        Op::Metadata(v, a) => p.handle(
            &MediaEvent::Metadata(Arc::new(StreamMetadata {
                has_video: *v,
                has_audio: *a,
                ..StreamMetadata::default()
            })),
            *wall,
        ),
        Op::Begin => p.begin_publish(*wall),
        Op::End => p.end_publish(*wall),
        Op::Resync => p.resync(*wall),
        Op::Wall(ms) => {
            *wall += Duration::from_millis(*ms);
            false
        }
    }
}

/// Per track id: (end of the last sample, its timescale).
type Ends = HashMap<u32, (u64, u32)>;

fn check(p: &Packager) {
    for name in [
        "",
        "x",
        "stream.m3u8",
        "p-",
        "p-init-99.mp4",
        "p-01.m4s",
        "p-0.99.m4s",
    ] {
        let _ = p.get(name);
    }
    let status = p.status();
    let Some(text) = p.media_playlist() else {
        assert!(!p.is_ready());
        assert!(p.multivariant_playlist().is_none());
        return;
    };
    let target = status.target_duration.unwrap();
    let mv = p.multivariant_playlist().unwrap();
    let parsed: m3u8_parser::m3u8::playlist::Playlist = mv.parse().unwrap();
    assert!(parsed.validate().is_ok(), "{mv}");

    check_ll(p, &text);

    let segments = common::listed_segments(p);
    assert_eq!(segments.len(), status.segments);
    let mut ends: Ends = HashMap::new();
    // Tracks that have seen a discontinuity since their last sample may jump forward.
    let mut jumped: HashMap<u32, bool> = HashMap::new();
    let mut inits: HashMap<String, HashMap<u32, u32>> = HashMap::new();
    for seg in &segments {
        let init_name = seg.map.clone().unwrap();
        let timescales = inits
            .entry(init_name.clone())
            .or_insert_with(|| {
                let (_, moov) = common::read_init(&p.get(&init_name).unwrap().to_bytes());
                common::tracks_of(&moov)
                    .into_iter()
                    .map(|(id, ts, _)| (id, ts))
                    .collect()
            })
            .clone();
        let leader = *timescales.keys().min().unwrap();
        if seg.discontinuity {
            jumped.values_mut().for_each(|j| *j = true);
        }
        let mut leader_samples = 0;
        for fragment in &seg.fragments {
            for run in &fragment.runs {
                let ts = timescales[&run.track_id];
                if let Some(&(end, end_ts)) = ends.get(&run.track_id) {
                    let (a, b) = (
                        u128::from(run.tfdt) * u128::from(end_ts),
                        u128::from(end) * u128::from(ts),
                    );
                    assert!(
                        a >= b,
                        "tfdt went backwards on track {}: {text}",
                        run.track_id
                    );
                    if !jumped.get(&run.track_id).copied().unwrap_or(false) {
                        assert_eq!(
                            a, b,
                            "tfdt not continuous on track {}: {text}",
                            run.track_id
                        );
                    }
                }
                jumped.insert(run.track_id, false);
                let mut end = run.tfdt;
                for s in &run.samples {
                    assert!(s.duration > 0);
                    assert!(s.size > 0);
                    end += u64::from(s.duration);
                }
                ends.insert(run.track_id, (end, ts));
                if run.track_id == leader {
                    leader_samples += run.samples.len();
                }
            }
        }
        // A forced cut can keep EXTINF within the target unless a single sample is longer.
        if leader_samples >= 2 {
            assert!(
                seg.duration.round() as u64 <= target,
                "{} > {target}: {text}",
                seg.duration
            );
        }
    }
}

/// The LL-HLS rules on whatever the packager lists.
fn check_ll(p: &Packager, text: &str) {
    let m = common::model(text);
    let part_target = m.part_target.unwrap();
    assert!((part_target - p.part_target().as_secs_f64()).abs() < 1e-9);
    // Every part fits in PART-TARGET, unless it is a single frame longer than that (an input
    // gap); every listed part is fetchable.
    let mut leaders: HashMap<String, u32> = HashMap::new();
    for segment in &m.segments {
        let init = segment.map.clone().unwrap();
        let leader = *leaders.entry(init.clone()).or_insert_with(|| {
            let (_, moov) = common::read_init(&p.get(&init).unwrap().to_bytes());
            common::tracks_of(&moov)
                .into_iter()
                .map(|(id, _, _)| id)
                .min()
                .unwrap()
        });
        for part in &segment.parts {
            let bytes = p.get(&part.uri).unwrap().to_bytes();
            if part.duration > part_target {
                let frames: usize = common::read_fragments(&bytes)
                    .iter()
                    .flat_map(|f| &f.runs)
                    .filter(|r| r.track_id == leader)
                    .map(|r| r.samples.len())
                    .sum();
                assert_eq!(frames, 1, "{part:?} longer than PART-TARGET\n{text}");
            }
        }
    }
    // The hint names the next part, which is worth waiting for; the last part is there.
    let status = p.status();
    if m.endlist {
        assert!(status.ended);
    } else {
        let part_hints: Vec<_> = m.hints.iter().filter(|(t, _)| t == "PART").collect();
        assert_eq!(part_hints.len(), 1, "{text}");
        assert_eq!(
            p.part_state(&part_hints[0].1),
            roomcast_packager::PartState::Pending
        );
    }
    let (last_msn, last) = *m.parts().last().unwrap();
    let last_index = last
        .uri
        .rsplit_once('.')
        .and_then(|(stem, _)| stem.rsplit_once('.'))
        .and_then(|(_, i)| i.parse::<u32>().ok())
        .unwrap();
    let ask = |msn: u64, part: Option<u32>| {
        p.check_request(&PlaylistRequest {
            msn: Some(msn),
            part,
            skip: Skip::No,
        })
    };
    assert_eq!(ask(last_msn, Some(last_index)), Readiness::Ready);
    if !m.endlist {
        assert_eq!(ask(last_msn, Some(last_index + 1)), Readiness::Wait);
        let last_complete = status.last_msn.unwrap();
        assert!(matches!(
            ask(last_complete + 3, None),
            Readiness::Invalid(_)
        ));
    }
    // A delta update is the full playlist with its oldest segments replaced by EXT-X-SKIP.
    let delta = p
        .media_playlist_for(&PlaylistRequest {
            skip: Skip::Yes,
            ..PlaylistRequest::default()
        })
        .unwrap();
    let d = common::model(&delta);
    let skipped = d.skip.map_or(0, |(n, _)| n as usize);
    assert_eq!(d.segments.len() + skipped, m.segments.len());
    assert_eq!(d.media_sequence, m.media_sequence);
    assert_eq!(d.discontinuity_sequence, m.discontinuity_sequence);
    for (a, b) in d.segments.iter().zip(&m.segments[skipped..]) {
        assert_eq!((a.msn, &a.uri, &a.parts), (b.msn, &b.uri, &b.parts));
    }
    if skipped > 0 {
        let boundary = m.server_control.unwrap().can_skip_until.unwrap();
        let after: f64 = m.segments[skipped..].iter().map(|s| s.duration).sum();
        let last_skipped = &m.segments[skipped - 1];
        assert!(after > boundary - 0.002, "{after} {boundary}");
        assert!(after - m.segments[skipped].duration <= boundary + 0.002);
        assert!(last_skipped.uri.is_some());
    }
}

fn run(ops: &[Op]) {
    let mut p = Packager::new(PackagerConfig {
        window_segments: 6,
        retain_segments: 2,
        ..common::config("p")
    });
    let mut clock = 1_000;
    let mut wall = common::epoch();
    for (i, op) in ops.iter().enumerate() {
        apply(&mut p, op, &mut clock, &mut wall);
        // Every few steps keeps the run fast; a broken segment stays listed long enough to be
        // seen (a segment takes far more than four events).
        if i % 4 == 3 {
            check(&p);
        }
    }
    p.end_publish(wall);
    check(&p);
}

/// One sample as compared: dts, duration, sync, cts, bytes.
type SampleKey = (u64, u32, bool, i64, Bytes);

/// A part's samples per track id, whatever its chunks.
fn part_samples(bytes: &Bytes) -> HashMap<u32, Vec<SampleKey>> {
    let mut out: HashMap<u32, Vec<_>> = HashMap::new();
    for fragment in common::read_fragments(bytes) {
        for run in fragment.runs {
            out.entry(run.track_id).or_default().extend(
                run.samples
                    .into_iter()
                    .map(|s| (s.dts, s.duration, s.sync, s.cts, s.data)),
            );
        }
    }
    out
}

/// With `stream_parts` the same events give the same change reports, the same playlists and
/// parts with the same samples; the hinted part's chunks only grow while one writing of it
/// lasts, and the complete part is exactly its chunks.
fn run_streamed(ops: &[Op]) {
    let config = PackagerConfig {
        window_segments: 6,
        retain_segments: 2,
        ..common::config("p")
    };
    let mut held = Packager::new(config.clone());
    let mut streamed = Packager::new(PackagerConfig {
        stream_parts: true,
        ..config
    });
    let (mut clock_a, mut wall_a) = (1_000, common::epoch());
    let (mut clock_b, mut wall_b) = (1_000, common::epoch());
    // The hinted part being followed: (name, writing id, chunks so far).
    let mut following: Option<(String, Option<u64>, Vec<Bytes>)> = None;
    for op in ops {
        let a = apply(&mut held, op, &mut clock_a, &mut wall_a);
        let b = apply(&mut streamed, op, &mut clock_b, &mut wall_b);
        assert_eq!(a, b, "change reported differently after {op:?}");
        let text = held.media_playlist();
        assert_eq!(text, streamed.media_playlist());
        if let Some((name, id, chunks)) = following.take() {
            match streamed.part_progress(&name) {
                PartProgress::Writing {
                    id: now,
                    chunks: more,
                } if now == id || id.is_none() => {
                    assert!(more.starts_with(&chunks), "{name}: chunks only grow");
                    following = Some((name, now, more));
                }
                PartProgress::Complete {
                    id: now,
                    chunks: all,
                } if id.is_some() && now == id => {
                    assert!(all.starts_with(&chunks), "{name}: the part is its chunks");
                    let part = streamed.get(&name).unwrap();
                    assert_eq!(part.chunks, all);
                }
                // Abandoned (a resync), complete without chunks seen, or gone.
                _ => {}
            }
        }
        if following.is_none()
            && let Some(text) = &text
        {
            let m = common::model(text);
            if let Some((_, name)) = m.hints.iter().find(|(t, _)| t == "PART")
                && let PartProgress::Writing { id, chunks } = streamed.part_progress(name)
            {
                following = Some((name.clone(), id, chunks));
            }
        }
    }
    held.end_publish(wall_a);
    streamed.end_publish(wall_b);
    let Some(text) = held.media_playlist() else {
        return;
    };
    assert_eq!(Some(&text), streamed.media_playlist().as_ref());
    for segment in &common::model(&text).segments {
        for part in &segment.parts {
            let a = held.get(&part.uri).unwrap();
            let b = streamed.get(&part.uri).unwrap();
            assert_eq!(a.chunks.len(), 1);
            assert_eq!(
                part_samples(&a.to_bytes()),
                part_samples(&b.to_bytes()),
                "{}",
                part.uri
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Kept modest for the test suite; soak with PROPTEST_CASES=100000.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(96),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest_events.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_events_keep_invariants(
        setup in proptest::collection::vec(op(), 0..4),
        ops in proptest::collection::vec(op(), 0..400),
    ) {
        // Start most runs with configs so that streams actually get packaged.
        let mut all = vec![Op::VideoConfig(0), Op::AudioConfig { rate: 48_000, spf: 1024 }];
        all.extend(setup);
        all.extend(ops);
        run(&all);
    }

    #[test]
    fn arbitrary_events_from_nothing(ops in proptest::collection::vec(op(), 0..200)) {
        run(&ops);
    }

    #[test]
    fn streamed_parts_match_whole_parts(
        setup in proptest::collection::vec(op(), 0..4),
        ops in proptest::collection::vec(op(), 0..400),
    ) {
        let mut all = vec![Op::VideoConfig(0), Op::AudioConfig { rate: 48_000, spf: 1024 }];
        all.extend(setup);
        all.extend(ops);
        run_streamed(&all);
    }
}

/// A long steady stream with occasional glitches packages into many segments.
#[test]
fn long_glitchy_stream() {
    let mut ops = vec![
        Op::VideoConfig(0),
        Op::AudioConfig {
            rate: 48_000,
            spf: 1024,
        },
    ];
    for i in 0..3000u32 {
        let glitch = if i % 397 == 0 {
            -300
        } else if i % 911 == 0 {
            3_600_000
        } else {
            0
        };
        ops.push(Op::Video {
            dt: 33 + glitch,
            cts: 67,
            key: i % 60 == 0,
            len: 20,
            fill: 1,
        });
        ops.push(Op::Audio {
            dt: 0,
            len: 8,
            fill: 2,
        });
        if i % 1200 == 1199 {
            ops.push(Op::Resync);
        }
    }
    run(&ops);
}

/// Found by the soak: a video track that first appears in a restart of a publish, with its
/// first frame an hour before the shared clock, once collapsed to near-zero durations.
#[test]
fn regression_new_track_far_before_the_shared_clock() {
    let audio = |dt| Op::Audio {
        dt,
        len: 1,
        fill: 0,
    };
    run(&[
        Op::AudioConfig {
            rate: 48_000,
            spf: 1024,
        },
        audio(0),
        audio(21),
        audio(21),
        Op::Begin,
        Op::AudioConfig {
            rate: 48_000,
            spf: 1024,
        },
        audio(0),
        Op::Audio {
            dt: -3_600_000,
            len: 0,
            fill: 0,
        },
        Op::VideoConfig(0),
        Op::Video {
            dt: 0,
            cts: 0,
            key: true,
            len: 1,
            fill: 0,
        },
        Op::Video {
            dt: 0,
            cts: 0,
            key: false,
            len: 1,
            fill: 0,
        },
        Op::Video {
            dt: 33,
            cts: 0,
            key: false,
            len: 1,
            fill: 0,
        },
        Op::End,
    ]);
}
