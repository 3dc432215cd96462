//! LL-HLS: the playlist model (every tag, attribute and ordering rule, read back with
//! m3u8-parser and checked line by line), blocking reload readiness, preload hints, delta
//! updates, rendition reports, the part target and when parts become fetchable.

use std::time::Duration;

use roomcast_media::{Frame, MediaEvent, TrackKind};

use super::{Synth, at, audio_config, config, feed, video_config};
use crate::model::{Model, model};
use crate::{
    Packager, PackagerConfig, PartState, PlaylistRequest, QueryError, Readiness, RenditionReport,
    Skip,
};

/// A publish that is still live after the frames before `until_ms`.
fn live(synth: &Synth, config: PackagerConfig, until_ms: i64) -> Packager {
    let mut p = Packager::new(config);
    p.begin_publish(at(0));
    feed(&mut p, &synth.publish(until_ms), 0);
    p
}

fn request(msn: Option<u64>, part: Option<u32>) -> PlaylistRequest {
    PlaylistRequest {
        msn,
        part,
        skip: Skip::No,
    }
}

fn delta(skip: Skip) -> PlaylistRequest {
    PlaylistRequest {
        skip,
        ..PlaylistRequest::default()
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

fn position(text: &str, prefix: &str) -> usize {
    lines(text)
        .iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}\n{text}"))
}

/// Seconds from the start of each listed segment to the end of the playlist.
fn start_to_end(m: &Model) -> Vec<f64> {
    let total: f64 = m.segments.iter().map(|s| s.duration).sum();
    let mut before = 0.0;
    m.segments
        .iter()
        .map(|s| {
            let d = total - before;
            before += s.duration;
            d
        })
        .collect()
}

#[test]
fn live_playlist_model() {
    let p = live(&Synth::av(), config(), 9_100);
    let text = p.media_playlist().unwrap();
    let m = model(&text);

    // Playlist tags and their attributes.
    assert_eq!(m.version, 7, "no tag here needs more (§8)");
    assert_eq!(m.target_duration, 2);
    let control = m.server_control.unwrap();
    assert_eq!(control.can_block_reload, Some(true));
    assert_eq!(control.can_skip_dateranges, None);
    let part_target = m.part_target.unwrap();
    assert_eq!(part_target, 0.2);
    assert_eq!(p.part_target(), Duration::from_millis(200));
    let td = m.target_duration as f64;
    assert!(control.can_skip_until.unwrap() >= 6.0 * td);
    assert!(control.hold_back.unwrap() >= 3.0 * td);
    assert!(
        control.part_hold_back.unwrap() >= 3.0 * part_target - 1e-9,
        "Apple: PART-HOLD-BACK at least three part targets"
    );
    assert_eq!(m.media_sequence, 0);
    assert_eq!(m.discontinuity_sequence, 0);
    assert!(m.independent_segments);
    assert_eq!(m.skip, None);
    assert!(!m.endlist);

    // Four complete segments, then the one being written (8 s – 9 s: five parts).
    let complete: Vec<_> = m.complete().collect();
    assert_eq!(complete.len(), 4);
    let open = m.open().unwrap();
    assert_eq!(Some(open.msn), p.open_msn());
    assert_eq!(open.msn, 4);
    assert_eq!(open.parts.len(), 5);
    assert!(
        !open.map_tag && !open.discontinuity,
        "same init, same publish"
    );
    assert_eq!(
        open.program_date_time.as_deref(),
        Some("2024-05-01T12:00:08.000Z")
    );

    // Parts: listed for the segments that start within three target durations of the end.
    let distances = start_to_end(&m);
    for (segment, distance) in m.segments.iter().zip(&distances) {
        let listed = !segment.parts.is_empty();
        assert_eq!(
            listed,
            *distance <= 3.0 * td + 1e-6,
            "segment {} starts {distance} s from the end",
            segment.msn
        );
    }
    assert!(m.segments[0].parts.is_empty() && !m.segments[3].parts.is_empty());
    for segment in &m.segments {
        if segment.parts.is_empty() {
            continue;
        }
        let info = p.segment_info(segment.msn).unwrap();
        assert_eq!(
            segment.parts.len(),
            info.parts.len(),
            "all parts of a segment"
        );
        let mut bytes = Vec::new();
        for (i, (part, want)) in segment.parts.iter().zip(&info.parts).enumerate() {
            assert_eq!(part.uri, format!("t-{}.{i}.m4s", segment.msn));
            assert_eq!(part.uri, want.name);
            assert!(part.duration <= part_target, "{part:?}");
            assert!((part.duration - want.duration).abs() < 1e-5);
            assert_eq!(part.independent, want.independent, "{part:?}");
            bytes.extend_from_slice(&p.get(&part.uri).unwrap().to_bytes());
        }
        // A keyframe starts each segment, and the GOP is the segment: only part 0 is.
        assert_eq!(
            segment
                .parts
                .iter()
                .map(|x| x.independent)
                .collect::<Vec<_>>(),
            (0..segment.parts.len()).map(|i| i == 0).collect::<Vec<_>>()
        );
        if let Some(uri) = &segment.uri {
            let sum: f64 = segment.parts.iter().map(|x| x.duration).sum();
            assert!((sum - segment.duration).abs() < 0.001);
            assert_eq!(bytes, p.get(uri).unwrap().to_bytes().to_vec());
        }
    }

    // The preload hint names the next part, and that part is worth waiting for.
    assert_eq!(m.hints, vec![("PART".to_string(), "t-4.5.m4s".to_string())]);
    assert_eq!(p.part_state("t-4.5.m4s"), PartState::Pending);
    assert!(m.reports.is_empty(), "one rendition: no reports");

    // Line by line.
    let l = lines(&text);
    assert_eq!(l[0], "#EXTM3U");
    assert_eq!(l[1], "#EXT-X-VERSION:7");
    assert_eq!(l[2], "#EXT-X-TARGETDURATION:2");
    assert_eq!(
        l[3],
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.000,HOLD-BACK=6.000,PART-HOLD-BACK=0.600"
    );
    assert_eq!(l[4], "#EXT-X-PART-INF:PART-TARGET=0.200");
    assert_eq!(l[5], "#EXT-X-MEDIA-SEQUENCE:0");
    assert_eq!(l[6], "#EXT-X-DISCONTINUITY-SEQUENCE:0");
    assert_eq!(l[7], "#EXT-X-INDEPENDENT-SEGMENTS");
    assert_eq!(l[8], "#EXT-X-MAP:URI=\"t-init-0.mp4\"");
    assert_eq!(
        l.last(),
        Some(&"#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"t-4.5.m4s\"")
    );
    assert!(l.contains(&"#EXT-X-PART:DURATION=0.20000,URI=\"t-3.0.m4s\",INDEPENDENT=YES"));
    assert!(l.contains(&"#EXT-X-PART:DURATION=0.20000,URI=\"t-3.1.m4s\""));
    assert!(l.contains(&"#EXT-X-PART:DURATION=0.20000,URI=\"t-4.4.m4s\""));
    // The open segment: its date, then its parts, after the last complete segment's URI.
    let last_uri = position(&text, "t-3.m4s");
    assert_eq!(
        l[last_uri + 1],
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:08.000Z"
    );
    assert_eq!(
        l[last_uri + 2],
        "#EXT-X-PART:DURATION=0.20000,URI=\"t-4.0.m4s\",INDEPENDENT=YES"
    );
    // A segment's parts come right before its EXTINF, whose URI line follows it.
    for (i, line) in l.iter().enumerate() {
        if line.starts_with("#EXTINF:") {
            assert!(!l[i + 1].starts_with('#'), "URI after EXTINF");
            assert!(
                l[i - 1].starts_with("#EXT-X-PART:") || l[i - 1].starts_with("#EXT-X-PROGRAM"),
                "{}",
                l[i - 1]
            );
        }
    }
}

/// Players that know only plain HLS see the same whole segments as before LL-HLS: m3u8-parser's
/// plain view lists exactly the complete segments, each fetchable, and EXTINF/URI pairs are
/// intact.
#[test]
fn plain_hls_view_of_the_live_playlist() {
    let p = live(&Synth::av(), config(), 9_100);
    let text = p.media_playlist().unwrap();
    let playlist: m3u8_parser::m3u8::playlist::Playlist = text.parse().unwrap();
    let segments = playlist.media_segments();
    assert_eq!(
        segments.iter().map(|s| s.uri.as_str()).collect::<Vec<_>>(),
        vec!["t-0.m4s", "t-1.m4s", "t-2.m4s", "t-3.m4s"]
    );
    for s in &segments {
        assert_eq!(s.duration, 2.0);
        assert!(s.program_date_time.is_some());
        assert_eq!(s.map.as_ref().unwrap().uri, "t-init-0.mp4");
        assert!(p.get(&s.uri).is_some());
    }
    // Every line that is not a tag is a segment URI.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(segments.iter().any(|s| s.uri == line), "{line}");
    }
}

