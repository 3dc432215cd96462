//! Playlists. The media playlist is our own writer (m3u8-rs cannot carry the LL-HLS tags that
//! come next: EXT-X-PART, PRELOAD-HINT, SERVER-CONTROL placement); the multivariant playlist is
//! built with m3u8-rs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use m3u8_rs::{MasterPlaylist, QuotedOrUnquoted, Resolution, VariantStream};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::naming;
use crate::packager::Packager;

/// `EXT-X-VERSION` of both playlists: 7 covers fMP4 with EXT-X-MAP (6) and is what current
/// players expect; LL-HLS tags do not raise it, and delta updates (EXT-X-SKIP, version 9) will
/// raise it only in the responses that carry them, so plain-HLS players keep working.
pub(crate) const VERSION: usize = 7;

impl Packager {
    /// The media playlist (`stream.m3u8`); `None` until the first segment is complete.
    pub fn media_playlist(&self) -> Option<String> {
        let target_duration = self.target_duration?;
        let mut listed = self.listed().peekable();
        let first = listed.peek()?;
        let prefix = &self.config.name_prefix;

        let mut out = String::with_capacity(256 + 128 * self.config.window_segments);
        out.push_str("#EXTM3U\n");
        let _ = writeln!(out, "#EXT-X-VERSION:{VERSION}");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target_duration}");
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", first.msn);
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            self.discontinuity_sequence()
        );
        if self.listed().all(|s| s.independent) {
            out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        }

        let mut current_init = None;
        for segment in listed {
            if segment.discontinuity {
                // Kept on the first listed segment too: EXT-X-DISCONTINUITY-SEQUENCE counts only
                // the tags that left the playlist.
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if current_init != Some(segment.init_gen) {
                let _ = writeln!(
                    out,
                    "#EXT-X-MAP:URI=\"{}\"",
                    naming::init(prefix, segment.init_gen)
                );
                current_init = Some(segment.init_gen);
            }
            if let Some(pdt) = segment.program_date_time.and_then(rfc3339_millis) {
                let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{pdt}");
            }
            let _ = writeln!(out, "#EXTINF:{:.3},", segment.seconds());
            out.push_str(&naming::segment(prefix, segment.msn));
            out.push('\n');
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        Some(out)
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
