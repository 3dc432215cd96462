//! Playlists. The media playlist is our own writer (m3u8-rs cannot write the LL-HLS tags:
//! EXT-X-PART, PRELOAD-HINT, SERVER-CONTROL, SKIP, RENDITION-REPORT); the multivariant playlist
//! is built with m3u8-rs.
//!
//! # The media playlist (draft-pantos-hls-rfc8216bis; Apple's HLS authoring spec §14)
//! ```text
//! #EXTM3U
//! #EXT-X-VERSION:7                      9 in a delta update (EXT-X-SKIP), 10 for v2 (§8)
//! #EXT-X-TARGETDURATION:2
//! #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.000,HOLD-BACK=6.000,PART-HOLD-BACK=0.600
//! #EXT-X-PART-INF:PART-TARGET=0.200
//! #EXT-X-MEDIA-SEQUENCE:40              unchanged by a delta update
//! #EXT-X-DISCONTINUITY-SEQUENCE:0       unchanged by a delta update (§4.4.5.2)
//! #EXT-X-INDEPENDENT-SEGMENTS
//! #EXT-X-SKIP:SKIPPED-SEGMENTS=5        delta update only: the oldest segments ending more
//!                                       than CAN-SKIP-UNTIL before the end of the playlist
//! #EXT-X-MAP:URI="p-init-0.mp4"         (re)stated before the first segment shown
//! #EXT-X-PROGRAM-DATE-TIME:…            every segment (the low-latency profile, Appendix B)
//! #EXT-X-PART:DURATION=0.20000,URI="p-48.0.m4s",INDEPENDENT=YES
//! …                                     parts only for segments that start within three
//! #EXTINF:2.000,                        target durations of the end (§6.2.2)
//! p-48.m4s
//! #EXT-X-PROGRAM-DATE-TIME:…            the segment being written: its tags, then its parts
//! #EXT-X-PART:DURATION=0.20000,URI="p-49.0.m4s",INDEPENDENT=YES
//! #EXT-X-PRELOAD-HINT:TYPE=PART,URI="p-49.1.m4s"    (TYPE=MAP first when a new init comes)
//! #EXT-X-RENDITION-REPORT:URI="../b/stream.m3u8",LAST-MSN=49,LAST-PART=0
//! ```
//! Players that know only plain HLS ignore the LL-HLS tags (unknown tags are skipped) and see an
//! ordinary live playlist of whole segments. With `EXT-X-ENDLIST` there is no preload hint, and
//! delivery directives are ignored (§6.2.5).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use m3u8_rs::{MasterPlaylist, QuotedOrUnquoted, Resolution, VariantStream};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::naming;
use crate::packager::{Packager, Segment};
use crate::request::{PlaylistRequest, RenditionReport, Skip};

/// `EXT-X-VERSION` of both playlists: 7 covers fMP4 with EXT-X-MAP (6) and is what current
/// players expect. The LL-HLS tags (EXT-X-PART, PART-INF, SERVER-CONTROL, PRELOAD-HINT,
/// RENDITION-REPORT) need no higher version (§8), so plain-HLS players keep playing.
pub(crate) const VERSION: usize = 7;

/// `EXT-X-VERSION` of a Playlist Delta Update: EXT-X-SKIP needs 9 (§8).
const DELTA_VERSION: usize = 9;
/// `EXT-X-VERSION` of a `_HLS_skip=v2` delta update: an EXT-X-SKIP that replaces
/// EXT-X-DATERANGE tags needs 10 (§8). We never have date ranges, but the answer is one that
/// skips them (its EXT-X-SKIP carries RECENTLY-REMOVED-DATERANGES), and the client that asked
/// for it understands 10; 9 would break the MUST if a reader counts it as such (m3u8-parser
/// does).
const DELTA_V2_VERSION: usize = 10;

