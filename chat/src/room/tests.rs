#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::RateLimit;

/// A realistic wall clock, so the id floor (`now × 1000`) is exercised.
const T0: i64 = 1_700_000_000_000;

fn room() -> ChatRoom {
    ChatRoom::new("main", ChatConfig::default())
}

fn decode(o: &Outgoing) -> ServerFrame {
    serde_json::from_slice(o.frame().bytes()).unwrap()
}

fn messages(out: &[Outgoing]) -> Vec<ServerMessage> {
    out.iter().map(|o| decode(o).message).collect()
}

fn join(room: &mut ChatRoom, id: u64, name: &str) -> ConnId {
    room.join(ConnId(id), Some(name), false, T0).unwrap();
    ConnId(id)
}

fn join_host(room: &mut ChatRoom, id: u64, name: &str) -> ConnId {
    room.join(ConnId(id), Some(name), true, T0).unwrap();
    ConnId(id)
}

fn chat(room: &mut ChatRoom, conn: ConnId, text: &str, now: i64) -> Vec<Outgoing> {
    room.handle(conn, ClientMessage::Chat { text: text.into() }, now)
}

/// The error an answer consists of, if it is exactly one `error` to `conn`.
fn refusal(out: &[Outgoing], conn: ConnId) -> Option<(ErrorCode, Option<u64>)> {
    match out {
        [o @ Outgoing::To(to, _)] if *to == conn => match decode(o).message {
            ServerMessage::Error {
                code,
                retry_after_ms,
                ..
            } => Some((code, retry_after_ms)),
            _ => None,
        },
        _ => None,
    }
}

fn code(out: &[Outgoing], conn: ConnId) -> Option<ErrorCode> {
    refusal(out, conn).map(|(c, _)| c)
}

fn broadcast_chat(out: &[Outgoing]) -> Option<(u64, ChatLine)> {
    out.iter().find_map(|o| match (o, decode(o)) {
        (
            Outgoing::Broadcast(_),
            ServerFrame {
                id,
                message: ServerMessage::Chat(line),
                ..
            },
        ) => Some((id, line)),
        _ => None,
    })
}

// ---- names ------------------------------------------------------------------------------------

#[test]
fn guests_get_unique_valid_names() {
    let mut room = room();
    let mut seen = HashSet::new();
    for i in 0..500 {
        let (you, out) = room.join(ConnId(i), None, false, T0).unwrap();
        assert!(you.name.starts_with("guest-"), "{}", you.name);
        validate_name(&you.name, 24).unwrap();
        assert!(seen.insert(you.name.clone()));
        let ServerMessage::Welcome(w) = &messages(&out)[0] else {
            panic!()
        };
        assert_eq!(w.you, you);
    }
    assert_eq!(room.connections(), 500);
}

