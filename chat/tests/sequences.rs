//! Stateful property test through the public API: arbitrary interleavings of joins, leaves,
//! client messages (well-formed or not), timers and stream events from several connections —
//! with a clock that may even step back — never panic, and every frame that comes out is valid
//! JSON with a strictly increasing id and the caller's `ts`.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use proptest::prelude::*;
use roomcast_chat::{ChatConfig, ChatRoom, ClientMessage, ConnId, Outgoing, ServerFrame};

const T0: i64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
enum Op {
    Join {
        conn: u64,
        name: Option<String>,
        host: bool,
    },
    Leave(u64),
    Message(u64, ClientMessage),
    /// Delete the latest frame's id: the only way a random test hits a real message.
    DeleteLast(u64),
    Raw(u64, Vec<u8>),
    Tick,
    Advance(i64),
    StreamStarted,
    StreamEnded,
    Position(i64),
    External(u64),
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("gg".to_owned()),
        Just("  GG ".to_owned()),
        Just("<img src=x onerror=alert(1)>".to_owned()),
        Just(String::new()),
        "[a-z ]{0,12}",
        any::<String>(),
        Just("x".repeat(301)),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("alice".to_owned()),
        Just("ALICE".to_owned()),
        Just("bob".to_owned()),
        Just("host".to_owned()),
        Just(" bad".to_owned()),
        "[a-zA-Z0-9_]{1,30}",
        any::<String>(),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        proptest::option::of(name()).prop_map(|name| ClientMessage::Join { name }),
        text().prop_map(|text| ClientMessage::Chat { text }),
        (
            text(),
            proptest::option::of(prop_oneof![
                Just("#ff0000".to_owned()),
                Just("red".to_owned()),
                any::<String>()
            ]),
            proptest::option::of(any::<i64>())
        )
            .prop_map(|(text, color, position_ms)| ClientMessage::Danmaku {
                text,
                color,
                position_ms
            }),
        Just(ClientMessage::Like),
        Just(ClientMessage::Like),
        (
            prop_oneof![
                Just("rose".to_owned()),
                Just("rocket".to_owned()),
                any::<String>()
            ],
            0..120_u32
        )
            .prop_map(|(gift, count)| ClientMessage::Gift { gift, count }),
        any::<u64>().prop_map(|id| ClientMessage::Delete { id }),
        name().prop_map(|user| ClientMessage::Ban { user }),
        name().prop_map(|user| ClientMessage::Unban { user }),
        prop_oneof![0..5_u32, any::<u32>()].prop_map(|seconds| ClientMessage::SlowMode { seconds }),
        (text(), proptest::option::of(0..5_u32)).prop_map(|(keyword, duration_s)| {
            ClientMessage::LotteryOpen {
                keyword,
                duration_s,
            }
        }),
        Just(ClientMessage::LotteryDraw),
        Just(ClientMessage::LotteryCancel),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let conn = 0..5_u64;
    prop_oneof![
        3 => (conn.clone(), proptest::option::of(name()), any::<bool>())
            .prop_map(|(conn, name, host)| Op::Join { conn, name, host }),
        1 => conn.clone().prop_map(Op::Leave),
        10 => (conn.clone(), client_message()).prop_map(|(c, m)| Op::Message(c, m)),
        1 => conn.clone().prop_map(Op::DeleteLast),
        2 => (conn, prop_oneof![
            any::<Vec<u8>>(),
            "\\{\"type\":\"[a-z_]{0,14}\"(,\"[a-z_]{1,8}\":(1|-1|\"x\"|null|\\[\\]|\\{\\}))*\\}"
                .prop_map(String::into_bytes),
        ])
            .prop_map(|(c, b)| Op::Raw(c, b)),
        3 => Just(Op::Tick),
        4 => (-2_000..6_000_i64).prop_map(Op::Advance),
        1 => Just(Op::StreamStarted),
        1 => Just(Op::StreamEnded),
        1 => any::<i64>().prop_map(Op::Position),
        1 => (0..1_000_u64).prop_map(Op::External),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn sequences_never_panic_and_ids_increase(ops in proptest::collection::vec(op(), 1..80)) {
        let config = ChatConfig::default();
        let history_len = config.history_len;
        let mut room = ChatRoom::new("prop", config);
        let mut joined: HashSet<u64> = HashSet::new();
        let mut external = 0;
        let mut now = T0;
        let mut last_id = 0;

        for op in ops {
            let (actor, out) = match op {
                Op::Join { conn, name, host } => {
                    match room.join(ConnId(conn), name.as_deref(), host, now) {
                        Ok((you, out)) => {
                            prop_assert!(joined.insert(conn));
                            prop_assert_eq!(room.identity(ConnId(conn)), Some(you));
                            (Some(conn), out)
                        }
                        Err(e) => {
                            let frame = room.error_frame(&e.refusal(), now);
                            (Some(conn), vec![Outgoing::To(ConnId(conn), frame)])
                        }
                    }
                }
                Op::Leave(conn) => {
                    room.leave(ConnId(conn), now);
                    joined.remove(&conn);
                    (None, Vec::new())
                }
                Op::Message(conn, message) => (Some(conn), room.handle(ConnId(conn), message, now)),
                Op::DeleteLast(conn) => {
                    let id = room.last_id();
                    (Some(conn), room.handle(ConnId(conn), ClientMessage::Delete { id }, now))
                }
                Op::Raw(conn, bytes) => (Some(conn), room.handle_frame(ConnId(conn), &bytes, now)),
                Op::Tick => (None, room.tick(now)),
                Op::Advance(dt) => {
                    now += dt;
                    (None, Vec::new())
                }
                Op::StreamStarted => (None, room.stream_started(now)),
                Op::StreamEnded => (None, room.stream_ended(now)),
                Op::Position(p) => {
                    room.set_stream_position(p, now);
                    (None, Vec::new())
                }
                Op::External(n) => {
                    external = n;
                    room.set_external_viewers(n);
                    (None, Vec::new())
                }
            };
            for o in &out {
                let frame: ServerFrame = serde_json::from_slice(o.frame().bytes())
                    .map_err(|e| TestCaseError::fail(format!("{e}: {}", o.frame().as_str())))?;
                prop_assert!(frame.id > last_id, "id {} after {}", frame.id, last_id);
                prop_assert_eq!(frame.id, o.frame().id());
                prop_assert_eq!(frame.ts, now);
                last_id = frame.id;
                if let Outgoing::To(ConnId(to), _) = o {
                    prop_assert!(Some(*to) == actor || joined.contains(to), "frame to stranger {}", to);
                }
            }
            prop_assert!(room.history().len() <= history_len);
            prop_assert_eq!(room.connections(), joined.len());
            prop_assert_eq!(room.viewers(), joined.len() as u64 + external);
            prop_assert_eq!(room.last_id(), last_id);
        }
        room.take_persist();
    }
}
