//! Parts written as CMAF chunks (`PackagerConfig::stream_parts`): the same parts as without
//! (cuts, durations, samples), each the concatenation of its chunks, chunks made frame by
//! frame without reporting a playlist change, and the switch off writing what it always did.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use roomcast_media::{MediaEvent, TrackKind};

use super::{Synth, at, check_invariants, config, feed, listed, run};
use crate::read::{ReadSample, read_fragments};
use crate::{Packager, PackagerConfig, PartProgress};

fn streamed(config: PackagerConfig) -> PackagerConfig {
    PackagerConfig {
        stream_parts: true,
        ..config
    }
}

fn concat(chunks: &[Bytes]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.iter().copied()).collect()
}

/// A part's samples, per track id, in order, whatever its box structure.
fn samples_by_track(bytes: &Bytes) -> HashMap<u32, Vec<ReadSample>> {
    let mut out: HashMap<u32, Vec<ReadSample>> = HashMap::new();
    for fragment in read_fragments(bytes) {
        for run in fragment.runs {
            out.entry(run.track_id).or_default().extend(run.samples);
        }
    }
    out
}

fn same_samples(a: &[ReadSample], b: &[ReadSample]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            (x.dts, x.duration, x.size, x.sync, x.cts, &x.data)
                == (y.dts, y.duration, y.size, y.sync, y.cts, &y.data)
        })
}

/// The hinted part's name (`EXT-X-PRELOAD-HINT`), while live.
fn hinted(p: &Packager) -> Option<String> {
    let ((msn, part), _) = p.next_part()?;
    Some(crate::naming::part(&p.config().name_prefix, msn, part))
}

/// Runs the same events through a packager without and one with `stream_parts` and checks
/// that they make the same parts: same names, durations, INDEPENDENT flags and samples; the
/// streamed part is one chunk per first-track sample (plus, at a final flush, possibly one
/// with only other-track samples), each chunk one `moof`+`mdat`, and the segment is its
/// parts' chunks.
fn compare(name: &str, held: &Packager, streamed: &Packager, leader: u32) {
    check_invariants(held);
    check_invariants(streamed);
    assert_eq!(held.media_playlist(), streamed.media_playlist(), "{name}");
    let segs = listed(held);
    assert_eq!(segs.len(), listed(streamed).len(), "{name}");
    assert!(!segs.is_empty(), "{name}");
    let mut multi_chunk_parts = 0;
    for seg in &segs {
        let a = held.segment_info(seg.msn).unwrap();
        let b = streamed.segment_info(seg.msn).unwrap();
        assert_eq!(a.parts.len(), b.parts.len(), "{name} segment {}", seg.msn);
        let mut segment_bytes = Vec::new();
        for (pa, pb) in a.parts.iter().zip(&b.parts) {
            assert_eq!(
                (&pa.name, pa.duration, pa.independent),
                (&pb.name, pb.duration, pb.independent),
                "{name}"
            );
            let whole = held.get(&pa.name).unwrap();
            assert_eq!(
                whole.chunks.len(),
                1,
                "{name}: one chunk per part without streaming"
            );
            let chunked = streamed.get(&pb.name).unwrap();
            assert_eq!(chunked.len(), pb.size, "{name}");
            let bytes = chunked.to_bytes();
            segment_bytes.extend_from_slice(&bytes);
            let sa = samples_by_track(&whole.to_bytes());
            let sb = samples_by_track(&bytes);
            assert_eq!(
                sa.keys().collect::<std::collections::BTreeSet<_>>(),
                sb.keys().collect(),
                "{name} {}",
                pa.name
            );
            for (track, samples) in &sa {
                assert!(
                    same_samples(samples, &sb[track]),
                    "{name} {}: track {track} samples differ",
                    pa.name
                );
            }
            // One chunk per first-track sample, each a single moof+mdat.
            let leader_samples = sa[&leader].len();
            let chunks = &chunked.chunks;
            assert!(
                chunks.len() == leader_samples || chunks.len() == leader_samples + 1,
                "{name} {}: {} chunks for {leader_samples} samples",
                pa.name,
                chunks.len()
            );
            for (i, chunk) in chunks.iter().enumerate() {
                let fragments = read_fragments(chunk);
                assert_eq!(fragments.len(), 1, "{name}: a chunk is one moof+mdat");
                let lead = fragments[0]
                    .runs
                    .iter()
                    .filter(|r| r.track_id == leader)
                    .map(|r| r.samples.len())
                    .sum::<usize>();
                let expected = usize::from(i < leader_samples);
                assert_eq!(lead, expected, "{name} {} chunk {i}", pa.name);
            }
            if chunks.len() > 1 {
                multi_chunk_parts += 1;
            }
        }
        let segment = streamed.get(&b.name).unwrap();
        assert_eq!(
            segment.to_bytes().as_ref(),
            segment_bytes.as_slice(),
            "{name}"
        );
    }
    assert!(multi_chunk_parts > 0, "{name}: nothing was chunked");
}

