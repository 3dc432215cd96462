//! Every limit of a room's chat, in one struct the server's configuration file can embed.

use serde::{Deserialize, Serialize};

use crate::protocol::DEFAULT_MAX_FRAME_BYTES;

/// A sliding-window rate limit: at most `max` accepted in any span of `window_ms`.
///
/// Both fields are required when the table is written out, so a half-written override cannot
/// silently pick up another limit's default.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Accepted actions per window; `0` turns the limit off.
    pub max: u32,
    /// Length of the window, milliseconds.
    pub window_ms: u64,
}

/// One kind of gift viewers can send, from the configured catalogue.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GiftKind {
    /// Identifier used on the wire (`{"type":"gift","gift":"rose"}`).
    pub id: String,
    /// Name shown on the page.
    pub name: String,
    /// Worth of one gift in coins; totals and the top-givers board add these up.
    pub value: u64,
}

/// Limits and behaviour of one room's chat. Every field has a default.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Largest client frame parsed, bytes; anything bigger is refused before JSON parsing so a
    /// hostile client cannot make the server allocate for it.
    pub max_frame_bytes: usize,
    /// Longest chat message, in Unicode scalar values after trimming.
    pub max_text_chars: usize,
    /// Longest danmaku (bullet comment), in Unicode scalar values after trimming; short because
    /// it flies over the picture.
    pub max_danmaku_chars: usize,
    /// Longest display name, in Unicode scalar values.
    pub max_name_chars: usize,
    /// Chat and danmaku lines kept for the `welcome` of a new viewer.
    pub history_len: usize,
    /// Chat messages per connection; exceeding it starts the cool-down.
    pub chat_rate: RateLimit,
    /// Danmaku per connection, counted apart from chat; exceeding it starts the cool-down.
    pub danmaku_rate: RateLimit,
    /// Gift messages per connection; exceeding it starts the cool-down.
    pub gift_rate: RateLimit,
    /// Milliseconds a connection that exceeded a rate limit is refused (`rate_limited`) before
    /// it may send again. Refused attempts do not extend it. `0`: no cool-down, only the window.
    pub cooldown_ms: u64,
    /// Longest slow mode a host may set, seconds.
    pub max_slow_mode_s: u32,
    /// Likes per connection that are counted; the rest are dropped silently so a script
    /// hammering the button neither counts nor earns an error frame per click.
    pub like_rate: RateLimit,
    /// Milliseconds likes are gathered, from the first pending one, before one aggregated `like`
    /// update goes out.
    pub like_flush_ms: u64,
    /// Shortest interval between two `presence` updates, milliseconds.
    pub presence_ms: u64,
    /// How far behind the live position a client may stamp a danmaku, milliseconds; an older
    /// (or a future) position is replaced by the live one.
    pub danmaku_max_behind_ms: u64,
    /// The gift catalogue; a gift id not listed here is refused with `unknown_gift`.
    pub gifts: Vec<GiftKind>,
    /// Largest `count` of one gift message.
    pub max_gift_count: u32,
    /// Entries on the top-givers board.
    pub top_givers: usize,
    /// Longest lottery keyword, in Unicode scalar values.
    pub max_keyword_chars: usize,
    /// Longest auto-draw delay a host may set when opening a lottery, seconds.
    pub max_lottery_duration_s: u32,
    /// Shortest interval between two `lottery_entrants` updates, milliseconds.
    pub lottery_update_ms: u64,
    /// How many of a banned connection's most recent messages are deleted from every page, on
    /// top of any of the user's lines still in the history.
    pub ban_purge_messages: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_text_chars: 300,
            max_danmaku_chars: 60,
            max_name_chars: 24,
            history_len: 50,
            chat_rate: RateLimit {
                max: 3,
                window_ms: 2_000,
            },
            danmaku_rate: RateLimit {
                max: 2,
                window_ms: 2_000,
            },
            gift_rate: RateLimit {
                max: 5,
                window_ms: 2_000,
            },
            cooldown_ms: 5_000,
            max_slow_mode_s: 3_600,
            like_rate: RateLimit {
                max: 10,
                window_ms: 1_000,
            },
            like_flush_ms: 500,
            presence_ms: 2_000,
            danmaku_max_behind_ms: 60_000,
            gifts: default_gifts(),
            max_gift_count: 99,
            top_givers: 10,
            max_keyword_chars: 30,
            max_lottery_duration_s: 3_600,
            lottery_update_ms: 1_000,
            ban_purge_messages: 50,
        }
    }
}

fn default_gifts() -> Vec<GiftKind> {
    [
        ("rose", "Rose", 1),
        ("coffee", "Coffee", 10),
        ("cake", "Cake", 50),
        ("rocket", "Rocket", 500),
    ]
    .into_iter()
    .map(|(id, name, value)| GiftKind {
        id: id.to_owned(),
        name: name.to_owned(),
        value,
    })
    .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_table_gives_defaults() {
        let config: ChatConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, ChatConfig::default());
        assert_eq!(config.chat_rate.max, 3);
        assert_eq!(config.chat_rate.window_ms, 2_000);
        assert_eq!(config.cooldown_ms, 5_000);
        assert_eq!(config.history_len, 50);
    }

    #[test]
    fn overrides_and_unknown_keys() {
        let config: ChatConfig = serde_json::from_str(
            r#"{"max_text_chars": 10, "gifts": [{"id":"star","name":"Star","value":3}]}"#,
        )
        .unwrap();
        assert_eq!(config.max_text_chars, 10);
        assert_eq!(config.gifts.len(), 1);
        assert!(serde_json::from_str::<ChatConfig>(r#"{"max_txt_chars": 10}"#).is_err());
        // A rate limit table must be complete.
        assert!(serde_json::from_str::<ChatConfig>(r#"{"chat_rate": {"max": 1}}"#).is_err());
    }
}