#[test]
fn names_are_unique_without_case() {
    let mut room = room();
    join(&mut room, 1, "Alice");
    assert_eq!(
        room.join(ConnId(2), Some("aLICE"), false, T0).unwrap_err(),
        JoinError::NameTaken("aLICE".into())
    );
    assert!(matches!(
        room.join(ConnId(2), Some(" bob"), false, T0),
        Err(JoinError::InvalidName(NameError::OuterSpace))
    ));
    assert!(matches!(
        room.join(ConnId(2), Some("<script>"), false, T0),
        Err(JoinError::InvalidName(NameError::BadChar('<')))
    ));
    assert_eq!(
        room.join(ConnId(1), Some("carol"), false, T0).unwrap_err(),
        JoinError::AlreadyJoined(ConnId(1))
    );
    assert_eq!(room.connections(), 1);
    // The refusal maps to a protocol error the server can send.
    let refused = JoinError::NameTaken("x".into()).refusal();
    assert_eq!(refused.code, ErrorCode::NameTaken);
    let frame = room.error_frame(&refused, T0);
    assert!(frame.as_str().contains(r#""code":"name_taken""#));
    // Leaving frees the name.
    room.leave(ConnId(1), T0);
    join(&mut room, 2, "ALICE");
}

#[test]
fn rename_through_join_message() {
    let mut room = room();
    let (guest, _) = room.join(ConnId(1), None, false, T0).unwrap();
    join(&mut room, 2, "bob");
    let rename = |room: &mut ChatRoom, conn: u64, name: &str| {
        room.handle(
            ConnId(conn),
            ClientMessage::Join {
                name: Some(name.into()),
            },
            T0,
        )
    };

    let out = rename(&mut room, 1, "alice");
    assert_eq!(
        messages(&out),
        vec![ServerMessage::Identity {
            you: Identity {
                name: "alice".into(),
                host: false,
                banned: false
            }
        }]
    );
    assert!(matches!(out[0], Outgoing::To(ConnId(1), _)));
    assert_eq!(
        code(&rename(&mut room, 1, "BOB"), ConnId(1)),
        Some(ErrorCode::NameTaken)
    );
    assert_eq!(
        code(&rename(&mut room, 1, "a\u{0}b"), ConnId(1)),
        Some(ErrorCode::InvalidName)
    );
    assert_eq!(
        code(&rename(&mut room, 1, &"x".repeat(25)), ConnId(1)),
        Some(ErrorCode::InvalidName)
    );
    // Changing the case of one's own name is fine.
    assert!(code(&rename(&mut room, 1, "Alice"), ConnId(1)).is_none());
    // The guest name was freed by the first rename.
    join(&mut room, 3, &guest.name);
    // A join without a name just repeats the identity.
    let out = room.handle(ConnId(1), ClientMessage::Join { name: None }, T0);
    assert!(
        matches!(&messages(&out)[..], [ServerMessage::Identity { you }] if you.name == "Alice")
    );
    // Messages carry the new name.
    let out = chat(&mut room, ConnId(1), "hi", T0);
    assert_eq!(broadcast_chat(&out).unwrap().1.user, "Alice");
}

#[test]
fn messages_before_join_are_refused() {
    let mut room = room();
    let out = chat(&mut room, ConnId(9), "hi", T0);
    assert_eq!(code(&out, ConnId(9)), Some(ErrorCode::BadRequest));
    let out = room.handle(ConnId(9), ClientMessage::Like, T0);
    assert_eq!(code(&out, ConnId(9)), Some(ErrorCode::BadRequest));
    assert_eq!(room.take_persist(), vec![]);
}

// ---- text -------------------------------------------------------------------------------------

#[test]
fn chat_text_limits() {
    let mut room = room();
    let a = join(&mut room, 1, "alice");
    let mut now = T0;
    let mut send = |room: &mut ChatRoom, text: &str| {
        now += 10_000;
        chat(room, a, text, now)
    };

    let out = send(&mut room, "  hello  ");
    assert_eq!(broadcast_chat(&out).unwrap().1.text, "hello");
    let max = "字".repeat(300);
    assert_eq!(broadcast_chat(&send(&mut room, &max)).unwrap().1.text, max);
    assert_eq!(
        code(&send(&mut room, &(max.clone() + "字")), a),
        Some(ErrorCode::TooLong)
    );
    assert_eq!(code(&send(&mut room, ""), a), Some(ErrorCode::Empty));
    assert_eq!(code(&send(&mut room, " \n\t "), a), Some(ErrorCode::Empty));
    assert_eq!(
        code(&send(&mut room, "\u{1}\u{2}\u{7f}"), a),
        Some(ErrorCode::Empty)
    );
    let out = send(&mut room, "bell\u{7}\nnext\u{1b}[2J");
    assert_eq!(broadcast_chat(&out).unwrap().1.text, "bell next[2J");
}

#[test]
fn markup_is_passed_through_verbatim_as_data() {
    let mut room = room();
    let a = join(&mut room, 1, "alice");
    let evil = r#"<img src=x onerror="alert(document.cookie)"><script>alert(1)</script>"#;
    let frame = format!(
        r#"{{"type":"chat","text":{}}}"#,
        serde_json::to_string(evil).unwrap()
    );
    let out = room.handle_frame(a, frame.as_bytes(), T0);
    assert_eq!(broadcast_chat(&out).unwrap().1.text, evil);
    // The JSON itself is well-formed, and the text is only ever a string value.
    let value: serde_json::Value = serde_json::from_slice(out[0].frame().bytes()).unwrap();
    assert_eq!(value["text"], evil);
}

// ---- rate limits ------------------------------------------------------------------------------

#[test]
fn owncast_rate_limit_and_cooldown_at_exact_boundaries() {
    let mut room = room();
    let a = join(&mut room, 1, "alice");
    for t in [0, 1, 1_999] {
        assert!(
            broadcast_chat(&chat(&mut room, a, "x", T0 + t)).is_some(),
            "{t}"
        );
    }
    // Invalid messages do not spend a slot …
    assert_eq!(
        code(&chat(&mut room, a, "", T0 + 1_999), a),
        Some(ErrorCode::Empty)
    );
    // … the fourth valid one within 2 s does, and starts the 5 s cool-down.
    assert_eq!(
        refusal(&chat(&mut room, a, "x", T0 + 1_999), a),
        Some((ErrorCode::RateLimited, Some(5_000)))
    );
    assert_eq!(
        refusal(&chat(&mut room, a, "x", T0 + 2_000), a),
        Some((ErrorCode::RateLimited, Some(4_999)))
    );
    assert_eq!(
        refusal(&chat(&mut room, a, "x", T0 + 6_998), a),
        Some((ErrorCode::RateLimited, Some(1)))
    );
    assert!(broadcast_chat(&chat(&mut room, a, "x", T0 + 6_999)).is_some());
    // Other users are unaffected throughout.
    let b = join(&mut room, 2, "bob");
    assert!(broadcast_chat(&chat(&mut room, b, "x", T0 + 2_000)).is_some());
}

#[test]
fn rate_limit_window_slides() {
    let mut room = room();
    let a = join(&mut room, 1, "alice");
    for t in [0, 1_000, 1_500] {
        assert!(broadcast_chat(&chat(&mut room, a, "x", T0 + t)).is_some());
    }
    // At 2000 the message at 0 has left the window.
    assert!(broadcast_chat(&chat(&mut room, a, "x", T0 + 2_000)).is_some());
    assert_eq!(
        code(&chat(&mut room, a, "x", T0 + 2_999), a),
        Some(ErrorCode::RateLimited)
    );
}

#[test]
fn slow_mode() {
    let mut room = room();
    let h = join_host(&mut room, 1, "host");
    let a = join(&mut room, 2, "alice");

    let out = room.handle(a, ClientMessage::SlowMode { seconds: 10 }, T0);
    assert_eq!(code(&out, a), Some(ErrorCode::Forbidden));
    let out = room.handle(h, ClientMessage::SlowMode { seconds: 3_601 }, T0);
    assert_eq!(code(&out, h), Some(ErrorCode::BadRequest));
    let out = room.handle(h, ClientMessage::SlowMode { seconds: 10 }, T0);
    assert!(matches!(
        &messages(&out)[..],
        [ServerMessage::System { event: SystemEvent::SlowMode, text }] if text.contains("10 s")
    ));
    assert!(matches!(out[0], Outgoing::Broadcast(_)));
    assert_eq!(room.slow_mode_s(), 10);

    assert!(broadcast_chat(&chat(&mut room, a, "one", T0 + 100)).is_some());
    assert_eq!(
        refusal(&chat(&mut room, a, "two", T0 + 10_099), a),
        Some((ErrorCode::SlowMode, Some(1)))
    );
    // Danmaku shares the slow-mode clock.
    let out = room.handle(
        a,
        ClientMessage::Danmaku {
            text: "d".into(),
            color: None,
            position_ms: None,
        },
        T0 + 5_000,
    );
    assert_eq!(code(&out, a), Some(ErrorCode::SlowMode));
    assert!(broadcast_chat(&chat(&mut room, a, "two", T0 + 10_100)).is_some());
    // Hosts are exempt.
    for i in 0..3 {
        assert!(broadcast_chat(&chat(&mut room, h, "announcement", T0 + i)).is_some());
    }
    // Off again.
    room.handle(h, ClientMessage::SlowMode { seconds: 0 }, T0 + 10_200);
    assert!(broadcast_chat(&chat(&mut room, a, "three", T0 + 10_300)).is_some());
}

// ---- danmaku ----------------------------------------------------------------------------------

fn danmaku(
    room: &mut ChatRoom,
    conn: ConnId,
    color: Option<&str>,
    position_ms: Option<i64>,
    now: i64,
) -> Result<DanmakuLine, ErrorCode> {
    let out = room.handle(
        conn,
        ClientMessage::Danmaku {
            text: "弾幕!".into(),
            color: color.map(str::to_owned),
            position_ms,
        },
        now,
    );
    match &messages(&out)[..] {
        [ServerMessage::Danmaku(line)] => Ok(line.clone()),
        [ServerMessage::Error { code, .. }] => Err(*code),
        other => panic!("{other:?}"),
    }
}

#[test]
fn danmaku_colour() {
    let mut room = room();
    let a = join(&mut room, 1, "alice");
    let mut now = T0;
    let mut next = || {
        now += 10_000;
        now
    };
    assert_eq!(
        danmaku(&mut room, a, None, None, next()).unwrap().color,
        "#ffffff"
    );
    assert_eq!(
        danmaku(&mut room, a, Some("#FFaa00"), None, next())
            .unwrap()
            .color,
        "#ffaa00"
    );
    for bad in ["red", "#fff", "#ffaa00ff", "javascript:alert(1)", "#ffaa0g"] {
        assert_eq!(
            danmaku(&mut room, a, Some(bad), None, next()),
            Err(ErrorCode::BadRequest),
            "{bad}"
        );
    }
    let out = room.handle(
        a,
        ClientMessage::Danmaku {
            text: "x".repeat(61),
            color: None,
            position_ms: None,
        },
        next(),
    );
    assert_eq!(code(&out, a), Some(ErrorCode::TooLong));
}

#[test]
fn danmaku_position_stamping() {
    let mut room = room();
    let a = join(&mut room, 1, "alice");
    let mut now = T0;
    let mut next = |step: i64| {
        now += step;
        now
    };

    // Offline: no position.
    assert_eq!(
        danmaku(&mut room, a, None, Some(5_000), next(0))
            .unwrap()
            .position_ms,
        None
    );
    let start = next(10_000);
    room.stream_started(start);
    // Live for 100 s: the live position is 100 000.
    let t = next(100_000);
    assert_eq!(room.live_position(t), Some(100_000));
    let stamp = |room: &mut ChatRoom, pos: Option<i64>, t: i64| {
        danmaku(room, a, None, pos, t).unwrap().position_ms
    };
    assert_eq!(stamp(&mut room, Some(90_000), t), Some(90_000));
    let t = t + 2_000;
    // Exactly 60 s behind is accepted, 60.001 s is not.
    assert_eq!(stamp(&mut room, Some(42_000), t), Some(42_000));
    let t = t + 2_000;
    assert_eq!(stamp(&mut room, Some(43_999), t), Some(104_000));
    let t = t + 2_000;
    // The future and nonsense are replaced by the live position.
    assert_eq!(stamp(&mut room, Some(106_001), t), Some(106_000));
    let t = t + 2_000;
    assert_eq!(stamp(&mut room, Some(-5), t), Some(108_000));
    let t = t + 2_000;
    assert_eq!(stamp(&mut room, Some(i64::MAX), t), Some(110_000));
    let t = t + 2_000;
    assert_eq!(stamp(&mut room, None, t), Some(112_000));
    // The server corrects the clock from the packager.
    room.set_stream_position(111_000, t);
    let t = t + 2_000;
    assert_eq!(stamp(&mut room, None, t), Some(113_000));
    room.stream_ended(t);
    assert_eq!(stamp(&mut room, Some(100_000), t + 2_000), None);
}

#[test]
fn danmaku_has_its_own_rate_limit() {
    let mut room = room();
    let a = join(&mut room, 1, "alice");
    for t in 0..3 {
        assert!(broadcast_chat(&chat(&mut room, a, "x", T0 + t)).is_some());
    }
    // Chat is exhausted, danmaku is not: two per 2 s.
    assert!(danmaku(&mut room, a, None, None, T0 + 10).is_ok());
    assert!(danmaku(&mut room, a, None, None, T0 + 20).is_ok());
    assert_eq!(
        danmaku(&mut room, a, None, None, T0 + 30),
        Err(ErrorCode::RateLimited)
    );
    // The danmaku cool-down does not touch chat.
    assert!(broadcast_chat(&chat(&mut room, a, "x", T0 + 2_000)).is_some());
}

// ---- likes ------------------------------------------------------------------------------------

fn likes(out: &[Outgoing]) -> Vec<(u64, u64)> {
    messages(out)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Like { count, total } => Some((count, total)),
            _ => None,
        })
        .collect()
}