fn both(synth: &Synth, config: PackagerConfig, until_ms: i64) -> (Packager, Packager) {
    (
        run(synth, config.clone(), until_ms),
        run(synth, streamed(config), until_ms),
    )
}

#[test]
fn streamed_parts_are_the_held_parts() {
    let cases = [
        ("av 200 ms", Synth::av(), config(), 1),
        (
            "av 100 ms, 1 s GOP",
            Synth {
                gop: 30,
                ..Synth::av()
            },
            PackagerConfig {
                part_target: Duration::from_millis(100),
                ..config()
            },
            1,
        ),
        (
            "29.97 fps, B-frames",
            Synth {
                fps: 30_000.0 / 1001.0,
                cts_ms: vec![67, 133, -33, 0],
                ..Synth::av()
            },
            PackagerConfig {
                part_target: Duration::from_millis(100),
                ..config()
            },
            1,
        ),
        (
            "video only",
            Synth {
                audio: false,
                ..Synth::av()
            },
            config(),
            1,
        ),
        (
            "audio only",
            Synth {
                video: false,
                ..Synth::av()
            },
            config(),
            2,
        ),
    ];
    for (name, synth, config, leader) in cases {
        let (held, streamed) = both(&synth, config, 7000);
        compare(name, &held, &streamed, leader);
    }
}

#[test]
fn streamed_parts_with_stalls_republish_and_resync() {
    // Audio stops after 1 s (video stops waiting for it after MAX_INTERLEAVE_MS), then a
    // republish, then a resync.
    let synth = Synth::av();
    let mut held = Packager::new(config());
    let mut streamed = Packager::new(streamed(config()));
    for p in [&mut held, &mut streamed] {
        p.begin_publish(at(0));
        let events: Vec<MediaEvent> = synth
            .publish(5000)
            .into_iter()
            .filter(|e| match e {
                MediaEvent::Frame(f) => f.track == TrackKind::Video || f.dts <= 1000,
                _ => true,
            })
            .collect();
        feed(p, &events, 0);
        p.end_publish(at(5000));
        p.begin_publish(at(10_000));
        feed(p, &synth.publish(3300), 10_000);
        p.resync(at(13_300));
        let after: Vec<MediaEvent> = synth
            .frames(4000, 7000)
            .into_iter()
            .map(MediaEvent::Frame)
            .collect();
        feed(p, &after, 10_000);
        p.end_publish(at(17_000));
    }
    compare("stalls", &held, &streamed, 1);
}

/// Feeding frame by frame: the hinted part's chunks only grow, one per video frame; a chunk
/// changes no playlist and `handle` does not report it; the complete part is its chunks; mfhd
/// sequence numbers run on from chunk to chunk.
#[test]
fn hinted_part_grows_frame_by_frame() {
    let synth = Synth::av();
    let mut p = Packager::new(PackagerConfig {
        part_target: Duration::from_millis(100),
        ..streamed(config())
    });
    p.begin_publish(at(0));
    for e in synth.publish(0) {
        p.handle(&e, at(0));
    }
    // name → (writing id, chunks seen so far)
    let mut seen: HashMap<String, (Option<u64>, Vec<Bytes>)> = HashMap::new();
    let mut completed = 0;
    let mut quiet_chunks = 0;
    let mut last_seq = None;
    for f in synth.frames(0, 6000) {
        let playlist = p.media_playlist();
        let hint = hinted(&p);
        let made = p.chunks_made();
        let changed = p.handle(&MediaEvent::Frame(f.clone()), at(f.dts));
        let new_chunks = p.chunks_made() - made;
        if !p.is_ready() {
            // No playlist, no hint yet: nothing to follow.
            continue;
        }
        if !changed {
            // Nothing a playlist shows moved, whatever chunks were made.
            assert_eq!(p.media_playlist(), playlist);
            assert_eq!(hinted(&p), hint);
            if new_chunks > 0 {
                quiet_chunks += 1;
            }
        }
        let mut names: Vec<String> = seen.keys().cloned().chain(hint).collect();
        names.extend(hinted(&p));
        names.sort();
        names.dedup();
        let mut sequences = Vec::new();
        for name in names {
            let progress = p.part_progress(&name);
            let entry = seen.entry(name.clone()).or_default();
            let (id, chunks, complete) = match progress {
                PartProgress::Writing { id, chunks } => (id, chunks, false),
                PartProgress::Complete { id, chunks } => (id, chunks, true),
                PartProgress::Gone => panic!("{name} gone"),
            };
            assert!(chunks.starts_with(&entry.1), "{name}: chunks only grow");
            if entry.0.is_some() {
                assert_eq!(id, entry.0, "{name}: same writing");
            }
            for chunk in &chunks[entry.1.len()..] {
                let fragments = read_fragments(chunk);
                assert_eq!(fragments.len(), 1, "a chunk is one moof+mdat");
                sequences.push(fragments[0].sequence);
                let video: usize = fragments[0]
                    .runs
                    .iter()
                    .filter(|r| r.track_id == 1)
                    .map(|r| r.samples.len())
                    .sum();
                assert_eq!(video, 1, "one video sample per chunk");
            }
            *entry = (id, chunks);
            if complete {
                let part = p.get(&name).unwrap();
                assert_eq!(part.to_bytes().as_ref(), concat(&entry.1).as_slice());
                completed += 1;
                seen.remove(&name);
            }
        }
        if last_seq.is_some() {
            // (The first time round, the chunks made before the hint existed count too.)
            assert_eq!(
                sequences.len() as u64,
                new_chunks,
                "every chunk is the hinted part's"
            );
        }
        sequences.sort_unstable();
        for seq in sequences {
            if let Some(last) = last_seq {
                assert_eq!(seq, last + 1, "mfhd sequence continues");
            }
            last_seq = Some(seq);
        }
    }
    assert!(
        quiet_chunks > 50,
        "chunks made without a change: {quiet_chunks}"
    );
    // 100 ms parts from the first segment's end (2 s) to 6 s.
    assert!(completed >= 39, "{completed}");
}

