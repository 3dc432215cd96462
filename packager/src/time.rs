//! Timestamps: publisher milliseconds onto the output timeline, and repair of broken input.
//!
//! Frames arrive with millisecond decode timestamps already unwrapped from RTMP's 32-bit clock
//! (`roomcast_media::time::RtmpClock` owns that rule). Here they are:
//! 1. repaired per track ([`DtsRepair`]): a decode timestamp that goes backwards or jumps forward
//!    absurdly is replaced by "previous + typical frame duration", and the difference is carried
//!    as a correction so that the frames after it keep their real spacing;
//! 2. mapped onto one output timeline shared by all tracks ([`Timeline`]), so audio and video stay
//!    in sync: the publish's first frame maps to `offset_us`, and each track converts microseconds
//!    to its own timescale (90 kHz for video, the sample rate for audio).

use std::cmp::Ordering;

/// Video track timescale: 90 kHz, a multiple of every common frame rate and of 1 ms.
pub(crate) const VIDEO_TIMESCALE: u32 = 90_000;

/// A decode timestamp step larger than this (forward) is treated as broken input, not a gap.
pub(crate) const MAX_JUMP_MS: i64 = 10_000;

/// Composition offsets beyond this are treated as broken input and clamped.
pub(crate) const MAX_COMPOSITION_OFFSET_MS: i64 = 10_000;

const MICROS: i128 = 1_000_000;

/// Maps one publish's millisecond clock onto the packager's continuous output timeline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeline {
    /// Publisher timestamp (ms) of the publish's first frame.
    origin_ms: i64,
    /// Output time (µs) that `origin_ms` maps to: where the previous publish ended.
    offset_us: i64,
}

impl Timeline {
    pub(crate) fn new(origin_ms: i64, offset_us: i64) -> Self {
        Self {
            origin_ms,
            offset_us,
        }
    }

    /// Output time in microseconds of a (repaired) publisher timestamp.
    pub(crate) fn us(&self, ms: i64) -> i64 {
        let us = i128::from(self.offset_us)
            + (i128::from(ms) - i128::from(self.origin_ms)).saturating_mul(1000);
        clamp_i64(us)
    }

    /// Output time in `timescale` units of a publisher timestamp; never negative.
    pub(crate) fn ticks(&self, ms: i64, timescale: u32) -> u64 {
        us_to_ticks_floor(self.us(ms), timescale)
    }

    /// Output time (µs) where this publish starts.
    pub(crate) fn start_us(&self) -> i64 {
        self.offset_us
    }
}