#[test]
fn playlist_request_does_not_change_the_text_but_skip_does() {
    let p = live(&Synth::av(), config(), 9_100);
    let plain = p.media_playlist().unwrap();
    for r in [
        request(Some(4), Some(5)),
        request(Some(4), None),
        request(Some(1), Some(0)),
    ] {
        assert_eq!(p.media_playlist_for(&r).unwrap(), plain);
    }
    // Nothing is old enough to skip in 9 s: the delta update is the full playlist.
    assert_eq!(p.media_playlist_for(&delta(Skip::Yes)).unwrap(), plain);
    assert_eq!(p.media_playlist_for(&delta(Skip::V2)).unwrap(), plain);
}

#[test]
fn check_request_bad_requests() {
    let p = live(&Synth::av(), config(), 9_100);
    // Last complete segment 3, open segment 4 with parts 0–4; 200 ms parts: the Advance Part
    // Limit is 3 / 0.2 = 15 parts.
    assert_eq!(p.advance_part_limit(), 15);
    assert_eq!(
        p.check_request(&request(None, Some(1))),
        Readiness::Invalid(QueryError::PartWithoutMsn)
    );
    assert_eq!(
        p.check_request(&request(Some(6), None)),
        Readiness::Invalid(QueryError::MsnTooFar { msn: 6, limit: 5 })
    );
    assert_eq!(
        p.check_request(&request(Some(6), Some(0))),
        Readiness::Invalid(QueryError::MsnTooFar { msn: 6, limit: 5 })
    );
    assert_eq!(
        p.check_request(&request(Some(u64::MAX), None)),
        Readiness::Invalid(QueryError::MsnTooFar {
            msn: u64::MAX,
            limit: 5
        })
    );
    // Last part is 4.4: 4.19 is 15 parts ahead (wait), 4.20 is 16 (refused).
    assert_eq!(
        p.check_request(&request(Some(4), Some(19))),
        Readiness::Wait
    );
    assert_eq!(
        p.check_request(&request(Some(4), Some(20))),
        Readiness::Invalid(QueryError::PartTooFar {
            msn: 4,
            part: 20,
            limit: 15
        })
    );
    assert_eq!(
        p.check_request(&request(Some(4), Some(u32::MAX))),
        Readiness::Invalid(QueryError::PartTooFar {
            msn: 4,
            part: u32::MAX,
            limit: 15
        })
    );
    // In the next segments at least one part each is to come first.
    assert_eq!(
        p.check_request(&request(Some(5), Some(14))),
        Readiness::Wait
    );
    assert_eq!(
        p.check_request(&request(Some(5), Some(15))),
        Readiness::Invalid(QueryError::PartTooFar {
            msn: 5,
            part: 15,
            limit: 15
        })
    );
    // The message is safe to show.
    assert_eq!(
        QueryError::MsnTooFar { msn: 6, limit: 5 }.to_string(),
        "_HLS_msn=6 is beyond the last segment plus two (5)"
    );
}

