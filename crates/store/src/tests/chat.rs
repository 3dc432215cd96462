//! Chat persistence on every backend: history (newest last, deletions, pruning), bans without
//! regard to case, per-stream gift totals, lottery results, batches and room removal.

use super::*;

on_every_backend!(
    chat_history_newest_last,
    deleted_messages_never_come_back,
    prune_removes_old_messages,
    bans_ignore_case,
    gift_totals_per_stream,
    lottery_results_newest_first,
    write_chat_is_one_transaction,
    chat_needs_an_existing_room,
    remove_room_deletes_its_chat,
    chat_survives_reconnect,
    chat_ids_near_two_to_the_53,
);

const T0: i64 = 1_700_000_000_000;

fn chat(id: i64, user: &str, text: &str) -> ChatMessage {
    ChatMessage {
        id,
        ts_ms: id / 1_000,
        kind: ChatKind::Chat,
        user: user.into(),
        host: false,
        text: text.into(),
        color: None,
        position_ms: None,
    }
}

fn danmaku(id: i64, user: &str, text: &str, position_ms: Option<i64>) -> ChatMessage {
    ChatMessage {
        id,
        ts_ms: id / 1_000,
        kind: ChatKind::Danmaku,
        user: user.into(),
        host: true,
        text: text.into(),
        color: Some("#ff8800".into()),
        position_ms,
    }
}

fn gift(stream_ms: i64, user: &str, value: i64, ts_ms: i64) -> GiftRecord {
    GiftRecord {
        stream_ms,
        user: user.into(),
        gift: "rose".into(),
        count: value,
        value,
        ts_ms,
    }
}

fn lottery(keyword: &str, winner: Option<&str>, closed_ms: i64) -> LotteryRecord {
    LotteryRecord {
        keyword: keyword.into(),
        outcome: LotteryOutcome::Drawn,
        entrants: if winner.is_some() { 3 } else { 0 },
        winner: winner.map(Into::into),
        opened_by: "host".into(),
        closed_by: "auto".into(),
        opened_ms: closed_ms - 60_000,
        closed_ms,
    }
}

fn ids(messages: &[ChatMessage]) -> Vec<i64> {
    messages.iter().map(|m| m.id).collect()
}

