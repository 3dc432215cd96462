//! Counting viewers who watch with a plain HLS player (VLC, ffplay, a TV app) and never open
//! the chat.
//!
//! HLS has no sessions, so a player is recognised by what it cannot help sending: its address
//! and User-Agent, on the media playlist it re-fetches every target duration (or every part with
//! LL-HLS). A player counts while it polled within the window. Requests whose `Referer` is our
//! own watch page are skipped: those viewers hold a chat socket and are counted there.
//! Behind a CDN every player shares the CDN's address, so the count is a floor, not exact.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Distinct HLS players per room, seen within a sliding window.
#[derive(Debug)]
pub struct HlsViewers {
    window: Duration,
    max_tracked: usize,
    rooms: Mutex<HashMap<String, HashMap<u64, Instant>>>,
}

impl HlsViewers {
    /// Players are counted for `window` after their last playlist request; at most
    /// `max_tracked` players are remembered in all (a flood of fake clients cannot grow memory).
    pub fn new(window: Duration, max_tracked: usize) -> Self {
        Self {
            window,
            max_tracked,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    /// Records a media playlist request.
    pub fn seen(&self, room: &str, ip: IpAddr, user_agent: &str, now: Instant) {
        let mut h = DefaultHasher::new();
        ip.hash(&mut h);
        user_agent.hash(&mut h);
        let id = h.finish();
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        // A known player (every playlist reload after the first) costs a lookup: no allocation
        // and no count over every room.
        if let Some(last) = rooms.get_mut(room).and_then(|p| p.get_mut(&id)) {
            *last = now;
            return;
        }
        let total: usize = rooms.values().map(HashMap::len).sum();
        if total >= self.max_tracked {
            metrics::counter!("roomcast_hls_viewers_untracked_total").increment(1);
            return;
        }
        rooms.entry(room.to_owned()).or_default().insert(id, now);
    }

    /// Forgets players not seen within the window and returns the count per room.
    pub fn sweep(&self, now: Instant) -> Vec<(String, usize)> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.window;
        for players in rooms.values_mut() {
            players.retain(|_, last| now.saturating_duration_since(*last) <= window);
        }
        let counts = rooms.iter().map(|(r, p)| (r.clone(), p.len())).collect();
        rooms.retain(|_, p| !p.is_empty());
        counts
    }
}

/// Whether a request came from roomcast's own watch page.
pub fn from_watch_page(referer: Option<&str>) -> bool {
    referer.is_some_and(|r| {
        r.split_once("://")
            .map(|(_, rest)| rest)
            .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
            .is_some_and(|path| path.starts_with("/watch/"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_players_in_the_window() {
        let v = HlsViewers::new(Duration::from_secs(6), 100);
        let t0 = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        v.seen("main", a, "VLC/3.0", t0);
        v.seen("main", a, "VLC/3.0", t0 + Duration::from_secs(2));
        v.seen("main", a, "ffplay", t0);
        v.seen("main", b, "VLC/3.0", t0);
        v.seen("other", b, "VLC/3.0", t0);
        let mut c = v.sweep(t0 + Duration::from_secs(3));
        c.sort();
        assert_eq!(c, vec![("main".into(), 3), ("other".into(), 1)]);
        // Only the player that polled at t0+2 s is still within 6 s at t0+7 s.
        let c = v.sweep(t0 + Duration::from_secs(7));
        assert_eq!(c.iter().find(|(r, _)| r == "main").map(|x| x.1), Some(1));
        let c = v.sweep(t0 + Duration::from_secs(20));
        assert!(c.iter().all(|(_, n)| *n == 0));
    }

    #[test]
    fn memory_is_bounded() {
        let v = HlsViewers::new(Duration::from_secs(6), 10);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            v.seen("main", IpAddr::from(i.to_be_bytes()), "bot", t0);
        }
        assert_eq!(v.sweep(t0)[0].1, 10);
    }

    #[test]
    fn recognises_the_watch_page() {
        assert!(from_watch_page(Some("http://tv.example:8080/watch/main")));
        assert!(from_watch_page(Some("https://tv.example/watch/main#x")));
        assert!(!from_watch_page(Some("https://elsewhere.example/player")));
        assert!(!from_watch_page(None));
        assert!(!from_watch_page(Some("garbage")));
    }
}
