//! [`ChatPersistence`] for [`roomcast_store::Store`].
//!
//! It lives here rather than in the store crate so the store stays ignorant of the chat's
//! types: the store takes plain records ([`ChatWrite`]), this file converts
//! [`PersistEvent`]s into them and the store's rows back into [`StoredMessage`]s.
//!
//! A room that does not exist in the database (chatting does not create rooms) has nothing to
//! load, and its writes fail with [`StoreError::RoomNotFound`], which is permanent: the
//! service logs it and drops the batch without retrying.

use roomcast_store::{
    ChatKind, ChatMessage, ChatWrite, GiftRecord, LotteryOutcome, LotteryRecord, Store, StoreError,
};

use crate::protocol::{ChatLine, DanmakuLine, GiverTotal, Line, StoredMessage};
use crate::room::PersistEvent;

use super::persist::{ChatPersistence, LoadRequest, PersistBatch, RoomSnapshot};

impl ChatPersistence for Store {
    type Error = StoreError;

    async fn load_room(
        &self,
        room: &str,
        request: LoadRequest,
    ) -> Result<RoomSnapshot, StoreError> {
        let history = self
            .recent_chat_messages(room, request.history_len)
            .await?
            .into_iter()
            .filter_map(stored_message)
            .collect();
        let bans = self
            .chat_bans(room)
            .await?
            .into_iter()
            .map(|b| b.user)
            .collect();
        let gift_stream = match request.stream_ms {
            Some(stream) => Some(stream),
            None => self.latest_gift_stream(room).await?,
        };
        let gift_totals = match gift_stream {
            Some(stream) => self
                .gift_totals(room, stream)
                .await?
                .into_iter()
                .map(|t| GiverTotal {
                    user: t.user,
                    total: u64::try_from(t.total).unwrap_or(0),
                })
                .collect(),
            None => Vec::new(),
        };
        Ok(RoomSnapshot {
            history,
            bans,
            gift_stream,
            gift_totals,
        })
    }

    async fn persist(&self, room: &str, batch: &PersistBatch) -> Result<(), StoreError> {
        let writes: Vec<ChatWrite> = batch
            .events
            .iter()
            .filter_map(|e| to_write(e, batch.stream_ms))
            .collect();
        self.write_chat(room, &writes).await
    }

    fn is_transient(error: &StoreError) -> bool {
        // Only a failing query or connection can go better next time; a missing room or a
        // refused value will not.
        matches!(
            error,
            StoreError::Query { .. } | StoreError::Connect { .. } | StoreError::Open { .. }
        )
    }
}