async fn count_rows(s: &Store, table: &str) -> i64 {
    sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {table}")))
        .fetch_one(&s.pool)
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

async fn chat_history_newest_last(db: &TestDb) {
    let s = &db.store;
    s.create_room("main").await.unwrap();
    s.create_room("other").await.unwrap();
    assert!(s.recent_chat_messages("main", 50).await.unwrap().is_empty());

    // Written out of order: the history is ordered by id all the same.
    let base = T0 * 1_000;
    for i in [3, 1, 2, 5, 4] {
        s.insert_chat_message("main", &chat(base + i, "alice", &format!("m{i}")))
            .await
            .unwrap();
    }
    let dm = danmaku(base + 6, "Host", "<b>wow</b> \u{1f389}", Some(41_235));
    s.insert_chat_message("main", &dm).await.unwrap();
    s.insert_chat_message("other", &chat(base + 7, "bob", "elsewhere"))
        .await
        .unwrap();

    let all = s.recent_chat_messages("main", 50).await.unwrap();
    assert_eq!(
        ids(&all),
        [base + 1, base + 2, base + 3, base + 4, base + 5, base + 6]
    );
    // Every field comes back as written.
    assert_eq!(all[5], dm);
    assert_eq!(all[0], chat(base + 1, "alice", "m1"));

    // The newest N, still newest last.
    let last3 = s.recent_chat_messages("main", 3).await.unwrap();
    assert_eq!(ids(&last3), [base + 4, base + 5, base + 6]);
    assert!(s.recent_chat_messages("main", 0).await.unwrap().is_empty());

    // The same id again is skipped, not an error, and does not overwrite.
    s.insert_chat_message("main", &chat(base + 1, "mallory", "changed"))
        .await
        .unwrap();
    assert_eq!(
        s.recent_chat_messages("main", 50).await.unwrap()[0].text,
        "m1"
    );
    // The same id in another room is another message.
    s.insert_chat_message("other", &chat(base + 1, "bob", "same id"))
        .await
        .unwrap();
    assert_eq!(
        ids(&s.recent_chat_messages("other", 50).await.unwrap()),
        [base + 1, base + 7]
    );
    assert!(s.recent_chat_messages("nope", 50).await.unwrap().is_empty());
}

async fn deleted_messages_never_come_back(db: &TestDb) {
    let s = &db.store;
    s.create_room("main").await.unwrap();
    let base = T0 * 1_000;
    for i in 1..=5 {
        s.insert_chat_message("main", &chat(base + i, "alice", "x"))
            .await
            .unwrap();
    }
    assert!(
        s.delete_chat_message("main", base + 5, "host", T0)
            .await
            .unwrap()
    );
    assert!(
        !s.delete_chat_message("main", base + 5, "host", T0)
            .await
            .unwrap(),
        "already deleted"
    );
    assert!(
        !s.delete_chat_message("main", 42, "host", T0).await.unwrap(),
        "never stored"
    );
    // A deleted message does not take a place in the newest N either.
    let last2 = s.recent_chat_messages("main", 2).await.unwrap();
    assert_eq!(ids(&last2), [base + 3, base + 4]);
    // Writing it again (a retried batch) does not bring it back.
    s.insert_chat_message("main", &chat(base + 5, "alice", "x"))
        .await
        .unwrap();
    assert_eq!(
        ids(&s.recent_chat_messages("main", 50).await.unwrap()),
        [base + 1, base + 2, base + 3, base + 4]
    );
    // The row is kept for the moderation record.
    let row = sqlx::query("SELECT deleted_by, deleted_ms FROM chat_messages WHERE message_id = $1")
        .bind(base + 5)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(row.try_get::<String, _>("deleted_by").unwrap(), "host");
    assert_eq!(row.try_get::<i64, _>("deleted_ms").unwrap(), T0);
}

async fn prune_removes_old_messages(db: &TestDb) {
    let s = &db.store;
    s.create_room("a").await.unwrap();
    s.create_room("b").await.unwrap();
    let day = 86_400_000;
    for (room, id, ts) in [
        ("a", 1, T0 - 3 * day),
        ("a", 2, T0 - 2 * day),
        ("b", 3, T0 - 2 * day),
        ("a", 4, T0 - day),
        ("b", 5, T0),
    ] {
        let mut m = chat(id, "u", "t");
        m.ts_ms = ts;
        s.insert_chat_message(room, &m).await.unwrap();
    }
    s.delete_chat_message("a", 1, "host", T0).await.unwrap();
    assert_eq!(s.prune_chat_messages(T0 - 3 * day).await.unwrap(), 0);
    // Strictly older than the cutoff, deleted rows included, across rooms.
    assert_eq!(s.prune_chat_messages(T0 - day).await.unwrap(), 3);
    assert_eq!(ids(&s.recent_chat_messages("a", 50).await.unwrap()), [4]);
    assert_eq!(ids(&s.recent_chat_messages("b", 50).await.unwrap()), [5]);
    assert_eq!(s.prune_chat_messages(T0 - day).await.unwrap(), 0);
    assert_eq!(s.prune_chat_messages(i64::MAX).await.unwrap(), 2);
    assert_eq!(count_rows(s, "chat_messages").await, 0);
}

async fn bans_ignore_case(db: &TestDb) {
    let s = &db.store;
    s.create_room("main").await.unwrap();
    s.create_room("other").await.unwrap();
    assert!(s.chat_bans("main").await.unwrap().is_empty());

    assert!(s.ban_chat_user("main", "Bob", "host", T0).await.unwrap());
    assert!(
        !s.ban_chat_user("main", " BOB ", "other-host", T0 + 1)
            .await
            .unwrap(),
        "same name in another case"
    );
    assert!(
        s.ban_chat_user("main", "\u{c9}lodie", "host", T0 + 2)
            .await
            .unwrap()
    );
    assert!(
        !s.ban_chat_user("main", "\u{e9}LODIE", "host", T0 + 3)
            .await
            .unwrap(),
        "Unicode case folding, like the chat"
    );
    assert!(s.ban_chat_user("other", "carol", "host", T0).await.unwrap());

    let bans = s.chat_bans("main").await.unwrap();
    assert_eq!(
        bans,
        [
            ChatBan {
                user: "bob".into(),
                by: "host".into(),
                created_ms: T0
            },
            ChatBan {
                user: "\u{e9}lodie".into(),
                by: "host".into(),
                created_ms: T0 + 2
            },
        ]
    );
    assert_eq!(ban_key(" \u{c9}Lodie "), "\u{e9}lodie");

    assert!(s.unban_chat_user("main", "bOb").await.unwrap());
    assert!(!s.unban_chat_user("main", "bob").await.unwrap());
    assert!(
        !s.unban_chat_user("main", "carol").await.unwrap(),
        "other room's"
    );
    assert_eq!(s.chat_bans("main").await.unwrap().len(), 1);
    assert_eq!(s.chat_bans("other").await.unwrap().len(), 1);
    assert!(s.chat_bans("nope").await.unwrap().is_empty());

    for bad in ["", "   ", &"x".repeat(CHAT_NAME_MAX_CHARS + 1)] {
        let err = s.ban_chat_user("main", bad, "host", T0).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidText { .. }), "{err:?}");
    }
}