#[test]
fn check_request_ready_and_wait() {
    let p = live(&Synth::av(), config(), 9_100);
    let ready = |msn, part| p.check_request(&request(Some(msn), part));
    assert_eq!(
        p.check_request(&PlaylistRequest::default()),
        Readiness::Ready
    );
    assert_eq!(p.check_request(&delta(Skip::Yes)), Readiness::Ready);
    // _HLS_msn alone: the segment must be complete.
    assert_eq!(ready(0, None), Readiness::Ready);
    assert_eq!(ready(3, None), Readiness::Ready);
    assert_eq!(ready(4, None), Readiness::Wait);
    assert_eq!(ready(5, None), Readiness::Wait);
    // With a part: it must exist (or a later one).
    assert_eq!(ready(0, Some(0)), Readiness::Ready);
    assert_eq!(ready(4, Some(4)), Readiness::Ready);
    assert_eq!(ready(4, Some(5)), Readiness::Wait);
    assert_eq!(ready(5, Some(0)), Readiness::Wait);
    // Segment 3 has ten parts: part 10 of it means part 0 of segment 4, which exists; part 99
    // too (past the last part of a complete segment).
    assert_eq!(ready(3, Some(9)), Readiness::Ready);
    assert_eq!(ready(3, Some(10)), Readiness::Ready);
    assert_eq!(ready(3, Some(99)), Readiness::Ready);
}