/// A stored row as the chat's history line; `None` for an id the chat never issues.
fn stored_message(m: ChatMessage) -> Option<StoredMessage> {
    let Ok(id) = u64::try_from(m.id) else {
        tracing::warn!(
            id = m.id,
            "skipping a stored chat message with a negative id"
        );
        return None;
    };
    let line = match m.kind {
        ChatKind::Chat => Line::Chat(ChatLine {
            user: m.user,
            host: m.host,
            text: m.text,
        }),
        ChatKind::Danmaku => Line::Danmaku(DanmakuLine {
            user: m.user,
            host: m.host,
            text: m.text,
            color: m.color.unwrap_or_else(|| "#ffffff".to_owned()),
            position_ms: m.position_ms,
        }),
    };
    Some(StoredMessage {
        id,
        ts: m.ts_ms,
        line,
    })
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The store's record of an event; `None` (with a warning) for an id the database cannot hold.
fn to_write(event: &PersistEvent, stream_ms: Option<i64>) -> Option<ChatWrite> {
    let id = |id: u64| {
        let converted = i64::try_from(id).ok();
        if converted.is_none() {
            tracing::warn!(id, "chat message id out of the database's range; not saved");
        }
        converted
    };
    Some(match event {
        PersistEvent::Message(m) => {
            let (kind, user, host, text, color, position_ms) = match &m.line {
                Line::Chat(l) => (ChatKind::Chat, &l.user, l.host, &l.text, None, None),
                Line::Danmaku(l) => (
                    ChatKind::Danmaku,
                    &l.user,
                    l.host,
                    &l.text,
                    Some(l.color.clone()),
                    l.position_ms,
                ),
            };
            ChatWrite::Message(ChatMessage {
                id: id(m.id)?,
                ts_ms: m.ts,
                kind,
                user: user.clone(),
                host,
                text: text.clone(),
                color,
                position_ms,
            })
        }
        PersistEvent::Deleted { message_id, by, ts } => ChatWrite::Delete {
            message_id: id(*message_id)?,
            by: by.clone(),
            ts_ms: *ts,
        },
        PersistEvent::Banned { user, by, ts } => ChatWrite::Ban {
            user: user.clone(),
            by: by.clone(),
            ts_ms: *ts,
        },
        PersistEvent::Unbanned { user, .. } => ChatWrite::Unban { user: user.clone() },
        PersistEvent::Gift {
            user,
            gift,
            count,
            value,
            ts,
        } => ChatWrite::Gift(GiftRecord {
            stream_ms: stream_ms.unwrap_or(0),
            user: user.clone(),
            gift: gift.clone(),
            count: i64::from(*count),
            value: saturating_i64(*value),
            ts_ms: *ts,
        }),
        PersistEvent::LotteryResult {
            keyword,
            entrants,
            winner,
            opened_by,
            drawn_by,
            opened_at,
            drawn_at,
        } => ChatWrite::Lottery(LotteryRecord {
            keyword: keyword.clone(),
            outcome: LotteryOutcome::Drawn,
            entrants: saturating_i64(*entrants),
            winner: winner.clone(),
            opened_by: opened_by.clone(),
            closed_by: drawn_by.clone(),
            opened_ms: *opened_at,
            closed_ms: *drawn_at,
        }),
        PersistEvent::LotteryCancelled {
            keyword,
            entrants,
            opened_by,
            by,
            opened_at,
            cancelled_at,
        } => ChatWrite::Lottery(LotteryRecord {
            keyword: keyword.clone(),
            outcome: LotteryOutcome::Cancelled,
            entrants: saturating_i64(*entrants),
            winner: None,
            opened_by: opened_by.clone(),
            closed_by: by.clone(),
            opened_ms: *opened_at,
            closed_ms: *cancelled_at,
        }),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_the_store_records() {
        let lines = [
            Line::Chat(ChatLine {
                user: "alice".into(),
                host: false,
                text: "<script>x</script>".into(),
            }),
            Line::Danmaku(DanmakuLine {
                user: "Host".into(),
                host: true,
                text: "wow".into(),
                color: "#00ff00".into(),
                position_ms: Some(40_000),
            }),
            Line::Danmaku(DanmakuLine {
                user: "bob".into(),
                host: false,
                text: "offline".into(),
                color: "#ffffff".into(),
                position_ms: None,
            }),
        ];
        for (i, line) in lines.into_iter().enumerate() {
            let stored = StoredMessage {
                id: 1_700_000_000_000_000 + i as u64,
                ts: 1_700_000_000_000,
                line,
            };
            let Some(ChatWrite::Message(m)) =
                to_write(&PersistEvent::Message(stored.clone()), None)
            else {
                panic!()
            };
            assert_eq!(stored_message(m), Some(stored));
        }
    }

    #[test]
    fn gifts_carry_the_batchs_stream() {
        let gift = PersistEvent::Gift {
            user: "alice".into(),
            gift: "rose".into(),
            count: 3,
            value: 3,
            ts: 9,
        };
        let Some(ChatWrite::Gift(g)) = to_write(&gift, Some(1234)) else {
            panic!()
        };
        assert_eq!((g.stream_ms, g.count, g.value), (1234, 3, 3));
        let Some(ChatWrite::Gift(g)) = to_write(&gift, None) else {
            panic!()
        };
        assert_eq!(g.stream_ms, 0);
    }

    #[test]
    fn ids_beyond_the_database_range_are_skipped() {
        let deleted = PersistEvent::Deleted {
            message_id: u64::MAX,
            by: "h".into(),
            ts: 0,
        };
        assert_eq!(to_write(&deleted, None), None);
        assert_eq!(
            stored_message(ChatMessage {
                id: -1,
                ts_ms: 0,
                kind: ChatKind::Chat,
                user: "a".into(),
                host: false,
                text: "t".into(),
                color: None,
                position_ms: None,
            }),
            None
        );
    }
}
