//! Host tokens and the moderation queue on every backend: issue, check, replace and revoke a
//! room's host token (never stored, never shown twice, never valid for another room or as a
//! stream key); queue, take exactly once (also with concurrent takers), finish, read, cancel
//! and prune moderation commands; removing a room removes both.

use super::*;

on_every_backend!(
    host_token_rotate_verify_revoke,
    host_token_other_room_stream_key_and_malformed,
    host_token_secret_is_not_stored,
    moderation_queue_round_trip,
    moderation_rejects_bad_input,
    moderation_taken_once_by_concurrent_takers,
    moderation_unreadable_command_fails,
    moderation_prune_by_last_change,
    remove_room_deletes_host_token_and_queue,
    host_token_and_queue_survive_reconnect,
);

const T0: i64 = 1_700_000_000_000;

async fn count_rows(s: &Store, table: &str) -> i64 {
    sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {table}")))
        .fetch_one(&s.pool)
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

fn every_command() -> Vec<ModerationRequest> {
    vec![
        ModerationRequest::Delete {
            message_id: (1 << 53) - 1,
        },
        ModerationRequest::Ban {
            user: "Bob \u{1f600}".into(),
        },
        ModerationRequest::Unban { user: "bob".into() },
        ModerationRequest::SlowMode { seconds: 30 },
        ModerationRequest::LotteryOpen {
            keyword: "gg".into(),
            duration_s: Some(60),
        },
        ModerationRequest::LotteryOpen {
            keyword: "\u{62bd}\u{5956}".into(),
            duration_s: None,
        },
        ModerationRequest::LotteryDraw,
        ModerationRequest::LotteryCancel,
    ]
}

async fn host_token_rotate_verify_revoke(db: &TestDb) {
    let s = &db.store;
    s.create_room("main").await.unwrap();
    assert_eq!(s.host_token_issued_ms("main").await.unwrap(), None);

    let t1 = s.rotate_host_token("main").await.unwrap();
    assert_eq!(t1.room, "main");
    assert!(t1.secret.starts_with("rh_"), "distinct prefix");
    assert_eq!(t1.secret.len(), key::KEY_LEN);
    assert!(key::HOST_TOKEN.parse(&t1.secret).is_some());
    assert!(t1.created_ms > 1_600_000_000_000);
    assert!(s.verify_host_token("main", &t1.secret).await.unwrap());
    assert!(
        s.verify_host_token("main", &t1.secret).await.unwrap(),
        "reusable"
    );
    assert_eq!(
        s.host_token_issued_ms("main").await.unwrap(),
        Some(t1.created_ms)
    );

    // Rotating replaces: one active token per room.
    let t2 = s.rotate_host_token("main").await.unwrap();
    assert_ne!(t2.secret, t1.secret);
    assert!(!s.verify_host_token("main", &t1.secret).await.unwrap());
    assert!(s.verify_host_token("main", &t2.secret).await.unwrap());
    assert_eq!(count_rows(s, "room_host_tokens").await, 1);

    // Revoking.
    assert!(s.revoke_host_token("main").await.unwrap());
    assert!(!s.verify_host_token("main", &t2.secret).await.unwrap());
    assert!(!s.revoke_host_token("main").await.unwrap(), "no token left");
    assert_eq!(s.host_token_issued_ms("main").await.unwrap(), None);
    assert_eq!(count_rows(s, "room_host_tokens").await, 0);
    let t3 = s.rotate_host_token("main").await.unwrap();
    assert!(s.verify_host_token("main", &t3.secret).await.unwrap());
    assert!(!s.verify_host_token("main", &t2.secret).await.unwrap());

    // A missing room is an error for rotate and revoke, and is not created.
    for r in [
        s.rotate_host_token("typo").await.map(drop),
        s.revoke_host_token("typo").await.map(drop),
    ] {
        assert!(
            matches!(r, Err(StoreError::RoomNotFound(ref n)) if n == "typo"),
            "{r:?}"
        );
    }
    assert_eq!(s.room("typo").await.unwrap(), None);
    assert!(!s.verify_host_token("typo", &t3.secret).await.unwrap());
    assert_eq!(s.host_token_issued_ms("typo").await.unwrap(), None);
    for r in [
        s.rotate_host_token("../x").await.map(drop),
        s.revoke_host_token("../x").await.map(drop),
        s.verify_host_token("../x", &t3.secret).await.map(drop),
        s.host_token_issued_ms("../x").await.map(drop),
    ] {
        assert!(matches!(r, Err(StoreError::InvalidRoomName(_))), "{r:?}");
    }

    // Concurrent rotations all succeed, and exactly one of their tokens is left valid.
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.rotate_host_token("main").await })
        })
        .collect();
    let mut valid = 0;
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap().unwrap());
    }
    for t in &tokens {
        valid += usize::from(s.verify_host_token("main", &t.secret).await.unwrap());
    }
    assert_eq!(valid, 1);
    assert_eq!(count_rows(s, "room_host_tokens").await, 1);
}

