//! An LL-HLS media playlist read back with the independent m3u8-parser crate, checked against
//! the ordering rules of draft-pantos-hls-rfc8216bis as it is walked. Shared by the unit tests
//! (through `#[path]`) and the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use m3u8_parser::m3u8::playlist::Playlist;
use m3u8_parser::m3u8::tags::Tag;

/// An `EXT-X-PART`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPart {
    pub uri: String,
    pub duration: f64,
    pub independent: bool,
}

/// A Media Segment, or the segment being written (no URI yet, only parts).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSegment {
    /// Media Sequence Number (skipped segments counted).
    pub msn: u64,
    /// `None` for the parts after the last complete segment.
    pub uri: Option<String>,
    pub duration: f64,
    pub discontinuity: bool,
    /// The EXT-X-MAP in effect.
    pub map: Option<String>,
    /// An EXT-X-MAP tag was written for this segment.
    pub map_tag: bool,
    pub program_date_time: Option<String>,
    pub parts: Vec<ModelPart>,
}

/// `EXT-X-SERVER-CONTROL`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ServerControl {
    pub can_skip_until: Option<f64>,
    pub can_skip_dateranges: Option<bool>,
    pub hold_back: Option<f64>,
    pub part_hold_back: Option<f64>,
    pub can_block_reload: Option<bool>,
}

/// A media playlist as a player sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    pub version: u8,
    pub target_duration: u64,
    pub media_sequence: u64,
    pub discontinuity_sequence: u32,
    pub independent_segments: bool,
    pub server_control: Option<ServerControl>,
    pub part_target: Option<f64>,
    /// `EXT-X-SKIP`: (SKIPPED-SEGMENTS, RECENTLY-REMOVED-DATERANGES).
    pub skip: Option<(u32, Option<String>)>,
    /// Complete segments, then (last) the open one if it has parts.
    pub segments: Vec<ModelSegment>,
    /// `EXT-X-PRELOAD-HINT`s: (TYPE, URI).
    pub hints: Vec<(String, String)>,
    /// `EXT-X-RENDITION-REPORT`s: (URI, LAST-MSN, LAST-PART).
    pub reports: Vec<(String, Option<u64>, Option<u64>)>,
    pub endlist: bool,
}

impl Model {
    /// Complete segments only.
    pub fn complete(&self) -> impl Iterator<Item = &ModelSegment> {
        self.segments.iter().filter(|s| s.uri.is_some())
    }

    /// The segment being written, if its parts are listed.
    pub fn open(&self) -> Option<&ModelSegment> {
        self.segments.last().filter(|s| s.uri.is_none())
    }

    /// Every listed part with its (msn, index), in order.
    pub fn parts(&self) -> Vec<(u64, &ModelPart)> {
        self.segments
            .iter()
            .flat_map(|s| s.parts.iter().map(move |p| (s.msn, p)))
            .collect()
    }
}

