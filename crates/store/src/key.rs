//! Stream-key format, generation and hashing. Pure functions, no database.
//!
//! A key reads `rc_<lookup>_<secret>`, for example
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

/// Fixed prefix, so a key is recognisable (and greppable by secret scanners).
pub(crate) const PREFIX: &str = "rc_";
/// Length of the public lookup id in characters (5 random bytes).
pub(crate) const LOOKUP_LEN: usize = 8;
/// Length of the secret in characters (20 random bytes = 160 bits).
pub(crate) const SECRET_LEN: usize = 32;
/// Total length of a well-formed key.
pub(crate) const KEY_LEN: usize = PREFIX.len() + LOOKUP_LEN + 1 + SECRET_LEN;

/// A freshly generated key: the full key (shown once), its lookup id and the hash to store.
pub(crate) struct Generated {
    pub(crate) key: String,
    pub(crate) lookup: String,
    pub(crate) secret_hash: String,
}

/// Generates a key from the operating system's CSPRNG.
pub(crate) fn generate() -> Result<Generated, rand::rand_core::OsError> {
    let mut lookup_bytes = [0u8; LOOKUP_LEN * 5 / 8];
    let mut secret_bytes = [0u8; SECRET_LEN * 5 / 8];
    OsRng.try_fill_bytes(&mut lookup_bytes)?;
    OsRng.try_fill_bytes(&mut secret_bytes)?;
    let lookup = base32(&lookup_bytes);
    let secret = base32(&secret_bytes);
    let secret_hash = hash_secret(&secret);
    let key = format!("{PREFIX}{lookup}_{secret}");
    Ok(Generated {
        key,
        lookup,
        secret_hash,
    })
}

/// Splits a presented key into `(lookup, secret)`, or `None` if it is not exactly of our form.
/// Checks length first, so arbitrary input costs almost nothing.
pub(crate) fn parse(presented: &str) -> Option<(&str, &str)> {
    if presented.len() != KEY_LEN {
        return None;
    }
    let rest = presented.strip_prefix(PREFIX)?;
    let (lookup, rest) = rest.split_at_checked(LOOKUP_LEN)?;
    let secret = rest.strip_prefix('_')?;
    if secret.len() != SECRET_LEN || !is_base32(lookup) || !is_base32(secret) {
        return None;
    }
    Some((lookup, secret))
}

/// Lowercase hex SHA-256 of the secret part, as stored in `stream_keys.secret_hash`.
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
