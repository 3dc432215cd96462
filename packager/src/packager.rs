//! The packager state machine: start gate, per-track timing, parts and segments, the live window.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use roomcast_media::{AudioConfig, Frame, MediaEvent, StreamMetadata, TrackKind, VideoConfig};
use tracing::{debug, error, warn};

use crate::MIN_PART_TARGET;
use crate::fmp4::{self, Sample, TrackConfig, TrackRun};
use crate::naming::{self, Name};
use crate::time::{
    DtsRepair, MAX_COMPOSITION_OFFSET_MS, Repair, Timeline, VIDEO_TIMESCALE, cmp_time,
    rescale_ceil, ticks_to_us_ceil, ticks_to_us_floor,
};
use crate::{PackagerConfig, PartInfo, Resource, ResourceKind, SegmentInfo, StreamStatus};

/// An expected track whose config has not arrived is given up on after this much media of the
/// other track: long enough for any encoder that sends its sequence headers late, short enough
/// that viewers do not wait.
const MISSING_TRACK_WAIT_MS: i64 = 1000;
/// Bounds on what is buffered before the start (waiting for configs or a keyframe).
const MAX_START_BUFFER_MS: i64 = 10_000;
const MAX_START_BUFFER_FRAMES: usize = 4096;
/// The second track may lag the first by this much media time before parts are written
/// without waiting for it (an encoder that stopped sending audio must not stall video).
const MAX_INTERLEAVE_MS: u64 = 1000;
/// Bound on finished samples waiting to be written, per track (reached only when the first
/// track stalls while the other keeps coming).
const MAX_QUEUED_SAMPLES: usize = 4096;
/// RTMP timestamps are rounded to the millisecond, so a keyframe exactly one target after the
/// segment start may appear a millisecond early; this much slack keeps it the cut point.
const CUT_TOLERANCE_MS: u64 = 10;
/// When the held (newest) frame is guessed to be as long as the part's frames so far, a guess
/// this much over the part target still waits for the real duration: millisecond timestamps
/// make 30 fps frames 33 or 34 ms, and six of them still fill 200 ms exactly.
const HELD_CUT_SLACK_MS: u64 = 2;
/// The first segment fixes `EXT-X-TARGETDURATION`. With an encoder that sends keyframes rarely
/// (or never) it is cut without a keyframe at this length so the target stays sane.
const MAX_FIRST_SEGMENT_S: u64 = 10;

/// Audio sample rates the packager accepts (the audio track's timescale). An AAC
/// `AudioSpecificConfig` may carry any explicit 24-bit rate, but the standard rates
/// (ISO/IEC 14496-3, Table 1.18) go from 7.35 to 96 kHz and no encoder uses others. A rate far
/// above would make every frame last a fraction of a millisecond: a segment of them cannot be
/// listed with a positive `EXTINF` (three decimals) and the player could not play it anyway.
const MIN_AUDIO_SAMPLE_RATE: u32 = 7350;
const MAX_AUDIO_SAMPLE_RATE: u32 = 96_000;

const VIDEO_TRACK_ID: u32 = 1;
const AUDIO_TRACK_ID: u32 = 2;

/// An init segment of one generation. Generations only grow, so every init has its own name.
#[derive(Debug)]
pub(crate) struct InitSegment {
    pub(crate) generation: u32,
    pub(crate) data: Bytes,
}

/// One part: a single `moof`+`mdat`, or with `stream_parts` the CMAF chunks it was written as.
#[derive(Debug)]
pub(crate) struct Part {
    /// Its bytes: one buffer, or its chunks in order.
    pub(crate) chunks: Vec<Bytes>,
    /// The id of its writing as chunks (see [`crate::PartProgress`]); `None` when written whole.
    pub(crate) writing: Option<u64>,
    /// Duration in the segment's timescale.
    pub(crate) duration: u64,
    pub(crate) independent: bool,
}

impl Part {
    pub(crate) fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }
}

/// The part being written as CMAF chunks (`stream_parts`), not complete yet.
#[derive(Debug)]
struct OpenPart {
    id: u64,
    chunks: Vec<Bytes>,
}

/// A media segment, complete or being written.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) msn: u64,
    pub(crate) init_gen: u32,
    /// Timescale of the first track (video if any): the one that defines durations.
    pub(crate) timescale: u32,
    pub(crate) start: u64,
    pub(crate) duration: u64,
    pub(crate) parts: Vec<Part>,
    pub(crate) discontinuity: bool,
    pub(crate) independent: bool,
    pub(crate) program_date_time: Option<SystemTime>,
    pub(crate) video_frames: u64,
    pub(crate) size: usize,
}

impl Segment {
    pub(crate) fn seconds(&self) -> f64 {
        crate::time::seconds(self.duration, self.timescale)
    }
}

/// Timing state of one track kind that outlives a start/stop of the writer (resync, codec
/// change): the timestamp repair and where the track's output timeline ended.
#[derive(Debug, Clone)]
struct TrackTiming {
    repair: DtsRepair,
    /// End of the last finished sample: (ticks, timescale).
    end: Option<(u64, u32)>,
}

impl TrackTiming {
    fn new(kind: TrackKind) -> Self {
        // Defaults until a config says better: 30 fps video, 1024-sample 48 kHz audio.
        match kind {
            TrackKind::Video => Self {
                repair: DtsRepair::new(33, true),
                end: None,
            },
            TrackKind::Audio => Self {
                repair: DtsRepair::new(21, false),
                end: None,
            },
        }
    }

    fn end_in(&self, timescale: u32) -> Option<u64> {
        self.end.map(|(ticks, ts)| {
            if ts == timescale {
                ticks
            } else {
                rescale_ceil(ticks, ts, timescale)
            }
        })
    }
}

/// Per-frame problems are logged for the first few occurrences, then every thousandth with a
/// count, so a broken encoder cannot flood the logs (one line per frame is 50+ lines/s).
#[derive(Debug, Default)]
struct LogBudget {
    seen: u64,
}

impl LogBudget {
    /// The occurrence count when this one should be logged.
    fn allow(&mut self) -> Option<u64> {
        self.seen = self.seen.saturating_add(1);
        (self.seen <= 10 || self.seen.is_multiple_of(1000)).then_some(self.seen)
    }
}

/// A track being written.
#[derive(Debug)]
struct Track {
    kind: TrackKind,
    id: u32,
    timescale: u32,
    /// Audio: PCM samples per frame, the duration of every audio sample.
    samples_per_frame: u32,
    timing: TrackTiming,
    /// The newest frame; its duration is known when the next one arrives.
    held: Option<Sample>,
    /// Finished samples not yet written into a part.
    queue: VecDeque<Sample>,
    /// How many samples at the front of `queue` are already in chunks of the open part
    /// (`stream_parts`); they leave the queue when the part is complete.
    chunked: usize,
    last_duration: u32,
    log: LogBudget,
}

impl Track {
    /// The earliest decode time the next sample may have.
    fn min_next(&self) -> u64 {
        match &self.held {
            Some(h) => h.dts.saturating_add(1),
            None => self.timing.end_in(self.timescale).unwrap_or(0),
        }
    }

    /// Where sample counting puts the next audio frame.
    fn counted_next(&self) -> Option<u64> {
        match &self.held {
            Some(h) => Some(h.dts.saturating_add(u64::from(self.samples_per_frame))),
            None => self.timing.end_in(self.timescale),
        }
    }

    /// A duration for a sample whose successor never came.
    fn estimated_duration(&self) -> u32 {
        if self.last_duration > 0 {
            return self.last_duration;
        }
        match self.kind {
            TrackKind::Audio => self.samples_per_frame.max(1),
            TrackKind::Video => {
                let ms = u64::try_from(self.timing.repair.typical_ms()).unwrap_or(33);
                u32::try_from(ms * u64::from(self.timescale) / 1000)
                    .unwrap_or(u32::MAX)
                    .max(1)
            }
        }
    }

    fn finish(&mut self, sample: Sample) {
        self.timing.end = Some((
            sample.dts.saturating_add(u64::from(sample.duration)),
            self.timescale,
        ));
        self.last_duration = sample.duration;
        self.queue.push_back(sample);
        if self.queue.len() > MAX_QUEUED_SAMPLES {
            self.queue.pop_front();
            self.chunked = self.chunked.saturating_sub(1);
            if let Some(count) = self.log.allow() {
                warn!(track = ?self.kind, count, "too many samples waiting for the other track; oldest dropped");
            }
        }
    }
}