async fn gift_totals_per_stream(db: &TestDb) {
    let s = &db.store;
    s.create_room("main").await.unwrap();
    s.create_room("other").await.unwrap();
    assert_eq!(s.latest_gift_stream("main").await.unwrap(), None);
    assert!(s.gift_totals("main", T0).await.unwrap().is_empty());

    let first = T0;
    let second = T0 + 3_600_000;
    for g in [
        gift(first, "alice", 10, first + 1),
        gift(first, "bob", 500, first + 2),
        gift(second, "alice", 1, second + 1),
        gift(second, "Alice", 50, second + 2),
        gift(second, "carol", 20, second + 3),
        gift(second, "bob", 51, second + 4),
        gift(second, "ALICE", 1, second + 5),
    ] {
        s.record_gift("main", &g).await.unwrap();
    }
    s.record_gift("other", &gift(second, "zed", 9_999, second))
        .await
        .unwrap();

    assert_eq!(
        s.gift_totals("main", first).await.unwrap(),
        [
            GiftTotal {
                user: "bob".into(),
                total: 500
            },
            GiftTotal {
                user: "alice".into(),
                total: 10
            },
        ]
    );
    // One giver whatever the case, under the latest spelling; ties by name.
    assert_eq!(
        s.gift_totals("main", second).await.unwrap(),
        [
            GiftTotal {
                user: "ALICE".into(),
                total: 52
            },
            GiftTotal {
                user: "bob".into(),
                total: 51
            },
            GiftTotal {
                user: "carol".into(),
                total: 20
            },
        ]
    );
    assert_eq!(s.latest_gift_stream("main").await.unwrap(), Some(second));
    // A gift outside any stream (0) is its own bucket.
    s.record_gift("main", &gift(0, "dave", 5, second + 9))
        .await
        .unwrap();
    assert_eq!(s.latest_gift_stream("main").await.unwrap(), Some(0));
    assert_eq!(s.gift_totals("main", 0).await.unwrap().len(), 1);
    assert_eq!(s.latest_gift_stream("nope").await.unwrap(), None);
    assert_eq!(count_rows(s, "chat_gifts").await, 9, "append-only");
}

