//! roomcast packager: media events in; fMP4 init segment, parts, segments and HLS playlists out.
//!
//! Sans-IO: no tokio, no files, no clock reads. Wall-clock time is passed in (`now`) and only
//! used for `EXT-X-PROGRAM-DATE-TIME`; everything else follows the media timestamps, so tests run
//! a six-second fixture in microseconds and produce byte-identical output every time.
//!
//! ```text
//! MediaEvent ─▶ start gate ─▶ per-track timing ─▶ hold one frame ─▶ parts (moof+mdat) ─▶ segments
//!               (configs,      (repair, 90 kHz /    (its duration is   (≤ PART-TARGET)    (cut at the first
//!                keyframe)      sample-rate clock)   the next's dts)                       keyframe ≥ target)
//! ```
//!
//! # Segments and parts
//! A segment starts at a video keyframe (audio-only: at an audio frame) and is cut at the first
//! keyframe at or after [`PackagerConfig::target_duration`] (10 ms of slack absorbs RTMP's
//! millisecond rounding). Each segment is the concatenation of its parts; a part is one
//! `moof`+`mdat` (a CMAF chunk) of at most [`Packager::part_target`] (`PART-TARGET`: the
//! configured part target rounded to whole frames when the first publish starts, then fixed),
//! and its duration and whether it starts with a keyframe are kept for LL-HLS
//! ([`Packager::segment_info`]). The video track (else audio) decides cuts and durations; the
//! other track's samples go to the part whose time range they start in, waiting at most 1 s of
//! media for a lagging track.
//!
//! A part is written as soon as its content is known: when the frame after its last one
//! arrives (that frame's timestamp is the last one's end) and starts a segment or would not fit,
//! and the other track has reached the boundary. With a real-time publisher a part is
//! fetchable one frame interval (plus at most one audio frame) after its last frame arrives.
//!
//! With [`PackagerConfig::stream_parts`] the part is written in CMAF chunks instead, one per
//! sample of the first track (with the other track's samples that start before its end), each
//! made as soon as that sample's duration is known and the other track has caught up — the
//! moments at which a cut could be decided. Cuts, durations and samples are the same as
//! without; the part is its chunks concatenated, so a response streamed from
//! [`Packager::part_progress`] and a later GET of the complete part carry the same bytes. A new
//! chunk is not a playlist change: [`Packager::handle`] does not report it, and
//! [`Packager::chunks_made`] counts chunks for the server to wake streaming requests on.
//!
//! # Low-Latency HLS
//! The media playlist carries every LL-HLS feature of draft-pantos-hls-rfc8216bis and Apple's
//! authoring spec §14, and stays a valid plain HLS playlist for players without LL support
//! (see the `playlist` module for its layout): `EXT-X-PART` for the recent segments and the
//! segment being written, `EXT-X-PART-INF`, `EXT-X-SERVER-CONTROL` (blocking reload,
//! `PART-HOLD-BACK` = 3 × `PART-TARGET`, `HOLD-BACK` = 3 and `CAN-SKIP-UNTIL` = 6 target
//! durations), `EXT-X-PRELOAD-HINT` for the next part (and its init segment when a new one
//! comes), delta updates (`EXT-X-SKIP`) and rendition reports. The server side asks:
//! [`PlaylistRequest::parse`] for the delivery directives, [`Packager::check_request`] whether
//! to answer, hold or refuse, [`Packager::media_playlist_for`] for the answer,
//! [`Packager::part_state`] whether an unknown part is worth holding for, and
//! [`Packager::hold_limit`] how long to hold.
//!
//! # Timing
//! * Both tracks share one output timeline (video at 90 kHz, audio at its sample rate), anchored
//!   at the publish's first kept frame, continuous across segments, discontinuities and
//!   republishes: a new publish continues where the previous one ended (both tracks start at
//!   the later of the two ends, so A/V sync holds and nothing overlaps).
//! * Each frame is held until the next one of its track arrives: its duration is the dts
//!   difference. At the end of a publish, the last one repeats the previous duration.
//! * Audio durations are `samples_per_frame`: RTMP's millisecond timestamps jitter (21.33 ms
//!   frames arrive as 21 and 22 ms) and uneven durations become clicks and drift in players. The
//!   sample count is re-anchored to the timestamps only when they disagree by more than a frame:
//!   forward (a gap upstream) the previous sample stretches over it; backward (the timestamps run
//!   slow) one frame is dropped, since moving back would overlap.
//! * A decode timestamp that goes backwards or jumps more than 10 s is replaced by previous +
//!   typical duration (`warn!`), and later frames keep their real spacing from it. Jumps are
//!   judged against a clock shared by both tracks: a long gap in one track that the other
//!   track's timestamps confirm is real and kept; the first frame of a track after a restart
//!   that lies more than 10 s from the shared clock is re-anchored to it.
//! * A gap so long that one sample could not fit in a segment (over the configured target +
//!   0.5 s) becomes a discontinuity: what came before is written, the stream restarts at the
//!   next keyframe after it.
//!
//! # Target duration
//! `EXT-X-TARGETDURATION` never changes during a playlist's (packager's) life. It is fixed when
//! the first segment completes, at max(configured target, that segment's duration rounded up);
//! the first segment is cut without a keyframe if it would exceed 10 s. A later segment that
//! would round above it (an encoder whose keyframe interval grew, a republish with a longer
//! GOP) is cut early, without a keyframe: every EXTINF still rounds to at most the target, and
//! while such a segment is listed the playlists drop `EXT-X-INDEPENDENT-SEGMENTS`.
//!
//! # Discontinuities
//! [`Packager::begin_publish`] after a previous publish, a changed codec config (or a track
//! appearing late), [`Packager::resync`] and an over-long input gap each give
//! `EXT-X-DISCONTINUITY` on the next segment; a new publish or new codecs also give a new init
//! segment (and `EXT-X-MAP`), a resync or gap with the same codecs keeps the current one.
//!
//! # Names
//! Unique and cache-friendly: `{prefix}-init-{gen}.mp4`, `{prefix}-{msn}.m4s`,
//! `{prefix}-{msn}.{part}.m4s`. Nothing is ever renamed or reused, so media can be cached
//! forever.
//!
//! The packager never panics on input: broken timestamps are repaired with a `warn!`, frames
//! without a usable config are dropped with a `warn!` (once per publish, not per frame).