async fn host_token_other_room_stream_key_and_malformed(db: &TestDb) {
    let s = &db.store;
    let a = s.add_key("a", None).await.unwrap();
    s.create_room("b").await.unwrap();
    let ha = s.rotate_host_token("a").await.unwrap();
    let hb = s.rotate_host_token("b").await.unwrap();

    // Each room's token works only in its room.
    assert!(s.verify_host_token("a", &ha.secret).await.unwrap());
    assert!(s.verify_host_token("b", &hb.secret).await.unwrap());
    assert!(!s.verify_host_token("a", &hb.secret).await.unwrap());
    assert!(!s.verify_host_token("b", &ha.secret).await.unwrap());

    // The stream key is not a host token, and the host token is not a stream key, even with
    // the prefixes swapped.
    assert!(!s.verify_host_token("a", &a.secret).await.unwrap());
    let key_as_token = format!("rh_{}", &a.secret[3..]);
    assert!(!s.verify_host_token("a", &key_as_token).await.unwrap());
    assert_eq!(s.authorize_key(&ha.secret).await.unwrap(), None);
    let token_as_key = format!("rc_{}", &ha.secret[3..]);
    assert_eq!(s.authorize_key(&token_as_key).await.unwrap(), None);

    // Right lookup id, wrong secret; last character off; known secret, unknown lookup.
    let other = key::HOST_TOKEN.generate().unwrap();
    let wrong = format!(
        "{}{}",
        &ha.secret[..ha.secret.len() - key::SECRET_LEN],
        secret_part(&other.key)
    );
    assert!(!s.verify_host_token("a", &wrong).await.unwrap());
    let mut last_off = ha.secret.clone();
    let last = last_off.pop().unwrap();
    last_off.push(if last == 'a' { 'b' } else { 'a' });
    assert!(!s.verify_host_token("a", &last_off).await.unwrap());
    let moved = format!("rh_{}_{}", other.lookup, secret_part(&ha.secret));
    assert!(!s.verify_host_token("a", &moved).await.unwrap());
    assert!(!s.verify_host_token("a", &other.key).await.unwrap());

    let malformed = [
        String::new(),
        "a".into(),
        ha.secret.to_uppercase(),
        format!(" {}", ha.secret),
        format!("{}\n", ha.secret),
        format!("{}?x=1", ha.secret),
        ha.secret[..ha.secret.len() - 1].to_string(),
        ha.secret.replace('_', "-"),
        "rh_\u{e9}\u{e9}\u{e9}\u{e9}_".repeat(4),
        "\0".repeat(key::KEY_LEN),
        "rh_".repeat(100_000),
    ];
    for m in &malformed {
        assert!(
            !s.verify_host_token("a", m).await.unwrap(),
            "{:?}",
            &m[..m.len().min(60)]
        );
    }
    assert!(s.verify_host_token("a", &ha.secret).await.unwrap());

    // Malformed tokens are refused without a query: they still answer on a closed store,
    // where a well-formed one fails.
    s.close().await;
    for m in &malformed {
        assert!(!s.verify_host_token("a", m).await.unwrap());
    }
    assert!(!s.verify_host_token("a", &key_as_token[..10]).await.unwrap());
    let err = s.verify_host_token("a", &ha.secret).await.unwrap_err();
    assert!(matches!(err, StoreError::Query { .. }), "{err:?}");
    for out in [err.to_string(), format!("{err:?}")] {
        assert!(!out.contains(secret_part(&ha.secret)), "{out}");
    }
}

