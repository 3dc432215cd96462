//! Limits: rate limiting of repeated log lines (a flood of bad connections or broken messages
//! must not become a flood of log lines), and the slots counted against `max_connections`,
//! `max_connections_per_ip` and `max_publishers`.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::IngestStats;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections_per_ip` connections from this address are alive.
    PerIp,
    /// `max_connections` connections are alive.
    Global,
}

/// An admitted connection. Until it is dropped (however the connection task ends, panics
/// included) it holds a `max_connections` permit, counts once for its IP address, and counts
/// in [`IngestStats::connections`] and the `roomcast_ingest_connections` gauge.
#[derive(Debug)]
pub struct ConnSlot {
    stats: IngestStats,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

/// Admits a connection from `ip` if neither limit is reached. The per-IP limit is checked
/// first, so a host over its own limit is told so even when the server is full as well.
pub fn admit(
    stats: &IngestStats,
    ip: IpAddr,
    max_per_ip: usize,
    permits: &Arc<Semaphore>,
) -> Result<ConnSlot, Refusal> {
    let ip = ip.to_canonical();
    let mut per_ip = stats.0.per_ip.lock().unwrap_or_else(|e| e.into_inner());
    let count = per_ip.get(&ip).copied().unwrap_or(0);
    if count >= max_per_ip {
        return Err(Refusal::PerIp);
    }
    let permit = Arc::clone(permits)
        .try_acquire_owned()
        .map_err(|_| Refusal::Global)?;
    per_ip.insert(ip, count + 1);
    drop(per_ip);
    stats.0.connections.fetch_add(1, Ordering::SeqCst);
    metrics::gauge!("roomcast_ingest_connections").increment(1.0);
    Ok(ConnSlot {
        stats: stats.clone(),
        ip,
        _permit: permit,
    })
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        {
            let mut per_ip = self
                .stats
                .0
                .per_ip
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
        self.stats.0.connections.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("roomcast_ingest_connections").decrement(1.0);
    }
}

/// A publishing session's `max_publishers` permit; counts in [`IngestStats::publishers`] and
/// the `roomcast_ingest_publishers` gauge until dropped.
#[derive(Debug)]
pub struct PublisherSlot {
    stats: IngestStats,
    _permit: OwnedSemaphorePermit,
}

impl PublisherSlot {
    /// Wraps a permit of the publisher semaphore.
    pub fn new(stats: &IngestStats, permit: OwnedSemaphorePermit) -> Self {
        stats.0.publishers.fetch_add(1, Ordering::SeqCst);
        metrics::gauge!("roomcast_ingest_publishers").increment(1.0);
        Self {
            stats: stats.clone(),
            _permit: permit,
        }
    }
}

impl Drop for PublisherSlot {
    fn drop(&mut self) {
        self.stats.0.publishers.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("roomcast_ingest_publishers").decrement(1.0);
    }
}

/// Allows one log line per interval and counts the ones it held back.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    state: Mutex<LimiterState>,
}

#[derive(Debug, Default)]
struct LimiterState {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter letting one line through per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(LimiterState::default()),
        }
    }

    /// `Some(n)` if a line may be written now, `n` being how many were held back since the
    /// last one; `None` to stay quiet. Time is an input so tests need no clock.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                s.suppressed += 1;
                None
            }
            _ => {
                s.last = Some(now);
                Some(std::mem::take(&mut s.suppressed))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_per_ip_and_release_on_drop() {
        let stats = IngestStats::new();
        let permits = Arc::new(Semaphore::new(3));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let s1 = admit(&stats, a, 2, &permits).unwrap();
        let s2 = admit(&stats, a_mapped, 2, &permits).unwrap();
        assert_eq!(admit(&stats, a, 2, &permits).unwrap_err(), Refusal::PerIp);
        assert_eq!(stats.connections_from(a), 2);
        let s3 = admit(&stats, b, 2, &permits).unwrap();
        assert_eq!(admit(&stats, b, 2, &permits).unwrap_err(), Refusal::Global);
        assert_eq!((stats.connections(), stats.addresses()), (3, 2));
        drop(s1);
        assert_eq!(stats.connections_from(a_mapped), 1);
        drop((s2, s3));
        assert_eq!((stats.connections(), stats.addresses()), (0, 0));
        assert_eq!(permits.available_permits(), 3);
    }

    #[test]
    fn one_line_per_interval_with_a_count() {
        let l = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(l.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(30)), Some(1));
    }
}
