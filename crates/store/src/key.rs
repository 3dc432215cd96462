//! Secret-token format, generation and hashing: stream keys and room host tokens. Pure
//! functions, no database.
//!
//! Both kinds of token share one design and one implementation ([`Format`]); only the prefix
//! differs, so a stream key is never accepted as a host token or the other way round, and a
//! secret scanner can tell them apart:
//!
//! * stream key: `rc_<lookup>_<secret>` ([`STREAM_KEY`]), stored in `stream_keys`;
//! * room host token: `rh_<lookup>_<secret>` ([`HOST_TOKEN`]), stored in `room_host_tokens`;
//!   it lets the room's host moderate from the watch page and never allows publishing.
//!
//! A stream key reads, for example
//! `rc_k3mz7qpa_4fhq2x7wnb5c6dyt3jz2kvr7e5m4a6sd` (44 characters, all of `[a-z2-7_]`, so it
//! survives URLs, OBS, shells and copy-paste without escaping):
//!
//! * `lookup`: 8 characters (40 random bits), stored in clear. It is not a secret: it only
//!   finds the row, so authorization is one indexed lookup instead of a scan of every hash.
//! * `secret`: 32 characters (160 random bits from the operating system's CSPRNG). Only
//!   SHA-256(secret) is stored.
//!
//! A plain, unsalted, fast SHA-256 is the right tool here: the secret is 160 uniformly random
//! bits, not a password a person chose, so there is no dictionary to attack and brute force
//! over 2^160 is out of reach whatever the hash speed. Salting or a slow KDF (argon2) would add
//! cost to every publish without adding security.

use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// RFC 4648 base32 alphabet in lower case: 32 symbols, so each carries exactly 5 random bits
/// (no modulo bias), and none needs escaping anywhere.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Length of the public lookup id in characters (5 random bytes).
pub(crate) const LOOKUP_LEN: usize = 8;
/// Length of the secret in characters (20 random bytes = 160 bits).
pub(crate) const SECRET_LEN: usize = 32;

/// One kind of token: `<prefix><lookup>_<secret>`. The prefix is three ASCII characters ending
/// in `_`, so every kind has the same length ([`KEY_LEN`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Format {
    /// Fixed prefix, so a token is recognisable (and greppable by secret scanners).
    pub(crate) prefix: &'static str,
}

/// Stream keys: `rc_<lookup>_<secret>`.
pub(crate) const STREAM_KEY: Format = Format { prefix: "rc_" };
/// Room host tokens: `rh_<lookup>_<secret>`.
pub(crate) const HOST_TOKEN: Format = Format { prefix: "rh_" };

/// Length of every prefix.
const PREFIX_LEN: usize = 3;
/// Total length of a well-formed token of any kind.
pub(crate) const KEY_LEN: usize = PREFIX_LEN + LOOKUP_LEN + 1 + SECRET_LEN;

/// A freshly generated token: the full token (shown once), its lookup id and the hash to store.
pub(crate) struct Generated {
    pub(crate) key: String,
    pub(crate) lookup: String,
    pub(crate) secret_hash: String,
}

impl Format {
    /// Generates a token of this kind from the operating system's CSPRNG.
    pub(crate) fn generate(self) -> Result<Generated, rand::rand_core::OsError> {
        debug_assert_eq!(self.prefix.len(), PREFIX_LEN);
        let mut lookup_bytes = [0u8; LOOKUP_LEN * 5 / 8];
        let mut secret_bytes = [0u8; SECRET_LEN * 5 / 8];
        OsRng.try_fill_bytes(&mut lookup_bytes)?;
        OsRng.try_fill_bytes(&mut secret_bytes)?;
        let lookup = base32(&lookup_bytes);
        let secret = base32(&secret_bytes);
        let secret_hash = hash_secret(&secret);
        let key = format!("{}{lookup}_{secret}", self.prefix);
        Ok(Generated {
            key,
            lookup,
            secret_hash,
        })
    }

    /// Splits a presented token into `(lookup, secret)`, or `None` if it is not exactly of this
    /// kind's form. Checks length first, so arbitrary input costs almost nothing.
    pub(crate) fn parse(self, presented: &str) -> Option<(&str, &str)> {
        if presented.len() != KEY_LEN {
            return None;
        }
        let rest = presented.strip_prefix(self.prefix)?;
        let (lookup, rest) = rest.split_at_checked(LOOKUP_LEN)?;
        let secret = rest.strip_prefix('_')?;
        if secret.len() != SECRET_LEN || !is_base32(lookup) || !is_base32(secret) {
            return None;
        }
        Some((lookup, secret))
    }
}

