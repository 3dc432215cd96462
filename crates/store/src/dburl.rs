//! Database URLs: which engine, how to open it, and how to show it without its password.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;

/// What a database URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// `sqlite::memory:` (or `mode=memory`): one database per connection, so the pool has one.
    SqliteMemory,
    /// `sqlite://FILE`, `sqlite:FILE`.
    SqliteFile,
    /// `postgres://...` or `postgresql://...`.
    Postgres,
}

/// Classifies a URL by its scheme, or `None` if no supported engine serves it.
pub(crate) fn classify(url: &str) -> Option<Target> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let (db, params) = split_query(rest.strip_prefix("//").unwrap_or(rest));
        let memory = db == ":memory:" || query_value(params, "mode") == Some("memory");
        Some(if memory {
            Target::SqliteMemory
        } else {
            Target::SqliteFile
        })
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(Target::Postgres)
    } else {
        None
    }
}

/// Rewrites a SQLite file URL into the form that survives sqlx's `Any` driver, which parses
/// the URL as a generic URL (resolving `..` segments lexically, so `sqlite://./../x.db` would
/// open `./x.db`) before the SQLite driver reads it again: `sqlite:///ABSOLUTE/PATH` with the
/// directory resolved on the file system and unusual bytes percent-encoded, the original
/// parameters kept, and `mode=rwc` added when no mode is given (see
/// [`sqlite_create_if_missing`]).
///
/// Errors are reasons for an operator: the directory does not exist, and so on.
pub(crate) fn sqlite_file_url(url: &str) -> Result<String, String> {
    let options = SqliteConnectOptions::from_str(url).map_err(|e| e.to_string())?;
    let file = options.get_filename();
    let Some(name) = file.file_name() else {
        return Err("the URL names no database file".into());
    };
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir = dir.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "directory {} does not exist (create it, or choose another --data-dir or --database-url)",
            dir.display()
        ),
        _ => format!("cannot use directory {}: {e}", dir.display()),
    })?;
    if !cfg!(unix) {
        // Absolute Windows paths (`\\?\C:\...`) do not fit in `sqlite:///`; keep the URL.
        return Ok(sqlite_create_if_missing(url).into_owned());
    }
    let path = dir.join(name);
    let Some(path) = path.to_str() else {
        return Err(format!("path {} is not valid UTF-8", path.display()));
    };
    let mut out = String::from("sqlite://");
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if let (_, Some(params)) = split_query(url) {
        out.push('?');
        out.push_str(params);
    }
    Ok(sqlite_create_if_missing(&out).into_owned())
}

/// For a SQLite file URL without an explicit `mode`, adds `mode=rwc` so that a missing file
/// is created (sqlx's default is to fail). An explicit mode (`ro`, `rw`) is respected.
pub(crate) fn sqlite_create_if_missing(url: &str) -> Cow<'_, str> {
    let (_, params) = split_query(url);
    match params {
        Some(p) if query_value(Some(p), "mode").is_some() => Cow::Borrowed(url),
        Some("") => Cow::Owned(format!("{url}mode=rwc")),
        Some(_) => Cow::Owned(format!("{url}&mode=rwc")),
        None => Cow::Owned(format!("{url}?mode=rwc")),
    }
}

/// The URL with any password replaced by `***`: the userinfo password
/// (`postgres://user:pw@host/db`) and query parameters that carry one (`?password=...`,
/// `sslpassword=...`). Safe for error messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some(i) = url.find("://").filter(|_| !url.starts_with("sqlite")) else {
        // SQLite URLs carry no userinfo; only parameters could hold something sensitive.
        return redact_tail(url);
    };
    let (scheme, rest) = url.split_at(i + 3);
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // Well-formed: the userinfo ends at the authority's last '@'. Malformed (a password typed
    // with an unescaped '/', '?', '#' or '@'): fall back to the last '@' anywhere, hiding too
    // much rather than too little.
    let at = match rest[..auth_end].rfind('@') {
        Some(at) => Some(at),
        None => rest.rfind('@'),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match at {
        Some(at) => {
            let (userinfo, tail) = rest.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _)) if !user.contains(['/', '?', '#']) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                _ if userinfo.contains([':', '/', '?', '#']) => out.push_str("***"),
                _ => out.push_str(userinfo),
            }
            out.push_str(&redact_tail(tail));
        }
        None => out.push_str(&redact_tail(rest)),
    }
    out
}