async fn host_token_secret_is_not_stored(db: &TestDb) {
    let s = &db.store;
    s.create_room("main").await.unwrap();
    let old = s.rotate_host_token("main").await.unwrap();
    let t = s.rotate_host_token("main").await.unwrap();
    let secret = secret_part(&t.secret);
    let (lookup, _) = key::HOST_TOKEN.parse(&t.secret).unwrap();

    // Only the lookup id and SHA-256 of the secret are stored.
    let rows = sqlx::query("SELECT lookup, secret_hash FROM room_host_tokens")
        .fetch_all(&s.pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let stored_lookup: String = rows[0].try_get("lookup").unwrap();
    let stored_hash: String = rows[0].try_get("secret_hash").unwrap();
    assert_eq!(stored_lookup, lookup);
    assert_eq!(stored_hash, key::hash_secret(secret));
    for v in [&stored_lookup, &stored_hash] {
        assert!(!v.contains(secret), "the secret is stored");
        assert!(!v.contains(secret_part(&old.secret)));
    }

    // Debug is redacted; nothing else the store shows carries it.
    let debug = format!("{t:?}");
    assert!(
        debug.contains("<redacted>") && debug.contains("main"),
        "{debug}"
    );
    let outputs = [
        debug,
        format!("{old:?}"),
        format!("{s:?}"),
        format!("{:?}", s.host_token_issued_ms("main").await.unwrap()),
        serde_json::to_string(&s.list_rooms().await.unwrap()).unwrap(),
        format!("{:?}", s.rotate_host_token("ghost").await.unwrap_err()),
    ];
    for out in &outputs {
        for forbidden in [t.secret.as_str(), secret, stored_hash.as_str()] {
            assert!(!out.contains(forbidden), "{out} shows a secret");
        }
    }
}

async fn moderation_queue_round_trip(db: &TestDb) {
    let s = &db.store;
    s.create_room("main").await.unwrap();
    s.create_room("other").await.unwrap();
    assert!(s.take_moderation(10).await.unwrap().is_empty());
    assert_eq!(s.moderation_status(1).await.unwrap(), None);

    let before = now_ms();
    let commands = every_command();
    let mut ids = Vec::new();
    for (i, c) in commands.iter().enumerate() {
        let room = if i % 3 == 2 { "other" } else { "main" };
        ids.push(s.enqueue_moderation(room, c).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    for &id in &ids {
        assert_eq!(
            s.moderation_status(id).await.unwrap(),
            Some(ModerationStatus::Pending)
        );
    }
    // Stored as JSON text, tagged like the chat's host frames.
    let json: String = sqlx::query("SELECT command FROM moderation_queue WHERE id = $1")
        .bind(ids[0])
        .fetch_one(&s.pool)
        .await
        .unwrap()
        .try_get("command")
        .unwrap();
    assert_eq!(json, r#"{"type":"delete","message_id":9007199254740991}"#);

    // Oldest first, limited, each exactly once.
    assert!(s.take_moderation(0).await.unwrap().is_empty());
    let first = s.take_moderation(3).await.unwrap();
    assert_eq!(first.iter().map(|q| q.id).collect::<Vec<_>>(), ids[..3]);
    for (i, q) in first.iter().enumerate() {
        assert_eq!(q.command, commands[i]);
        assert_eq!(q.room, if i % 3 == 2 { "other" } else { "main" });
        assert!(q.created_ms >= before && q.created_ms <= now_ms());
    }
    assert_eq!(
        s.moderation_status(ids[0]).await.unwrap(),
        Some(ModerationStatus::Taken)
    );
    assert_eq!(
        s.moderation_status(ids[3]).await.unwrap(),
        Some(ModerationStatus::Pending)
    );
    let rest = s.take_moderation(100).await.unwrap();
    assert_eq!(rest.iter().map(|q| q.id).collect::<Vec<_>>(), ids[3..]);
    assert_eq!(
        rest.iter().map(|q| q.command.clone()).collect::<Vec<_>>(),
        commands[3..]
    );
    assert!(
        s.take_moderation(100).await.unwrap().is_empty(),
        "once only"
    );

    // Outcomes.
    assert!(s.finish_moderation(ids[0], Ok(())).await.unwrap());
    assert!(!s.finish_moderation(ids[0], Ok(())).await.unwrap(), "twice");
    assert!(
        !s.finish_moderation(ids[0], Err("late".into()))
            .await
            .unwrap()
    );
    assert_eq!(
        s.moderation_status(ids[0]).await.unwrap(),
        Some(ModerationStatus::Done)
    );
    assert!(
        s.finish_moderation(ids[1], Err("no message 42 in room main".into()))
            .await
            .unwrap()
    );
    let failed = s.moderation_status(ids[1]).await.unwrap().unwrap();
    assert_eq!(
        failed,
        ModerationStatus::Failed("no message 42 in room main".into())
    );
    assert!(failed.is_finished() && ModerationStatus::Done.is_finished());
    assert!(!ModerationStatus::Taken.is_finished());
    // An absurd message is cut.
    let long = "\u{e9}".repeat(MODERATION_ERROR_MAX_CHARS * 3);
    assert!(s.finish_moderation(ids[2], Err(long)).await.unwrap());
    let Some(ModerationStatus::Failed(cut)) = s.moderation_status(ids[2]).await.unwrap() else {
        panic!("failed expected");
    };
    assert_eq!(cut.chars().count(), MODERATION_ERROR_MAX_CHARS + 3);
    assert!(cut.ends_with("..."));
    assert!(!s.finish_moderation(999_999, Ok(())).await.unwrap());

    // A pending command cannot be finished, but can be cancelled, and is then never taken.
    let late = s
        .enqueue_moderation("main", &ModerationRequest::LotteryDraw)
        .await
        .unwrap();
    assert!(late > ids[ids.len() - 1]);
    assert!(!s.finish_moderation(late, Ok(())).await.unwrap());
    assert!(s.cancel_moderation(late).await.unwrap());
    assert!(!s.cancel_moderation(late).await.unwrap());
    assert!(!s.cancel_moderation(ids[3]).await.unwrap(), "taken already");
    assert_eq!(
        s.moderation_status(late).await.unwrap(),
        Some(ModerationStatus::Failed("cancelled".into()))
    );
    assert!(s.take_moderation(10).await.unwrap().is_empty());
    assert!(!s.finish_moderation(late, Ok(())).await.unwrap());
}

async fn moderation_rejects_bad_input(db: &TestDb) {
    let s = &db.store;
    s.create_room("main").await.unwrap();
    let ban = ModerationRequest::Ban { user: "bob".into() };
    let r = s.enqueue_moderation("ghost", &ban).await;
    assert!(
        matches!(r, Err(StoreError::RoomNotFound(ref n)) if n == "ghost"),
        "{r:?}"
    );
    assert_eq!(s.room("ghost").await.unwrap(), None, "not created");
    let r = s.enqueue_moderation("Main!", &ban).await;
    assert!(matches!(r, Err(StoreError::InvalidRoomName(_))), "{r:?}");
    let bad = [
        (ModerationRequest::Ban { user: "  ".into() }, "user name"),
        (
            ModerationRequest::Unban {
                user: "x".repeat(CHAT_NAME_MAX_CHARS + 1),
            },
            "user name",
        ),
        (
            ModerationRequest::LotteryOpen {
                keyword: String::new(),
                duration_s: None,
            },
            "keyword",
        ),
    ];
    for (command, field) in bad {
        let r = s.enqueue_moderation("main", &command).await;
        assert!(
            matches!(r, Err(StoreError::InvalidText { what, .. }) if what == field),
            "{command:?}: {r:?}"
        );
    }
    assert_eq!(count_rows(s, "moderation_queue").await, 0);
}

async fn moderation_taken_once_by_concurrent_takers(db: &TestDb) {
    const COMMANDS: usize = 60;
    let s = &db.store;
    s.create_room("main").await.unwrap();
    s.create_room("other").await.unwrap();
    let mut queued = Vec::new();
    for i in 0..COMMANDS {
        let room = if i % 2 == 0 { "main" } else { "other" };
        let c = ModerationRequest::Delete {
            message_id: u64::try_from(i).unwrap(),
        };
        queued.push(s.enqueue_moderation(room, &c).await.unwrap());
    }
    // Two stores on one database stand for two server processes (an in-memory database has
    // only the one store, whose single connection serialises the takers).
    let mut stores = vec![s.clone()];
    if db.persistent() {
        stores.push(Store::connect(&db.url).await.unwrap());
    }
    let takers: Vec<_> = (0..6)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = store.take_moderation(3).await.unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    got.extend(batch.into_iter().map(|q| q.id));
                    tokio::task::yield_now().await;
                }
                got
            })
        })
        .collect();
    let mut taken = Vec::new();
    for t in takers {
        taken.extend(t.await.unwrap());
    }
    let total = taken.len();
    taken.sort_unstable();
    taken.dedup();
    assert_eq!(total, taken.len(), "a command was handed out twice");
    assert_eq!(taken, queued, "every command was handed out");
    for &id in &queued {
        assert_eq!(
            s.moderation_status(id).await.unwrap(),
            Some(ModerationStatus::Taken)
        );
    }
    for extra in stores.iter().skip(1) {
        extra.close().await;
    }
}