/// Generates a stream key ([`STREAM_KEY`]); the store itself goes through `draw_token`.
#[cfg(test)]
pub(crate) fn generate() -> Result<Generated, rand::rand_core::OsError> {
    STREAM_KEY.generate()
}

/// Parses a presented stream key ([`STREAM_KEY`]).
pub(crate) fn parse(presented: &str) -> Option<(&str, &str)> {
    STREAM_KEY.parse(presented)
}

/// Lowercase hex SHA-256 of the secret part, as stored in `stream_keys.secret_hash` and
/// `room_host_tokens.secret_hash`.
pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares SHA-256(secret) with a stored hex hash in constant time (in the secret and in
/// the stored hash's content; a malformed stored hash simply never matches).
pub(crate) fn verify(secret: &str, stored_hex: &str) -> bool {
    let presented = Sha256::digest(secret.as_bytes());
    let mut stored = [0u8; 32];
    if hex::decode_to_slice(stored_hex, &mut stored).is_err() {
        return false;
    }
    bool::from(presented[..].ct_eq(&stored[..]))
}

fn is_base32(s: &str) -> bool {
    s.bytes().all(|b| ALPHABET.contains(&b))
}

/// Base32 without padding; `bytes.len() * 8` must be a multiple of 5 for every bit to be used
/// (callers use 5 and 20 bytes).
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn base32_known_vectors() {
        // RFC 4648 test vectors, lower case, no padding.
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32(b"fooba"), "mzxw6ytb");
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32(&[0xff; 5]), "77777777");
        assert_eq!(base32(&[0; 20]).len(), SECRET_LEN);
    }

    #[test]
    fn generated_key_has_the_documented_shape() {
        let g = generate().unwrap();
        assert_eq!(g.key.len(), KEY_LEN);
        assert_eq!(KEY_LEN, 44);
        assert!(g.key.starts_with("rc_"));
        let (lookup, secret) = parse(&g.key).expect("own key parses");
        assert_eq!(lookup, g.lookup);
        assert_eq!(g.secret_hash, hash_secret(secret));
        assert!(verify(secret, &g.secret_hash));
        assert!(!g.secret_hash.contains(secret));
        // URL/OBS-safe characters only.
        assert!(
            g.key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
    }

    #[test]
    fn keys_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a.key, b.key);
        assert_ne!(a.lookup, b.lookup);
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let good = generate().unwrap().key;
        assert!(parse(&good).is_some());
        let mut cases: Vec<String> = vec![
            String::new(),
            "rc_".into(),
            good[..KEY_LEN - 1].to_string(),
            format!("{good}a"),
            good.to_uppercase(),
            good.replacen("rc_", "rx_", 1),
            format!("{}-{}", &good[..11], &good[12..]),
            // a '1', '8', '9' or '0' is not in the alphabet
            format!("{}1", &good[..KEY_LEN - 1]),
            format!("{}0{}", &good[..3], &good[4..]),
            "é".repeat(22),
            format!("rc_{}", "_".repeat(41)),
        ];
        // A multi-byte character straddling the lookup/secret boundary must not panic.
        cases.push(format!("rc_aaaaaaa\u{e9}{}", "a".repeat(32)));
        for case in &cases {
            assert!(parse(case).is_none(), "{case:?} parsed");
        }
    }

    #[test]
    fn host_tokens_share_the_shape_but_not_the_prefix() {
        let h = HOST_TOKEN.generate().unwrap();
        assert_eq!(h.key.len(), KEY_LEN);
        assert!(h.key.starts_with("rh_"));
        let (lookup, secret) = HOST_TOKEN.parse(&h.key).expect("own token parses");
        assert_eq!(lookup, h.lookup);
        assert!(verify(secret, &h.secret_hash));
        // Neither kind passes for the other.
        assert!(parse(&h.key).is_none());
        assert!(STREAM_KEY.parse(&h.key).is_none());
        let k = generate().unwrap();
        assert!(HOST_TOKEN.parse(&k.key).is_none());
        for format in [STREAM_KEY, HOST_TOKEN] {
            assert_eq!(format.prefix.len(), PREFIX_LEN);
            assert!(format.prefix.ends_with('_') && format.prefix.is_ascii());
        }
        assert_ne!(STREAM_KEY.prefix, HOST_TOKEN.prefix);
    }

    #[test]
    fn verify_rejects_wrong_secret_and_bad_hash() {
        let g = generate().unwrap();
        let (_, secret) = parse(&g.key).unwrap();
        let other = generate().unwrap();
        let (_, other_secret) = parse(&other.key).unwrap();
        assert!(!verify(other_secret, &g.secret_hash));
        assert!(!verify(secret, "not hex"));
        assert!(!verify(secret, &g.secret_hash[..62]));
        assert!(!verify(secret, ""));
    }
}