#[test]
fn ten_thousand_likes_in_100_ms_are_one_update() {
    let mut room = room();
    for i in 0..1_000 {
        room.join(ConnId(i), None, false, T0).unwrap();
    }
    let mut updates = Vec::new();
    for round in 0..10 {
        for i in 0..1_000 {
            let now = T0 + round * 10 + (i % 10) as i64;
            assert!(room.handle(ConnId(i), ClientMessage::Like, now).is_empty());
        }
        updates.extend(likes(&room.tick(T0 + round * 10 + 9)));
    }
    assert_eq!(updates, vec![]);
    assert_eq!(room.poll_timeout(), Some(T0 + 500));
    assert_eq!(likes(&room.tick(T0 + 499)), vec![]);
    assert_eq!(likes(&room.tick(T0 + 500)), vec![(10_000, 10_000)]);
    assert_eq!(likes(&room.tick(T0 + 1_000)), vec![]);
    // The next burst is a new interval; the total carries on.
    room.handle(ConnId(0), ClientMessage::Like, T0 + 2_000);
    assert_eq!(likes(&room.tick(T0 + 2_500)), vec![(1, 10_001)]);
    assert_eq!(room.likes_total(), 10_001);
}

#[test]
fn scripted_like_floods_count_up_to_the_cap() {
    let mut room = room();
    let a = join(&mut room, 1, "alice");
    for i in 0..10_000 {
        room.handle(a, ClientMessage::Like, T0 + i / 100);
    }
    assert_eq!(likes(&room.tick(T0 + 500)), vec![(10, 10)]);
    // A second later the cap allows ten more.
    for i in 0..50 {
        room.handle(a, ClientMessage::Like, T0 + 1_000 + i);
    }
    assert_eq!(likes(&room.tick(T0 + 1_500)), vec![(10, 20)]);
}

// ---- gifts ------------------------------------------------------------------------------------

fn gift(room: &mut ChatRoom, conn: ConnId, id: &str, count: u32, now: i64) -> Vec<Outgoing> {
    room.handle(
        conn,
        ClientMessage::Gift {
            gift: id.into(),
            count,
        },
        now,
    )
}