/// A request for the next part waits until the frame that completes it arrives, and is ready
/// from that event on; a request for the next segment waits for the keyframe that ends the
/// open one.
#[test]
fn ready_wait_transitions_as_frames_arrive() {
    let synth = Synth::av();
    let mut p = Packager::new(config());
    p.begin_publish(at(0));
    p.handle(&MediaEvent::VideoConfig(video_config()), at(0));
    p.handle(&MediaEvent::AudioConfig(audio_config()), at(0));
    let frames = synth.frames(0, 12_000);
    let mut parts_seen = 0;
    let mut segments_seen = 0;
    for f in frames {
        let wait_part = p.media_playlist().map(|_| {
            let ((msn, part), _) = p.next_part().unwrap();
            let r = request(Some(msn), Some(part));
            assert_eq!(p.check_request(&r), Readiness::Wait);
            assert_eq!(
                p.part_state(&format!("t-{msn}.{part}.m4s")),
                PartState::Pending
            );
            r
        });
        let wait_segment = p.status().last_msn.map(|last| {
            let r = request(Some(last + 1), None);
            assert_eq!(p.check_request(&r), Readiness::Wait);
            r
        });
        let changed = p.handle(&MediaEvent::Frame(f.clone()), at(f.dts));
        if let Some(r) = wait_part {
            let now = p.check_request(&r);
            if now == Readiness::Ready {
                assert!(changed, "readiness changes only with a reported change");
                parts_seen += 1;
                let name = format!("t-{}.{}.m4s", r.msn.unwrap(), r.part.unwrap());
                assert!(matches!(p.part_state(&name), PartState::Ready(_)));
            } else {
                assert_eq!(now, Readiness::Wait);
            }
        }
        if let Some(r) = wait_segment
            && p.check_request(&r) == Readiness::Ready
        {
            assert!(changed);
            segments_seen += 1;
        }
    }
    // 2 s – 12 s: the parts after the first segment, and the segments after it.
    assert!(parts_seen >= 48, "{parts_seen}");
    assert_eq!(segments_seen, 4);
    // The end makes everything ready, even what would otherwise be refused.
    let far = request(Some(1_000), Some(1_000));
    assert!(matches!(p.check_request(&far), Readiness::Invalid(_)));
    let next = p.next_part().unwrap().0;
    assert!(p.end_publish(at(12_000)));
    for r in [
        far,
        request(Some(next.0), Some(next.1)),
        request(Some(100), None),
    ] {
        assert_eq!(p.check_request(&r), Readiness::Ready);
    }
    // Still a Bad Request (§6.2.5.2 MUST), ended or not.
    assert_eq!(
        p.check_request(&request(None, Some(0))),
        Readiness::Invalid(QueryError::PartWithoutMsn)
    );
}

#[test]
fn before_the_first_segment() {
    let mut p = Packager::new(config());
    assert_eq!(
        p.check_request(&PlaylistRequest::default()),
        Readiness::Ready
    );
    assert_eq!(p.check_request(&request(Some(0), Some(0))), Readiness::Wait);
    assert_eq!(p.check_request(&request(Some(1), None)), Readiness::Wait);
    assert_eq!(
        p.check_request(&request(Some(2), None)),
        Readiness::Invalid(QueryError::MsnTooFar { msn: 2, limit: 1 })
    );
    assert_eq!(p.part_state("t-0.0.m4s"), PartState::Unknown);
    assert_eq!(p.rendition_report("x.m3u8"), None);
    p.begin_publish(at(0));
    feed(&mut p, &Synth::av().publish(1_000), 0);
    // Parts exist, but no playlist yet: wait.
    assert!(p.get("t-0.0.m4s").is_some());
    assert_eq!(p.check_request(&request(Some(0), Some(0))), Readiness::Wait);
    assert_eq!(p.media_playlist_for(&request(Some(0), Some(0))), None);
    assert_eq!(p.hold_limit(), Duration::from_millis(1200));
}

#[test]
fn endlist_has_no_hint_and_ignores_directives() {
    let mut p = live(&Synth::av(), config(), 9_100);
    assert!(p.end_publish(at(9_100)));
    let text = p.media_playlist().unwrap();
    let m = model(&text);
    assert!(m.endlist);
    assert!(m.hints.is_empty());
    assert!(m.open().is_none(), "the open segment became the last one");
    assert_eq!(m.complete().count(), 5);
    assert!(text.ends_with("#EXT-X-ENDLIST\n"));
    // Delivery directives are ignored: a delta update request gets the full playlist.
    assert_eq!(p.media_playlist_for(&delta(Skip::Yes)).unwrap(), text);
    assert_eq!(p.part_state("t-5.0.m4s"), PartState::Unknown);
    // A new publish removes ENDLIST and hints its first part and (new publisher, new init
    // segment) its init segment.
    p.begin_publish(at(20_000));
    let text = p.media_playlist().unwrap();
    let m = model(&text);
    assert!(!m.endlist);
    assert_eq!(
        m.hints,
        vec![
            ("MAP".to_string(), "t-init-1.mp4".to_string()),
            ("PART".to_string(), "t-5.0.m4s".to_string())
        ]
    );
    assert_eq!(p.part_state("t-init-1.mp4"), PartState::Pending);
    assert_eq!(p.part_state("t-5.0.m4s"), PartState::Pending);
    assert_eq!(p.part_state("t-5.1.m4s"), PartState::Unknown);
    assert_eq!(p.part_state("t-init-2.mp4"), PartState::Unknown);
    assert_eq!(p.check_request(&request(Some(5), Some(0))), Readiness::Wait);
}

