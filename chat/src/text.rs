//! Validation of what people type: display names, message text, danmaku colours.
//!
//! Lengths are counted in Unicode scalar values (`char`s), not bytes and not grapheme clusters,
//! so an emoji built from several code points counts as several.

/// Why a display name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name has more characters than allowed.
    #[error("name is longer than {max} characters")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// The name starts or ends with a space.
    #[error("name starts or ends with a space")]
    OuterSpace,
    /// The name has two spaces in a row.
    #[error("name has two spaces in a row")]
    DoubleSpace,
    /// The name contains a character outside the allowed set.
    #[error("name may not contain {0:?}")]
    BadChar(char),
}

/// Checks a display name: 1..=`max_chars` characters; ASCII letters and digits, `_`, `-`, `.`,
/// non-ASCII letters and digits, and single spaces between words. Control, format (bidi
/// overrides, zero-width) and symbol characters are refused so a name cannot hide or imitate
/// another.
pub fn validate_name(name: &str, max_chars: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > max_chars {
        return Err(NameError::TooLong { max: max_chars });
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(NameError::OuterSpace);
    }
    if name.contains("  ") {
        return Err(NameError::DoubleSpace);
    }
    match name.chars().find(|&c| !name_char(c)) {
        Some(c) => Err(NameError::BadChar(c)),
        None => Ok(()),
    }
}

fn name_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ')
    } else {
        c.is_alphanumeric()
    }
}

/// The key under which names are compared: case-insensitive, Unicode-aware.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// Why a message text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextError {
    Empty,
    TooLong { max: usize },
}

/// Cleans a message: line breaks and tabs become spaces (chat is one line), other control
/// characters and bidi embedding/override/isolate controls are dropped (they could reorder
/// the text that follows on the page), then the result is trimmed and measured. Everything
/// else, markup included, passes through verbatim: the page shows text with `textContent`.
pub(crate) fn clean_text(raw: &str, max_chars: usize) -> Result<String, TextError> {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\n' | '\r' | '\t' | '\u{2028}' | '\u{2029}' => out.push(' '),
            c if c.is_control() || is_bidi_control(c) => {}
            c => out.push(c),
        }
    }
    let trimmed = out.trim();
    if trimmed.is_empty() {
        return Err(TextError::Empty);
    }
    if trimmed.chars().count() > max_chars {
        return Err(TextError::TooLong { max: max_chars });
    }
    Ok(trimmed.to_owned())
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Normalises a danmaku colour: `#rrggbb` (either case) → lower case; absent → white.
pub(crate) fn parse_color(color: Option<&str>) -> Option<String> {
    let Some(color) = color else {
        return Some("#ffffff".to_owned());
    };
    let hex = color.strip_prefix('#')?;
    if hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(format!("#{}", hex.to_ascii_lowercase()))
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_accepted() {
        for name in [
            "a",
            "alice",
            "Alice_99",
            "x.y-z",
            "Mary Jane",
            "小明",
            "Łukasz",
            "Ελένη",
            "محمد",
            "二二二二二二二二二二二二二二二二二二二二二二二二",
            "guest-abc123",
        ] {
            assert_eq!(validate_name(name, 24), Ok(()), "{name}");
        }
    }

    #[test]
    fn names_refused() {
        let cases = [
            ("", NameError::Empty),
            (" alice", NameError::OuterSpace),
            ("alice ", NameError::OuterSpace),
            ("al  ice", NameError::DoubleSpace),
            ("alice\n", NameError::BadChar('\n')),
            ("al\u{0}ice", NameError::BadChar('\0')),
            ("al\u{202E}ice", NameError::BadChar('\u{202E}')),
            ("al\u{200B}ice", NameError::BadChar('\u{200B}')),
            ("<b>", NameError::BadChar('<')),
            ("a@b", NameError::BadChar('@')),
            ("😀", NameError::BadChar('😀')),
            ("\u{3000}x", NameError::BadChar('\u{3000}')),
            ("abcdefghijklmnopqrstuvwxy", NameError::TooLong { max: 24 }),
            (
                "二二二二二二二二二二二二二二二二二二二二二二二二二",
                NameError::TooLong { max: 24 },
            ),
        ];
        for (name, want) in cases {
            assert_eq!(validate_name(name, 24), Err(want), "{name:?}");
        }
    }

    #[test]
    fn name_keys_fold_case() {
        assert_eq!(name_key("Alice"), name_key("aLICE"));
        assert_eq!(name_key("ÉLODIE"), name_key("élodie"));
        assert_ne!(name_key("alice"), name_key("alice2"));
    }

    #[test]
    fn text_is_trimmed_and_measured_in_chars() {
        assert_eq!(clean_text("  hi  ", 300), Ok("hi".into()));
        assert_eq!(clean_text("", 300), Err(TextError::Empty));
        assert_eq!(clean_text(" \t\n ", 300), Err(TextError::Empty));
        assert_eq!(clean_text("\u{0}\u{7}\u{1b}", 300), Err(TextError::Empty));
        let max = "é".repeat(300);
        assert_eq!(clean_text(&max, 300), Ok(max.clone()));
        assert_eq!(
            clean_text(&(max + "é"), 300),
            Err(TextError::TooLong { max: 300 })
        );
        // Surrounding whitespace does not count.
        assert!(clean_text(&format!("   {}   ", "a".repeat(300)), 300).is_ok());
    }

    #[test]
    fn control_characters_are_dropped_and_breaks_become_spaces() {
        assert_eq!(
            clean_text("line1\nline2\r\nx\ty", 300),
            Ok("line1 line2  x y".into())
        );
        assert_eq!(
            clean_text("a\u{0}b\u{7}c\u{1b}[31md", 300),
            Ok("abc[31md".into())
        );
        assert_eq!(
            clean_text("gnp.\u{202E}exe\u{2066}", 300),
            Ok("gnp.exe".into())
        );
        // Joiners inside emoji sequences are kept.
        assert_eq!(clean_text("👩\u{200D}💻", 300), Ok("👩\u{200D}💻".into()));
    }

    #[test]
    fn markup_passes_through_as_data() {
        let evil = r#"<img src=x onerror="alert(1)"><script>alert(2)</script>&amp;"#;
        assert_eq!(clean_text(evil, 300), Ok(evil.to_owned()));
    }

    #[test]
    fn colours() {
        assert_eq!(parse_color(None), Some("#ffffff".into()));
        assert_eq!(parse_color(Some("#FF00aa")), Some("#ff00aa".into()));
        for bad in [
            "",
            "#",
            "red",
            "#fff",
            "#ff00aa0",
            "ff00aa",
            "#gg0000",
            "#ff00a ",
            "#ff00é",
            "rgb(0,0,0)",
            "#ff00aa;x",
        ] {
            assert_eq!(parse_color(Some(bad)), None, "{bad:?}");
        }
    }
}