/// What became of a frame given to the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pushed {
    /// Held (or dropped with a log line).
    Done,
    /// It comes so long after the previous frame of the first track that the sample in between
    /// could not fit in a segment: the caller starts over with a discontinuity.
    Gap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// End the part before this sample.
    Part,
    /// End the part and the segment before this sample.
    Segment,
    /// Write everything (end of publish).
    End,
}

#[derive(Debug, Default)]
struct Starting {
    /// Frames of configured tracks, in arrival order, with their arrival time.
    buffer: VecDeque<(Frame, SystemTime)>,
    /// Which tracks to wait for (video, audio); fixed at the first frame.
    expected: Option<(bool, bool)>,
    trimmed: bool,
}

#[derive(Debug)]
struct Running {
    /// Video first when present: the first track decides cuts and durations.
    tracks: Vec<Track>,
    configs: Vec<TrackConfig>,
    init_gen: u32,
    open: Option<Segment>,
    part_start: u64,
    /// The chunks of the part being written (`stream_parts`).
    open_part: Option<OpenPart>,
}

#[derive(Debug)]
enum Phase {
    Idle,
    Starting(Starting),
    Running(Running),
}

/// Warn once per publish for each kind of dropped input, not once per frame.
#[derive(Debug, Default)]
struct DropWarnings {
    no_config: [bool; 2],
    not_in_init: [bool; 2],
    empty: bool,
}

fn kind_index(kind: TrackKind) -> usize {
    match kind {
        TrackKind::Video => 0,
        TrackKind::Audio => 1,
    }
}

/// The sans-IO packager of one room: feed it [`MediaEvent`]s, read back playlists and
/// resources. See the crate documentation for the model.
pub struct Packager {
    pub(crate) config: PackagerConfig,
    pub(crate) live: bool,
    pub(crate) ended: bool,
    ever_published: bool,
    phase: Phase,
    metadata: Option<Arc<StreamMetadata>>,
    video: Option<Arc<VideoConfig>>,
    audio: Option<Arc<AudioConfig>>,
    /// The current publish's mapping onto the output timeline.
    timeline: Option<Timeline>,
    /// Output time (µs) where the next publish continues.
    next_epoch_us: i64,
    /// (output µs, wall clock) of the current publish's first frame.
    pdt_anchor: Option<(i64, SystemTime)>,
    /// The shared input clock: newest repaired timestamp (ms) of any track in this publish.
    input_newest: Option<i64>,
    timing: [TrackTiming; 2],
    pub(crate) inits: VecDeque<InitSegment>,
    next_init_gen: u32,
    /// Configs of the newest init segment.
    pub(crate) current_tracks: Vec<TrackConfig>,
    pub(crate) segments: VecDeque<Segment>,
    next_msn: u64,
    pending_discontinuity: bool,
    pub(crate) evicted_discontinuities: u64,
    /// A publish began since the last init segment was made: the next start needs a new one
    /// even with the same codecs (a new publisher's init gets a new name).
    new_init_required: bool,
    pub(crate) target_duration: Option<u64>,
    /// `PART-TARGET`, fixed when the first publish starts (see `choose_part_target`).
    part_target: Option<Duration>,
    next_fragment_seq: u32,
    /// CMAF chunks of open parts made so far (`stream_parts`).
    chunks_made: u64,
    /// Id of the next writing of a part as chunks.
    next_writing_id: u64,
    warned: DropWarnings,
}

impl Packager {
    /// Name of the media playlist, as referenced by the multivariant playlist.
    pub const MEDIA_PLAYLIST_NAME: &'static str = crate::MEDIA_PLAYLIST_NAME;

    /// A packager with no publish yet. The config is clamped (see [`PackagerConfig`]).
    pub fn new(config: PackagerConfig) -> Self {
        Self {
            config: config.sanitized(),
            live: false,
            ended: false,
            ever_published: false,
            phase: Phase::Idle,
            metadata: None,
            video: None,
            audio: None,
            timeline: None,
            next_epoch_us: 0,
            pdt_anchor: None,
            input_newest: None,
            timing: [
                TrackTiming::new(TrackKind::Video),
                TrackTiming::new(TrackKind::Audio),
            ],
            inits: VecDeque::new(),
            next_init_gen: 0,
            current_tracks: Vec::new(),
            segments: VecDeque::new(),
            next_msn: 0,
            pending_discontinuity: false,
            evicted_discontinuities: 0,
            new_init_required: true,
            target_duration: None,
            part_target: None,
            next_fragment_seq: 1,
            chunks_made: 0,
            next_writing_id: 1,
            warned: DropWarnings::default(),
        }
    }

    /// The effective (clamped) configuration.
    pub fn config(&self) -> &PackagerConfig {
        &self.config
    }

    /// Starts (or restarts after an end/takeover/gap) a publish. The next init segment gets a new
    /// name and the first segment after a previous one is preceded by `EXT-X-DISCONTINUITY`;
    /// `EXT-X-ENDLIST` is removed. The timeline continues where the previous publish ended.
    ///
    /// Call it before feeding the new publish's events: it forgets the previous publisher's
    /// metadata and codec configs (the new publisher sends its own). If a publish is still in
    /// progress (takeover), it is flushed first, without `EXT-X-ENDLIST`.
    /// Returns true when the playlist changed.
    pub fn begin_publish(&mut self, now: SystemTime) -> bool {
        let hint = self.next_part();
        let changed = self.begin_publish_inner(now);
        changed | self.hint_changed(hint)
    }

    fn begin_publish_inner(&mut self, now: SystemTime) -> bool {
        let mut changed = false;
        if self.live {
            changed |= self.stop(now);
        }
        changed |= self.ended && !self.segments.is_empty();
        self.live = true;
        self.ended = false;
        self.ever_published = true;
        self.metadata = None;
        self.video = None;
        self.audio = None;
        self.timeline = None;
        self.pdt_anchor = None;
        self.input_newest = None;
        for timing in &mut self.timing {
            timing.repair.reset();
        }
        if self.next_msn > 0 {
            self.pending_discontinuity = true;
        }
        self.new_init_required = true;
        self.warned = DropWarnings::default();
        self.phase = Phase::Starting(Starting::default());
        changed
    }

    /// Feeds one event. Returns true when something new became fetchable (init, part or
    /// segment) or the playlists changed — the server uses it to wake waiting HTTP requests.
    ///
    /// Events before the first [`begin_publish`](Self::begin_publish) start a publish
    /// implicitly; events after [`end_publish`](Self::end_publish) are ignored until the next
    /// `begin_publish`.
    pub fn handle(&mut self, event: &MediaEvent, now: SystemTime) -> bool {
        if !self.live && self.ever_published {
            debug!("media event outside a publish ignored");
            return false;
        }
        let hint = self.next_part();
        let changed = self.handle_inner(event, now);
        changed | self.hint_changed(hint)
    }

    fn handle_inner(&mut self, event: &MediaEvent, now: SystemTime) -> bool {
        let mut changed = false;
        if !self.live {
            changed |= self.begin_publish_inner(now);
        }
        changed
            | match event {
                MediaEvent::Metadata(meta) => {
                    self.metadata = Some(Arc::clone(meta));
                    false
                }
                MediaEvent::VideoConfig(config) => self.on_video_config(config, now),
                MediaEvent::AudioConfig(config) => self.on_audio_config(config, now),
                MediaEvent::Frame(frame) => self.on_frame(frame, now),
            }
    }

    /// The subscriber lost events (hub lag). What is already written as parts stays (players
    /// may have fetched those parts, and names are never reused), so the segment being written
    /// is closed short with them; samples not yet written are dropped. Then the packager waits
    /// for the next video keyframe and marks a discontinuity.
    pub fn resync(&mut self, now: SystemTime) -> bool {
        let hint = self.next_part();
        let changed = self.resync_inner(now);
        changed | self.hint_changed(hint)
    }