async fn lottery_results_newest_first(db: &TestDb) {
    let s = &db.store;
    s.create_room("main").await.unwrap();
    s.create_room("other").await.unwrap();
    assert!(s.lottery_results("main", 10).await.unwrap().is_empty());

    let a = s
        .insert_lottery_result("main", &lottery("gg", Some("alice"), T0))
        .await
        .unwrap();
    let b = s
        .insert_lottery_result("main", &lottery("nobody", None, T0 + 1))
        .await
        .unwrap();
    let cancelled = LotteryRecord {
        outcome: LotteryOutcome::Cancelled,
        closed_by: "host".into(),
        ..lottery("later", None, T0 + 2)
    };
    let c = s.insert_lottery_result("main", &cancelled).await.unwrap();
    s.insert_lottery_result("other", &lottery("x", Some("zed"), T0))
        .await
        .unwrap();
    assert!(a < b && b < c);

    let results = s.lottery_results("main", 10).await.unwrap();
    assert_eq!(results.iter().map(|r| r.id).collect::<Vec<_>>(), [c, b, a]);
    assert_eq!(results[0].record, cancelled);
    assert_eq!(results[1].record, lottery("nobody", None, T0 + 1));
    assert_eq!(results[1].record.winner, None);
    assert_eq!(results[2].record.winner.as_deref(), Some("alice"));
    assert_eq!(s.lottery_results("main", 1).await.unwrap()[0].id, c);
    assert!(s.lottery_results("nope", 10).await.unwrap().is_empty());
}

async fn write_chat_is_one_transaction(db: &TestDb) {
    let s = &db.store;
    s.create_room("main").await.unwrap();
    let base = T0 * 1_000;
    s.write_chat(
        "main",
        &[
            ChatWrite::Message(chat(base + 1, "alice", "hi")),
            ChatWrite::Message(chat(base + 2, "bob", "spam")),
            // In the same batch as its insert: applied in order.
            ChatWrite::Delete {
                message_id: base + 2,
                by: "host".into(),
                ts_ms: T0,
            },
            ChatWrite::Ban {
                user: "Bob".into(),
                by: "host".into(),
                ts_ms: T0,
            },
            ChatWrite::Ban {
                user: "eve".into(),
                by: "host".into(),
                ts_ms: T0,
            },
            ChatWrite::Unban { user: "EVE".into() },
            ChatWrite::Gift(gift(T0, "alice", 10, T0)),
            ChatWrite::Lottery(lottery("gg", Some("alice"), T0)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        ids(&s.recent_chat_messages("main", 50).await.unwrap()),
        [base + 1]
    );
    let bans: Vec<String> = s
        .chat_bans("main")
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.user)
        .collect();
    assert_eq!(bans, ["bob"]);
    assert_eq!(s.gift_totals("main", T0).await.unwrap()[0].total, 10);
    assert_eq!(s.lottery_results("main", 10).await.unwrap().len(), 1);
    s.write_chat("main", &[]).await.unwrap();

    // A batch with one invalid record writes nothing.
    let err = s
        .write_chat(
            "main",
            &[
                ChatWrite::Message(chat(base + 3, "carol", "lost")),
                ChatWrite::Ban {
                    user: String::new(),
                    by: "host".into(),
                    ts_ms: T0,
                },
            ],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidText { .. }), "{err:?}");
    assert_eq!(s.recent_chat_messages("main", 50).await.unwrap().len(), 1);
}

async fn chat_needs_an_existing_room(db: &TestDb) {
    let s = &db.store;
    let not_found = |r: Result<(), StoreError>| {
        assert!(
            matches!(r, Err(StoreError::RoomNotFound(ref n)) if n == "ghost"),
            "{r:?}"
        );
    };
    not_found(s.insert_chat_message("ghost", &chat(1, "a", "b")).await);
    not_found(s.ban_chat_user("ghost", "a", "h", T0).await.map(drop));
    not_found(s.unban_chat_user("ghost", "a").await.map(drop));
    not_found(s.delete_chat_message("ghost", 1, "h", T0).await.map(drop));
    not_found(s.record_gift("ghost", &gift(0, "a", 1, T0)).await);
    not_found(
        s.insert_lottery_result("ghost", &lottery("k", None, T0))
            .await
            .map(drop),
    );
    not_found(
        s.write_chat("ghost", &[ChatWrite::Unban { user: "a".into() }])
            .await,
    );
    // Chatting does not create rooms.
    assert_eq!(s.room("ghost").await.unwrap(), None);
    let bad = s.recent_chat_messages("../x", 5).await.unwrap_err();
    assert!(matches!(bad, StoreError::InvalidRoomName(_)), "{bad:?}");
}