/// A republish: the new publish's first segment carries EXT-X-DISCONTINUITY and a new
/// EXT-X-MAP before its first part; once that part is listed the MAP hint is gone.
#[test]
fn new_publish_tags_come_before_its_first_part() {
    let synth = Synth::av();
    let mut p = Packager::new(config());
    p.begin_publish(at(0));
    feed(&mut p, &synth.publish(4_000), 0);
    p.end_publish(at(4_000));
    p.begin_publish(at(10_000));
    // The new init segment exists as soon as the publish starts; the part does not yet.
    feed(&mut p, &synth.publish(100), 10_000);
    let text = p.media_playlist().unwrap();
    assert!(text.contains("#EXT-X-PRELOAD-HINT:TYPE=MAP,URI=\"t-init-1.mp4\"\n"));
    assert!(matches!(p.part_state("t-init-1.mp4"), PartState::Ready(_)));
    feed(
        &mut p,
        &synth
            .frames(100, 700)
            .into_iter()
            .map(MediaEvent::Frame)
            .collect::<Vec<_>>(),
        10_000,
    );
    let text = p.media_playlist().unwrap();
    let m = model(&text);
    let open = m.open().unwrap();
    assert!(open.discontinuity && open.map_tag);
    assert_eq!(open.map.as_deref(), Some("t-init-1.mp4"));
    assert_eq!(
        open.program_date_time.as_deref(),
        Some("2024-05-01T12:00:10.000Z")
    );
    assert_eq!(
        m.hints,
        vec![("PART".to_string(), format!("t-2.{}.m4s", open.parts.len()))]
    );
    let l = lines(&text);
    let at_disc = l.iter().position(|x| *x == "#EXT-X-DISCONTINUITY").unwrap();
    assert_eq!(l[at_disc + 1], "#EXT-X-MAP:URI=\"t-init-1.mp4\"");
    assert!(l[at_disc + 2].starts_with("#EXT-X-PROGRAM-DATE-TIME:"));
    assert_eq!(
        l[at_disc + 3],
        "#EXT-X-PART:DURATION=0.20000,URI=\"t-2.0.m4s\",INDEPENDENT=YES"
    );
}

#[test]
fn a_hint_that_a_resync_makes_void_is_unknown() {
    let synth = Synth::av();
    let mut p = live(&synth, config(), 2_700);
    let ((msn, part), _) = p.next_part().unwrap();
    let hinted = format!("t-{msn}.{part}.m4s");
    assert_eq!(p.part_state(&hinted), PartState::Pending);
    assert!(p.resync(at(2_700)));
    // The open segment was closed with the parts it had: the hint moved to the next segment.
    assert_eq!(p.next_part().unwrap().0, (msn + 1, 0));
    assert_eq!(p.part_state(&hinted), PartState::Unknown);
    assert_eq!(
        p.part_state(&format!("t-{}.0.m4s", msn + 1)),
        PartState::Pending
    );
    // A request waiting for that part is answered with the next segment's first part.
    assert_eq!(
        p.check_request(&request(Some(msn), Some(part))),
        Readiness::Wait
    );
}

#[test]
fn delta_updates_skip_segments_beyond_the_skip_boundary() {
    let synth = Synth::av();
    // 30.3 s live: segments 0–14 complete, 15 open with parts (30 s – 30.2 s). The window holds
    // 3–14 (24 s); the end of the playlist is 30.2 s.
    let p = live(&synth, config(), 30_300);
    let full = p.media_playlist().unwrap();
    let full_model = model(&full);
    assert_eq!(full_model.media_sequence, 3);
    assert_eq!(full_model.complete().count(), 12);
    let yes = p.media_playlist_for(&delta(Skip::Yes)).unwrap();
    let m = model(&yes);
    // Skip Boundary 12 s: segments ending more than 12 s before 30.2 s (3–8, ending ≤ 18 s)
    // are replaced; 9 ends at 20 s, 10.2 s before the end, and stays.
    assert_eq!(m.skip, Some((6, None)));
    assert_eq!(m.version, 9, "EXT-X-SKIP needs version 9");
    assert_eq!(
        m.media_sequence, 3,
        "MEDIA-SEQUENCE counts the skipped segments"
    );
    assert_eq!(m.discontinuity_sequence, full_model.discontinuity_sequence);
    assert_eq!(m.complete().next().unwrap().msn, 9);
    assert_eq!(m.server_control, full_model.server_control);
    // The first segment shown restates its EXT-X-MAP; everything after the skip is the full
    // playlist's.
    let first = m.complete().next().unwrap();
    assert!(first.map_tag);
    assert_eq!(first.map.as_deref(), Some("t-init-0.mp4"));
    assert_eq!(&full_model.segments[6..], &restated(&m.segments)[..]);
    assert_eq!(full_model.hints, m.hints);
    let l = lines(&yes);
    assert_eq!(l[1], "#EXT-X-VERSION:9");
    let skip_line = position(&yes, "#EXT-X-SKIP:");
    assert_eq!(l[skip_line], "#EXT-X-SKIP:SKIPPED-SEGMENTS=6");
    assert!(skip_line > position(&yes, "#EXT-X-MEDIA-SEQUENCE:"));
    assert_eq!(l[skip_line + 1], "#EXT-X-MAP:URI=\"t-init-0.mp4\"");
    // The skipped segments end beyond the boundary, the shown ones within it.
    let distances = start_to_end(&full_model);
    let boundary = full_model.server_control.unwrap().can_skip_until.unwrap();
    for (i, segment) in full_model.segments.iter().enumerate() {
        let end_to_end = distances[i] - segment.duration;
        assert_eq!(
            i < 6,
            end_to_end > boundary,
            "segment {} ends {end_to_end} s from the end",
            segment.msn
        );
    }
    // v2 also lists the removed date ranges: there never are any.
    let v2 = p.media_playlist_for(&delta(Skip::V2)).unwrap();
    let m2 = model(&v2);
    assert_eq!(m2.skip, Some((6, Some(String::new()))));
    assert_eq!(m2.version, 10, "a skip of date ranges needs version 10");
    assert!(v2.contains("\n#EXT-X-SKIP:SKIPPED-SEGMENTS=6,RECENTLY-REMOVED-DATERANGES=\"\"\n"));
    assert_eq!(m2.segments, m.segments);
    // Six segments' lines (date, duration, URI: 70 bytes each) fewer.
    assert!(
        full.len() - yes.len() > 6 * 60,
        "{} vs {}",
        yes.len(),
        full.len()
    );
}