    fn resync_inner(&mut self, now: SystemTime) -> bool {
        let _ = now;
        // Events were lost, so the publisher's clock moved on by an unknown amount: the next
        // frame is taken as it comes (never before what was written, though).
        self.input_newest = None;
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Idle => false,
            Phase::Starting(starting) => {
                let expected = starting.expected;
                for timing in &mut self.timing {
                    timing.repair.forget_last();
                }
                if self.next_msn > 0 {
                    self.pending_discontinuity = true;
                }
                self.phase = Phase::Starting(Starting {
                    expected,
                    ..Starting::default()
                });
                false
            }
            Phase::Running(mut running) => {
                for track in &mut running.tracks {
                    track.held = None;
                    track.queue.clear();
                }
                let changed = self.close_segment(&mut running);
                self.save_timing(&running);
                for timing in &mut self.timing {
                    timing.repair.forget_last();
                }
                warn!("media events lost; waiting for the next keyframe, discontinuity follows");
                self.pending_discontinuity = true;
                self.phase = Phase::Starting(Starting {
                    expected: Some((self.video.is_some(), self.audio.is_some())),
                    ..Starting::default()
                });
                changed
            }
        }
    }

    /// The media playlist ends with `EXT-X-PRELOAD-HINT`s derived from [`next_part`]
    /// (`TYPE=MAP` when the next part comes with a new init segment): a step that changes them
    /// changes the playlist even when it writes nothing, e.g. a takeover or a codec change
    /// while waiting for a keyframe, whose next part will use a new init.
    ///
    /// [`next_part`]: Self::next_part
    fn hint_changed(&self, before: Option<((u64, u32), u32)>) -> bool {
        self.is_ready() && self.next_part() != before
    }

    /// The publish ended: held frames (with an estimated duration for each track's last
    /// sample) and the partial segment become the last segment, and `EXT-X-ENDLIST` is
    /// appended. Returns true when the playlist changed.
    pub fn end_publish(&mut self, now: SystemTime) -> bool {
        if !self.live {
            return false;
        }
        let changed = self.stop(now);
        self.live = false;
        self.ended = true;
        changed || !self.segments.is_empty()
    }

    /// At least one complete segment exists, so the playlists can be served.
    pub fn is_ready(&self) -> bool {
        !self.segments.is_empty()
    }

    /// An init segment, segment or part by its playlist URI; `None` if unknown or evicted.
    pub fn get(&self, name: &str) -> Option<Resource> {
        match naming::parse(&self.config.name_prefix, name)? {
            Name::Init(generation) => {
                self.inits
                    .iter()
                    .find(|i| i.generation == generation)
                    .map(|i| Resource {
                        kind: ResourceKind::Init,
                        chunks: vec![i.data.clone()],
                    })
            }
            Name::Segment(msn) => self.complete_segment(msn).map(|s| Resource {
                kind: ResourceKind::Segment,
                chunks: s
                    .parts
                    .iter()
                    .flat_map(|p| p.chunks.iter().cloned())
                    .collect(),
            }),
            Name::Part(msn, part) => {
                let segment = self
                    .complete_segment(msn)
                    .or_else(|| self.open_segment().filter(|s| s.msn == msn))?;
                let part = segment.parts.get(usize::try_from(part).ok()?)?;
                Some(Resource {
                    kind: ResourceKind::Part,
                    chunks: part.chunks.clone(),
                })
            }
        }
    }

    /// CMAF chunks of parts made so far: it only grows, and only with
    /// [`PackagerConfig::stream_parts`]. A chunk of the hinted part changes no playlist, so
    /// [`handle`](Self::handle) does not report it; a server that streams the hinted part
    /// ([`part_progress`](Self::part_progress)) wakes its requests when this moves or `handle`
    /// reports a change.
    ///
    /// [`PackagerConfig::stream_parts`]: crate::PackagerConfig::stream_parts
    pub fn chunks_made(&self) -> u64 {
        self.chunks_made
    }

    /// The writing id and chunks of the part being written as chunks, once it has one.
    pub(crate) fn open_part_chunks(&self) -> Option<(u64, Vec<Bytes>)> {
        match &self.phase {
            Phase::Running(r) => r.open_part.as_ref().map(|p| (p.id, p.chunks.clone())),
            _ => None,
        }
    }

    /// A segment (complete or being written) with its parts, if still in memory.
    pub fn segment_info(&self, msn: u64) -> Option<SegmentInfo> {
        let (segment, complete) = match self.complete_segment(msn) {
            Some(s) => (s, true),
            None => (self.open_segment().filter(|s| s.msn == msn)?, false),
        };
        let prefix = &self.config.name_prefix;
        Some(SegmentInfo {
            msn,
            name: naming::segment(prefix, msn),
            duration: segment.seconds(),
            discontinuity: segment.discontinuity,
            independent: segment.independent,
            complete,
            init: naming::init(prefix, segment.init_gen),
            parts: segment
                .parts
                .iter()
                .enumerate()
                .map(|(i, p)| PartInfo {
                    name: naming::part(prefix, msn, u32::try_from(i).unwrap_or(u32::MAX)),
                    duration: crate::time::seconds(p.duration, segment.timescale),
                    independent: p.independent,
                    size: p.len(),
                })
                .collect(),
        })
    }

    /// Media sequence number of the segment being written, if any.
    pub fn open_msn(&self) -> Option<u64> {
        self.open_segment().map(|s| s.msn)
    }

    /// A snapshot for status pages and metrics.
    pub fn status(&self) -> StreamStatus {
        let video = self.current_tracks.iter().find_map(|t| match t {
            TrackConfig::Video(v) => Some(v),
            TrackConfig::Audio(_) => None,
        });
        let (width, height) = match video {
            Some(v) => {
                let (w, h) = v.dimensions();
                (Some(w), Some(h))
            }
            None => (None, None),
        };
        let (bandwidth, average_bandwidth) = self.bandwidth();
        StreamStatus {
            codecs: self.codecs(),
            width,
            height,
            frame_rate: self.frame_rate(),
            bandwidth,
            average_bandwidth,
            live: self.live,
            ended: self.ended,
            segments: self.listed().count(),
            last_msn: self.segments.back().map(|s| s.msn),
            target_duration: self.target_duration,
        }
    }

    // ---- internals shared with the playlist writer ----

    pub(crate) fn listed(&self) -> impl Iterator<Item = &Segment> {
        let skip = self
            .segments
            .len()
            .saturating_sub(self.config.window_segments);
        self.segments.iter().skip(skip)
    }

    /// Discontinuities before the first listed segment (`EXT-X-DISCONTINUITY-SEQUENCE`): the
    /// tags of segments that left the playlist, evicted or only retained.
    pub(crate) fn discontinuity_sequence(&self) -> u64 {
        let skip = self
            .segments
            .len()
            .saturating_sub(self.config.window_segments);
        self.evicted_discontinuities
            + self
                .segments
                .iter()
                .take(skip)
                .filter(|s| s.discontinuity)
                .count() as u64
    }

    pub(crate) fn codecs(&self) -> Option<String> {
        if self.current_tracks.is_empty() {
            return None;
        }
        Some(
            self.current_tracks
                .iter()
                .map(TrackConfig::codec_string)
                .collect::<Vec<_>>()
                .join(","),
        )
    }

    pub(crate) fn frame_rate(&self) -> Option<f64> {
        let video = self.current_tracks.iter().find_map(|t| match t {
            TrackConfig::Video(v) => Some(v),
            TrackConfig::Audio(_) => None,
        })?;
        let valid = |r: f64| (r.is_finite() && r > 0.0 && r < 1000.0).then_some(r);
        video
            .frame_rate()
            .and_then(valid)
            .or_else(|| {
                self.metadata
                    .as_ref()
                    .and_then(|m| m.frame_rate)
                    .and_then(valid)
            })
            .or_else(|| {
                let (frames, secs) = self
                    .listed()
                    .filter(|s| s.video_frames > 0)
                    .fold((0u64, 0f64), |(f, d), s| {
                        (f + s.video_frames, d + s.seconds())
                    });
                valid(frames as f64 / secs)
            })
    }

    /// (peak, average) bit rate over the listed segments. The peak ignores segments shorter
    /// than half the target (a final flush or a resync cut), whose rate says little.
    pub(crate) fn bandwidth(&self) -> (Option<u64>, Option<u64>) {
        let half_target = self.config.target_duration.as_secs_f64() / 2.0;
        let rate = |s: &Segment| {
            let secs = s.seconds();
            (secs > 0.0).then(|| s.size as f64 * 8.0 / secs)
        };
        let peak_of = |min_secs: f64| {
            self.listed()
                .filter(|s| s.seconds() >= min_secs)
                .filter_map(rate)
                .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))
        };
        let peak = peak_of(half_target).or_else(|| peak_of(0.0));
        let (bytes, secs) = self.listed().fold((0f64, 0f64), |(b, d), s| {
            (b + s.size as f64, d + s.seconds())
        });
        let average = (secs > 0.0).then(|| bytes * 8.0 / secs);
        (
            peak.map(|p| p.ceil() as u64),
            average.map(|a| a.ceil() as u64),
        )
    }

    pub(crate) fn complete_segment(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.front()?.msn;
        let index = usize::try_from(msn.checked_sub(first)?).ok()?;
        self.segments.get(index)
    }

    /// The segment being written, if it has parts or not.
    pub(crate) fn open_segment(&self) -> Option<&Segment> {
        match &self.phase {
            Phase::Running(r) => r.open.as_ref(),
            _ => None,
        }
    }

    /// The segment being written, once it has a part (only then does the playlist show it).
    pub(crate) fn open_with_parts(&self) -> Option<&Segment> {
        self.open_segment().filter(|s| !s.parts.is_empty())
    }

    /// The newest part: (Media Sequence Number, Part Index) and its init generation.
    pub(crate) fn last_part(&self) -> Option<((u64, u32), u32)> {
        let segment = self.open_with_parts().or_else(|| self.segments.back())?;
        let index = u32::try_from(segment.parts.len().checked_sub(1)?).unwrap_or(u32::MAX);
        Some(((segment.msn, index), segment.init_gen))
    }

    /// Where the next part will be written (what `EXT-X-PRELOAD-HINT` names) and the init
    /// generation it will use; `None` once the publish ended.
    pub(crate) fn next_part(&self) -> Option<((u64, u32), u32)> {
        if !self.live {
            return None;
        }
        match &self.phase {
            Phase::Running(running) => Some(match &running.open {
                Some(open) => (
                    (
                        open.msn,
                        u32::try_from(open.parts.len()).unwrap_or(u32::MAX),
                    ),
                    open.init_gen,
                ),
                None => ((self.next_msn, 0), running.init_gen),
            }),
            Phase::Starting(_) | Phase::Idle => {
                // The next start reuses the newest init segment only after a resync with the
                // same codecs (see `try_start`); a new publish or new codecs make a new one.
                let reused = self
                    .inits
                    .back()
                    .filter(|_| {
                        !self.new_init_required && self.current_tracks == self.desired_tracks()
                    })
                    .map(|i| i.generation);
                Some(((self.next_msn, 0), reused.unwrap_or(self.next_init_gen)))
            }
        }
    }

    // ---- events ----

    fn on_video_config(&mut self, config: &Arc<VideoConfig>, now: SystemTime) -> bool {
        if self.video.as_deref() == Some(config.as_ref()) {
            return false;
        }
        self.video = Some(Arc::clone(config));
        self.on_config_change(now)
    }

    fn on_audio_config(&mut self, config: &Arc<AudioConfig>, now: SystemTime) -> bool {
        if !(MIN_AUDIO_SAMPLE_RATE..=MAX_AUDIO_SAMPLE_RATE).contains(&config.sample_rate())
            || config.samples_per_frame() == 0
        {
            // The frames that follow are coded with this config, so they cannot go out under a
            // previous one either: the track is dropped until a usable config comes.
            warn!(
                sample_rate = config.sample_rate(),
                samples_per_frame = config.samples_per_frame(),
                "unusable audio config; audio dropped until a usable one comes"
            );
            if self.audio.take().is_some() {
                return self.on_config_change(now);
            }
            return false;
        }
        if self.audio.as_deref() == Some(config.as_ref()) {
            return false;
        }
        self.audio = Some(Arc::clone(config));
        self.on_config_change(now)
    }

    fn desired_tracks(&self) -> Vec<TrackConfig> {
        let mut tracks = Vec::with_capacity(2);
        if let Some(v) = &self.video {
            tracks.push(TrackConfig::Video(Arc::clone(v)));
        }
        if let Some(a) = &self.audio {
            tracks.push(TrackConfig::Audio(Arc::clone(a)));
        }
        tracks
    }

    /// A config arrived or changed. While writing, a different track set or config means the
    /// current segment ends, a new init follows and the next segment is a discontinuity.
    fn on_config_change(&mut self, now: SystemTime) -> bool {
        match &self.phase {
            Phase::Idle => false,
            Phase::Starting(_) => self.try_start(false),
            Phase::Running(running) => {
                if running.configs == self.desired_tracks() {
                    return false;
                }
                warn!(
                    from = %running.configs.iter().map(TrackConfig::codec_string).collect::<Vec<_>>().join(","),
                    to = %self.desired_tracks().iter().map(TrackConfig::codec_string).collect::<Vec<_>>().join(","),
                    "codec configuration changed mid-publish; new init segment and discontinuity"
                );
                let changed = self.stop(now);
                self.pending_discontinuity = true;
                self.phase = Phase::Starting(Starting {
                    expected: Some((self.video.is_some(), self.audio.is_some())),
                    ..Starting::default()
                });
                changed
            }
        }
    }

    fn on_frame(&mut self, frame: &Frame, now: SystemTime) -> bool {
        let configured = match frame.track {
            TrackKind::Video => self.video.is_some(),
            TrackKind::Audio => self.audio.is_some(),
        };
        if !configured {
            let warned = &mut self.warned.no_config[kind_index(frame.track)];
            if !*warned {
                *warned = true;
                warn!(track = ?frame.track, dts = frame.dts, "frame before its codec config; dropped (further drops not logged)");
            }
            return false;
        }
        if frame.data.is_empty() {
            if !self.warned.empty {
                self.warned.empty = true;
                warn!(track = ?frame.track, dts = frame.dts, "empty frame dropped (further drops not logged)");
            }
            return false;
        }
        match &mut self.phase {
            Phase::Idle => false,
            Phase::Starting(starting) => {
                let has_keyframe = starting
                    .buffer
                    .iter()
                    .any(|(f, _)| f.track == TrackKind::Video && f.keyframe);
                if frame.track == TrackKind::Video && !frame.keyframe && !has_keyframe {
                    debug!(
                        dts = frame.dts,
                        "video frame before the first keyframe dropped"
                    );
                    return false;
                }
                if starting.expected.is_none() {
                    // Metadata is a hint; without it, the configs seen before the first frame
                    // say which tracks the publisher has.
                    let meta = self.metadata.as_deref();
                    starting.expected = Some((
                        meta.and_then(|m| m.has_video)
                            .unwrap_or(self.video.is_some()),
                        meta.and_then(|m| m.has_audio)
                            .unwrap_or(self.audio.is_some()),
                    ));
                }
                starting.buffer.push_back((frame.clone(), now));
                while starting.buffer.len() > MAX_START_BUFFER_FRAMES
                    || buffer_span_ms(&starting.buffer) > MAX_START_BUFFER_MS
                {
                    starting.buffer.pop_front();
                    if !starting.trimmed {
                        starting.trimmed = true;
                        warn!(
                            "still waiting for a keyframe or codec config; oldest buffered frames dropped"
                        );
                    }
                }
                self.try_start(false)
            }
            Phase::Running(_) => match self.push_frame(frame) {
                Pushed::Done => self.emit(false),
                Pushed::Gap => {
                    // No sample may be longer than a segment may be (EXTINF must round to at
                    // most TARGETDURATION, and one sample cannot be split), so a gap that long
                    // is a discontinuity: write what we have, restart at a keyframe after it.
                    warn!(track = ?frame.track, dts = frame.dts, "gap in the input longer than a segment; discontinuity");
                    let changed = self.stop(now);
                    for timing in &mut self.timing {
                        timing.repair.forget_last();
                    }
                    self.pending_discontinuity = true;
                    self.phase = Phase::Starting(Starting {
                        expected: Some((self.video.is_some(), self.audio.is_some())),
                        ..Starting::default()
                    });
                    changed | self.on_frame(frame, now)
                }
            },
        }
    }

    /// Leaves `Starting` when every expected track's config is known and, if there is video, a
    /// keyframe is buffered — or, with `force` or after [`MISSING_TRACK_WAIT_MS`], with the
    /// tracks that are ready. Returns true when an init segment or a part was created.
    fn try_start(&mut self, force: bool) -> bool {
        let Phase::Starting(starting) = &mut self.phase else {
            return false;
        };
        let have_video = self.video.is_some();
        let have_audio = self.audio.is_some();
        let keyframe = starting
            .buffer
            .iter()
            .position(|(f, _)| f.track == TrackKind::Video && f.keyframe);
        // With video, a segment must start at a keyframe: wait for one however long it takes
        // (the buffer is bounded). Starting audio-only meanwhile would only add a second
        // discontinuity when the keyframe comes.
        let start = if have_video {
            keyframe
        } else {
            starting
                .buffer
                .iter()
                .position(|(f, _)| f.track == TrackKind::Audio)
        };
        let Some(start) = start else {
            return false;
        };
        let Some((start_dts, start_now)) = starting.buffer.get(start).map(|(f, t)| (f.dts, *t))
        else {
            return false;
        };
        let (expect_video, expect_audio) = starting.expected.unwrap_or((have_video, have_audio));
        let complete = (!expect_video || have_video) && (!expect_audio || have_audio);
        if !complete && !force {
            let newest = starting.buffer.back().map_or(start_dts, |(f, _)| f.dts);
            if newest.saturating_sub(start_dts) < MISSING_TRACK_WAIT_MS {
                return false;
            }
            warn!(
                missing = if have_video { "audio" } else { "video" },
                "an announced track's codec config never came; starting without it"
            );
        }
        let buffer = std::mem::take(&mut starting.buffer);

        let configs = self.desired_tracks();
        let reusable = self
            .inits
            .back()
            .filter(|_| !self.new_init_required && self.current_tracks == configs)
            .map(|init| init.generation);
        let (generation, created) = match reusable {
            // Restart within a publish (resync) with the same codecs: same init, same name.
            Some(generation) => (generation, false),
            None => {
                let ids: Vec<(u32, &TrackConfig)> = configs
                    .iter()
                    .map(|c| match c {
                        TrackConfig::Video(_) => (VIDEO_TRACK_ID, c),
                        TrackConfig::Audio(_) => (AUDIO_TRACK_ID, c),
                    })
                    .collect();
                let init = match fmp4::init_segment(&ids) {
                    Ok(init) => init,
                    Err(e) => {
                        error!(error = %e, "cannot build the init segment; codec configs dropped");
                        self.video = None;
                        self.audio = None;
                        return false;
                    }
                };
                let generation = self.next_init_gen;
                self.next_init_gen = self.next_init_gen.saturating_add(1);
                self.inits.push_back(InitSegment {
                    generation,
                    data: init,
                });
                self.new_init_required = false;
                (generation, true)
            }
        };
        self.current_tracks = configs.clone();

        // Audio that overlaps the starting keyframe's instant is kept: it is the sound of the
        // first picture (encoders often send one audio frame just before the keyframe).
        let audio_frame = self.audio.as_ref().map(|a| {
            (
                i64::from(a.samples_per_frame().max(1)),
                i64::from(a.sample_rate().max(1)),
            )
        });
        let keep_audio = |dts: i64| match audio_frame {
            Some((spf, rate)) => {
                start_dts.saturating_sub(dts).saturating_mul(rate) < spf.saturating_mul(1000)
            }
            None => false,
        };
        if self.timeline.is_none() {
            let origin = buffer
                .iter()
                .filter(|(f, _)| f.track == TrackKind::Audio && keep_audio(f.dts))
                .map(|(f, _)| f.dts)
                .fold(start_dts, i64::min);
            let timeline = Timeline::new(origin, self.next_epoch_us);
            self.pdt_anchor = Some((timeline.us(start_dts), start_now));
            self.timeline = Some(timeline);
        }

        let tracks = configs
            .iter()
            .map(|c| self.new_track(c))
            .collect::<Vec<_>>();
        if self.part_target.is_none()
            && let Some(leader) = tracks.first()
        {
            self.part_target = Some(self.choose_part_target(leader));
        }
        self.phase = Phase::Running(Running {
            tracks,
            configs,
            init_gen: generation,
            open: None,
            part_start: 0,
            open_part: None,
        });

        for (i, (frame, _)) in buffer.iter().enumerate() {
            let before_start = match frame.track {
                TrackKind::Video => i < start,
                TrackKind::Audio => !keep_audio(frame.dts),
            };
            if !before_start && self.push_frame(frame) == Pushed::Gap {
                // A gap inside the start buffer: start from what came before it; the frames
                // after it are dropped (rare: the buffer holds at most a second or so).
                warn!("gap in the input while starting; later buffered frames dropped");
                break;
            }
        }
        self.emit(false) || created
    }

    fn new_track(&self, config: &TrackConfig) -> Track {
        match config {
            TrackConfig::Video(video) => {
                let mut timing = self.timing[0].clone();
                if let Some(fps) = video.frame_rate().filter(|r| r.is_finite() && *r >= 1.0) {
                    timing.repair.set_typical((1000.0 / fps).round() as i64);
                }
                Track {
                    kind: TrackKind::Video,
                    id: VIDEO_TRACK_ID,
                    timescale: VIDEO_TIMESCALE,
                    samples_per_frame: 0,
                    timing,
                    held: None,
                    queue: VecDeque::new(),
                    chunked: 0,
                    last_duration: 0,
                    log: LogBudget::default(),
                }
            }
            TrackConfig::Audio(audio) => {
                let timescale = audio.sample_rate().max(1);
                let samples_per_frame = audio.samples_per_frame().max(1);
                let mut timing = self.timing[1].clone();
                timing.repair.set_typical(
                    (f64::from(samples_per_frame) * 1000.0 / f64::from(timescale)).round() as i64,
                );
                Track {
                    kind: TrackKind::Audio,
                    id: AUDIO_TRACK_ID,
                    timescale,
                    samples_per_frame,
                    timing,
                    held: None,
                    queue: VecDeque::new(),
                    chunked: 0,
                    last_duration: 0,
                    log: LogBudget::default(),
                }
            }
        }
    }

    /// Maps a frame onto its track's timeline and holds it; the previously held frame of that
    /// track gets its duration and becomes a finished sample.
    fn push_frame(&mut self, frame: &Frame) -> Pushed {
        let Some(timeline) = self.timeline else {
            return Pushed::Done;
        };
        let max_sample = match &self.phase {
            Phase::Running(running) => running
                .tracks
                .first()
                .map_or(u64::MAX, |t| self.max_sample_ticks(t.timescale)),
            _ => u64::MAX,
        };
        let Phase::Running(running) = &mut self.phase else {
            return Pushed::Done;
        };
        let first_kind = running.tracks.first().map(|t| t.kind);
        let Some(track) = running.tracks.iter_mut().find(|t| t.kind == frame.track) else {
            let warned = &mut self.warned.not_in_init[kind_index(frame.track)];
            if !*warned {
                *warned = true;
                warn!(track = ?frame.track, "frame of a track missing from the init segment; dropped (further drops not logged)");
            }
            return Pushed::Done;
        };
        let (mut ms, repair) = track.timing.repair.apply(frame.dts, self.input_newest);
        if repair != Repair::None
            && let Some(count) = track.log.allow()
        {
            warn!(track = ?track.kind, dts = frame.dts, ?repair, repaired_dts = ms, count, "non-monotonic decode timestamp repaired");
        }
        if track.held.is_none() {
            // First frame since a (re)start: it must not land before where this track's output
            // ended (it would overlap) or, for a new track, before this publish's start.
            let floor_us = match track.timing.end_in(track.timescale) {
                Some(end) => ticks_to_us_ceil(end, track.timescale),
                None => timeline.start_us(),
            };
            let us = timeline.us(ms);
            if us < floor_us {
                let shift_ms = ceil_div_1000(floor_us.saturating_sub(us));
                if shift_ms > 1 {
                    warn!(track = ?track.kind, dts = frame.dts, shift_ms, "timestamps start before the track's timeline; moved later");
                }
                track.timing.repair.shift(shift_ms);
                ms = ms.saturating_add(shift_ms);
            }
        }
        self.input_newest = Some(self.input_newest.map_or(ms, |n| n.max(ms)));

        let dts = match track.kind {
            TrackKind::Video => {
                let mut ticks = timeline.ticks(ms, track.timescale);
                let min_next = track.min_next();
                if ticks < min_next {
                    // Only after a flush that had to estimate the last duration (codec change,
                    // resync): move this track later so samples never overlap.
                    let needed_us =
                        ticks_to_us_ceil(min_next, track.timescale).saturating_sub(timeline.us(ms));
                    let shift_ms = ceil_div_1000(needed_us);
                    track.timing.repair.shift(shift_ms);
                    debug!(
                        shift_ms,
                        "video moved later to stay after the previous sample"
                    );
                    ticks = timeline
                        .ticks(ms.saturating_add(shift_ms), track.timescale)
                        .max(min_next);
                }
                ticks
            }
            TrackKind::Audio => {
                // AAC frames are exactly `samples_per_frame` long, while RTMP's millisecond
                // timestamps jitter by up to a millisecond (21.33 ms frames arrive as 21/22):
                // taking them literally would give uneven sample durations that players turn
                // into clicks and drift. So audio time is counted in samples and only
                // re-anchored to the timestamps when they disagree by more than a frame — a
                // real gap (frames dropped upstream, a paused source) or clock drift.
                let mapped = timeline.ticks(ms, track.timescale);
                let frame_len = u64::from(track.samples_per_frame);
                match track.counted_next() {
                    None => mapped,
                    Some(counted) if mapped > counted.saturating_add(frame_len) => {
                        debug!(
                            gap_ticks = mapped - counted,
                            "audio gap; re-anchored to the timestamps"
                        );
                        mapped
                    }
                    Some(counted) if mapped.saturating_add(frame_len) < counted => {
                        // The timestamps run slower than the samples: we cannot move back
                        // without overlapping, so one frame is dropped to catch up.
                        if let Some(count) = track.log.allow() {
                            warn!(
                                behind_ticks = counted - mapped,
                                count,
                                "audio timestamps behind the sample count by more than a frame; frame dropped to resync"
                            );
                        }
                        return Pushed::Done;
                    }
                    Some(counted) => counted,
                }
            }
        };

        let cts = match track.kind {
            TrackKind::Video => {
                let raw = frame.pts.saturating_sub(frame.dts);
                let clamped = raw.clamp(-MAX_COMPOSITION_OFFSET_MS, MAX_COMPOSITION_OFFSET_MS);
                if clamped != raw
                    && let Some(count) = track.log.allow()
                {
                    warn!(
                        dts = frame.dts,
                        pts = frame.pts,
                        count,
                        "absurd composition offset clamped"
                    );
                }
                i32::try_from(clamped * 90).unwrap_or(0)
            }
            TrackKind::Audio => 0,
        };
        if first_kind == Some(track.kind)
            && track
                .held
                .as_ref()
                .is_some_and(|h| dts.saturating_sub(h.dts) > max_sample)
        {
            // The caller flushes, resets the repair state and feeds this frame again.
            return Pushed::Gap;
        }
        let sample = Sample {
            dts,
            duration: 0,
            cts,
            sync: track.kind == TrackKind::Audio || frame.keyframe,
            data: frame.data.clone(),
        };
        if let Some(mut previous) = track.held.replace(sample) {
            previous.duration = u32::try_from(dts.saturating_sub(previous.dts))
                .unwrap_or(u32::MAX)
                .max(1);
            track.finish(previous);
        }
        Pushed::Done
    }

    /// Writes every part (and closes every segment) whose boundary is known. With `flush`, the
    /// rest is written too and the open segment is closed.
    fn emit(&mut self, flush: bool) -> bool {
        let Phase::Running(mut running) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return false;
        };
        let mut changed = false;
        while let Some((index, cut, boundary)) = self.next_cut(&running, flush) {
            if index == 0 {
                // The open segment ends where its last part did (see `next_cut`).
                changed |= self.close_segment(&mut running);
            } else {
                changed |= self.write_part(&mut running, index, cut, boundary);
            }
        }
        if flush {
            changed |= self.close_segment(&mut running);
        } else if self.config.stream_parts {
            // Not a change of the playlists: counted in `chunks_made` instead.
            self.write_chunks(&mut running);
        }
        self.phase = Phase::Running(running);
        changed
    }

    /// Where the next part ends, if that is known yet: the number of first-track samples it
    /// takes from the queue (0: no part, only the open segment ends), the kind of cut, and the
    /// boundary (the decode time of the first sample after it; `None` for the final flush,
    /// which takes everything).
    ///
    /// A part is cut as soon as its content is known, which is when the frame after its last one
    /// arrives (that gives the last frame its duration): when that frame, still held, starts a
    /// segment, or would not fit in the part. Whether it fits depends on its own duration, not
    /// known yet; it is taken to be the mean of the part's frames so far, with a little slack
    /// for millisecond jitter. When that guess wrongly says "fits", the part is cut one frame
    /// later, once the duration is known (never longer than the part target); when it wrongly
    /// says "does not fit", the part is one frame shorter than it could have been.
    fn next_cut(&self, running: &Running, flush: bool) -> Option<(usize, Cut, Option<u64>)> {
        let leader = running.tracks.first()?;
        let first = leader.queue.front()?;
        let Some((index, cut)) = self.part_end(running, flush) else {
            return flush.then_some((leader.queue.len(), Cut::End, None));
        };
        if index == 0 {
            return Some((0, cut, Some(first.dts)));
        }
        let boundary = leader
            .queue
            .get(index)
            .or(leader.held.as_ref())
            .map_or(0, |s| s.dts);
        if flush {
            return Some((index, cut, Some(boundary)));
        }
        // Wait until the other track has everything before the boundary, unless the first track
        // is already far ahead (the other one stalled or stopped).
        Self::interleaved(running, boundary).then_some((index, cut, Some(boundary)))
    }

    /// Where the part that starts at the front of the first track's queue ends, as far as the
    /// first track tells (see [`next_cut`](Self::next_cut), which adds the wait for the other
    /// tracks): the number of samples it takes and the kind of cut; `(0, Cut::Segment)` when
    /// the open segment must end before it; `None` when not known yet.
    ///
    /// Whether a queued sample (other than the first) is a cut point depends only on that
    /// sample, the open segment and the open part; so a cut found before a sample can come
    /// later only at or after the first one found now (or at the held sample). That is what
    /// makes the samples before it safe to write as chunks of the open part.
    fn part_end(&self, running: &Running, flush: bool) -> Option<(usize, Cut)> {
        let leader = running.tracks.first()?;
        let first = leader.queue.front()?;
        let ts = leader.timescale;
        let ticks = |d: Duration| {
            u64::try_from(d.as_micros() * u128::from(ts) / 1_000_000).unwrap_or(u64::MAX)
        };
        let tolerance = CUT_TOLERANCE_MS * u64::from(ts) / 1000;
        let target = ticks(self.config.target_duration);
        let part_target = ticks(self.part_target_limit());
        let max_segment = self.max_segment_ticks(ts);
        let (segment_start, part_start, independent) = match &running.open {
            Some(open) => (open.start, running.part_start, open.independent),
            None => (first.dts, first.dts, first.sync),
        };
        // A segment that had to start without a keyframe ends at the next one, however short,
        // so segments are independent again as soon as possible.
        let starts_segment = |s: &Sample| {
            s.sync && (!independent || s.dts.saturating_sub(segment_start) + tolerance >= target)
        };

        // The first queued sample starts a part. If the guess about its duration made when it
        // was held was wrong and it does not fit in the open segment after all, the segment
        // ends before it (index 0: close it, write nothing).
        if running.open.is_some()
            && first
                .dts
                .saturating_add(u64::from(first.duration))
                .saturating_sub(segment_start)
                > max_segment
        {
            debug!("segment cut without a keyframe to respect the target duration");
            return Some((0, Cut::Segment));
        }

        let mut cut = None;
        for (i, s) in leader.queue.iter().enumerate().skip(1) {
            let end = s.dts.saturating_add(u64::from(s.duration));
            if starts_segment(s) {
                cut = Some((i, Cut::Segment));
                break;
            }
            if end.saturating_sub(segment_start) > max_segment {
                // No keyframe in time: cut anyway so rounded EXTINF stays ≤ TARGETDURATION.
                debug!("segment cut without a keyframe to respect the target duration");
                cut = Some((i, Cut::Segment));
                break;
            }
            if end.saturating_sub(part_start) > part_target {
                cut = Some((i, Cut::Part));
                break;
            }
        }
        if cut.is_none()
            && !flush
            && let Some(held) = &leader.held
        {
            // The held sample's end is unknown: at least one tick, probably the mean duration
            // of the part's samples so far (all of the queue: it drains at every part).
            let slack = HELD_CUT_SLACK_MS * u64::from(ts) / 1000;
            let count = u64::try_from(leader.queue.len()).unwrap_or(u64::MAX).max(1);
            let guess = (held.dts.saturating_sub(first.dts) / count).max(1);
            let overflows = |start: u64, limit: u64| {
                let offset = held.dts.saturating_sub(start);
                offset >= limit || offset.saturating_add(guess) > limit.saturating_add(slack)
            };
            let index = leader.queue.len();
            if starts_segment(held) {
                cut = Some((index, Cut::Segment));
            } else if overflows(segment_start, max_segment) {
                debug!("segment cut without a keyframe to respect the target duration");
                cut = Some((index, Cut::Segment));
            } else if overflows(part_start, part_target) {
                cut = Some((index, Cut::Part));
            }
        }
        cut
    }

    /// Whether the other tracks have every sample that starts before `boundary` (first-track
    /// ticks) — their newest frame starts at or after it — or the first track is so far ahead
    /// ([`MAX_INTERLEAVE_MS`]) that a stalled or stopped track is not waited for.
    fn interleaved(running: &Running, boundary: u64) -> bool {
        let Some(leader) = running.tracks.first() else {
            return true;
        };
        let ts = leader.timescale;
        let newest = leader.held.as_ref().map_or(boundary, |h| h.dts);
        let lead = newest.saturating_sub(boundary);
        let waited_enough = lead >= MAX_INTERLEAVE_MS * u64::from(ts) / 1000;
        let others_ready = running.tracks.iter().skip(1).all(|t| {
            t.held
                .as_ref()
                .is_some_and(|h| cmp_time(h.dts, t.timescale, boundary, ts) != Ordering::Less)
        });
        others_ready || waited_enough
    }

    /// With `stream_parts`, after every part that can be written is: writes a chunk of the open
    /// part for each finished sample of the first track that belongs to it whatever comes next
    /// (it lies before any cut [`part_end`](Self::part_end) can still find) and whose end the
    /// other tracks have reached, as [`next_cut`](Self::next_cut) waits for them at a part's
    /// end. These are the moments at which a cut could be decided, so a part's last chunk is
    /// made when the part would have been written whole.
    fn write_chunks(&mut self, running: &mut Running) {
        let certain = match self.part_end(running, false) {
            Some((index, _)) => index,
            None => running.tracks.first().map_or(0, |t| t.queue.len()),
        };
        loop {
            let Some(leader) = running.tracks.first() else {
                return;
            };
            if leader.chunked >= certain {
                return;
            }
            let Some(sample) = leader.queue.get(leader.chunked) else {
                return;
            };
            let end = sample.dts.saturating_add(u64::from(sample.duration));
            if !Self::interleaved(running, end) {
                return;
            }
            self.write_chunk(running, 1, Some(end));
        }
    }

    /// `runs` as the next `moof`+`mdat`: parts and chunks share one `mfhd` sequence.
    fn next_fragment(&mut self, runs: &[TrackRun<'_>]) -> Result<Bytes, fmp4::Mp4Error> {
        let sequence = self.next_fragment_seq;
        self.next_fragment_seq = self.next_fragment_seq.checked_add(1).unwrap_or(1);
        fmp4::fragment(sequence, runs)
    }

    /// Writes one chunk of the open part: the next `leader` (0 or 1) samples of the first track
    /// not in a chunk yet, and the other tracks' samples not in a chunk yet that start before
    /// `boundary` (all of them without one).
    fn write_chunk(&mut self, running: &mut Running, leader: usize, boundary: Option<u64>) {
        let Some(leader_ts) = running.tracks.first().map(|t| t.timescale) else {
            return;
        };
        let mut taken = Vec::with_capacity(running.tracks.len());
        for (i, track) in running.tracks.iter_mut().enumerate() {
            let from = track.chunked.min(track.queue.len());
            let n = if i == 0 {
                leader.min(track.queue.len() - from)
            } else {
                taken_before(track, boundary, leader_ts).saturating_sub(from)
            };
            track.chunked = from + n;
            let samples: Vec<Sample> = track.queue.range(from..from + n).cloned().collect();
            taken.push((track.id, track.kind == TrackKind::Video, samples));
        }
        let runs: Vec<TrackRun<'_>> = taken
            .iter()
            .map(|(track_id, with_cts, samples)| TrackRun {
                track_id: *track_id,
                samples,
                with_cts: *with_cts,
            })
            .collect();
        match self.next_fragment(&runs) {
            Ok(data) => {
                let next_id = &mut self.next_writing_id;
                let part = running.open_part.get_or_insert_with(|| {
                    let id = *next_id;
                    *next_id = next_id.wrapping_add(1);
                    OpenPart {
                        id,
                        chunks: Vec::new(),
                    }
                });
                part.chunks.push(data);
                self.chunks_made = self.chunks_made.wrapping_add(1);
            }
            Err(e) => error!(error = %e, "cannot write a chunk of a part; its samples are lost"),
        }
    }

    /// With `stream_parts`, when the part of the first `index` samples of the first track is
    /// complete: writes the chunks it still lacks — one per first-track sample, the last with
    /// the other tracks' samples up to `boundary`, and one more with only other-track samples
    /// if the part takes some that no chunk carries yet (a final flush takes them all).
    fn finish_chunks(&mut self, running: &mut Running, index: usize, boundary: Option<u64>) {
        loop {
            let Some(leader) = running.tracks.first() else {
                return;
            };
            let next = leader.chunked;
            if next >= index.min(leader.queue.len()) {
                break;
            }
            let chunk_boundary = if next + 1 >= index {
                boundary
            } else {
                leader
                    .queue
                    .get(next)
                    .map(|s| s.dts.saturating_add(u64::from(s.duration)))
            };
            self.write_chunk(running, 1, chunk_boundary);
        }
        let Some(leader_ts) = running.tracks.first().map(|t| t.timescale) else {
            return;
        };
        let rest = running
            .tracks
            .iter()
            .skip(1)
            .any(|t| taken_before(t, boundary, leader_ts) > t.chunked);
        if rest {
            self.write_chunk(running, 0, boundary);
        }
    }

    /// The longest sample of the first track: one that fits in a segment whatever
    /// TARGETDURATION becomes (it is never below the configured target). Checked when the
    /// sample's duration becomes known, which may be before TARGETDURATION is fixed.
    fn max_sample_ticks(&self, timescale: u32) -> u64 {
        let ts = u64::from(timescale);
        let configured = self.config.target_duration.as_millis().div_ceil(1000);
        u64::try_from(configured)
            .unwrap_or(u64::MAX)
            .saturating_mul(ts)
            .saturating_add(ts * 499 / 1000)
    }

    fn max_segment_ticks(&self, timescale: u32) -> u64 {
        let ts = u64::from(timescale);
        match self.target_duration {
            // round(EXTINF) ≤ TARGETDURATION ⇔ EXTINF < TARGETDURATION + 0.5; EXTINF is written
            // with 3 decimals, so stay below TARGETDURATION + 0.4995.
            Some(td) => td.saturating_mul(ts) + ts * 499 / 1000,
            None => {
                let configured = self.config.target_duration.as_secs().max(1);
                MAX_FIRST_SEGMENT_S.max(configured).saturating_mul(ts)
            }
        }
    }

    /// The part target parts are cut to: `PART-TARGET` once fixed, the configured one before.
    pub(crate) fn part_target_limit(&self) -> Duration {
        self.part_target.unwrap_or(self.config.part_target)
    }

    /// `PART-TARGET` for the playlist's life, chosen when the first publish starts: the
    /// configured target rounded to whole frames of the first track, never below
    /// [`MIN_PART_TARGET`]. At 30 and 60 fps 100 ms is whole frames and stays as it is (at 25 fps
    /// it becomes three frames, 120 ms; at 24 three frames, 125 ms). At 29.97 fps three frames
    /// make 100.1 ms: announcing 100 ms would put every part over `PART-TARGET`, and rounding
    /// down would make parts shorter than the 85 % of it the spec requires (§4.4.4.9), so the
    /// target becomes three frames, rounded up to the millisecond (101 ms: millisecond
    /// timestamps make three frames 100 or 101 ms). Without a known frame rate the configured
    /// target is used as it is. Later parts are cut to it, so none is longer (a republish at
    /// another frame rate may get shorter parts).
    fn choose_part_target(&self, leader: &Track) -> Duration {
        let configured = self.config.part_target;
        let frame_ticks = match leader.kind {
            TrackKind::Audio => Some(f64::from(leader.samples_per_frame)),
            TrackKind::Video => self
                .frame_rate()
                .map(|fps| f64::from(leader.timescale) / fps),
        };
        let Some(frame_ticks) = frame_ticks.filter(|t| t.is_finite() && *t >= 1.0) else {
            return configured;
        };
        let timescale = f64::from(leader.timescale);
        let frame_ms = frame_ticks * 1000.0 / timescale;
        let mut frames = (configured.as_secs_f64() * 1000.0 / frame_ms)
            .round()
            .max(1.0);
        if frames * frame_ms < MIN_PART_TARGET.as_secs_f64() * 1000.0 - 1e-6 {
            frames += 1.0;
        }
        // A hair of slack so that float error in e.g. 6 × 33.333… ms stays 200, not 201.
        let ms = (frames * frame_ms - 1e-6).ceil().max(1.0);
        let target = self.config.target_duration;
        Duration::from_millis(ms as u64).min(target)
    }

    /// Writes the first `index` samples of the first track, and the other tracks' samples that
    /// start before `boundary` (all of them without one), as one part.
    fn write_part(
        &mut self,
        running: &mut Running,
        index: usize,
        cut: Cut,
        boundary: Option<u64>,
    ) -> bool {
        let boundary = match cut {
            Cut::Part | Cut::Segment => boundary,
            Cut::End => None,
        };
        let streamed = self.config.stream_parts;
        if streamed {
            self.finish_chunks(running, index, boundary);
        }
        let Some(leader) = running.tracks.first_mut() else {
            return false;
        };
        let leader_ts = leader.timescale;
        // Samples already in chunks are in the part whatever (see `part_end`: never more).
        let index = if streamed {
            index.max(std::mem::take(&mut leader.chunked))
        } else {
            index
        };
        let leader_samples: Vec<Sample> = leader
            .queue
            .drain(..index.min(leader.queue.len()))
            .collect();
        let (Some(first), Some(last)) = (leader_samples.first(), leader_samples.last()) else {
            return false;
        };
        let (first_dts, first_sync) = (first.dts, first.sync);
        let end = last.dts.saturating_add(u64::from(last.duration));
        let leader_is_video = leader.kind == TrackKind::Video;

        let mut others = Vec::with_capacity(running.tracks.len().saturating_sub(1));
        for track in running.tracks.iter_mut().skip(1) {
            let n = taken_before(track, boundary, leader_ts)
                .max(std::mem::take(&mut track.chunked))
                .min(track.queue.len());
            others.push((
                track.id,
                track.kind,
                track.queue.drain(..n).collect::<Vec<_>>(),
            ));
        }

        let leader = &running.tracks[0];
        let mut runs = vec![TrackRun {
            track_id: leader.id,
            samples: &leader_samples,
            with_cts: leader_is_video,
        }];
        for (id, kind, samples) in &others {
            runs.push(TrackRun {
                track_id: *id,
                samples,
                with_cts: *kind == TrackKind::Video,
            });
        }

        if running.open.is_none() {
            let msn = self.next_msn;
            self.next_msn = self.next_msn.saturating_add(1);
            let discontinuity = std::mem::take(&mut self.pending_discontinuity) && msn > 0;
            running.open = Some(Segment {
                msn,
                init_gen: running.init_gen,
                timescale: leader_ts,
                start: first_dts,
                duration: 0,
                parts: Vec::new(),
                discontinuity,
                independent: first_sync,
                program_date_time: self.program_date_time(first_dts, leader_ts),
                video_frames: 0,
                size: 0,
            });
            running.part_start = first_dts;
        }

        let written = if streamed {
            // The part is the chunks made while it was written.
            running
                .open_part
                .take()
                .map(|p| (p.chunks, Some(p.id)))
                .ok_or_else(|| "no chunk of it could be written".to_owned())
        } else {
            self.next_fragment(&runs)
                .map(|data| (vec![data], None))
                .map_err(|e| e.to_string())
        };
        let mut changed = false;
        match written {
            Ok((chunks, writing)) => {
                if let Some(open) = running.open.as_mut() {
                    let part = Part {
                        chunks,
                        writing,
                        duration: end.saturating_sub(first_dts),
                        independent: first_sync,
                    };
                    open.size += part.len();
                    open.parts.push(part);
                    open.duration = end.saturating_sub(open.start);
                    if leader_is_video {
                        open.video_frames += leader_samples.len() as u64;
                    }
                    changed = true;
                }
            }
            Err(e) => error!(error = %e, "cannot write a part; its samples are lost"),
        }
        running.part_start = end;
        if cut == Cut::Segment {
            changed |= self.close_segment(running);
        }
        changed
    }

    fn program_date_time(&self, ticks: u64, timescale: u32) -> Option<SystemTime> {
        let (anchor_us, wall) = self.pdt_anchor?;
        let delta = ticks_to_us_floor(ticks, timescale).saturating_sub(anchor_us);
        let magnitude = Duration::from_micros(delta.unsigned_abs());
        if delta >= 0 {
            wall.checked_add(magnitude)
        } else {
            wall.checked_sub(magnitude)
        }
    }

    fn close_segment(&mut self, running: &mut Running) -> bool {
        let Some(segment) = running.open.take() else {
            return false;
        };
        if segment.parts.is_empty() {
            return false;
        }
        if self.target_duration.is_none() {
            // Fixed for the playlist's life: max(configured target, first segment rounded up).
            // A later segment that would round above it is cut early (see `next_cut`).
            let ts = u64::from(segment.timescale.max(1));
            let tolerance = CUT_TOLERANCE_MS * ts / 1000;
            let first = segment.duration.saturating_sub(tolerance).div_ceil(ts);
            let configured = self.config.target_duration.as_millis().div_ceil(1000);
            let configured = u64::try_from(configured).unwrap_or(u64::MAX);
            self.target_duration = Some(first.max(configured).max(1));
        }
        self.segments.push_back(segment);
        let keep = self.config.window_segments + self.config.retain_segments;
        while self.segments.len() > keep {
            if let Some(evicted) = self.segments.pop_front()
                && evicted.discontinuity
            {
                self.evicted_discontinuities += 1;
            }
        }
        let oldest_needed = self
            .segments
            .front()
            .map_or(running.init_gen, |s| s.init_gen)
            .min(running.init_gen);
        let newest = self.inits.back().map(|i| i.generation);
        self.inits
            .retain(|i| i.generation >= oldest_needed || Some(i.generation) == newest);
        true
    }

    fn save_timing(&mut self, running: &Running) {
        for track in &running.tracks {
            self.timing[kind_index(track.kind)] = track.timing.clone();
        }
    }

    /// Flushes whatever is in progress (held frames with estimated durations, the partial
    /// segment) and leaves the packager idle, remembering where the timeline ended.
    fn stop(&mut self, _now: SystemTime) -> bool {
        let mut changed = false;
        if matches!(self.phase, Phase::Starting(_)) {
            // A short publish may end before a missing config's wait is over.
            changed |= self.try_start(true);
        }
        if let Phase::Running(running) = &mut self.phase {
            for track in &mut running.tracks {
                if let Some(mut held) = track.held.take() {
                    held.duration = track.estimated_duration();
                    track.finish(held);
                }
            }
            changed |= self.emit(true);
        }
        if let Phase::Running(running) = std::mem::replace(&mut self.phase, Phase::Idle) {
            self.save_timing(&running);
        }
        let end_us = self
            .timing
            .iter()
            .filter_map(|t| t.end.map(|(ticks, ts)| ticks_to_us_ceil(ticks, ts)))
            .max();
        if let Some(end_us) = end_us {
            self.next_epoch_us = self.next_epoch_us.max(end_us);
        }
        changed
    }
}

