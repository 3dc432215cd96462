//! Per-connection rate limiting: a sliding-window log with an optional cool-down.
//!
//! A log of accepted timestamps, rather than a token bucket, because the bar to meet is stated
//! as "N messages per W ms" and the log enforces exactly that: at most `max` accepted in any
//! half-open span of `window_ms` (an action at `t` still counts at `t + window_ms - 1` and no
//! longer at `t + window_ms`). A token bucket would let a burst of `max` be followed by a
//! steady trickle that, over some W-long span, exceeds `max`. The log holds at most `max`
//! entries, so its cost is bounded by configuration.
//!
//! The action that would exceed the limit is refused and, with a cool-down configured, starts
//! it: everything is refused until `cool-down start + cooldown_ms`. Refusals during the
//! cool-down do not extend it — a person tapping "send" again should not be punished twice,
//! and a script is refused either way. The log is cleared when the cool-down starts, so the
//! sender starts afresh after it.

use std::collections::VecDeque;

use crate::config::RateLimit;

/// Converts a configured duration to the signed milliseconds the clock uses, saturating.
pub(crate) fn ms(duration_ms: u64) -> i64 {
    i64::try_from(duration_ms).unwrap_or(i64::MAX)
}

/// Why an action was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limited {
    /// Milliseconds until an action can be accepted again.
    pub retry_after_ms: u64,
    /// This refusal started the cool-down.
    pub cooldown_started: bool,
}

/// One connection's log for one kind of action.
#[derive(Debug, Default, Clone)]
pub(crate) struct Limiter {
    accepted: VecDeque<i64>,
    cooldown_until: Option<i64>,
}

impl Limiter {
    /// Records the action at `now` if the limit allows it.
    pub(crate) fn check(
        &mut self,
        limit: RateLimit,
        cooldown_ms: u64,
        now: i64,
    ) -> Result<(), Limited> {
        if limit.max == 0 {
            return Ok(());
        }
        if let Some(until) = self.cooldown_until {
            if now < until {
                return Err(Limited {
                    retry_after_ms: until.abs_diff(now),
                    cooldown_started: false,
                });
            }
            self.cooldown_until = None;
        }
        let window = ms(limit.window_ms);
        while let Some(&oldest) = self.accepted.front() {
            if now.saturating_sub(oldest) >= window {
                self.accepted.pop_front();
            } else {
                break;
            }
        }
        // `max` is a u32, so on every supported target this conversion is lossless.
        let max = usize::try_from(limit.max).unwrap_or(usize::MAX);
        if self.accepted.len() < max {
            self.accepted.push_back(now);
            return Ok(());
        }
        if cooldown_ms > 0 {
            self.accepted.clear();
            self.cooldown_until = Some(now.saturating_add(ms(cooldown_ms)));
            return Err(Limited {
                retry_after_ms: cooldown_ms,
                cooldown_started: true,
            });
        }
        let oldest = self.accepted.front().copied().unwrap_or(now);
        Err(Limited {
            retry_after_ms: oldest.saturating_add(window).abs_diff(now).max(1),
            cooldown_started: false,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const OWNCAST: RateLimit = RateLimit {
        max: 3,
        window_ms: 2_000,
    };

    #[test]
    fn exact_window_boundaries_without_cooldown() {
        let mut l = Limiter::default();
        assert!(l.check(OWNCAST, 0, 0).is_ok());
        assert!(l.check(OWNCAST, 0, 1).is_ok());
        assert!(l.check(OWNCAST, 0, 1_000).is_ok());
        // The message at 0 still counts at 1999 …
        assert_eq!(
            l.check(OWNCAST, 0, 1_999),
            Err(Limited {
                retry_after_ms: 1,
                cooldown_started: false
            })
        );
        // … and no longer at 2000.
        assert!(l.check(OWNCAST, 0, 2_000).is_ok());
        // Now 1, 1000, 2000 are in the log: 2000 is refused until 1 expires.
        assert_eq!(l.check(OWNCAST, 0, 2_000).unwrap_err().retry_after_ms, 1);
        assert!(l.check(OWNCAST, 0, 2_001).is_ok());
        assert!(l.check(OWNCAST, 0, 2_500).is_err());
    }

    #[test]
    fn cooldown_starts_on_the_fourth_and_is_not_extended() {
        let mut l = Limiter::default();
        for t in [0, 100, 200] {
            assert!(l.check(OWNCAST, 5_000, t).is_ok());
        }
        assert_eq!(
            l.check(OWNCAST, 5_000, 300),
            Err(Limited {
                retry_after_ms: 5_000,
                cooldown_started: true
            })
        );
        // Attempts during the cool-down are refused with the remaining time and do not extend it.
        assert_eq!(
            l.check(OWNCAST, 5_000, 2_300),
            Err(Limited {
                retry_after_ms: 3_000,
                cooldown_started: false
            })
        );
        assert_eq!(
            l.check(OWNCAST, 5_000, 5_299).unwrap_err().retry_after_ms,
            1
        );
        // At exactly the end, a fresh window.
        for t in [5_300, 5_301, 5_302] {
            assert!(l.check(OWNCAST, 5_000, t).is_ok(), "{t}");
        }
        assert!(l.check(OWNCAST, 5_000, 5_303).unwrap_err().cooldown_started);
    }

    #[test]
    fn steady_pace_under_the_limit_is_never_refused() {
        let mut l = Limiter::default();
        // One every 667 ms is 3 per 2001 ms: always allowed.
        for i in 0..1_000 {
            assert!(l.check(OWNCAST, 5_000, i * 667).is_ok(), "{i}");
        }
    }

    #[test]
    fn zero_max_disables() {
        let mut l = Limiter::default();
        let off = RateLimit {
            max: 0,
            window_ms: 1,
        };
        for _ in 0..100 {
            assert!(l.check(off, 5_000, 0).is_ok());
        }
    }

    #[test]
    fn clock_going_backwards_is_conservative() {
        let mut l = Limiter::default();
        for t in [10_000, 10_001, 10_002] {
            assert!(l.check(OWNCAST, 0, t).is_ok());
        }
        // An earlier `now` does not expire anything.
        assert!(l.check(OWNCAST, 0, 0).is_err());
        assert!(l.check(OWNCAST, 0, i64::MIN).is_err());
        assert!(l.check(OWNCAST, 0, i64::MAX).is_ok());
    }
}