mod fmp4;
mod ll;
mod naming;
mod packager;
mod playlist;
mod request;
mod time;

use std::time::Duration;

use bytes::Bytes;

pub use packager::Packager;
pub use request::{
    PartProgress, PartState, PlaylistRequest, QueryError, Readiness, RenditionReport, Skip,
};

/// Packager settings. Every value is clamped to something that works (see the fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagerConfig {
    /// A segment is cut at the first video keyframe at or after this duration. Default 2 s:
    /// short enough for quick starts and a small live window, long enough that segment requests
    /// stay cheap. Clamped to 1–30 s.
    pub target_duration: Duration,
    /// Target duration of parts (LL-HLS Partial Segments, one `moof`+`mdat` each). The
    /// playlist's `PART-TARGET` ([`Packager::part_target`]) is this rounded to the nearest whole
    /// number of frames when the first publish starts (201 ms at 29.97 fps, 209 ms at 24), so
    /// that parts are full: no part is longer than `PART-TARGET` and the spec wants every part
    /// but a segment's first and last to be at least 85 % of it.
    ///
    /// Default 100 ms: 3 frames at 30 fps, 6 at 60 (101 ms at 29.97, 120 ms at 25). hls.js at
    /// its default settings (low-latency mode, no playback-rate catch-up) aims at
    /// `PART-HOLD-BACK` = 3 parts behind the live edge and keeps whatever extra distance its
    /// start-up took (loading from the last keyframe, decoding up to the start point, about
    /// 0.35 s here). Measured median in Chromium (`scripts/bench/latency`): 200 ms parts
    /// 0.98–1.12 s, 150 ms 0.86 s, 100 ms 0.66–0.69 s; only 100 ms meets the 1 s goal with a
    /// margin. The price is requests: each low-latency viewer makes about ten part and ten
    /// blocking playlist requests a second (five and five at 200 ms). Whole milliseconds;
    /// clamped to 100 ms – `target_duration`.
    pub part_target: Duration,
    /// Segments listed in the live playlist. Default 12; values below 12 are raised to 12. Delta
    /// updates (`_HLS_skip`) may only skip segments more than `CAN-SKIP-UNTIL` = 6 target
    /// durations from the end, so a 6-segment window could never skip anything; 12 lets every
    /// delta update leave out about half of the playlist.
    pub window_segments: usize,
    /// Segments kept in memory beyond the window, so a slow client or CDN that read an older
    /// playlist can still fetch what it lists. Default 4.
    pub retain_segments: usize,
    /// Prefix of every resource name, unique per packager instance (the server passes e.g.
    /// base36 of its boot time) so a CDN never mixes resources of two runs that both count
    /// from sequence 0. Restricted to `[A-Za-z0-9_-]`, at most 64 characters.
    pub name_prefix: String,
    /// Write each part as a series of CMAF chunks (one `moof`+`mdat` per sample of the first
    /// track, made as soon as that sample's duration is known) instead of one `moof`+`mdat`
    /// made when the part is complete, so that a server can stream the hinted part while it
    /// is written ([`Packager::part_progress`]). A part is then the concatenation of its
    /// chunks; its duration, its samples and where it is cut do not change, only its box
    /// structure (about 170 bytes of `moof`/`mdat` headers per extra chunk with audio and
    /// video: 0.8 % of a 3 Mb/s segment at 30 fps and 100 ms parts). Default off: the output is
    /// then one chunk per part.
    ///
    /// Note that sending a part before all of it exists breaks draft-pantos-hls-rfc8216bis
    /// §6.2.6 (a server MUST NOT send any byte of a Partial Segment before all of it can go
    /// at the full speed of the link, so that clients can measure bandwidth).
    pub stream_parts: bool,
}