async fn moderation_unreadable_command_fails(db: &TestDb) {
    let s = &db.store;
    s.create_room("main").await.unwrap();
    let a = s
        .enqueue_moderation("main", &ModerationRequest::LotteryDraw)
        .await
        .unwrap();
    let b = s
        .enqueue_moderation("main", &ModerationRequest::LotteryCancel)
        .await
        .unwrap();
    // As if a newer roomcast had queued a command this one does not know.
    sqlx::query("UPDATE moderation_queue SET command = $1 WHERE id = $2")
        .bind(r#"{"type":"shadow_ban","user":"bob"}"#)
        .bind(a)
        .execute(&s.pool)
        .await
        .unwrap();
    let got = s.take_moderation(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, b);
    let Some(ModerationStatus::Failed(why)) = s.moderation_status(a).await.unwrap() else {
        panic!("unreadable command not failed");
    };
    assert!(why.contains("unknown moderation command"), "{why}");
    assert!(s.take_moderation(10).await.unwrap().is_empty());
}

async fn moderation_prune_by_last_change(db: &TestDb) {
    let s = &db.store;
    s.create_room("main").await.unwrap();
    let c = ModerationRequest::SlowMode { seconds: 5 };
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(s.enqueue_moderation("main", &c).await.unwrap());
    }
    // ids[0..6] taken; 0, 1 done; 2 failed; 3, 4 taken and never finished; 5 taken fresh;
    // 6, 7 pending.
    assert_eq!(s.take_moderation(6).await.unwrap().len(), 6);
    s.finish_moderation(ids[0], Ok(())).await.unwrap();
    s.finish_moderation(ids[1], Ok(())).await.unwrap();
    s.finish_moderation(ids[2], Err("no".into())).await.unwrap();
    // Age some of them: finished at T0 (0 and 2; 1 finished now but queued long ago), taken
    // at T0 (3), queued at T0 (6).
    let age = |sql: &'static str, id: i64| sqlx::query(sql).bind(T0).bind(id).execute(&s.pool);
    let all_old = "UPDATE moderation_queue SET created_ms = $1, taken_ms = $1, \
                   finished_ms = $1 WHERE id = $2";
    age(all_old, ids[0]).await.unwrap();
    age(all_old, ids[2]).await.unwrap();
    age(
        "UPDATE moderation_queue SET created_ms = $1, taken_ms = $1 WHERE id = $2",
        ids[1],
    )
    .await
    .unwrap();
    age(
        "UPDATE moderation_queue SET created_ms = $1, taken_ms = $1 WHERE id = $2",
        ids[3],
    )
    .await
    .unwrap();
    age(
        "UPDATE moderation_queue SET created_ms = $1 WHERE id = $2",
        ids[6],
    )
    .await
    .unwrap();

    assert_eq!(s.prune_moderation(T0).await.unwrap(), 0, "strictly before");
    assert_eq!(s.prune_moderation(T0 + 1).await.unwrap(), 4);
    for (i, &id) in ids.iter().enumerate() {
        let status = s.moderation_status(id).await.unwrap();
        let gone = [0, 2, 3, 6].contains(&i);
        assert_eq!(status.is_none(), gone, "{i}: {status:?}");
    }
    assert_eq!(
        s.moderation_status(ids[1]).await.unwrap(),
        Some(ModerationStatus::Done),
        "pruned by when it finished, not when it was queued"
    );
    // The pending one still runs; ids are not reused after a prune.
    let left = s.take_moderation(10).await.unwrap();
    assert_eq!(left.iter().map(|q| q.id).collect::<Vec<_>>(), [ids[7]]);
    let next = s.enqueue_moderation("main", &c).await.unwrap();
    assert!(next > ids[7]);
    // Everything goes with a cutoff in the future.
    assert_eq!(s.prune_moderation(now_ms() + 60_000).await.unwrap(), 5);
    assert_eq!(count_rows(s, "moderation_queue").await, 0);
}

