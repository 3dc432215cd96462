//! Timestamps. RTMP carries a 32-bit millisecond clock that wraps after about 49.7 days; the wrap
//! rule lives here and nowhere else.

/// Half the 32-bit range: the largest step the clock believes in, either way.
const HALF_RANGE: u32 = 1 << 31;

/// Unwraps RTMP's 32-bit millisecond timestamps into a 64-bit timeline.
///
/// # The wrap rule
///
/// Each timestamp is taken to be the 64-bit value nearest to the previous one that has the same
/// low 32 bits. Put as the epoch (the multiple of 2^32 added to the raw value):
///
/// - if `ts.wrapping_sub(last) < 2^31` the clock moved **forward** by that much; when the raw
///   value is below the last one, the 32-bit counter wrapped and the epoch grows by 2^32;
/// - otherwise the clock moved **backward** by `last.wrapping_sub(ts)` (at most 2^31 ms). Small
///   backward steps are normal (audio and video tags interleaved slightly out of order, encoder
///   jitter) and stay backward: no epoch is added for them. A backward step across the wrap
///   point (a late tag from just before it) goes back into the previous epoch.
///
/// One clock serves every track of a stream, because the tracks share the publisher's clock and
/// each one's wrap must land in the same epoch. A genuine forward jump of 2^31 ms (about 24.9
/// days) or more between two tags would be read as a backward step; no encoder does that.
///
/// The first timestamp is taken as is (epoch 0), so results can go below 0 only if the clock
/// steps back from its very first value, e.g. a tag stamped `u32::MAX` right after one at 0.
#[derive(Debug, Clone, Default)]
pub struct RtmpClock {
    last: Option<u32>,
    epoch: i64,
}

impl RtmpClock {
    /// A clock that has seen no timestamp yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Extends a 32-bit RTMP timestamp to 64 bits following the wrap rule above.
    pub fn unwrap(&mut self, ts: u32) -> i64 {
        if let Some(last) = self.last {
            let forward = ts.wrapping_sub(last) < HALF_RANGE;
            if forward && ts < last {
                self.epoch += 1 << 32;
            } else if !forward && ts > last {
                self.epoch -= 1 << 32;
            }
        }
        self.last = Some(ts);
        self.epoch + i64::from(ts)
    }

    /// The last unwrapped timestamp, if any.
    pub fn last(&self) -> Option<i64> {
        self.last.map(|ts| self.epoch + i64::from(ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRAP: i64 = 1 << 32;

    #[test]
    fn starts_at_the_first_value() {
        let mut c = RtmpClock::new();
        assert_eq!(c.last(), None);
        assert_eq!(c.unwrap(1000), 1000);
        assert_eq!(c.unwrap(1033), 1033);
        assert_eq!(c.last(), Some(1033));
    }

    #[test]
    fn forward_wrap_adds_an_epoch() {
        let mut c = RtmpClock::new();
        assert_eq!(c.unwrap(u32::MAX - 20), WRAP - 21);
        assert_eq!(c.unwrap(u32::MAX), WRAP - 1);
        assert_eq!(c.unwrap(12), WRAP + 12);
        assert_eq!(c.unwrap(45), WRAP + 45);
        // Second wrap.
        assert_eq!(c.unwrap(u32::MAX / 2), WRAP + i64::from(u32::MAX / 2));
        assert_eq!(c.unwrap(u32::MAX - 1), 2 * WRAP - 2);
        assert_eq!(c.unwrap(3), 2 * WRAP + 3);
    }

    #[test]
    fn backward_jitter_stays_backward() {
        let mut c = RtmpClock::new();
        assert_eq!(c.unwrap(5000), 5000);
        // Audio tag a few ms behind the video tag before it.
        assert_eq!(c.unwrap(4980), 4980);
        assert_eq!(c.unwrap(5033), 5033);
        // A big but plausible backward step (encoder reset) is not a wrap either.
        assert_eq!(c.unwrap(0), 0);
    }

    #[test]
    fn late_tag_from_before_the_wrap_goes_to_the_previous_epoch() {
        let mut c = RtmpClock::new();
        c.unwrap(u32::MAX - 10);
        assert_eq!(c.unwrap(5), WRAP + 5);
        assert_eq!(c.unwrap(u32::MAX - 2), WRAP - 3);
        // And forward again across the wrap: counted once, not twice.
        assert_eq!(c.unwrap(30), WRAP + 30);
        assert_eq!(c.unwrap(63), WRAP + 63);
    }

    #[test]
    fn half_range_boundary() {
        let mut c = RtmpClock::new();
        c.unwrap(0);
        // Exactly 2^31 - 1 ahead is forward; 2^31 ahead counts as backward.
        assert_eq!(c.unwrap(HALF_RANGE - 1), i64::from(HALF_RANGE) - 1);
        let mut c = RtmpClock::new();
        c.unwrap(0);
        assert_eq!(c.unwrap(HALF_RANGE), i64::from(HALF_RANGE) - WRAP);
    }
}