fn gift_event(out: &[Outgoing]) -> GiftEvent {
    match &messages(out)[..] {
        [ServerMessage::Gift(g)] => g.clone(),
        other => panic!("{other:?}"),
    }
}

fn giver(user: &str, total: u64) -> GiverTotal {
    GiverTotal {
        user: user.into(),
        total,
    }
}

#[test]
fn gift_validation() {
    let mut room = room();
    let a = join(&mut room, 1, "alice");
    assert_eq!(
        code(&gift(&mut room, a, "diamond", 1, T0), a),
        Some(ErrorCode::UnknownGift)
    );
    assert_eq!(
        code(&gift(&mut room, a, "rose", 0, T0), a),
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(&gift(&mut room, a, "rose", 100, T0), a),
        Some(ErrorCode::BadRequest)
    );
    let g = gift_event(&gift(&mut room, a, "rose", 99, T0));
    assert_eq!((g.gift_name.as_str(), g.count, g.value), ("Rose", 99, 99));
}

#[test]
fn gift_totals_and_top_givers() {
    let config = ChatConfig {
        top_givers: 2,
        ..ChatConfig::default()
    };
    let mut room = ChatRoom::new("main", config);
    room.stream_started(T0);
    let a = join(&mut room, 1, "alice");
    let b = join(&mut room, 2, "bob");
    let c = join(&mut room, 3, "carol");

    let g = gift_event(&gift(&mut room, a, "rose", 5, T0 + 1));
    assert_eq!(
        (g.user.as_str(), g.value, g.total, g.stream_total),
        ("alice", 5, 5, 5)
    );
    assert_eq!(g.top, vec![giver("alice", 5)]);

    let g = gift_event(&gift(&mut room, b, "rocket", 1, T0 + 2));
    assert_eq!((g.total, g.stream_total), (500, 505));
    assert_eq!(g.top, vec![giver("bob", 500), giver("alice", 5)]);

    // Ten coins beat five: alice drops off the two-place board.
    let g = gift_event(&gift(&mut room, c, "coffee", 1, T0 + 3));
    assert_eq!(g.top, vec![giver("bob", 500), giver("carol", 10)]);

    let g = gift_event(&gift(&mut room, c, "cake", 12, T0 + 4));
    assert_eq!((g.total, g.stream_total), (610, 1_115));
    assert_eq!(g.top, vec![giver("carol", 610), giver("bob", 500)]);

    let g = gift_event(&gift(&mut room, a, "rocket", 1, T0 + 5));
    assert_eq!(g.total, 505);
    assert_eq!(g.top, vec![giver("carol", 610), giver("alice", 505)]);
    assert_eq!(room.gift_total(), 1_615);

    let gifts: Vec<_> = room
        .take_persist()
        .into_iter()
        .filter_map(|e| match e {
            PersistEvent::Gift {
                user, gift, value, ..
            } => Some((user, gift, value)),
            _ => None,
        })
        .collect();
    assert_eq!(gifts.len(), 5);
    assert_eq!(gifts[3], ("carol".into(), "cake".into(), 600));

    // A new stream starts from zero.
    room.stream_started(T0 + 10_000);
    assert_eq!(room.top_givers(), vec![]);
    let g = gift_event(&gift(&mut room, b, "rose", 1, T0 + 10_001));
    assert_eq!((g.total, g.stream_total), (1, 1));

    // Restored totals after a restart (names merge without case).
    room.load_gift_totals(vec![giver("dave", 7), giver("Erin", 3), giver("erin", 5)]);
    assert_eq!(room.top_givers(), vec![giver("erin", 8), giver("dave", 7)]);
    assert_eq!(room.gift_total(), 15);
}

#[test]
fn gifts_are_rate_limited() {
    let mut room = room();
    let a = join(&mut room, 1, "alice");
    for t in 0..5 {
        gift_event(&gift(&mut room, a, "rose", 1, T0 + t));
    }
    assert_eq!(
        code(&gift(&mut room, a, "rose", 1, T0 + 5), a),
        Some(ErrorCode::RateLimited)
    );
}

// ---- lottery ----------------------------------------------------------------------------------

fn open(room: &mut ChatRoom, host: ConnId, keyword: &str, now: i64) -> Vec<Outgoing> {
    room.handle(
        host,
        ClientMessage::LotteryOpen {
            keyword: keyword.into(),
            duration_s: None,
        },
        now,
    )
}