/// `CAN-SKIP-UNTIL`, in target durations: the spec's minimum (§4.4.3.8), so that delta updates
/// leave out as much as allowed.
pub(crate) const SKIP_BOUNDARY_TARGETS: u64 = 6;
/// `HOLD-BACK`, in target durations: the spec's minimum, and its default when absent.
const HOLD_BACK_TARGETS: u64 = 3;
/// `PART-HOLD-BACK`, in part targets: Apple's minimum (authoring spec §14: MUST be at least
/// three times PART-TARGET; the draft requires twice and recommends three). hls.js in
/// low-latency mode plays this far behind the live edge.
pub(crate) const PART_HOLD_BACK_PARTS: u64 = 3;
/// EXT-X-PART tags are listed for segments that start within this many target durations of
/// the end of the playlist (§6.2.2: they SHOULD be removed beyond three).
const PART_LISTING_TARGETS: u64 = 3;

impl Packager {
    /// The media playlist (`stream.m3u8`) without delivery directives; `None` until the first
    /// segment is complete. Same as `media_playlist_for(&PlaylistRequest::default())`.
    pub fn media_playlist(&self) -> Option<String> {
        self.media_playlist_for(&PlaylistRequest::default())
    }

    /// The media playlist answering `request`: a Playlist Delta Update when `request.skip` asks
    /// for one and some segments are old enough to leave out, the full playlist otherwise.
    /// `None` until the first segment is complete.
    ///
    /// The text depends only on the packager's state and `request.skip` (never on `msn`/`part`,
    /// which only say when to answer: [`check_request`](Self::check_request)), so it may be
    /// cached per state and `Skip` value. It is the current playlist even when what `request`
    /// waits for has not come (the answer at the hold limit).
    pub fn media_playlist_for(&self, request: &PlaylistRequest) -> Option<String> {
        self.media_playlist_with_reports(request, &[])
    }