async fn remove_room_deletes_host_token_and_queue(db: &TestDb) {
    let s = &db.store;
    let mut tokens = Vec::new();
    let mut queued = Vec::new();
    for room in ["gone", "kept"] {
        s.create_room(room).await.unwrap();
        tokens.push(s.rotate_host_token(room).await.unwrap());
        queued.push(
            s.enqueue_moderation(room, &ModerationRequest::Unban { user: "x".into() })
                .await
                .unwrap(),
        );
    }
    assert!(s.remove_room("gone").await.unwrap());
    assert_eq!(count_rows(s, "room_host_tokens").await, 1);
    assert_eq!(count_rows(s, "moderation_queue").await, 1);
    assert_eq!(s.moderation_status(queued[0]).await.unwrap(), None);
    assert_eq!(
        s.moderation_status(queued[1]).await.unwrap(),
        Some(ModerationStatus::Pending)
    );
    assert!(
        s.verify_host_token("kept", &tokens[1].secret)
            .await
            .unwrap()
    );
    let left = s.take_moderation(10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].room, "kept");

    // A room of the same name later starts clean: the old token does not come back.
    s.create_room("gone").await.unwrap();
    assert!(
        !s.verify_host_token("gone", &tokens[0].secret)
            .await
            .unwrap()
    );
    assert_eq!(s.host_token_issued_ms("gone").await.unwrap(), None);
    assert!(!s.revoke_host_token("gone").await.unwrap());
}