/// Across publishes: the skipped segments' EXT-X-DISCONTINUITY tags go with them, and
/// EXT-X-DISCONTINUITY-SEQUENCE stays as in the full playlist (§4.4.5.2).
#[test]
fn delta_update_keeps_the_discontinuity_sequence() {
    let synth = Synth::av();
    let mut p = Packager::new(config());
    for publish in 0..4 {
        let wall = publish * 10_000;
        p.begin_publish(at(wall));
        feed(&mut p, &synth.publish(6_000), wall);
        if publish < 3 {
            p.end_publish(at(wall + 6_000));
        }
    }
    // Segments 0–10 complete (publishes of 2 + 2 + 2 s; the live one's last segment is open).
    let full = model(&p.media_playlist().unwrap());
    let delta = model(&p.media_playlist_for(&delta(Skip::Yes)).unwrap());
    let (skipped, _) = delta.skip.unwrap();
    assert!(skipped >= 3, "{skipped}");
    assert_eq!(delta.discontinuity_sequence, full.discontinuity_sequence);
    let skipped_disc = full.segments[..skipped as usize]
        .iter()
        .filter(|s| s.discontinuity)
        .count();
    assert!(skipped_disc >= 1);
    assert_eq!(
        delta.segments.iter().filter(|s| s.discontinuity).count(),
        full.segments.iter().filter(|s| s.discontinuity).count() - skipped_disc
    );
    assert_eq!(
        &full.segments[skipped as usize..],
        &restated(&delta.segments)[..]
    );
}

/// The segments of a delta update as the full playlist has them: the first one shown restates
/// its EXT-X-MAP, which in the full playlist may be written once for an earlier segment.
fn restated(segments: &[crate::model::ModelSegment]) -> Vec<crate::model::ModelSegment> {
    let mut out = segments.to_vec();
    if let Some(first) = out.first_mut() {
        assert!(
            first.map_tag,
            "the first segment after EXT-X-SKIP has its EXT-X-MAP"
        );
        first.map_tag = false;
    }
    out
}

#[test]
fn rendition_reports_for_other_renditions() {
    let synth = Synth::av();
    let a = live(&synth, config(), 9_100);
    // A synthetic second rendition, a little behind.
    let b = live(
        &synth,
        PackagerConfig {
            name_prefix: "b".into(),
            ..config()
        },
        8_500,
    );
    let report = b.rendition_report("../b/stream.m3u8").unwrap();
    assert_eq!(
        report,
        RenditionReport {
            uri: "../b/stream.m3u8".into(),
            last_msn: 4,
            last_part: Some(1),
        }
    );
    let bad = RenditionReport {
        uri: "x\"y".into(),
        last_msn: 1,
        last_part: None,
    };
    let text = a
        .media_playlist_with_reports(&PlaylistRequest::default(), &[report.clone(), bad])
        .unwrap();
    let m = model(&text);
    assert_eq!(
        m.reports,
        vec![("../b/stream.m3u8".to_string(), Some(4), Some(1))]
    );
    assert_eq!(
        lines(&text).last(),
        Some(&"#EXT-X-RENDITION-REPORT:URI=\"../b/stream.m3u8\",LAST-MSN=4,LAST-PART=1")
    );
    // After the hint, as in the spec's example.
    assert!(position(&text, "#EXT-X-RENDITION-REPORT") > position(&text, "#EXT-X-PRELOAD-HINT"));
    // In a delta update too.
    let delta = a
        .media_playlist_with_reports(&delta(Skip::Yes), std::slice::from_ref(&report))
        .unwrap();
    assert_eq!(model(&delta).reports.len(), 1);
    // When the last part closed a segment, the report names that segment's last part.
    let c = live(&Synth::av(), config(), 2_010);
    assert_eq!(c.open_msn(), None);
    let ((msn, part), _) = c.last_part().unwrap();
    assert_eq!((msn, part), (0, 9));
    assert_eq!(
        c.rendition_report("c.m3u8")
            .map(|r| (r.last_msn, r.last_part)),
        Some((0, Some(9)))
    );
}