    /// [`media_playlist_for`](Self::media_playlist_for) with an `EXT-X-RENDITION-REPORT` for
    /// each other rendition of the room ([`rendition_report`](Self::rendition_report) of their
    /// packagers). The low-latency profile (Appendix B) wants one for every other media
    /// playlist of the multivariant playlist; with a single rendition there are none.
    pub fn media_playlist_with_reports(
        &self,
        request: &PlaylistRequest,
        reports: &[RenditionReport],
    ) -> Option<String> {
        let target_duration = self.target_duration?;
        let listed: Vec<&Segment> = self.listed().collect();
        let first = listed.first()?;
        let prefix = &self.config.name_prefix;
        let open = self.open_with_parts();
        let target_us = target_duration.saturating_mul(1_000_000);

        // Distance of each listed segment's start and end from the end of the playlist (the end
        // of the newest part), in microseconds.
        let mut to_end = vec![(0u64, 0u64); listed.len()];
        let mut distance = open.map_or(0, segment_us);
        for (i, segment) in listed.iter().enumerate().rev() {
            let end = distance;
            distance = distance.saturating_add(segment_us(segment));
            to_end[i] = (distance, end);
        }

        // §6.2.5.1: skip the segments further from the end than the Skip Boundary, unless the
        // playlist has ended (then the directive is ignored).
        let skip_boundary_us = target_us.saturating_mul(SKIP_BOUNDARY_TARGETS);
        let skipped = match request.skip {
            Skip::No => 0,
            Skip::Yes | Skip::V2 if self.ended => 0,
            Skip::Yes | Skip::V2 => to_end
                .iter()
                .take_while(|(_, end)| *end > skip_boundary_us)
                .count(),
        };
        let part_window_us = target_us.saturating_mul(PART_LISTING_TARGETS);

        let part_target_ms = duration_ms(self.part_target());
        let mut out = String::with_capacity(512 + 128 * listed.len());
        out.push_str("#EXTM3U\n");
        let version = match (skipped, request.skip) {
            (0, _) | (_, Skip::No) => VERSION,
            (_, Skip::Yes) => DELTA_VERSION,
            (_, Skip::V2) => DELTA_V2_VERSION,
        };
        let _ = writeln!(out, "#EXT-X-VERSION:{version}");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target_duration}");
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={},HOLD-BACK={},PART-HOLD-BACK={}",
            decimal_ms(target_duration.saturating_mul(1000 * SKIP_BOUNDARY_TARGETS)),
            decimal_ms(target_duration.saturating_mul(1000 * HOLD_BACK_TARGETS)),
            decimal_ms(part_target_ms.saturating_mul(PART_HOLD_BACK_PARTS)),
        );
        let _ = writeln!(
            out,
            "#EXT-X-PART-INF:PART-TARGET={}",
            decimal_ms(part_target_ms)
        );
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", first.msn);
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            self.discontinuity_sequence()
        );
        if listed.iter().chain(open.iter()).all(|s| s.independent) {
            out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        }
        if skipped > 0 {
            let _ = write!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
            if request.skip == Skip::V2 {
                // No EXT-X-DATERANGE is ever added, so none was removed either.
                out.push_str(",RECENTLY-REMOVED-DATERANGES=\"\"");
            }
            out.push('\n');
        }

        let mut current_init = None;
        for (segment, (start_to_end, _)) in listed.iter().zip(&to_end).skip(skipped) {
            self.segment_tags(&mut out, segment, &mut current_init);
            if *start_to_end <= part_window_us {
                self.part_tags(&mut out, segment);
            }
            let _ = writeln!(out, "#EXTINF:{:.3},", extinf_seconds(segment));
            out.push_str(&naming::segment(prefix, segment.msn));
            out.push('\n');
        }
        if let Some(open) = open {
            // Tags of a parent segment come before its first part (§4.4.4.9).
            self.segment_tags(&mut out, open, &mut current_init);
            self.part_tags(&mut out, open);
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        } else if let Some(((msn, part), init)) = self.next_part() {
            // The low-latency profile: hint the next part, and its init segment when that is
            // not the one of the last part (a new publish or new codecs).
            if current_init != Some(init) {
                let _ = writeln!(
                    out,
                    "#EXT-X-PRELOAD-HINT:TYPE=MAP,URI=\"{}\"",
                    naming::init(prefix, init)
                );
            }
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                naming::part(prefix, msn, part)
            );
        }
        for report in reports {
            if !quotable(&report.uri) {
                tracing::debug!("rendition report with an unusable URI left out");
                continue;
            }
            let _ = write!(
                out,
                "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={}",
                report.uri, report.last_msn
            );
            if let Some(part) = report.last_part {
                let _ = write!(out, ",LAST-PART={part}");
            }
            out.push('\n');
        }
        Some(out)
    }

    /// The Media Segment tags that apply to `segment` (and its first part).
    fn segment_tags(&self, out: &mut String, segment: &Segment, current_init: &mut Option<u32>) {
        if segment.discontinuity {
            // Kept on the first listed segment too: EXT-X-DISCONTINUITY-SEQUENCE counts only
            // the tags that left the playlist.
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if *current_init != Some(segment.init_gen) {
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"{}\"",
                naming::init(&self.config.name_prefix, segment.init_gen)
            );
            *current_init = Some(segment.init_gen);
        }
        if let Some(pdt) = segment.program_date_time.and_then(rfc3339_millis) {
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{pdt}");
        }
    }

    /// `EXT-X-PART` for each part of `segment`.
    fn part_tags(&self, out: &mut String, segment: &Segment) {
        for (index, part) in segment.parts.iter().enumerate() {
            let _ = write!(
                out,
                "#EXT-X-PART:DURATION={:.5},URI=\"{}\"",
                crate::time::seconds(part.duration, segment.timescale),
                naming::part(
                    &self.config.name_prefix,
                    segment.msn,
                    u32::try_from(index).unwrap_or(u32::MAX)
                )
            );
            if part.independent {
                out.push_str(",INDEPENDENT=YES");
            }
            out.push('\n');
        }
    }

    /// The multivariant playlist (`index.m3u8`): one variant pointing at the media playlist;
    /// `None` until the first segment is complete.
    pub fn multivariant_playlist(&self) -> Option<String> {
        if !self.is_ready() {
            return None;
        }
        let status = self.status();
        let mut other_attributes = HashMap::new();
        if let Some(rate) = status.frame_rate {
            // m3u8-rs prints f64 as is (30 → "30"); HLS wants a decimal with 3 places.
            other_attributes.insert(
                "FRAME-RATE".to_string(),
                QuotedOrUnquoted::Unquoted(format!("{rate:.3}")),
            );
        }
        let resolution = match (status.width, status.height) {
            (Some(width), Some(height)) => Some(Resolution {
                width: u64::from(width),
                height: u64::from(height),
            }),
            _ => None,
        };
        let playlist = MasterPlaylist {
            version: Some(VERSION),
            independent_segments: self.listed().all(|s| s.independent),
            variants: vec![VariantStream {
                uri: crate::MEDIA_PLAYLIST_NAME.to_string(),
                bandwidth: status.bandwidth.unwrap_or(1).max(1),
                average_bandwidth: status.average_bandwidth,
                codecs: status.codecs,
                resolution,
                other_attributes: (!other_attributes.is_empty()).then_some(other_attributes),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut out = Vec::with_capacity(256);
        if let Err(e) = playlist.write_to(&mut out) {
            tracing::error!(error = %e, "multivariant playlist not written");
            return None;
        }
        String::from_utf8(out).ok()
    }
}

/// The `EXTINF` value, written with three decimals: never `0.000` for a segment that has
/// media, however short. `EXTINF` is the segment's duration (RFC 8216 §4.3.2.1) and players
/// divide by it or treat zero as no media. Sample rates are bounded (see `on_audio_config`), so
/// only a degenerate segment (a sub-millisecond sample at the end of a flush) is concerned: it
/// is listed as `0.001`, less than a millisecond over its real duration.
fn extinf_seconds(segment: &Segment) -> f64 {
    let seconds = segment.seconds();
    if segment.duration > 0 && seconds < 0.0005 {
        0.001
    } else {
        seconds
    }
}

/// A segment's (or the open segment's) duration in microseconds.
fn segment_us(segment: &Segment) -> u64 {
    u64::try_from(crate::time::ticks_to_us_floor(
        segment.duration,
        segment.timescale,
    ))
    .unwrap_or(0)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds as a decimal-floating-point number of seconds with three places: `0.200`.
fn decimal_ms(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Can be written as a quoted-string (§4.2): not empty, no `"`, no control characters.
fn quotable(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c == '"' || c.is_control())
}

/// RFC 3339 with milliseconds in UTC, e.g. `2024-05-01T12:00:00.250Z`.
pub(crate) fn rfc3339_millis(t: SystemTime) -> Option<String> {
    let nanos = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).ok()?,
        Err(e) => -i128::try_from(e.duration().as_nanos()).ok()?,
    };
    // Round to the millisecond shown: tick ↔ µs conversions may land a microsecond early,
    // and truncating would print 13.999 for 14.000.
    let nanos = (nanos + 500_000).div_euclid(1_000_000) * 1_000_000;
    let dt = OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
    dt.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn program_date_time_format() {
        let t = UNIX_EPOCH + Duration::from_millis(1_714_564_800_250);
        assert_eq!(
            rfc3339_millis(t).as_deref(),
            Some("2024-05-01T12:00:00.250Z")
        );
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH - Duration::from_millis(1)).as_deref(),
            Some("1969-12-31T23:59:59.999Z")
        );
        assert_eq!(
            rfc3339_millis(t - Duration::from_micros(1)).as_deref(),
            Some("2024-05-01T12:00:00.250Z")
        );
    }
}