/// How many samples at the front of `track`'s queue start before `boundary` (in `leader_ts`
/// ticks): those a part or chunk ending there takes. All of them without a boundary.
fn taken_before(track: &Track, boundary: Option<u64>, leader_ts: u32) -> usize {
    match boundary {
        Some(b) => track
            .queue
            .iter()
            .take_while(|s| cmp_time(s.dts, track.timescale, b, leader_ts) == Ordering::Less)
            .count(),
        None => track.queue.len(),
    }
}

/// `ceil(us / 1000)` for either sign.
fn ceil_div_1000(us: i64) -> i64 {
    let q = us / 1000;
    if us % 1000 > 0 { q + 1 } else { q }
}

/// A summary: the derived form would print every buffered segment byte.
impl std::fmt::Debug for Packager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = match &self.phase {
            Phase::Idle => "idle",
            Phase::Starting(_) => "starting",
            Phase::Running(_) => "running",
        };
        f.debug_struct("Packager")
            .field("name_prefix", &self.config.name_prefix)
            .field("live", &self.live)
            .field("ended", &self.ended)
            .field("phase", &phase)
            .field("codecs", &self.codecs())
            .field("segments", &self.segments.len())
            .field("last_msn", &self.segments.back().map(|s| s.msn))
            .field("open_msn", &self.open_msn())
            .field(
                "init_generations",
                &self.inits.iter().map(|i| i.generation).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn buffer_span_ms(buffer: &VecDeque<(Frame, SystemTime)>) -> i64 {
    match (buffer.front(), buffer.back()) {
        (Some((first, _)), Some((last, _))) => last.dts.saturating_sub(first.dts),
        _ => 0,
    }
}
