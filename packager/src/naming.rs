//! Resource names. Every name is unique for the life of a packager and never reused, so a CDN
//! may cache media forever: `{prefix}-init-{gen}.mp4`, `{prefix}-{msn}.m4s`,
//! `{prefix}-{msn}.{part}.m4s`. The prefix is unique per packager instance (the server derives it
//! from its boot time), so two server runs that both start at media sequence 0 never collide.

use std::fmt::Write as _;

/// What a name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Name {
    /// Init segment of generation `gen`.
    Init(u32),
    /// Complete media segment `msn`.
    Segment(u64),
    /// Part `part` of media segment `msn`.
    Part(u64, u32),
}

pub(crate) fn init(prefix: &str, generation: u32) -> String {
    format!("{prefix}-init-{generation}.mp4")
}

pub(crate) fn segment(prefix: &str, msn: u64) -> String {
    format!("{prefix}-{msn}.m4s")
}

pub(crate) fn part(prefix: &str, msn: u64, part: u32) -> String {
    format!("{prefix}-{msn}.{part}.m4s")
}

/// Parses a name produced by this module. Only the canonical spelling is accepted (no leading
/// zeros, no signs), so one resource has exactly one URL and caches never hold duplicates.
pub(crate) fn parse(prefix: &str, name: &str) -> Option<Name> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    if let Some(generation) = rest.strip_prefix("init-") {
        let generation = canonical_number(generation.strip_suffix(".mp4")?)?;
        return u32::try_from(generation).ok().map(Name::Init);
    }
    let stem = rest.strip_suffix(".m4s")?;
    match stem.split_once('.') {
        None => canonical_number(stem).map(Name::Segment),
        Some((msn, part)) => {
            let msn = canonical_number(msn)?;
            let part = u32::try_from(canonical_number(part)?).ok()?;
            Some(Name::Part(msn, part))
        }
    }
}

fn canonical_number(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

/// Keeps a prefix URL-safe and unambiguous: `[A-Za-z0-9_-]`, at most 64 characters, and never
/// empty. Anything else is dropped, because the prefix becomes part of every URL we hand out.
pub(crate) fn sanitize_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len().min(64));
    for c in prefix.chars() {
        if out.len() >= 64 {
            break;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push_str("live");
    }
    out
}

/// A default prefix when the server did not pass one: unique enough for tests, but the server
/// should pass its own (e.g. base36 of the boot time) to keep names unique across restarts.
pub(crate) fn default_prefix() -> String {
    let mut s = String::from("r");
    let _ = write!(s, "{}", std::process::id());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(init("k3x", 2), "k3x-init-2.mp4");
        assert_eq!(segment("k3x", 17), "k3x-17.m4s");
        assert_eq!(part("k3x", 17, 3), "k3x-17.3.m4s");
        assert_eq!(parse("k3x", "k3x-init-2.mp4"), Some(Name::Init(2)));
        assert_eq!(parse("k3x", "k3x-17.m4s"), Some(Name::Segment(17)));
        assert_eq!(parse("k3x", "k3x-17.3.m4s"), Some(Name::Part(17, 3)));
        assert_eq!(parse("a-b", "a-b-0.m4s"), Some(Name::Segment(0)));
    }

    #[test]
    fn odd_names_are_unknown() {
        for name in [
            "",
            "k3x",
            "k3x-",
            "k3x-.m4s",
            "k3x-01.m4s",
            "k3x-+1.m4s",
            "k3x--1.m4s",
            "k3x-1..m4s",
            "k3x-1.2.3.m4s",
            "k3x-1.m4s.m4s",
            "k3x-init-.mp4",
            "k3x-init-4294967296.mp4",
            "k3x-1.4294967296.m4s",
            "k3x-99999999999999999999999.m4s",
            "k3x-1.mp4",
            "other-1.m4s",
            "k3x-١.m4s",
            "../k3x-1.m4s",
            "k3x-1.m4s?x=1",
        ] {
            assert_eq!(parse("k3x", name), None, "{name:?}");
        }
    }

    #[test]
    fn prefix_is_sanitized() {
        assert_eq!(sanitize_prefix("abc_-9"), "abc_-9");
        assert_eq!(sanitize_prefix("a/b?c d"), "abcd");
        assert_eq!(sanitize_prefix("///"), "live");
        assert_eq!(sanitize_prefix(&"x".repeat(100)).len(), 64);
    }
}