async fn host_token_and_queue_survive_reconnect(db: &TestDb) {
    if !db.persistent() {
        return;
    }
    db.store.create_room("main").await.unwrap();
    let t = db.store.rotate_host_token("main").await.unwrap();
    let id = db
        .store
        .enqueue_moderation("main", &ModerationRequest::SlowMode { seconds: 0 })
        .await
        .unwrap();
    db.store.close().await;

    // The CLI queued it; a server started later takes it.
    let reopened = Store::connect(&db.url).await.unwrap();
    assert!(reopened.verify_host_token("main", &t.secret).await.unwrap());
    let got = reopened.take_moderation(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].command, ModerationRequest::SlowMode { seconds: 0 });
    reopened.finish_moderation(id, Ok(())).await.unwrap();
    reopened.close().await;
}

#[test]
fn moderation_json_shapes() {
    let cases = [
        (
            ModerationRequest::Delete { message_id: 7 },
            r#"{"type":"delete","message_id":7}"#,
        ),
        (
            ModerationRequest::Ban { user: "bob".into() },
            r#"{"type":"ban","user":"bob"}"#,
        ),
        (
            ModerationRequest::Unban { user: "bob".into() },
            r#"{"type":"unban","user":"bob"}"#,
        ),
        (
            ModerationRequest::SlowMode { seconds: 10 },
            r#"{"type":"slow_mode","seconds":10}"#,
        ),
        (
            ModerationRequest::LotteryOpen {
                keyword: "gg".into(),
                duration_s: Some(60),
            },
            r#"{"type":"lottery_open","keyword":"gg","duration_s":60}"#,
        ),
        (
            ModerationRequest::LotteryOpen {
                keyword: "gg".into(),
                duration_s: None,
            },
            r#"{"type":"lottery_open","keyword":"gg"}"#,
        ),
        (ModerationRequest::LotteryDraw, r#"{"type":"lottery_draw"}"#),
        (
            ModerationRequest::LotteryCancel,
            r#"{"type":"lottery_cancel"}"#,
        ),
    ];
    for (command, json) in cases {
        assert_eq!(serde_json::to_string(&command).unwrap(), json);
        let back: ModerationRequest = serde_json::from_str(json).unwrap();
        assert_eq!(back, command);
    }
    for (status, json) in [
        (ModerationStatus::Pending, r#"{"state":"pending"}"#),
        (ModerationStatus::Taken, r#"{"state":"taken"}"#),
        (ModerationStatus::Done, r#"{"state":"done"}"#),
        (
            ModerationStatus::Failed("no such message".into()),
            r#"{"state":"failed","error":"no such message"}"#,
        ),
    ] {
        assert_eq!(serde_json::to_string(&status).unwrap(), json);
    }
}
