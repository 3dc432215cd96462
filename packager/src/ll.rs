//! LL-HLS delivery: blocking playlist reload (§6.2.5.2), preload hints (§6.2.6), rendition
//! reports (§4.4.5.4) and how long the server may hold a request.
//!
//! The packager only answers questions; holding and waking requests is the server's job. A
//! held request asks [`Packager::check_request`] (or [`Packager::part_state`]) again whenever
//! [`Packager::handle`] reports a change, and gives up after [`Packager::hold_limit`].

use std::time::Duration;

use crate::naming::{self, Name};
use crate::packager::Packager;
use crate::request::{
    PartProgress, PartState, PlaylistRequest, QueryError, Readiness, RenditionReport,
};

/// hls.js gives up on a blocking playlist request after max(3 × PART-TARGET, 0.8 × target
/// duration) (`playlist-loader.ts`, for requests with `_HLS_part`); requests are held for this
/// fraction of that, leaving the rest for the network and the answer.
const HOLD_FRACTION: (u64, u64) = (3, 4);

impl Packager {
    /// The playlist's `PART-TARGET`: the configured part target rounded to whole frames when
    /// the first publish starts (see [`PackagerConfig::part_target`]), then fixed. Every part
    /// is at most this long, unless a single frame is longer (a gap in the input).
    ///
    /// [`PackagerConfig::part_target`]: crate::PackagerConfig::part_target
    pub fn part_target(&self) -> Duration {
        self.part_target_limit()
    }

    /// Whether a playlist answering `request` can be produced now (§6.2.5.2).
    ///
    /// * [`Readiness::Ready`] without `_HLS_msn`; when the playlist already holds segment `msn`
    ///   (`_HLS_msn` alone) or part `part` of segment `msn` — or anything later; and always
    ///   once the playlist has `EXT-X-ENDLIST` (the directives are then ignored).
    /// * [`Readiness::Wait`] for what is coming: `msn` at most the last segment + 2, a part at
    ///   most the Advance Part Limit (3 / PART-TARGET parts, or 3 for targets of 1 s or more)
    ///   past the last part. A Part Index past the last part of a complete segment means part 0
    ///   of the next segment.
    /// * [`Readiness::Invalid`] (answer 400) beyond those limits, or for `part` without `msn`.
    ///
    /// Before the first segment is complete there is no playlist: requests with directives
    /// wait (up to `msn` 1), requests without are `Ready` and
    /// [`media_playlist_for`](Self::media_playlist_for) gives `None`.
    pub fn check_request(&self, request: &PlaylistRequest) -> Readiness {
        let Some(msn) = request.msn else {
            return match request.part {
                Some(_) => Readiness::Invalid(QueryError::PartWithoutMsn),
                None => Readiness::Ready,
            };
        };
        if self.ended {
            return Readiness::Ready;
        }
        let last_segment = self.segments.back().map(|s| s.msn);
        let limit = match last_segment {
            Some(last) => last.saturating_add(2),
            // The first segment is coming: count it as the last one's successor.
            None => self.open_segment().map_or(0, |s| s.msn).saturating_add(1),
        };
        if msn > limit {
            return Readiness::Invalid(QueryError::MsnTooFar { msn, limit });
        }
        let Some(part) = request.part else {
            return if last_segment.is_some_and(|last| last >= msn) {
                Readiness::Ready
            } else {
                Readiness::Wait
            };
        };
        // §6.2.5.2: a Part Index past the last part of its (complete) parent segment is part 0
        // of the next one.
        let (msn, part) = match self.complete_segment(msn) {
            Some(s) if usize::try_from(part).map_or(true, |p| p >= s.parts.len()) => {
                (msn.saturating_add(1), 0)
            }
            _ => (msn, part),
        };
        let Some(((last_msn, last_part), _)) = self.last_part() else {
            return Readiness::Wait;
        };
        if (msn, part) <= (last_msn, last_part) {
            return if self.is_ready() {
                Readiness::Ready
            } else {
                Readiness::Wait
            };
        }
        // How many parts past the last one it is at least: segments in between have at least
        // one part each, and the last part's segment may have no more.
        let ahead = if msn == last_msn {
            u64::from(part - last_part)
        } else {
            (msn - last_msn - 1).saturating_add(u64::from(part) + 1)
        };
        let limit = self.advance_part_limit();
        if ahead > limit {
            return Readiness::Invalid(QueryError::PartTooFar {
                msn: request.msn.unwrap_or(msn),
                part: request.part.unwrap_or(part),
                limit,
            });
        }
        Readiness::Wait
    }