/// The chunk counts seen while a part was written: 1 then 2 for a three-frame part.
#[test]
fn hinted_part_is_seen_with_each_chunk_count() {
    let synth = Synth::av();
    let mut p = Packager::new(PackagerConfig {
        part_target: Duration::from_millis(100),
        ..streamed(config())
    });
    p.begin_publish(at(0));
    for e in synth.publish(0) {
        p.handle(&e, at(0));
    }
    let mut counts: HashMap<String, Vec<usize>> = HashMap::new();
    for f in synth.frames(0, 3000) {
        p.handle(&MediaEvent::Frame(f.clone()), at(f.dts));
        if let Some(name) = hinted(&p)
            && let PartProgress::Writing { chunks, .. } = p.part_progress(&name)
        {
            let v = counts.entry(name).or_default();
            if v.last() != Some(&chunks.len()) {
                v.push(chunks.len());
            }
        }
    }
    // Parts of the second segment (the first segment's parts were written as the start
    // buffer drained): each was seen growing 0 → 1 → 2 chunks before it completed with 3.
    let part = p.segment_info(1).unwrap().parts;
    assert!(part.len() >= 5);
    for info in &part[..5] {
        assert_eq!(counts[&info.name], vec![0, 1, 2], "{}", info.name);
        assert_eq!(p.get(&info.name).unwrap().chunks.len(), 3);
    }
}

#[test]
fn abandoned_writing_gets_a_new_id() {
    let synth = Synth::av();
    let mut p = Packager::new(streamed(config()));
    p.begin_publish(at(0));
    // Two video frames of segment 1 (keyframe at 2 s) are in chunks; segment 1 has no
    // complete part yet.
    feed(&mut p, &synth.publish(2070), 0);
    assert_eq!(p.open_msn(), None);
    let name = hinted(&p).unwrap();
    assert_eq!(name, "t-1.0.m4s");
    let PartProgress::Writing {
        id: Some(first),
        chunks,
    } = p.part_progress(&name)
    else {
        panic!("{:?}", p.part_progress(&name));
    };
    assert_eq!(chunks.len(), 2);
    // Events are lost: the samples in those chunks are dropped, and the part is written again
    // from the next keyframe, under the same name.
    p.resync(at(2070));
    assert_eq!(
        p.part_progress(&name),
        PartProgress::Writing {
            id: None,
            chunks: Vec::new()
        }
    );
    let after: Vec<MediaEvent> = synth
        .frames(3000, 4500)
        .into_iter()
        .map(MediaEvent::Frame)
        .collect();
    feed(&mut p, &after, 0);
    let PartProgress::Complete {
        id: Some(second), ..
    } = p.part_progress(&name)
    else {
        panic!("{:?}", p.part_progress(&name));
    };
    assert_ne!(first, second);

    // A resync mid-segment: the hint moves on and the part being written is gone.
    let name = hinted(&p).unwrap();
    assert!(matches!(
        p.part_progress(&name),
        PartProgress::Writing { .. }
    ));
    p.resync(at(4500));
    assert_ne!(hinted(&p).as_deref(), Some(name.as_str()));
    assert_eq!(p.part_progress(&name), PartProgress::Gone);
}

#[test]
fn switch_off_writes_whole_parts() {
    assert!(!PackagerConfig::default().stream_parts);
    let synth = Synth::av();
    let mut p = Packager::new(config());
    p.begin_publish(at(0));
    feed(&mut p, &synth.publish(3000), 0);
    assert_eq!(p.chunks_made(), 0);
    let hint = hinted(&p).unwrap();
    assert_eq!(
        p.part_progress(&hint),
        PartProgress::Writing {
            id: None,
            chunks: Vec::new()
        }
    );
    let info = p.segment_info(0).unwrap();
    for part in &info.parts {
        let PartProgress::Complete { id: None, chunks } = p.part_progress(&part.name) else {
            panic!("{}", part.name);
        };
        assert_eq!(chunks.len(), 1);
    }
    assert_eq!(p.part_progress("t-99.0.m4s"), PartProgress::Gone);
    assert!(matches!(
        p.part_progress("t-init-0.mp4"),
        PartProgress::Complete { id: None, .. }
    ));
}