#[test]
fn hold_limit_stays_below_hls_js_timeout() {
    let p = live(&Synth::av(), config(), 3_000);
    // hls.js: max(3 × 0.2 s, 0.8 × 2 s) = 1.6 s.
    assert_eq!(p.hold_limit(), Duration::from_millis(1200));
    // A 5 s GOP makes TARGETDURATION 5: hls.js waits 4 s.
    let long = live(
        &Synth {
            gop: 150,
            ..Synth::av()
        },
        config(),
        6_000,
    );
    assert_eq!(long.status().target_duration, Some(5));
    assert_eq!(long.hold_limit(), Duration::from_millis(3000));
    // One-second parts: 3 × 1 s beats 0.8 × 2 s.
    let big = live(
        &Synth::av(),
        PackagerConfig {
            part_target: Duration::from_millis(1000),
            ..config()
        },
        3_000,
    );
    assert_eq!(big.part_target(), Duration::from_millis(1000));
    assert_eq!(big.advance_part_limit(), 3);
    assert_eq!(big.hold_limit(), Duration::from_millis(2250));
}

/// Publishes `fps` video (with audio) and checks `PART-TARGET` and every part against it: none
/// longer, and every part that is neither a segment's first nor its last at least 85 % of it
/// (§4.4.4.9).
fn check_part_target(config: &PackagerConfig, fps: f64, expected_ms: u64) {
    let synth = Synth {
        fps,
        gop: (fps * 2.0).round() as u32,
        ..Synth::av()
    };
    let mut p = Packager::new(config.clone());
    p.begin_publish(at(0));
    let mut vc = crate::fmp4::tests::avc_config();
    vc.frame_rate = Some(fps);
    p.handle(
        &MediaEvent::VideoConfig(std::sync::Arc::new(roomcast_media::VideoConfig::Avc(vc))),
        at(0),
    );
    p.handle(&MediaEvent::AudioConfig(audio_config()), at(0));
    for f in synth.frames(0, 20_000) {
        p.handle(&MediaEvent::Frame(f.clone()), at(f.dts));
    }
    let pt = p.part_target();
    assert_eq!(pt, Duration::from_millis(expected_ms), "{fps} fps");
    let text = p.media_playlist().unwrap();
    let m = model(&text);
    assert_eq!(m.part_target, Some(expected_ms as f64 / 1000.0));
    let pt = pt.as_secs_f64();
    for segment in m.complete() {
        let n = segment.parts.len();
        for (i, part) in segment.parts.iter().enumerate() {
            assert!(part.duration <= pt, "{fps} fps: {part:?}");
            if i + 1 < n && !part.independent {
                assert!(part.duration >= 0.85 * pt, "{fps} fps: {part:?}\n{text}");
            }
        }
    }
}

/// The default 100 ms: whole frames, never below 100 ms (three frames wherever two would be
/// shorter).
#[test]
fn default_part_target_fits_whole_frames() {
    let config = PackagerConfig {
        part_target: PackagerConfig::default().part_target,
        ..config()
    };
    assert_eq!(config.part_target, Duration::from_millis(100));
    for (fps, expected_ms) in [
        (30.0, 100),
        (60.0, 100),
        (50.0, 100),
        (30_000.0 / 1001.0, 101),
        (60_000.0 / 1001.0, 101),
        (25.0, 120),
        (24.0, 125),
        (24_000.0 / 1001.0, 126),
        (15.0, 134),
        (10.0, 100),
    ] {
        check_part_target(&config, fps, expected_ms);
    }
}