/// Redacts sensitive query parameters and any fragment of `host/path?query#fragment`.
fn redact_tail(s: &str) -> String {
    let (main, fragment) = match s.split_once('#') {
        Some((main, _)) => (main, "#***"),
        None => (s, ""),
    };
    let (base, params) = split_query(main);
    let mut out = String::with_capacity(s.len());
    out.push_str(base);
    if let Some(params) = params {
        out.push('?');
        for (n, pair) in params.split('&').enumerate() {
            if n > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) if is_sensitive(k) => {
                    out.push_str(k);
                    out.push_str("=***");
                }
                _ => out.push_str(pair),
            }
        }
    }
    // A fragment has no meaning in a database URL; never echo it.
    out.push_str(fragment);
    out
}

fn is_sensitive(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.contains("token") || k == "sslkey"
}

fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

fn query_value<'a>(params: Option<&'a str>, key: &str) -> Option<&'a str> {
    params?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn classifies_supported_urls() {
        assert_eq!(classify("sqlite::memory:"), Some(Target::SqliteMemory));
        assert_eq!(
            classify("sqlite://file:x?mode=memory&cache=shared"),
            Some(Target::SqliteMemory)
        );
        assert_eq!(classify("sqlite://data/x.db"), Some(Target::SqliteFile));
        assert_eq!(classify("sqlite:x.db"), Some(Target::SqliteFile));
        assert_eq!(classify("sqlite:///abs/x.db"), Some(Target::SqliteFile));
        assert_eq!(classify("postgres://u@h/db"), Some(Target::Postgres));
        assert_eq!(classify("postgresql://u@h/db"), Some(Target::Postgres));
        assert_eq!(classify("mysql://u@h/db"), None);
        assert_eq!(classify("roomcast.db"), None);
        assert_eq!(classify(""), None);
    }

    #[test]
    fn adds_create_mode_only_when_no_mode_given() {
        assert_eq!(
            sqlite_create_if_missing("sqlite://a.db"),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(
            sqlite_create_if_missing("sqlite://a.db?"),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(
            sqlite_create_if_missing("sqlite://a.db?cache=private"),
            "sqlite://a.db?cache=private&mode=rwc"
        );
        assert_eq!(
            sqlite_create_if_missing("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
    }

    #[test]
    fn sqlite_file_urls_become_absolute_and_keep_their_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        let sub = real.join("a b%c");
        std::fs::create_dir(&sub).unwrap();
        std::fs::create_dir(real.join("x")).unwrap();
        let url = format!("sqlite://{}/x/../a b%25c/room#1.db", real.display());
        // `%25` is how a literal '%' is written; '#' is taken literally by sqlx's SQLite parser.
        let out = sqlite_file_url(&url).unwrap();
        assert!(!out.contains(".."), "{out}");
        assert!(out.ends_with("/a%20b%25c/room%231.db?mode=rwc"), "{out}");
        let opts = SqliteConnectOptions::from_str(&out).unwrap();
        assert_eq!(opts.get_filename(), sub.join("room#1.db"));

        let with_params = format!("sqlite://{}/r.db?mode=ro&cache=private", real.display());
        assert!(
            sqlite_file_url(&with_params)
                .unwrap()
                .ends_with("/r.db?mode=ro&cache=private")
        );

        let missing = format!("sqlite://{}/nope/r.db", real.display());
        let reason = sqlite_file_url(&missing).unwrap_err();
        assert!(
            reason.contains("nope") && reason.contains("does not exist"),
            "{reason}"
        );
        assert!(sqlite_file_url("sqlite://x.db?mode=bogus").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://alice:hunter2@db.example:5432/rc?sslmode=require"),
            "postgres://alice:***@db.example:5432/rc?sslmode=require"
        );
        assert_eq!(
            redact("postgres://alice:p%40ss@h/db"),
            "postgres://alice:***@h/db"
        );
        assert_eq!(
            redact("postgres://h/db?user=a&password=hunter2&sslpassword=x"),
            "postgres://h/db?user=a&password=***&sslpassword=***"
        );
        assert_eq!(redact("postgres://u@h/db#hunter2"), "postgres://u@h/db#***");
        // Nothing to hide: unchanged.
        for url in [
            "postgres://postgres@127.0.0.1:5432/test",
            "sqlite://./roomcast-data/roomcast.db",
            "sqlite::memory:",
            "sqlite:x.db?mode=rwc",
        ] {
            assert_eq!(redact(url), url);
        }
        // A password containing '@' or '/' still never shows.
        for url in [
            "postgres://u:a@b@h/db",
            "postgres://u:hunter2/x@h/db",
            "postgres://u:hunter2@h?password=hunter2",
            "postgres://u:hun#ter2@h/db",
            "postgres://u:hun?ter2@h/db",
            "postgres://u:hunter2?@h/db",
        ] {
            assert!(!redact(url).contains("hunter2"), "{}", redact(url));
            assert!(!redact(url).contains("a@b"), "{}", redact(url));
            assert!(!redact(url).contains("hun"), "{}", redact(url));
            assert!(!redact(url).contains("ter2"), "{}", redact(url));
        }
    }
}