/// The shortest part target: below it, the request rate (two per part per viewer) grows
/// faster than the latency shrinks.
pub(crate) const MIN_PART_TARGET: Duration = Duration::from_millis(100);

impl Default for PackagerConfig {
    fn default() -> Self {
        Self {
            target_duration: Duration::from_secs(2),
            part_target: Duration::from_millis(100),
            window_segments: MIN_WINDOW_SEGMENTS,
            retain_segments: 4,
            name_prefix: naming::default_prefix(),
            stream_parts: false,
        }
    }
}

impl PackagerConfig {
    /// The config with every value clamped into its documented range.
    pub fn sanitized(&self) -> Self {
        let target_duration = self
            .target_duration
            .clamp(Duration::from_secs(1), Duration::from_secs(30));
        let part_target =
            Duration::from_millis(u64::try_from(self.part_target.as_millis()).unwrap_or(u64::MAX))
                .clamp(MIN_PART_TARGET, target_duration);
        Self {
            target_duration,
            part_target,
            window_segments: self.window_segments.clamp(MIN_WINDOW_SEGMENTS, 10_000),
            retain_segments: self.retain_segments.min(10_000),
            name_prefix: naming::sanitize_prefix(&self.name_prefix),
            stream_parts: self.stream_parts,
        }
    }
}

/// The smallest live window the packager will list: twice the delta-update skip boundary
/// (`CAN-SKIP-UNTIL`, six target durations), so delta updates skip about half the playlist.
pub const MIN_WINDOW_SEGMENTS: usize = 12;

/// Name of the media playlist, as referenced by the multivariant playlist.
pub const MEDIA_PLAYLIST_NAME: &str = "stream.m3u8";

/// What a [`Resource`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// An init segment (`ftyp`+`moov`).
    Init,
    /// A complete media segment (all its parts).
    Segment,
    /// One part (LL-HLS partial segment): a single `moof`+`mdat`, or with
    /// [`PackagerConfig::stream_parts`] one per sample of the first track.
    Part,
}

/// A fetchable resource: its bytes as shared chunks. A segment is its parts' chunks in order,
/// so serving it copies nothing; write the chunks out one after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// What this is.
    pub kind: ResourceKind,
    /// The bytes, in order.
    pub chunks: Vec<Bytes>,
}

impl Resource {
    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// True when there are no bytes (never the case for what the packager returns).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes as one buffer: free for a single chunk, a copy otherwise (tests, tools).
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [one] => one.clone(),
            chunks => {
                let mut out = Vec::with_capacity(self.len());
                for c in chunks {
                    out.extend_from_slice(c);
                }
                Bytes::from(out)
            }
        }
    }

    /// The HTTP content type: `video/mp4` for all three kinds, which every HLS player accepts.
    pub fn content_type(&self) -> &'static str {
        "video/mp4"
    }
}

/// A snapshot of the stream for status pages, the API and metrics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamStatus {
    /// RFC 6381 codecs of the current init segment, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: Option<String>,
    /// Video width in pixels.
    pub width: Option<u32>,
    /// Video height in pixels.
    pub height: Option<u32>,
    /// Video frame rate: from the SPS, else the publisher's metadata, else measured.
    pub frame_rate: Option<f64>,
    /// Peak segment bit rate over the listed segments, bit/s.
    pub bandwidth: Option<u64>,
    /// Mean bit rate over the listed segments, bit/s.
    pub average_bandwidth: Option<u64>,
    /// A publish is in progress.
    pub live: bool,
    /// The last publish ended (the playlist carries `EXT-X-ENDLIST`).
    pub ended: bool,
    /// Complete segments listed in the media playlist.
    pub segments: usize,
    /// Media sequence number of the newest complete segment.
    pub last_msn: Option<u64>,
    /// The playlist's `EXT-X-TARGETDURATION`, once fixed by the first segment.
    pub target_duration: Option<u64>,
}

/// One part of a segment, for LL-HLS playlist rendering and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct PartInfo {
    /// The part's URI (as in the playlist).
    pub name: String,
    /// Duration in seconds (of the video track when there is one).
    pub duration: f64,
    /// Starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
    /// Size in bytes.
    pub size: usize,
}

/// One segment, complete or still being written, for LL-HLS playlist rendering and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentInfo {
    /// Media sequence number.
    pub msn: u64,
    /// The segment's URI (valid once complete).
    pub name: String,
    /// Duration in seconds so far.
    pub duration: f64,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// Starts with a keyframe.
    pub independent: bool,
    /// All its parts are written.
    pub complete: bool,
    /// Name of its init segment.
    pub init: String,
    /// Its parts, in order.
    pub parts: Vec<PartInfo>,
}

#[cfg(test)]
#[path = "../tests/common/model.rs"]
mod model;
#[cfg(test)]
#[path = "../tests/common/read.rs"]
mod read;
#[cfg(test)]
mod tests;