    /// The Advance Part Limit in parts (§6.2.5.2): three divided by PART-TARGET (in seconds)
    /// when that is under one second, otherwise three; a part further ahead is refused.
    pub fn advance_part_limit(&self) -> u64 {
        let ms = u64::try_from(self.part_target().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        if ms < 1000 { 3000 / ms } else { 3 }
    }

    /// What a resource name refers to, for a request that [`get`](Self::get) cannot answer yet:
    /// the part (or init segment) named by the playlist's `EXT-X-PRELOAD-HINT` is
    /// [`PartState::Pending`] — hold the request until it exists (every byte of it at once:
    /// §6.2.6 forbids sending a part before all of it can go at full speed). When the hint
    /// moves on without it (a resync dropped what it would have held) it becomes
    /// [`PartState::Unknown`]: answer 404.
    pub fn part_state(&self, name: &str) -> PartState {
        if let Some(resource) = self.get(name) {
            return PartState::Ready(resource);
        }
        if !self.is_ready() {
            return PartState::Unknown;
        }
        let Some((next, next_init)) = self.next_part() else {
            return PartState::Unknown;
        };
        let map_hinted = self.last_part().is_some_and(|(_, init)| init != next_init);
        match naming::parse(&self.config.name_prefix, name) {
            Some(Name::Part(msn, part)) if (msn, part) == next => PartState::Pending,
            Some(Name::Init(generation)) if map_hinted && generation == next_init => {
                PartState::Pending
            }
            _ => PartState::Unknown,
        }
    }

    /// How far the resource `name` has come, for a server that streams the hinted part while
    /// it is written ([`PackagerConfig::stream_parts`]): [`PartProgress::Complete`] once
    /// [`get`](Self::get) has it; [`PartProgress::Writing`] with the chunks made so far while it
    /// is what `EXT-X-PRELOAD-HINT` names ([`PartState::Pending`]; an init segment never has
    /// chunks: it comes whole); [`PartProgress::Gone`] otherwise — unknown, evicted, or
    /// abandoned (the hint moved on without it).
    ///
    /// A part's chunks only grow, and the complete part is the same chunks, unless its writing
    /// is abandoned and started again under the same name (a resync before the segment's first
    /// part): the writing `id` then changes.
    ///
    /// [`PackagerConfig::stream_parts`]: crate::PackagerConfig::stream_parts
    pub fn part_progress(&self, name: &str) -> PartProgress {
        let part = match naming::parse(&self.config.name_prefix, name) {
            Some(Name::Part(msn, part)) => Some((msn, part)),
            _ => None,
        };
        if let Some(resource) = self.get(name) {
            let id = part.and_then(|(msn, part)| {
                let segment = self
                    .complete_segment(msn)
                    .or_else(|| self.open_segment().filter(|s| s.msn == msn))?;
                segment.parts.get(usize::try_from(part).ok()?)?.writing
            });
            return PartProgress::Complete {
                id,
                chunks: resource.chunks,
            };
        }
        match self.part_state(name) {
            PartState::Pending => {
                // The hinted part is the one being written: the open part's chunks are its.
                let (id, chunks) = match part.and(self.open_part_chunks()) {
                    Some((id, chunks)) => (Some(id), chunks),
                    None => (None, Vec::new()),
                };
                PartProgress::Writing { id, chunks }
            }
            PartState::Ready(resource) => PartProgress::Complete {
                id: None,
                chunks: resource.chunks,
            },
            PartState::Unknown => PartProgress::Gone,
        }
    }

    /// How long the server may hold a blocking playlist or hinted part request before
    /// answering anyway (with the current playlist; 404 for a part): three quarters of the
    /// longest hls.js waits, max(3 × PART-TARGET, 0.8 × target duration) — 1.2 s at the
    /// defaults (2 s segments, 100 ms parts), well above the one part time a request normally
    /// waits, and 0.4 s short of hls.js timing out and counting an error.
    pub fn hold_limit(&self) -> Duration {
        let part_ms = u64::try_from(self.part_target().as_millis()).unwrap_or(u64::MAX);
        let target_s = self.target_duration.unwrap_or_else(|| {
            u64::try_from(self.config.target_duration.as_millis().div_ceil(1000))
                .unwrap_or(u64::MAX)
        });
        // hls.js: Math.max(partTarget * 3, targetDuration * 0.8).
        let hls_js_ms = part_ms.saturating_mul(3).max(target_s.saturating_mul(800));
        Duration::from_millis(hls_js_ms / HOLD_FRACTION.1 * HOLD_FRACTION.0)
    }

    /// This rendition's `EXT-X-RENDITION-REPORT` for the playlists of the room's other
    /// renditions: `uri` is this rendition's media playlist relative to theirs. `None` before
    /// the first segment is complete.
    pub fn rendition_report(&self, uri: impl Into<String>) -> Option<RenditionReport> {
        if !self.is_ready() {
            return None;
        }
        let ((last_msn, last_part), _) = self.last_part()?;
        Some(RenditionReport {
            uri: uri.into(),
            last_msn,
            last_part: Some(last_part),
        })
    }
}