/// Microseconds to ticks, rounding down; negative times clamp to zero.
pub(crate) fn us_to_ticks_floor(us: i64, timescale: u32) -> u64 {
    if us <= 0 {
        return 0;
    }
    let ticks = i128::from(us) * i128::from(timescale) / MICROS;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Ticks to microseconds, rounding up (so that mapping back never lands before the tick).
pub(crate) fn ticks_to_us_ceil(ticks: u64, timescale: u32) -> i64 {
    let ts = i128::from(timescale.max(1));
    let num = i128::from(ticks) * MICROS;
    clamp_i64((num + ts - 1) / ts)
}

/// Ticks to microseconds, rounding down.
pub(crate) fn ticks_to_us_floor(ticks: u64, timescale: u32) -> i64 {
    clamp_i64(i128::from(ticks) * MICROS / i128::from(timescale.max(1)))
}

/// Converts ticks between timescales, rounding up.
pub(crate) fn rescale_ceil(ticks: u64, from: u32, to: u32) -> u64 {
    let from = u128::from(from.max(1));
    let v = (u128::from(ticks) * u128::from(to)).div_ceil(from);
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Compares two instants expressed in different timescales, exactly.
pub(crate) fn cmp_time(a: u64, a_timescale: u32, b: u64, b_timescale: u32) -> Ordering {
    (u128::from(a) * u128::from(b_timescale)).cmp(&(u128::from(b) * u128::from(a_timescale)))
}

/// Seconds as `f64` (for playlists and bit rates only; the timeline itself stays integral).
pub(crate) fn seconds(ticks: u64, timescale: u32) -> f64 {
    ticks as f64 / f64::from(timescale.max(1))
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// What [`DtsRepair::apply`] had to do to a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repair {
    /// The timestamp was fine.
    None,
    /// It went backwards (or repeated): replaced by previous + typical duration.
    Backwards {
        /// How far back it went, in ms (0 for a repeat).
        by_ms: i64,
    },
    /// It jumped by more than [`MAX_JUMP_MS`] (forward from the track's previous frame, or
    /// either way from the shared clock for a track's first frame): replaced by previous +
    /// typical duration, or by the shared clock.
    Jump {
        /// The size of the jump in ms.
        by_ms: i64,
    },
}

/// Keeps one track's decode timestamps strictly increasing and free of absurd jumps.
///
/// A repaired frame gets `previous + typical`; the difference becomes a lasting correction, so
/// the frames after a glitch keep their real spacing instead of all being clamped one by one.
/// The cost is that a track shifted this way may drift from the other track by the size of the
/// repair; an encoder that needs repairs has already broken A/V sync, and we keep playback going.
#[derive(Debug, Clone)]
pub(crate) struct DtsRepair {
    correction_ms: i64,
    last_ms: Option<i64>,
    typical_ms: i64,
    adaptive: bool,
}

impl DtsRepair {
    /// `typical_ms` is the step used for a repaired frame; `adaptive` lets it follow the observed
    /// spacing (video, whose frame rate may be unknown), otherwise it stays fixed (audio, whose
    /// frame duration is known from its config).
    pub(crate) fn new(typical_ms: i64, adaptive: bool) -> Self {
        Self {
            correction_ms: 0,
            last_ms: None,
            typical_ms: typical_ms.max(1),
            adaptive,
        }
    }

    pub(crate) fn set_typical(&mut self, typical_ms: i64) {
        self.typical_ms = typical_ms.max(1);
    }

    pub(crate) fn typical_ms(&self) -> i64 {
        self.typical_ms
    }

    /// Forgets the previous timestamp (after lost input the next one is accepted as it is) but
    /// keeps the correction, so the track stays where earlier repairs put it.
    pub(crate) fn forget_last(&mut self) {
        self.last_ms = None;
    }

    /// Forgets everything: a new publish has a new clock.
    pub(crate) fn reset(&mut self) {
        self.correction_ms = 0;
        self.last_ms = None;
    }

    /// Moves this and every later timestamp forward by `ms` (used when the output timeline
    /// requires a later start than the input asks for).
    pub(crate) fn shift(&mut self, ms: i64) {
        self.correction_ms = self.correction_ms.saturating_add(ms);
        if let Some(last) = self.last_ms.as_mut() {
            *last = last.saturating_add(ms);
        }
    }

    /// Returns the repaired timestamp and what was done to it.
    ///
    /// `reference` is the newest repaired timestamp of any track of the publish: the shared
    /// clock. A long step in this track that the shared clock confirms (the other track got
    /// there already) is a real gap in this track, not broken input; and the first frame after
    /// a restart, which has no previous frame of its own, is judged against it.
    pub(crate) fn apply(&mut self, dts_ms: i64, reference: Option<i64>) -> (i64, Repair) {
        let corrected = dts_ms.saturating_add(self.correction_ms);
        let Some(last) = self.last_ms else {
            if let Some(reference) = reference {
                let off = corrected.saturating_sub(reference);
                if off.saturating_abs() > MAX_JUMP_MS {
                    self.correction_ms = self.correction_ms.saturating_sub(off);
                    self.last_ms = Some(reference);
                    return (reference, Repair::Jump { by_ms: off });
                }
            }
            self.last_ms = Some(corrected);
            return (corrected, Repair::None);
        };
        let delta = corrected.saturating_sub(last);
        let confirmed = reference.is_some_and(|r| corrected.saturating_sub(r) <= MAX_JUMP_MS);
        let repair = if delta <= 0 {
            Repair::Backwards {
                by_ms: delta.saturating_neg(),
            }
        } else if delta > MAX_JUMP_MS && !confirmed {
            Repair::Jump { by_ms: delta }
        } else {
            if self.adaptive && delta <= 1000 {
                self.typical_ms = delta;
            }
            self.last_ms = Some(corrected);
            return (corrected, Repair::None);
        };
        let repaired = last.saturating_add(self.typical_ms);
        self.correction_ms = self
            .correction_ms
            .saturating_add(repaired.saturating_sub(corrected));
        self.last_ms = Some(repaired);
        (repaired, repair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_ms_map_exactly_to_90khz() {
        let tl = Timeline::new(1000, 0);
        assert_eq!(tl.ticks(1000, VIDEO_TIMESCALE), 0);
        assert_eq!(tl.ticks(1033, VIDEO_TIMESCALE), 33 * 90);
        assert_eq!(tl.ticks(3000, VIDEO_TIMESCALE), 180_000);
        // Before the origin clamps to zero instead of underflowing.
        assert_eq!(tl.ticks(0, VIDEO_TIMESCALE), 0);
    }

    #[test]
    fn tracks_share_one_time_base() {
        let tl = Timeline::new(500, 2_000_000);
        // Same instant, two timescales: both are 2.5 s into the output timeline.
        assert_eq!(tl.ticks(1000, VIDEO_TIMESCALE), 225_000);
        assert_eq!(tl.ticks(1000, 48_000), 120_000);
        assert_eq!(tl.ticks(1000, 44_100), 110_250);
        assert_eq!(
            cmp_time(225_000, VIDEO_TIMESCALE, 120_000, 48_000),
            Ordering::Equal
        );
    }

    #[test]
    fn conversions_round_as_documented() {
        assert_eq!(ticks_to_us_ceil(1, 44_100), 23);
        assert_eq!(ticks_to_us_floor(1, 44_100), 22);
        assert_eq!(rescale_ceil(1024, 44_100, 48_000), 1115);
        assert_eq!(us_to_ticks_floor(-5, 90_000), 0);
        // Round trip through ceil never lands before the original tick.
        for t in [0u64, 1, 1023, 1024, 44_099, 1 << 40] {
            assert!(us_to_ticks_floor(ticks_to_us_ceil(t, 44_100), 44_100) >= t);
        }
    }

    #[test]
    fn repair_passes_good_timestamps() {
        let mut r = DtsRepair::new(33, true);
        for (i, ts) in [0i64, 33, 67, 100].into_iter().enumerate() {
            let (out, rep) = r.apply(ts, None);
            assert_eq!(out, ts, "frame {i}");
            assert_eq!(rep, Repair::None);
        }
    }

    #[test]
    fn repair_backwards_keeps_spacing_after() {
        let mut r = DtsRepair::new(33, false);
        assert_eq!(r.apply(1000, None).0, 1000);
        assert_eq!(r.apply(1033, None).0, 1033);
        let (out, rep) = r.apply(500, None);
        assert_eq!(rep, Repair::Backwards { by_ms: 533 });
        assert_eq!(out, 1066);
        // The next frame keeps its real 33 ms spacing from the glitched one.
        assert_eq!(r.apply(533, None), (1099, Repair::None));
    }

    #[test]
    fn repair_repeated_timestamp_is_backwards() {
        let mut r = DtsRepair::new(21, false);
        r.apply(100, None);
        let (out, rep) = r.apply(100, None);
        assert_eq!(rep, Repair::Backwards { by_ms: 0 });
        assert_eq!(out, 121);
    }

    #[test]
    fn repair_absurd_jump_forward() {
        let mut r = DtsRepair::new(33, true);
        r.apply(0, None);
        r.apply(33, None);
        let (out, rep) = r.apply(33 + 3_600_000, None);
        assert_eq!(rep, Repair::Jump { by_ms: 3_600_000 });
        assert_eq!(out, 66);
        assert_eq!(r.apply(33 + 3_600_033, None), (99, Repair::None));
        // A 9 s gap is a gap, not broken input.
        assert_eq!(r.apply(33 + 3_609_033, None), (9099, Repair::None));
    }

    #[test]
    fn repair_survives_extremes() {
        let mut r = DtsRepair::new(33, true);
        for ts in [i64::MAX, i64::MIN, 0, i64::MAX, -1, i64::MIN + 1] {
            let _ = r.apply(ts, None);
        }
        r.shift(i64::MAX);
        let _ = r.apply(i64::MIN, None);
    }

    #[test]
    fn a_gap_confirmed_by_the_shared_clock_is_kept() {
        let mut r = DtsRepair::new(21, false);
        r.apply(1000, Some(1000));
        // 60 s without audio while video went on: a real gap, not broken input.
        assert_eq!(r.apply(61_000, Some(60_990)), (61_000, Repair::None));
        // Without confirmation the same step is an absurd jump.
        let mut r = DtsRepair::new(21, false);
        r.apply(1000, Some(1000));
        assert_eq!(
            r.apply(61_000, Some(1000)).1,
            Repair::Jump { by_ms: 60_000 }
        );
    }

    #[test]
    fn first_frame_far_from_the_shared_clock_is_re_anchored() {
        let mut r = DtsRepair::new(33, true);
        let (out, rep) = r.apply(-3_600_000, Some(5_000));
        assert_eq!(out, 5_000);
        assert_eq!(rep, Repair::Jump { by_ms: -3_605_000 });
        assert_eq!(r.apply(-3_599_967, Some(5_000)), (5_033, Repair::None));
        // Close to it: accepted as is.
        let mut r = DtsRepair::new(33, true);
        assert_eq!(r.apply(9_000, Some(5_000)), (9_000, Repair::None));
    }

    #[test]
    fn forget_last_accepts_a_gap() {
        let mut r = DtsRepair::new(33, true);
        r.apply(0, None);
        r.forget_last();
        assert_eq!(r.apply(60_000, None), (60_000, Repair::None));
    }
}