/// Parses and validates `text` with m3u8-parser, then walks its tags checking the ordering
/// rules: EXTM3U first; the playlist tags (VERSION, TARGETDURATION, SERVER-CONTROL, PART-INF,
/// MEDIA-SEQUENCE, DISCONTINUITY-SEQUENCE, INDEPENDENT-SEGMENTS, SKIP) once each, before any
/// segment; SKIP after MEDIA-SEQUENCE; a segment's DISCONTINUITY, MAP and PROGRAM-DATE-TIME
/// before its first PART; PRELOAD-HINT and RENDITION-REPORT after every segment and part; no
/// PRELOAD-HINT with ENDLIST; EXT-X-PART-INF present when parts are; every part within the
/// PART-TARGET (unless `allow_long_parts`).
pub fn model(text: &str) -> Model {
    let playlist: Playlist = text
        .parse()
        .unwrap_or_else(|e| panic!("does not parse: {e:?}\n{text}"));
    if let Err(errors) = playlist.validate() {
        panic!("invalid playlist: {errors:?}\n{text}");
    }
    assert!(text.starts_with("#EXTM3U\n"), "{text}");
    assert!(text.ends_with('\n'), "{text}");
    for line in text.lines() {
        assert!(
            !line.is_empty() && line.trim() == line,
            "line {line:?}\n{text}"
        );
    }

    let mut m = Model::default();
    let mut seen = std::collections::HashSet::new();
    let mut in_segments = false;
    let mut after_media = false;
    let mut next_msn = None;
    let mut current = ModelSegment::default();
    let mut map = None;
    let mut once = |name: &'static str| assert!(seen.insert(name), "{name} twice\n{text}");
    for tag in &playlist.tags {
        let header = matches!(
            tag,
            Tag::ExtXVersion(_)
                | Tag::ExtXTargetDuration(_)
                | Tag::ExtXServerControl { .. }
                | Tag::ExtXPartInf { .. }
                | Tag::ExtXMediaSequence(_)
                | Tag::ExtXDiscontinuitySequence(_)
                | Tag::ExtXIndependentSegments
                | Tag::ExtXSkip { .. }
        );
        if header {
            assert!(!in_segments, "{tag:?} after the first segment\n{text}");
        }
        let media = matches!(
            tag,
            Tag::ExtInf { .. }
                | Tag::ExtXPart { .. }
                | Tag::ExtXDiscontinuity
                | Tag::ExtXMap(_)
                | Tag::ExtXProgramDateTime(_)
        );
        if media {
            in_segments = true;
            assert!(!after_media, "{tag:?} after a hint or report\n{text}");
        }
        match tag {
            Tag::ExtM3U => once("EXTM3U"),
            Tag::ExtXVersion(v) => {
                once("VERSION");
                m.version = *v;
            }
            Tag::ExtXTargetDuration(t) => {
                once("TARGETDURATION");
                m.target_duration = *t;
            }
            Tag::ExtXServerControl {
                can_skip_until,
                can_skip_dateranges,
                hold_back,
                part_hold_back,
                can_block_reload,
            } => {
                once("SERVER-CONTROL");
                m.server_control = Some(ServerControl {
                    can_skip_until: *can_skip_until,
                    can_skip_dateranges: *can_skip_dateranges,
                    hold_back: *hold_back,
                    part_hold_back: *part_hold_back,
                    can_block_reload: *can_block_reload,
                });
            }
            Tag::ExtXPartInf {
                part_target_duration,
            } => {
                once("PART-INF");
                m.part_target = Some(*part_target_duration);
            }
            Tag::ExtXMediaSequence(n) => {
                once("MEDIA-SEQUENCE");
                m.media_sequence = *n;
                next_msn = Some(*n);
            }
            Tag::ExtXDiscontinuitySequence(n) => {
                once("DISCONTINUITY-SEQUENCE");
                m.discontinuity_sequence = *n;
            }
            Tag::ExtXIndependentSegments => {
                once("INDEPENDENT-SEGMENTS");
                m.independent_segments = true;
            }
            Tag::ExtXSkip {
                skipped_segments,
                recently_removed_dateranges,
            } => {
                once("SKIP");
                let msn = next_msn.expect("EXT-X-SKIP after EXT-X-MEDIA-SEQUENCE");
                next_msn = Some(msn + u64::from(*skipped_segments));
                m.skip = Some((*skipped_segments, recently_removed_dateranges.clone()));
            }
            Tag::ExtXDiscontinuity => {
                assert!(
                    current.parts.is_empty(),
                    "DISCONTINUITY after a PART\n{text}"
                );
                current.discontinuity = true;
            }
            Tag::ExtXMap(value) => {
                assert!(current.parts.is_empty(), "MAP after a PART\n{text}");
                map = Some(value.uri.clone());
                current.map_tag = true;
            }
            Tag::ExtXProgramDateTime(pdt) => {
                assert!(
                    current.parts.is_empty(),
                    "PROGRAM-DATE-TIME after a PART\n{text}"
                );
                current.program_date_time = Some(pdt.clone());
            }
            Tag::ExtXPart {
                uri,
                duration,
                independent,
                byterange,
                gap,
            } => {
                assert!(byterange.is_none() && gap.is_none(), "{text}");
                current.parts.push(ModelPart {
                    uri: uri.clone(),
                    duration: *duration,
                    independent: independent.unwrap_or(false),
                });
            }
            Tag::ExtInf { uri, duration, .. } => {
                let msn = next_msn.unwrap_or(0);
                next_msn = Some(msn + 1);
                let mut segment = std::mem::take(&mut current);
                segment.msn = msn;
                segment.uri = Some(uri.clone());
                segment.duration = *duration;
                segment.map = map.clone();
                m.segments.push(segment);
            }
            Tag::ExtXPreloadHint {
                type_,
                uri,
                byterange_start,
                byterange_length,
            } => {
                after_media = true;
                assert!(byterange_start.is_none() && byterange_length.is_none());
                m.hints.push((type_.clone(), uri.clone()));
            }
            Tag::ExtXRenditionReport {
                uri,
                last_msn,
                last_part,
            } => {
                after_media = true;
                m.reports.push((uri.clone(), *last_msn, *last_part));
            }
            Tag::ExtXEndList => {
                once("ENDLIST");
                m.endlist = true;
            }
            other => panic!("unexpected tag {other:?}\n{text}"),
        }
    }
    if current != ModelSegment::default() {
        assert!(
            !current.parts.is_empty(),
            "segment tags without a segment or part\n{text}"
        );
        current.msn = next_msn.unwrap_or(0);
        current.map = map;
        current.duration = current.parts.iter().map(|p| p.duration).sum();
        m.segments.push(current);
    }

    // Rules across tags.
    let has_parts = m.segments.iter().any(|s| !s.parts.is_empty());
    if has_parts {
        assert!(
            m.part_target.is_some(),
            "EXT-X-PART without PART-INF\n{text}"
        );
        assert!(
            m.server_control.is_some_and(|c| c.part_hold_back.is_some()),
            "PART-HOLD-BACK is required with PART-INF\n{text}"
        );
    }
    if m.endlist {
        assert!(m.hints.is_empty(), "PRELOAD-HINT with ENDLIST\n{text}");
    }
    assert!(
        m.hints.iter().filter(|(t, _)| t == "PART").count() <= 1,
        "{text}"
    );
    assert!(
        m.hints.iter().filter(|(t, _)| t == "MAP").count() <= 1,
        "{text}"
    );
    assert!(m.version >= 6, "EXT-X-MAP needs version 6\n{text}");
    if let Some((_, dateranges)) = &m.skip {
        let needed = if dateranges.is_some() { 10 } else { 9 };
        assert!(
            m.version >= needed,
            "EXT-X-SKIP needs version {needed}\n{text}"
        );
    }
    for s in &m.segments {
        assert!(s.map.is_some(), "every segment has an EXT-X-MAP\n{text}");
        assert!(
            s.program_date_time.is_some(),
            "every segment has a PROGRAM-DATE-TIME\n{text}"
        );
    }
    m
}