fn result(out: &[Outgoing]) -> (u64, Option<String>, String) {
    match &messages(out)[..] {
        [
            ServerMessage::LotteryResult {
                entrants,
                winner,
                text,
                ..
            },
        ] => (*entrants, winner.clone(), text.clone()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lottery_is_host_only() {
    let mut room = room();
    let a = join(&mut room, 1, "alice");
    assert_eq!(
        code(&open(&mut room, a, "gg", T0), a),
        Some(ErrorCode::Forbidden)
    );
    let out = room.handle(a, ClientMessage::LotteryDraw, T0);
    assert_eq!(code(&out, a), Some(ErrorCode::Forbidden));
    let out = room.handle(a, ClientMessage::LotteryCancel, T0);
    assert_eq!(code(&out, a), Some(ErrorCode::Forbidden));
    let h = join_host(&mut room, 2, "host");
    let out = room.handle(h, ClientMessage::LotteryDraw, T0);
    assert_eq!(code(&out, h), Some(ErrorCode::Conflict));
    assert_eq!(
        code(&open(&mut room, h, "  ", T0), h),
        Some(ErrorCode::Empty)
    );
    assert_eq!(
        code(&open(&mut room, h, &"k".repeat(31), T0), h),
        Some(ErrorCode::TooLong)
    );
    let out = room.handle(
        h,
        ClientMessage::LotteryOpen {
            keyword: "gg".into(),
            duration_s: Some(0),
        },
        T0,
    );
    assert_eq!(code(&out, h), Some(ErrorCode::BadRequest));
    assert!(matches!(
        &messages(&open(&mut room, h, "gg", T0))[..],
        [ServerMessage::LotteryOpened { keyword, draw_at: None }] if keyword == "gg"
    ));
    assert_eq!(
        code(&open(&mut room, h, "again", T0), h),
        Some(ErrorCode::Conflict)
    );
}

#[test]
fn lottery_entry_once_per_user() {
    let mut room = room();
    let h = join_host(&mut room, 1, "host");
    let a = join(&mut room, 2, "alice");
    let b = join(&mut room, 3, "bob");
    open(&mut room, h, "Good Luck", T0);
    room.tick(T0);

    let entered = |out: &[Outgoing]| {
        messages(out).iter().any(|m| {
            matches!(
                m,
                ServerMessage::System {
                    event: SystemEvent::LotteryEntered,
                    ..
                }
            )
        })
    };
    // The entry is a chat message like any other, plus a note to the entrant.
    let out = chat(&mut room, a, "  good LUCK ", T0 + 10);
    assert!(broadcast_chat(&out).is_some());
    assert!(entered(&out));
    assert!(matches!(out[1], Outgoing::To(ConnId(2), _)));
    // Second entry ignored, even after a rename.
    assert!(!entered(&chat(&mut room, a, "good luck", T0 + 5_000)));
    room.handle(
        a,
        ClientMessage::Join {
            name: Some("alice2".into()),
        },
        T0 + 5_001,
    );
    assert!(!entered(&chat(&mut room, a, "good luck", T0 + 10_000)));
    // Not the keyword; the host cannot enter.
    assert!(!entered(&chat(&mut room, b, "good luck!", T0 + 10)));
    assert!(!entered(&chat(&mut room, h, "good luck", T0 + 10)));
    assert!(entered(&chat(&mut room, b, "Good Luck", T0 + 20)));
    assert_eq!(room.lottery().unwrap().entrants, 2);

    // Entrant counts are throttled to one update per `lottery_update_ms`.
    let counts = |out: Vec<Outgoing>| -> Vec<u64> {
        messages(&out)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::LotteryEntrants { count, .. } => Some(count),
                _ => None,
            })
            .collect()
    };
    assert_eq!(counts(room.tick(T0 + 20)), vec![2]);
    assert_eq!(counts(room.tick(T0 + 30)), Vec::<u64>::new());

    let out = room.handle(h, ClientMessage::LotteryDraw, T0 + 20_000);
    let (entrants, winner, text) = result(&out);
    assert_eq!(entrants, 2);
    let winner = winner.unwrap();
    assert!(winner == "alice" || winner == "bob", "{winner}");
    assert!(text.contains(&winner));
    assert!(room.lottery().is_none());
    let persisted: Vec<_> = room
        .take_persist()
        .into_iter()
        .filter(|e| matches!(e, PersistEvent::LotteryResult { .. }))
        .collect();
    assert_eq!(
        persisted,
        vec![PersistEvent::LotteryResult {
            keyword: "Good Luck".into(),
            entrants: 2,
            winner: Some(winner),
            opened_by: "host".into(),
            drawn_by: "host".into(),
            opened_at: T0,
            drawn_at: T0 + 20_000,
        }]
    );
    // A new lottery accepts the same people again.
    open(&mut room, h, "again", T0 + 30_000);
    assert!(entered(&chat(&mut room, a, "again", T0 + 30_001)));
}

#[test]
fn lottery_without_entrants_and_cancel_and_auto_draw() {
    let mut room = room();
    let h = join_host(&mut room, 1, "host");
    let a = join(&mut room, 2, "alice");
    open(&mut room, h, "gg", T0);
    let (entrants, winner, text) = result(&room.handle(h, ClientMessage::LotteryDraw, T0 + 1));
    assert_eq!((entrants, winner), (0, None));
    assert!(text.contains("No entrants"), "{text}");

    open(&mut room, h, "gg", T0 + 2);
    chat(&mut room, a, "gg", T0 + 3);
    let out = room.handle(h, ClientMessage::LotteryCancel, T0 + 4);
    assert!(matches!(
        &messages(&out)[..],
        [ServerMessage::LotteryCancelled { entrants: 1, .. }]
    ));
    assert!(
        room.take_persist()
            .iter()
            .any(|e| matches!(e, PersistEvent::LotteryCancelled { entrants: 1, .. }))
    );

    let out = room.handle(
        h,
        ClientMessage::LotteryOpen {
            keyword: "auto".into(),
            duration_s: Some(30),
        },
        T0 + 10_000,
    );
    assert!(matches!(
        &messages(&out)[..],
        [ServerMessage::LotteryOpened { draw_at: Some(at), .. }] if *at == T0 + 40_000
    ));
    chat(&mut room, a, "AUTO", T0 + 10_001);
    room.tick(T0 + 11_000);
    assert_eq!(room.poll_timeout(), Some(T0 + 40_000));
    assert!(messages(&room.tick(T0 + 39_999)).is_empty());
    let out = room.tick(T0 + 40_000);
    let (entrants, winner, _) = result(&out);
    assert_eq!((entrants, winner.as_deref()), (1, Some("alice")));
    assert!(room.lottery().is_none());
}

/// 4000 draws over four entrants: each should win about 1000 times. The standard deviation is
/// √(4000 · ¼ · ¾) ≈ 27, so the bounds sit over seven deviations out and this cannot flake in
/// practice, yet a biased or constant draw fails at once.
#[test]
fn lottery_draw_is_fair() {
    let mut room = room();
    let h = join_host(&mut room, 1, "host");
    let names = ["ann", "ben", "cat", "dan"];
    let conns: Vec<ConnId> = names
        .iter()
        .enumerate()
        .map(|(i, n)| join(&mut room, 10 + i as u64, n))
        .collect();
    let mut wins: HashMap<String, u32> = HashMap::new();
    for round in 0..4_000_i64 {
        let now = T0 + round * 10_000;
        open(&mut room, h, "pick me", now);
        for &c in &conns {
            chat(&mut room, c, "pick me", now + 1);
        }
        let (entrants, winner, _) = result(&room.handle(h, ClientMessage::LotteryDraw, now + 2));
        assert_eq!(entrants, 4);
        *wins.entry(winner.unwrap()).or_default() += 1;
        room.take_persist();
    }
    assert_eq!(wins.len(), 4, "{wins:?}");
    for name in names {
        let n = wins[name];
        assert!(
            (800..=1_200).contains(&n),
            "{name} won {n} of 4000: {wins:?}"
        );
    }
}

// ---- moderation -------------------------------------------------------------------------------

#[test]
fn ban_deletes_recent_messages_and_refuses_new_ones() {
    let mut room = room();
    let h = join_host(&mut room, 1, "host");
    let a = join(&mut room, 2, "Spammer");
    let b = join(&mut room, 3, "bob");
    let mut spam = Vec::new();
    // One line under an earlier name, which the connection's own list still covers.
    room.handle(
        a,
        ClientMessage::Join {
            name: Some("nice".into()),
        },
        T0,
    );
    spam.push(broadcast_chat(&chat(&mut room, a, "early", T0)).unwrap().0);
    room.handle(
        a,
        ClientMessage::Join {
            name: Some("Spammer".into()),
        },
        T0,
    );
    for i in 0..3 {
        spam.push(
            broadcast_chat(&chat(&mut room, a, "buy now", T0 + 10_000 + i))
                .unwrap()
                .0,
        );
    }
    let kept = broadcast_chat(&chat(&mut room, b, "hello", T0 + 10_010))
        .unwrap()
        .0;
    room.take_persist();

    // Non-hosts cannot ban; hosts cannot be banned.
    let out = room.handle(
        b,
        ClientMessage::Ban {
            user: "spammer".into(),
        },
        T0 + 11_000,
    );
    assert_eq!(code(&out, b), Some(ErrorCode::Forbidden));
    let out = room.handle(
        h,
        ClientMessage::Ban {
            user: "HOST".into(),
        },
        T0 + 11_000,
    );
    assert_eq!(code(&out, h), Some(ErrorCode::Forbidden));

    let out = room.handle(
        h,
        ClientMessage::Ban {
            user: "spammer".into(),
        },
        T0 + 11_000,
    );
    let deleted: Vec<u64> = out
        .iter()
        .filter_map(|o| match (o, decode(o).message) {
            (Outgoing::Broadcast(_), ServerMessage::Delete { message_id }) => Some(message_id),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, spam);
    assert!(
        out.iter()
            .any(|o| matches!(o, Outgoing::To(c, _) if *c == a)
                && matches!(decode(o).message, ServerMessage::Identity { you } if you.banned))
    );
    assert!(out.iter().any(|o| matches!(o, Outgoing::ToHosts(_))
        && matches!(
            decode(o).message,
            ServerMessage::System {
                event: SystemEvent::UserBanned,
                ..
            }
        )));
    let history: Vec<u64> = room.history().map(|m| m.id).collect();
    assert_eq!(history, vec![kept]);
    let persisted = room.take_persist();
    assert_eq!(
        persisted.last(),
        Some(&PersistEvent::Banned {
            user: "spammer".into(),
            by: "host".into(),
            ts: T0 + 11_000
        })
    );
    assert_eq!(
        persisted
            .iter()
            .filter(|e| matches!(e, PersistEvent::Deleted { .. }))
            .count(),
        4
    );
    assert!(room.is_banned("SPAMMER"));

    // Everything that would reach others is refused; likes are silently ignored.
    let t = T0 + 60_000;
    assert_eq!(
        code(&chat(&mut room, a, "hi", t), a),
        Some(ErrorCode::Banned)
    );
    assert_eq!(danmaku(&mut room, a, None, None, t), Err(ErrorCode::Banned));
    assert_eq!(
        code(&gift(&mut room, a, "rose", 1, t), a),
        Some(ErrorCode::Banned)
    );
    let out = room.handle(
        a,
        ClientMessage::Join {
            name: Some("innocent".into()),
        },
        t,
    );
    assert_eq!(code(&out, a), Some(ErrorCode::Banned));
    assert!(room.handle(a, ClientMessage::Like, t).is_empty());
    assert_eq!(likes(&room.tick(t + 1_000)), vec![]);
    // A new connection under the banned name (any case) is banned too.
    room.leave(a, t);
    let (you, _) = room.join(ConnId(9), Some("SPAMMER"), false, t).unwrap();
    assert!(you.banned);

    // Unban.
    let out = room.handle(
        h,
        ClientMessage::Unban {
            user: "Spammer".into(),
        },
        t + 1,
    );
    assert!(out.iter().any(|o| matches!(o, Outgoing::To(ConnId(9), _))
        && matches!(decode(o).message, ServerMessage::Identity { you } if !you.banned)));
    assert!(broadcast_chat(&chat(&mut room, ConnId(9), "sorry", t + 2)).is_some());
    let out = room.handle(
        h,
        ClientMessage::Unban {
            user: "spammer".into(),
        },
        t + 3,
    );
    assert_eq!(code(&out, h), Some(ErrorCode::NotFound));
    assert!(matches!(
        room.take_persist().first(),
        Some(PersistEvent::Unbanned { user, .. }) if user == "spammer"
    ));
}

#[test]
fn ban_in_advance_and_restored_bans() {
    let mut room = room();
    room.ban("troll", "operator", T0).unwrap();
    let (you, _) = room.join(ConnId(1), Some("Troll"), false, T0).unwrap();
    assert!(you.banned);
    // A host is never banned by name.
    let mut room = self::room();
    room.load_bans(["boss".to_owned(), "Mallory".to_owned()]);
    let (you, _) = room.join(ConnId(1), Some("boss"), true, T0).unwrap();
    assert!(!you.banned);
    let m = join(&mut room, 2, "mallory");
    assert_eq!(
        code(&chat(&mut room, m, "hi", T0), m),
        Some(ErrorCode::Banned)
    );
    // Connected users become banned when bans are loaded.
    let e = join(&mut room, 3, "eve");
    room.load_bans(["EVE".to_owned()]);
    assert_eq!(
        code(&chat(&mut room, e, "hi", T0), e),
        Some(ErrorCode::Banned)
    );
    let mut bans: Vec<&str> = room.bans().collect();
    bans.sort_unstable();
    assert_eq!(bans, ["boss", "eve", "mallory"]);
}

#[test]
fn banned_user_leaves_the_lottery() {
    let mut room = room();
    let h = join_host(&mut room, 1, "host");
    let a = join(&mut room, 2, "alice");
    open(&mut room, h, "gg", T0);
    chat(&mut room, a, "gg", T0 + 1);
    assert_eq!(room.lottery().unwrap().entrants, 1);
    room.ban("alice", "host", T0 + 2).unwrap();
    assert_eq!(room.lottery().unwrap().entrants, 0);
    let (entrants, winner, _) = result(&room.draw_lottery("host", T0 + 3).unwrap());
    assert_eq!((entrants, winner), (0, None));
}

#[test]
fn delete_message() {
    let mut room = room();
    let h = join_host(&mut room, 1, "host");
    let a = join(&mut room, 2, "alice");
    let id = broadcast_chat(&chat(&mut room, a, "oops", T0 + 1))
        .unwrap()
        .0;
    let other = broadcast_chat(&chat(&mut room, a, "fine", T0 + 2))
        .unwrap()
        .0;
    room.take_persist();

    let out = room.handle(a, ClientMessage::Delete { id }, T0 + 3);
    assert_eq!(code(&out, a), Some(ErrorCode::Forbidden));
    let out = room.handle(h, ClientMessage::Delete { id: u64::MAX }, T0 + 3);
    assert_eq!(code(&out, h), Some(ErrorCode::NotFound));

    let out = room.handle(h, ClientMessage::Delete { id }, T0 + 4);
    assert!(matches!(out[..], [Outgoing::Broadcast(_)]));
    assert_eq!(
        messages(&out),
        vec![ServerMessage::Delete { message_id: id }]
    );
    assert_eq!(
        room.history().map(|m| m.id).collect::<Vec<_>>(),
        vec![other]
    );
    assert_eq!(
        room.take_persist(),
        vec![PersistEvent::Deleted {
            message_id: id,
            by: "host".into(),
            ts: T0 + 4
        }]
    );
    // A late joiner's welcome does not replay it.
    let (_, out) = room.join(ConnId(3), None, false, T0 + 5).unwrap();
    let ServerMessage::Welcome(w) = &messages(&out)[0] else {
        panic!()
    };
    assert_eq!(
        w.history.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![other]
    );
}

// ---- history, welcome, persistence ------------------------------------------------------------

#[test]
fn history_keeps_the_last_lines_and_welcome_replays_them() {
    let config = ChatConfig {
        history_len: 5,
        ..ChatConfig::default()
    };
    let mut room = ChatRoom::new("main", config);
    let a = join(&mut room, 1, "alice");
    let mut sent = Vec::new();
    for i in 0..8_i64 {
        let out = if i % 2 == 0 {
            chat(&mut room, a, &format!("m{i}"), T0 + i * 10_000)
        } else {
            room.handle(
                a,
                ClientMessage::Danmaku {
                    text: format!("d{i}"),
                    color: None,
                    position_ms: None,
                },
                T0 + i * 10_000,
            )
        };
        sent.push(decode(&out[0]));
    }
    let persisted = room.take_persist();
    assert_eq!(persisted.len(), 8);
    assert!(
        persisted
            .iter()
            .all(|e| matches!(e, PersistEvent::Message(_)))
    );

    let (_, out) = room
        .join(ConnId(2), Some("bob"), false, T0 + 100_000)
        .unwrap();
    let ServerMessage::Welcome(w) = &messages(&out)[0] else {
        panic!()
    };
    assert_eq!(w.history.len(), 5);
    assert_eq!(w.viewers, 2);
    assert_eq!(w.gifts, ChatConfig::default().gifts);
    // Each history entry is exactly the frame that went out.
    for (stored, live) in w.history.iter().zip(&sent[3..]) {
        assert_eq!(
            serde_json::to_value(stored).unwrap(),
            serde_json::to_value(live).unwrap()
        );
    }
}

#[test]
fn load_history_and_ids_after_restart() {
    let mut before = room();
    let a = join(&mut before, 1, "alice");
    let mut stored = Vec::new();
    for i in 0..60_i64 {
        chat(&mut before, a, &format!("m{i}"), T0 + i * 10_000);
        for e in before.take_persist() {
            if let PersistEvent::Message(m) = e {
                stored.push(m);
            }
        }
    }
    let last = before.last_id();
    stored.reverse();

    // A restart a moment later, even with a clock that went back a little.
    let mut after = room();
    after.load_history(stored.clone());
    assert_eq!(after.history().len(), 50);
    let ids: Vec<u64> = after.history().map(|m| m.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(ids.last(), Some(&last));
    let a = join(&mut after, 1, "alice");
    let (id, _) = broadcast_chat(&chat(&mut after, a, "back", T0)).unwrap();
    assert!(id > last);
    // Even without the history, the clock keeps ids above anything issued earlier.
    let mut fresh = room();
    let a = join(&mut fresh, 1, "alice");
    let (id, _) = broadcast_chat(&chat(&mut fresh, a, "x", T0 + 600_001)).unwrap();
    assert!(id > last);
}

#[test]
fn persist_queue_is_bounded() {
    let config = ChatConfig {
        chat_rate: RateLimit {
            max: 0,
            window_ms: 1,
        },
        ..ChatConfig::default()
    };
    let mut room = ChatRoom::new("main", config);
    let a = join(&mut room, 1, "alice");
    for i in 0..(MAX_PENDING_PERSIST as i64 + 10) {
        chat(&mut room, a, "x", T0 + i);
    }
    assert_eq!(room.persist_dropped(), 10);
    let events = room.take_persist();
    assert_eq!(events.len(), MAX_PENDING_PERSIST);
    assert!(room.take_persist().is_empty());
}

// ---- stream, presence, ids --------------------------------------------------------------------

#[test]
fn stream_events() {
    let mut room = room();
    let a = join(&mut room, 1, "alice");
    room.handle(a, ClientMessage::Like, T0);
    let out = room.stream_started(T0 + 100);
    let msgs = messages(&out);
    // Pending likes belong to the previous stream; then the announcement.
    assert_eq!(msgs[0], ServerMessage::Like { count: 1, total: 1 });
    assert!(matches!(
        msgs[1],
        ServerMessage::System {
            event: SystemEvent::StreamStarted,
            ..
        }
    ));
    assert!(room.is_live());
    assert_eq!(room.likes_total(), 0);
    let (_, out) = room.join(ConnId(2), None, false, T0 + 200).unwrap();
    assert!(matches!(&messages(&out)[0], ServerMessage::Welcome(w) if w.live));
    let out = room.stream_ended(T0 + 300);
    assert!(matches!(
        &messages(&out)[..],
        [ServerMessage::System {
            event: SystemEvent::StreamEnded,
            ..
        }]
    ));
    assert!(matches!(out[0], Outgoing::Broadcast(_)));
    assert!(!room.is_live());
    assert_eq!(room.live_position(T0 + 400), None);
}

fn presence(out: &[Outgoing]) -> Vec<u64> {
    messages(out)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Presence { viewers } => Some(viewers),
            _ => None,
        })
        .collect()
}

#[test]
fn presence_on_change_at_most_every_presence_ms() {
    let mut room = room();
    assert_eq!(room.poll_timeout(), None);
    assert_eq!(presence(&room.tick(T0)), Vec::<u64>::new());
    for i in 0..3 {
        room.join(ConnId(i), None, false, T0).unwrap();
    }
    assert!(room.poll_timeout().is_some_and(|t| t <= T0));
    assert_eq!(presence(&room.tick(T0)), vec![3]);
    room.join(ConnId(3), None, false, T0 + 100).unwrap();
    room.set_external_viewers(10);
    assert_eq!(room.viewers(), 14);
    assert_eq!(presence(&room.tick(T0 + 1_999)), Vec::<u64>::new());
    assert_eq!(room.poll_timeout(), Some(T0 + 2_000));
    assert_eq!(presence(&room.tick(T0 + 2_000)), vec![14]);
    assert_eq!(presence(&room.tick(T0 + 10_000)), Vec::<u64>::new());
    room.leave(ConnId(0), T0 + 10_000);
    room.leave(ConnId(1), T0 + 10_000);
    room.leave(ConnId(99), T0 + 10_000);
    assert_eq!(presence(&room.tick(T0 + 10_001)), vec![12]);
    assert_eq!(room.poll_timeout(), None);
}

#[test]
fn every_frame_has_an_increasing_id_and_the_callers_time() {
    let mut room = room();
    let mut all: Vec<(i64, Outgoing)> = Vec::new();
    let mut now = T0;
    let mut log = |now: i64, out: Vec<Outgoing>| all.extend(out.into_iter().map(|o| (now, o)));
    let h = ConnId(1);
    log(now, room.join(h, Some("host"), true, now).unwrap().1);
    log(now, room.stream_started(now));
    for i in 2..6 {
        now += 1;
        log(now, room.join(ConnId(i), None, false, now).unwrap().1);
    }
    for step in 0..200_u64 {
        now += 37;
        let conn = ConnId(1 + step % 5);
        let message = match step % 9 {
            0 => ClientMessage::Chat { text: "hi".into() },
            1 => ClientMessage::Like,
            2 => ClientMessage::Gift {
                gift: "rose".into(),
                count: 2,
            },
            3 => ClientMessage::Danmaku {
                text: "yo".into(),
                color: Some("#00ff00".into()),
                position_ms: Some(5),
            },
            4 => ClientMessage::LotteryOpen {
                keyword: "k".into(),
                duration_s: Some(1),
            },
            5 => ClientMessage::Chat { text: "k".into() },
            6 => ClientMessage::Delete { id: room.last_id() },
            7 => ClientMessage::SlowMode { seconds: 0 },
            _ => ClientMessage::Join { name: None },
        };
        log(now, room.handle(conn, message, now));
        log(now, room.handle_frame(conn, b"{not json", now));
        log(now, room.tick(now));
    }
    log(now, room.stream_ended(now));
    assert!(all.len() > 300, "{}", all.len());
    let mut last = 0;
    for (now, o) in &all {
        let value: serde_json::Value = serde_json::from_slice(o.frame().bytes()).unwrap();
        let id = value["id"].as_u64().unwrap();
        assert!(id > last, "{value}");
        assert!(id >= *now as u64 * 1_000);
        assert_eq!(value["ts"].as_i64(), Some(*now), "{value}");
        assert!(value["type"].is_string());
        assert_eq!(id, o.frame().id());
        last = id;
    }
}

#[test]
fn hostile_frames_get_errors_and_the_room_carries_on() {
    let mut room = room();
    let a = join(&mut room, 1, "alice");
    let huge = format!(r#"{{"type":"chat","text":"{}"}}"#, "A".repeat(1 << 20));
    // Under the size cap, far over serde_json's nesting limit.
    let deep = "[".repeat(4_000);
    let cases: Vec<(&[u8], ErrorCode)> = vec![
        (huge.as_bytes(), ErrorCode::TooLong),
        (deep.as_bytes(), ErrorCode::BadRequest),
        (b"", ErrorCode::BadRequest),
        (b"\xff\xfe", ErrorCode::BadRequest),
        (br#"{"type":"chat","text":["a"]}"#, ErrorCode::BadRequest),
        (br#"{"type":"shout","text":"a"}"#, ErrorCode::BadRequest),
        (
            br#"{"type":"gift","gift":"rose","count":"1"}"#,
            ErrorCode::BadRequest,
        ),
        (
            br#"{"type":"slow_mode","seconds":-1}"#,
            ErrorCode::BadRequest,
        ),
        (br#"{"type":"slow_mode","seconds":5}"#, ErrorCode::Forbidden),
        (br#"{"type":"ban","user":"bob"}"#, ErrorCode::Forbidden),
    ];
    for (frame, want) in cases {
        let out = room.handle_frame(a, frame, T0);
        assert_eq!(
            code(&out, a),
            Some(want),
            "{:.60}",
            String::from_utf8_lossy(frame)
        );
    }
    // Unknown connections get an answer too, and nothing reaches anyone else.
    let out = room.handle_frame(ConnId(77), b"{", T0);
    assert_eq!(code(&out, ConnId(77)), Some(ErrorCode::BadRequest));
    let out = room.handle_frame(a, br#"{"type":"chat","text":"still here"}"#, T0);
    assert_eq!(broadcast_chat(&out).unwrap().1.text, "still here");
}

#[test]
fn broadcast_frames_share_one_buffer() {
    let mut room = room();
    let a = join(&mut room, 1, "alice");
    let out = chat(&mut room, a, "hi", T0);
    let frame = out[0].frame();
    let copies: Vec<Frame> = (0..1_000).map(|_| frame.clone()).collect();
    assert!(
        copies
            .iter()
            .all(|c| c.bytes().as_ptr() == frame.bytes().as_ptr())
    );
}

#[test]
fn room_is_send_and_deterministic_with_a_seeded_rng() {
    fn assert_send<T: Send>() {}
    assert_send::<ChatRoom>();
    let names = |seed: u64| {
        let mut room = ChatRoom::with_rng(
            "main",
            ChatConfig::default(),
            Box::new(StdRng::seed_from_u64(seed)),
        );
        (0..5)
            .map(|i| room.join(ConnId(i), None, false, T0).unwrap().0.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(7), names(7));
    assert_ne!(names(7), names(8));
}