/// PART-TARGET is the configured 200 ms rounded to whole frames, and every part that is
/// neither a segment's first nor its last is at least 85 % of it (§4.4.4.9), none longer.
#[test]
fn part_target_fits_whole_frames() {
    for (fps, expected_ms) in [
        (25.0, 200),
        (30.0, 200),
        (50.0, 200),
        (60.0, 200),
        (30_000.0 / 1001.0, 201),
        (60_000.0 / 1001.0, 201),
        (24.0, 209),
        (24_000.0 / 1001.0, 209),
        (15.0, 200),
        (10.0, 200),
        (8.0, 250),
    ] {
        check_part_target(&config(), fps, expected_ms);
    }
    // Audio only: 1024-sample frames at 48 kHz are 21.33 ms; nine make 192 ms.
    let synth = Synth {
        video: false,
        ..Synth::av()
    };
    let p = live(&synth, config(), 6_000);
    assert_eq!(p.part_target(), Duration::from_millis(192));
    // Unknown frame rate: the configured target as it is.
    let mut p = Packager::new(config());
    p.begin_publish(at(0));
    let mut vc = crate::fmp4::tests::avc_config();
    vc.frame_rate = None;
    p.handle(
        &MediaEvent::VideoConfig(std::sync::Arc::new(roomcast_media::VideoConfig::Avc(vc))),
        at(0),
    );
    p.handle(&MediaEvent::Frame(Synth::av().video_frame(0)), at(0));
    assert_eq!(p.part_target(), Duration::from_millis(200));
}

/// Latency: a part is written the moment its content is known — when the frame after its
/// last one arrives (giving that frame its duration) and the audio has reached the boundary —
/// not a frame later.
#[test]
fn part_is_fetchable_when_the_next_frame_arrives() {
    // Video only: part 0 is frames 0–5 (0–200 ms); frame 6 (200 ms) completes it.
    let synth = Synth {
        audio: false,
        ..Synth::av()
    };
    let mut p = Packager::new(config());
    p.begin_publish(at(0));
    p.handle(&MediaEvent::VideoConfig(video_config()), at(0));
    for i in 0..6 {
        p.handle(&MediaEvent::Frame(synth.video_frame(i)), at(0));
        assert!(p.get("t-0.0.m4s").is_none(), "frame {i}");
    }
    assert!(p.handle(&MediaEvent::Frame(synth.video_frame(6)), at(200)));
    let info = p.segment_info(0).unwrap();
    assert_eq!(info.parts.len(), 1);
    assert_eq!(info.parts[0].duration, 0.2);

    // With audio: the part also waits for the audio frame at or after 200 ms (213.3 ms), which
    // in a real-time publish arrives 13 ms after the video frame.
    let synth = Synth::av();
    let mut p = Packager::new(config());
    p.begin_publish(at(0));
    p.handle(&MediaEvent::VideoConfig(video_config()), at(0));
    p.handle(&MediaEvent::AudioConfig(audio_config()), at(0));
    let mut written_at = None;
    for f in synth.frames(0, 400) {
        p.handle(&MediaEvent::Frame(f.clone()), at(f.dts));
        if written_at.is_none() && p.get("t-0.0.m4s").is_some() {
            written_at = Some((f.track, f.dts));
        }
    }
    assert_eq!(written_at, Some((TrackKind::Audio, 213)));

    // A segment boundary: the keyframe at 2 s closes segment 0 on arrival.
    let mut p = Packager::new(config());
    p.begin_publish(at(0));
    p.handle(&MediaEvent::VideoConfig(video_config()), at(0));
    let synth = Synth {
        audio: false,
        ..Synth::av()
    };
    for i in 0..60 {
        p.handle(&MediaEvent::Frame(synth.video_frame(i)), at(0));
    }
    assert!(!p.is_ready());
    let key = synth.video_frame(60);
    assert!(key.keyframe);
    p.handle(&MediaEvent::Frame(key), at(2000));
    assert!(p.is_ready());
    assert_eq!(p.segment_info(0).unwrap().parts.len(), 10);
}

/// Jittery millisecond timestamps (33/34 ms frames) never push a part over the target, and
/// the guess about the held frame does not cut parts a frame short.
#[test]
fn millisecond_jitter_keeps_full_parts() {
    let synth = Synth {
        audio: false,
        ..Synth::av()
    };
    let mut p = Packager::new(config());
    p.begin_publish(at(0));
    p.handle(&MediaEvent::VideoConfig(video_config()), at(0));
    for i in 0..300u32 {
        let mut f: Frame = synth.video_frame(i);
        // ±1 ms of jitter on every other frame.
        let jitter = if i % 2 == 1 { 1 } else { 0 };
        f.dts += jitter;
        f.pts += jitter;
        p.handle(&MediaEvent::Frame(f.clone()), at(f.dts));
    }
    let m = model(&p.media_playlist().unwrap());
    let parts: Vec<f64> = m
        .complete()
        .flat_map(|s| s.parts.iter().map(|x| x.duration))
        .collect();
    assert!(parts.iter().all(|d| *d <= 0.2));
    let full = parts.iter().filter(|d| **d >= 0.199).count();
    assert!(full * 10 >= parts.len() * 9, "{parts:?}");
}