async fn remove_room_deletes_its_chat(db: &TestDb) {
    let s = &db.store;
    for room in ["gone", "kept"] {
        s.add_key(room, None).await.unwrap();
        s.write_chat(
            room,
            &[
                ChatWrite::Message(chat(1, "alice", "hi")),
                ChatWrite::Ban {
                    user: "bob".into(),
                    by: "host".into(),
                    ts_ms: T0,
                },
                ChatWrite::Gift(gift(T0, "alice", 10, T0)),
                ChatWrite::Lottery(lottery("gg", None, T0)),
            ],
        )
        .await
        .unwrap();
        s.rotate_host_token(room).await.unwrap();
        s.enqueue_moderation(room, &ModerationRequest::LotteryDraw)
            .await
            .unwrap();
    }
    assert!(s.remove_room("gone").await.unwrap());
    for table in ROOM_TABLES {
        assert_eq!(count_rows(s, table).await, 1, "{table}: rows deleted");
    }
    assert_eq!(s.recent_chat_messages("kept", 50).await.unwrap().len(), 1);
    // A room of the same name later starts clean.
    s.create_room("gone").await.unwrap();
    assert!(s.recent_chat_messages("gone", 50).await.unwrap().is_empty());
    assert!(s.chat_bans("gone").await.unwrap().is_empty());
    assert_eq!(s.latest_gift_stream("gone").await.unwrap(), None);
    assert!(s.lottery_results("gone", 5).await.unwrap().is_empty());
}

async fn chat_survives_reconnect(db: &TestDb) {
    if !db.persistent() {
        return;
    }
    let s = &db.store;
    s.create_room("main").await.unwrap();
    s.insert_chat_message("main", &chat(7, "alice", "kept"))
        .await
        .unwrap();
    s.ban_chat_user("main", "bob", "host", T0).await.unwrap();
    s.record_gift("main", &gift(T0, "alice", 3, T0))
        .await
        .unwrap();
    let first = s
        .insert_lottery_result("main", &lottery("gg", Some("alice"), T0))
        .await
        .unwrap();
    s.close().await;

    let again = Store::connect(&db.url).await.unwrap();
    assert_eq!(
        again.recent_chat_messages("main", 50).await.unwrap(),
        [chat(7, "alice", "kept")]
    );
    assert_eq!(again.chat_bans("main").await.unwrap()[0].user, "bob");
    assert_eq!(again.gift_totals("main", T0).await.unwrap()[0].total, 3);
    // Ids continue after the reconnect.
    let second = again
        .insert_lottery_result("main", &lottery("again", None, T0 + 1))
        .await
        .unwrap();
    assert!(second > first);
    again.close().await;
}

async fn chat_ids_near_two_to_the_53(db: &TestDb) {
    let s = &db.store;
    s.create_room("main").await.unwrap();
    // The chat core's ids are `unix ms × 1000`: about 1.7e15 today, below 2^53 until 2255.
    let big = (1_i64 << 53) - 1;
    s.insert_chat_message("main", &chat(big, "a", "far future"))
        .await
        .unwrap();
    s.insert_chat_message("main", &chat(big - 1, "a", "before"))
        .await
        .unwrap();
    assert_eq!(
        ids(&s.recent_chat_messages("main", 50).await.unwrap()),
        [big - 1, big]
    );
    assert!(s.delete_chat_message("main", big, "h", T0).await.unwrap());
}

/// Every table a migration declares with `REFERENCES rooms` is in [`ROOM_TABLES`], so
/// `remove_room` cannot forget one.
#[test]
fn room_tables_cover_every_reference_to_rooms() {
    let mut referencing = Vec::new();
    for &(_, _, sql) in migrate::MIGRATIONS {
        let code: String = sql
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        for statement in code.split(';') {
            let upper = statement.to_ascii_uppercase();
            if let Some(rest) = upper.trim().strip_prefix("CREATE TABLE ")
                && upper.contains("REFERENCES ROOMS")
            {
                let name = rest.split_whitespace().next().unwrap().to_ascii_lowercase();
                referencing.push(name);
            }
        }
    }
    referencing.sort();
    let mut listed: Vec<String> = ROOM_TABLES.iter().map(|t| t.to_string()).collect();
    listed.sort();
    assert_eq!(referencing, listed);
}
