//! The chat service end to end, without sockets: fan-out and isolation, slow clients, room
//! lifetimes, shutdown, and persistence through a real store (an SQLite file; PostgreSQL too
//! for the restart test) across a service restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use roomcast_chat::service::{LoadRequest, PersistBatch, RoomSnapshot};
use roomcast_chat::{
    ChatConfig, ChatConnection, ChatError, ChatPersistence, ChatService, CloseReason,
    ModerationCommand, NoPersistence, PersistEvent, RateLimit, ServiceLimits,
};
use roomcast_store::Store;
use serde_json::{Value, json};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

/// No rate limits or cool-downs, so tests can send as fast as they like.
fn config() -> ChatConfig {
    let off = RateLimit {
        max: 0,
        window_ms: 1,
    };
    ChatConfig {
        chat_rate: off,
        danmaku_rate: off,
        gift_rate: off,
        like_rate: off,
        cooldown_ms: 0,
        ..ChatConfig::default()
    }
}

fn service(limits: ServiceLimits) -> ChatService {
    ChatService::new(config(), Arc::new(NoPersistence), limits)
}

async fn next(conn: &mut ChatConnection) -> Value {
    let frame = timeout(WAIT, conn.outgoing.recv())
        .await
        .expect("a frame in time")
        .expect("the connection is open");
    serde_json::from_slice(frame.bytes()).unwrap()
}

/// Frames up to and including the first that matches `stop`.
async fn until(conn: &mut ChatConnection, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let v = next(conn).await;
        let done = stop(&v);
        seen.push(v);
        if done {
            return seen;
        }
    }
}

fn is_chat(text: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v| v["type"] == "chat" && v["text"] == text
}

async fn send(conn: &ChatConnection, frame: Value) {
    conn.inbound
        .send(Bytes::from(frame.to_string()))
        .await
        .unwrap();
}

async fn say(conn: &ChatConnection, text: &str) {
    send(conn, json!({"type": "chat", "text": text})).await;
}

/// Connects and reads the welcome.
async fn join(svc: &ChatService, room: &str, host: bool, name: &str) -> (ChatConnection, Value) {
    let mut conn = svc
        .connect(room, host, Some(name.to_owned()))
        .await
        .unwrap();
    assert_eq!(conn.identity.name, name);
    let welcome = next(&mut conn).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (conn, welcome)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- fan-out ------------------------------------------------------------------------------------

#[tokio::test]
async fn broadcast_reaches_each_member_once_and_nobody_elsewhere() {
    let svc = service(ServiceLimits::default());
    let mut a = Vec::new();
    for i in 0..40 {
        a.push(join(&svc, "room-a", false, &format!("a{i}")).await.0);
    }
    let mut b = Vec::new();
    for i in 0..10 {
        b.push(join(&svc, "room-b", false, &format!("b{i}")).await.0);
    }
    assert_eq!(svc.viewers("room-a"), 40);
    assert_eq!(svc.viewers("room-b"), 10);

    say(&a[0], "hello a").await;
    say(&a[1], "done a").await;
    say(&b[0], "done b").await;

    for conn in &mut a {
        let seen = until(conn, is_chat("done a")).await;
        let hellos: Vec<&Value> = seen.iter().filter(|v| is_chat("hello a")(v)).collect();
        assert_eq!(hellos.len(), 1, "{seen:?}");
        assert_eq!(hellos[0]["user"], "a0");
        assert!(hellos[0]["id"].as_u64().unwrap() > 0);
        assert!(hellos[0]["ts"].as_i64().unwrap() > 1_600_000_000_000);
        assert!(!seen.iter().any(|v| v["text"] == "done b"));
    }
    for conn in &mut b {
        let seen = until(conn, is_chat("done b")).await;
        assert!(
            !seen
                .iter()
                .any(|v| v["type"] == "chat" && v["text"] != "done b"),
            "{seen:?}"
        );
    }
}

#[tokio::test]
async fn one_buffer_is_shared_by_every_receiver() {
    let svc = service(ServiceLimits::default());
    let (mut x, _) = join(&svc, "main", false, "x").await;
    let (mut y, _) = join(&svc, "main", false, "y").await;
    say(&x, "shared").await;
    let frame_of = |conn: &mut ChatConnection| {
        let mut conn_frames = Vec::new();
        while let Ok(f) = conn.outgoing.try_recv() {
            conn_frames.push(f);
        }
        conn_frames
    };
    eventually("both got it", || {
        !x.outgoing.is_empty() && !y.outgoing.is_empty()
    })
    .await;
    let fx = frame_of(&mut x);
    let fy = frame_of(&mut y);
    let find = |fs: &[roomcast_chat::Frame]| {
        fs.iter()
            .find(|f| f.kind() == "chat")
            .cloned()
            .expect("a chat frame")
    };
    let (fx, fy) = (find(&fx), find(&fy));
    assert_eq!(fx.id(), fy.id());
    assert_eq!(
        fx.bytes().as_ptr(),
        fy.bytes().as_ptr(),
        "the same bytes, not a copy per receiver"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_clients_get_every_message_in_order() {
    const CLIENTS: usize = 2_000;
    const MESSAGES: usize = 100;
    let svc = service(ServiceLimits::default());
    let mut readers = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut conn = svc.connect("load", false, None).await.unwrap();
        readers.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(MESSAGES);
            let mut ids = Vec::with_capacity(MESSAGES);
            while got.len() < MESSAGES {
                let v = next(&mut conn).await;
                if v["type"] == "chat" {
                    got.push(v["text"].as_str().unwrap().to_owned());
                    ids.push(v["id"].as_u64().unwrap());
                }
            }
            (got, ids, conn)
        }));
    }
    let sender = svc
        .connect("load", false, Some("sender".into()))
        .await
        .unwrap();
    assert_eq!(svc.viewers("load"), CLIENTS + 1);
    for i in 0..MESSAGES {
        say(&sender, &format!("m{i}")).await;
    }
    let want: Vec<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    let mut first_ids = None;
    let mut conns = Vec::with_capacity(CLIENTS);
    for reader in readers {
        let (got, ids, conn) = timeout(WAIT * 3, reader).await.unwrap().unwrap();
        assert_eq!(got, want);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
        // Everyone saw the same frames.
        match &first_ids {
            None => first_ids = Some(ids),
            Some(first) => assert_eq!(first, &ids),
        }
        conns.push(conn);
    }
    // Nobody was dropped as slow.
    for conn in &mut conns {
        assert_eq!(conn.closed.try_reason(), None);
    }
    assert_eq!(svc.viewers("load"), CLIENTS + 1);
    drop(conns);
    eventually("everyone left", || svc.viewers("load") == 1).await;
}

// ---- slow clients ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_slow_client_is_dropped_and_the_others_keep_receiving() {
    let svc = service(ServiceLimits {
        client_queue: 8,
        ..ServiceLimits::default()
    });
    let (mut slow, _) = join(&svc, "main", false, "slow").await;
    let (mut sender, _) = join(&svc, "main", false, "sender").await;
    let mut readers = Vec::new();
    for i in 0..3 {
        let (mut conn, _) = join(&svc, "main", false, &format!("fast{i}")).await;
        readers.push(tokio::spawn(async move {
            let seen = until(&mut conn, is_chat("m49")).await;
            let texts: Vec<String> = seen
                .iter()
                .filter(|v| v["type"] == "chat")
                .map(|v| v["text"].as_str().unwrap().to_owned())
                .collect();
            (texts, conn)
        }));
    }
    for i in 0..50 {
        // One at a time, so the readers keep up with their small queues; the slow one never
        // reads.
        let text = format!("m{i}");
        say(&sender, &text).await;
        until(&mut sender, is_chat(&text)).await;
    }
    let reason = timeout(WAIT, &mut slow.closed).await.unwrap();
    assert_eq!(reason, CloseReason::SLOW_CONSUMER);
    assert_eq!(reason.code, 4000);
    // Resolved once, stays resolved.
    assert_eq!((&mut slow.closed).await, CloseReason::SLOW_CONSUMER);
    assert_eq!(slow.closed.try_reason(), Some(CloseReason::SLOW_CONSUMER));
    let want: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    for reader in readers {
        let (texts, mut conn) = timeout(WAIT, reader).await.unwrap().unwrap();
        assert_eq!(texts, want);
        assert_eq!(conn.closed.try_reason(), None);
    }
    // The slow client's queue holds what it had, then ends.
    let mut queued = 0;
    while timeout(WAIT, slow.outgoing.recv()).await.unwrap().is_some() {
        queued += 1;
    }
    assert!(queued <= 8, "{queued}");
    // Its frames are ignored now; the room goes on.
    slow.inbound
        .send(Bytes::from_static(br#"{"type":"chat","text":"ghost"}"#))
        .await
        .unwrap();
    assert_eq!(svc.viewers("main"), 4);
}

// ---- joining ----------------------------------------------------------------------------------------

#[tokio::test]
async fn a_taken_name_joins_as_guest_with_an_error_after_the_welcome() {
    let svc = service(ServiceLimits::default());
    let (_alice, _) = join(&svc, "main", false, "alice").await;
    let mut other = svc
        .connect("main", false, Some("ALICE".into()))
        .await
        .unwrap();
    assert!(
        other.identity.name.starts_with("guest-"),
        "{:?}",
        other.identity
    );
    let welcome = next(&mut other).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["you"]["name"], other.identity.name.as_str());
    let error = next(&mut other).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "name_taken");
    // An invalid name likewise.
    let mut bad = svc
        .connect("main", false, Some(" bad\u{202e}".into()))
        .await
        .unwrap();
    assert_eq!(next(&mut bad).await["type"], "welcome");
    assert_eq!(next(&mut bad).await["code"], "invalid_name");
    // Guests when no name is asked for.
    let guest = svc.connect("main", false, None).await.unwrap();
    assert!(guest.identity.name.starts_with("guest-"));

    let err = svc.connect("Bad Room", false, None).await.unwrap_err();
    assert!(matches!(err, ChatError::InvalidRoom(_)), "{err:?}");
}

#[tokio::test]
async fn room_and_service_limits_refuse_politely() {
    let svc = service(ServiceLimits {
        max_rooms: 1,
        max_connections_per_room: 2,
        ..ServiceLimits::default()
    });
    let _a = svc.connect("one", false, None).await.unwrap();
    let _b = svc.connect("one", false, None).await.unwrap();
    let full = svc.connect("one", false, None).await.unwrap_err();
    assert_eq!(full, ChatError::RoomFull { max: 2 });
    let too_many = svc.connect("two", false, None).await.unwrap_err();
    assert_eq!(too_many, ChatError::TooManyRooms { max: 1 });
}

#[tokio::test]
async fn leaving_frees_the_name_and_updates_the_viewer_count() {
    let svc = service(ServiceLimits::default());
    let (alice, _) = join(&svc, "main", false, "alice").await;
    let (mut bob, _) = join(&svc, "main", false, "bob").await;
    svc.set_external_viewers("main", 5);
    eventually("external viewers counted", || svc.viewers("main") == 7).await;
    // Frames sent before leaving are handled before the leave.
    say(&alice, "bye").await;
    drop(alice);
    let seen = until(&mut bob, |v| v["type"] == "presence" && v["viewers"] == 6).await;
    assert!(seen.iter().any(is_chat("bye")), "{seen:?}");
    assert_eq!(svc.viewers("main"), 6);
    let (again, _) = join(&svc, "main", false, "alice").await;
    assert_eq!(again.identity.name, "alice");
}

// ---- room lifetime, stream, moderation ---------------------------------------------------------------

#[tokio::test]
async fn an_idle_room_stops_and_restarts_with_its_stream_state() {
    let persistence = Arc::new(MemoryPersistence::default());
    let svc = ChatService::new(
        config(),
        Arc::clone(&persistence),
        ServiceLimits {
            room_idle_ms: 50,
            ..ServiceLimits::default()
        },
    );
    svc.stream_started("main");
    svc.set_stream_position("main", 40_000);
    svc.set_external_viewers("main", 2);
    let (mut alice, welcome) = join(&svc, "main", false, "alice").await;
    assert_eq!(welcome["live"], true);
    assert_eq!(welcome["viewers"], 3);
    send(
        &alice,
        json!({"type": "danmaku", "text": "wow", "color": "#ff0000"}),
    )
    .await;
    let dm = until(&mut alice, |v| v["type"] == "danmaku")
        .await
        .pop()
        .unwrap();
    let position = dm["position_ms"].as_i64().unwrap();
    assert!(
        (40_000..40_000 + WAIT.as_millis() as i64).contains(&position),
        "{dm}"
    );
    say(&alice, "remember me").await;
    until(&mut alice, is_chat("remember me")).await;
    drop(alice);

    eventually("the idle room stops", || svc.running_rooms() == 0).await;
    assert_eq!(svc.viewers("main"), 2, "external viewers are kept");
    assert_eq!(persistence.loads.load(Ordering::SeqCst), 1);

    let (_bob, welcome) = join(&svc, "main", false, "bob").await;
    assert_eq!(persistence.loads.load(Ordering::SeqCst), 2, "loaded again");
    assert_eq!(welcome["live"], true, "still live after the restart");
    let history = welcome["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["text"], "remember me");
    assert_eq!(welcome["viewers"], 3);
    assert_eq!(svc.running_rooms(), 1);
}

#[tokio::test]
async fn stream_events_reach_the_room() {
    let svc = service(ServiceLimits::default());
    let (mut alice, welcome) = join(&svc, "main", false, "alice").await;
    assert_eq!(welcome["live"], false);
    svc.stream_started("main");
    let started = until(&mut alice, |v| v["type"] == "system")
        .await
        .pop()
        .unwrap();
    assert_eq!(started["event"], "stream_started");
    svc.stream_ended("main");
    let ended = until(&mut alice, |v| v["type"] == "system")
        .await
        .pop()
        .unwrap();
    assert_eq!(ended["event"], "stream_ended");
    // Events for rooms nobody is in are kept for later, and invalid names are ignored.
    svc.stream_started("later");
    svc.stream_started("NOT VALID");
    let (_bob, welcome) = join(&svc, "later", false, "bob").await;
    assert_eq!(welcome["live"], true);
}

#[tokio::test]
async fn moderation_through_the_service() {
    let svc = service(ServiceLimits::default());
    let (mut alice, _) = join(&svc, "main", false, "alice").await;
    let (mut host, _) = join(&svc, "main", true, "Host").await;
    say(&alice, "oops").await;
    let oops = until(&mut alice, is_chat("oops")).await.pop().unwrap();
    let id = oops["id"].as_u64().unwrap();

    svc.moderate(
        "main",
        "operator",
        ModerationCommand::Delete { message_id: id },
    )
    .await
    .unwrap();
    let deleted = until(&mut alice, |v| v["type"] == "delete")
        .await
        .pop()
        .unwrap();
    assert_eq!(deleted["message_id"], id);

    let refused = svc
        .moderate(
            "main",
            "operator",
            ModerationCommand::Delete {
                message_id: id + 1_000_000_000,
            },
        )
        .await
        .unwrap_err();
    let ChatError::Refused(r) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(r.code.as_str(), "not_found");

    svc.moderate(
        "main",
        "operator",
        ModerationCommand::Ban {
            user: "ALICE".into(),
        },
    )
    .await
    .unwrap();
    let identity = until(&mut alice, |v| v["type"] == "identity")
        .await
        .pop()
        .unwrap();
    assert_eq!(identity["you"]["banned"], true);
    say(&alice, "let me talk").await;
    let err = until(&mut alice, |v| v["type"] == "error")
        .await
        .pop()
        .unwrap();
    assert_eq!(err["code"], "banned");
    let notice = until(&mut host, |v| v["type"] == "system")
        .await
        .pop()
        .unwrap();
    assert_eq!(notice["event"], "user_banned");

    // Moderating a room nobody is in starts it.
    svc.moderate(
        "empty",
        "operator",
        ModerationCommand::SlowMode { seconds: 5 },
    )
    .await
    .unwrap();
    let (_c, welcome) = join(&svc, "empty", false, "carol").await;
    assert_eq!(welcome["slow_mode_s"], 5);
}

#[tokio::test]
async fn shutdown_closes_clients_and_refuses_new_ones() {
    let svc = service(ServiceLimits::default());
    let (mut a, _) = join(&svc, "a", false, "alice").await;
    let (mut b, _) = join(&svc, "b", false, "bob").await;
    svc.shutdown().await;
    assert_eq!(
        timeout(WAIT, &mut a.closed).await.unwrap(),
        CloseReason::GOING_AWAY
    );
    assert_eq!(timeout(WAIT, &mut b.closed).await.unwrap().code, 1001);
    assert_eq!(
        svc.connect("a", false, None).await.unwrap_err(),
        ChatError::ShuttingDown
    );
    assert_eq!(svc.running_rooms(), 0);
    assert!(a.inbound.send(Bytes::from_static(b"{}")).await.is_err());
    // A second shutdown is harmless.
    svc.shutdown().await;
}

// ---- persistence that misbehaves ------------------------------------------------------------------------

/// Keeps messages in memory and counts loads; `fail` makes every call fail, `delay` slows
/// every write.
#[derive(Default)]
struct MemoryPersistence {
    history: Mutex<Vec<roomcast_chat::StoredMessage>>,
    loads: AtomicUsize,
    writes: AtomicUsize,
    fail: bool,
    delay: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
#[error("the test database is down")]
struct Down;

impl ChatPersistence for MemoryPersistence {
    type Error = Down;

    async fn load_room(&self, _room: &str, request: LoadRequest) -> Result<RoomSnapshot, Down> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(Down);
        }
        let history = self.history.lock().unwrap();
        let skip = history.len().saturating_sub(request.history_len);
        Ok(RoomSnapshot {
            history: history[skip..].to_vec(),
            ..RoomSnapshot::default()
        })
    }

    async fn persist(&self, _room: &str, batch: &PersistBatch) -> Result<(), Down> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        if self.fail {
            return Err(Down);
        }
        let mut history = self.history.lock().unwrap();
        for event in &batch.events {
            if let PersistEvent::Message(m) = event {
                history.push(m.clone());
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_failing_database_never_stalls_the_room() {
    let persistence = Arc::new(MemoryPersistence {
        fail: true,
        ..MemoryPersistence::default()
    });
    let svc = ChatService::new(
        config(),
        Arc::clone(&persistence),
        ServiceLimits {
            load_attempts: 2,
            persist_attempts: 2,
            persist_retry_ms: 5,
            ..ServiceLimits::default()
        },
    );
    // The load fails twice; the room starts empty.
    let (mut alice, welcome) = join(&svc, "main", false, "alice").await;
    assert_eq!(welcome["history"], json!([]));
    assert_eq!(persistence.loads.load(Ordering::SeqCst), 2);
    for i in 0..20 {
        say(&alice, &format!("m{i}")).await;
    }
    until(&mut alice, is_chat("m19")).await;
    eventually("writes were tried", || {
        persistence.writes.load(Ordering::SeqCst) >= 2
    })
    .await;
    svc.shutdown().await;
}

#[tokio::test]
async fn a_slow_database_never_stalls_the_room() {
    let persistence = Arc::new(MemoryPersistence {
        delay: Some(Duration::from_millis(200)),
        ..MemoryPersistence::default()
    });
    let svc = ChatService::new(
        config(),
        Arc::clone(&persistence),
        ServiceLimits {
            persist_queue: 1,
            persist_backlog: 1_000,
            ..ServiceLimits::default()
        },
    );
    let (mut alice, _) = join(&svc, "main", false, "alice").await;
    for i in 0..200 {
        say(&alice, &format!("m{i}")).await;
    }
    until(&mut alice, is_chat("m199")).await;
    // 200 messages went round while at most a couple of 200 ms writes could finish.
    assert!(persistence.writes.load(Ordering::SeqCst) < 200);
    // Shutdown waits for the backlog: everything is saved, in order.
    svc.shutdown().await;
    let history = persistence.history.lock().unwrap();
    let texts: Vec<String> = history
        .iter()
        .map(|m| match &m.line {
            roomcast_chat::protocol::Line::Chat(l) => l.text.clone(),
            roomcast_chat::protocol::Line::Danmaku(l) => l.text.clone(),
        })
        .collect();
    let want: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, want);
}

// ---- persistence through the real store -------------------------------------------------------------------

/// A store on a fresh SQLite file, with room `main`.
struct SqliteDb {
    _dir: tempfile::TempDir,
    url: String,
}

impl SqliteDb {
    async fn new() -> (SqliteDb, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("roomcast.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.create_room("main").await.unwrap();
        (SqliteDb { _dir: dir, url }, store)
    }

    async fn reopen(&self) -> Store {
        Store::connect(&self.url).await.unwrap()
    }
}

fn store_service(store: &Store) -> ChatService {
    ChatService::new(config(), Arc::new(store.clone()), ServiceLimits::default())
}

/// Chats, restarts the service on a reopened database, and checks the history came back.
async fn history_survives_a_restart(first: Store, reopen: impl AsyncFnOnce() -> Store) {
    let svc = store_service(&first);
    let (mut alice, _) = join(&svc, "main", false, "alice").await;
    svc.stream_started("main");
    for i in 0..3 {
        say(&alice, &format!("line {i} <b>not bold</b>")).await;
    }
    send(
        &alice,
        json!({"type": "danmaku", "text": "fly", "color": "#00FF00", "position_ms": 1}),
    )
    .await;
    let seen = until(&mut alice, |v| v["type"] == "danmaku").await;
    let sent: Vec<Value> = seen
        .into_iter()
        .filter(|v| v["type"] == "chat" || v["type"] == "danmaku")
        .collect();
    assert_eq!(sent.len(), 4);
    svc.shutdown().await;
    first.close().await;

    let store = reopen().await;
    let svc = store_service(&store);
    let (mut bob, welcome) = join(&svc, "main", false, "bob").await;
    let history = welcome["history"].as_array().unwrap();
    assert_eq!(history, &sent, "same ids, ts and fields as the live frames");
    // New ids continue after the old ones.
    say(&bob, "after").await;
    let after = until(&mut bob, is_chat("after")).await.pop().unwrap();
    assert!(after["id"].as_u64().unwrap() > sent[3]["id"].as_u64().unwrap());
    svc.shutdown().await;
    store.close().await;
}

#[tokio::test]
async fn history_survives_a_restart_on_sqlite() {
    let (db, store) = SqliteDb::new().await;
    history_survives_a_restart(store, async || db.reopen().await).await;
}

#[tokio::test]
async fn history_survives_a_restart_on_postgres() {
    let Some(pg) = pg::Schema::create().await else {
        return;
    };
    let store = Store::connect(&pg.url).await.unwrap();
    store.create_room("main").await.unwrap();
    history_survives_a_restart(store, async || Store::connect(&pg.url).await.unwrap()).await;
    pg.drop_now().await;
}

#[tokio::test]
async fn bans_gifts_and_lottery_results_survive_a_restart() {
    let (db, store) = SqliteDb::new().await;
    let svc = store_service(&store);
    svc.stream_started("main");
    let (mut alice, _) = join(&svc, "main", false, "alice").await;
    send(&alice, json!({"type": "gift", "gift": "rose", "count": 3})).await;
    send(&alice, json!({"type": "gift", "gift": "coffee"})).await;
    let gift = until(&mut alice, |v| v["type"] == "gift" && v["gift"] == "coffee")
        .await
        .pop()
        .unwrap();
    assert_eq!(gift["total"], 13);

    svc.moderate(
        "main",
        "Host",
        ModerationCommand::LotteryOpen {
            keyword: "gg".into(),
            duration_s: None,
        },
    )
    .await
    .unwrap();
    say(&alice, "GG").await;
    until(&mut alice, |v| v["event"] == "lottery_entered").await;
    svc.moderate("main", "Host", ModerationCommand::LotteryDraw)
        .await
        .unwrap();
    let result = until(&mut alice, |v| v["type"] == "lottery_result")
        .await
        .pop()
        .unwrap();
    assert_eq!(result["winner"], "alice");
    svc.moderate(
        "main",
        "Host",
        ModerationCommand::Ban {
            user: "Mallory".into(),
        },
    )
    .await
    .unwrap();
    svc.shutdown().await;
    store.close().await;

    let store = db.reopen().await;
    assert_eq!(store.chat_bans("main").await.unwrap()[0].user, "mallory");
    let lotteries = store.lottery_results("main", 10).await.unwrap();
    assert_eq!(lotteries.len(), 1);
    assert_eq!(lotteries[0].record.keyword, "gg");
    assert_eq!(lotteries[0].record.winner.as_deref(), Some("alice"));
    assert_eq!(lotteries[0].record.entrants, 1);
    assert_eq!(lotteries[0].record.opened_by, "Host");

    let svc = store_service(&store);
    // The ban applies to a new connection under the name, in any case.
    let mut mallory = svc
        .connect("main", false, Some("MALLORY".into()))
        .await
        .unwrap();
    assert!(mallory.identity.banned);
    assert_eq!(next(&mut mallory).await["you"]["banned"], true);
    // Gift totals continue where the last stream left them.
    let (mut alice, _) = join(&svc, "main", false, "alice").await;
    send(&alice, json!({"type": "gift", "gift": "rose"})).await;
    let gift = until(&mut alice, |v| v["type"] == "gift")
        .await
        .pop()
        .unwrap();
    assert_eq!(gift["total"], 14, "{gift}");
    assert_eq!(gift["stream_total"], 14);
    assert_eq!(gift["top"][0]["user"], "alice");
    // A new stream starts the board afresh.
    svc.stream_started("main");
    send(&alice, json!({"type": "gift", "gift": "rose"})).await;
    let gift = until(&mut alice, |v| v["type"] == "gift")
        .await
        .pop()
        .unwrap();
    assert_eq!(gift["total"], 1, "{gift}");
    svc.shutdown().await;
    store.close().await;
}

#[tokio::test]
async fn deleted_messages_stay_deleted_after_a_restart() {
    let (db, store) = SqliteDb::new().await;
    let svc = store_service(&store);
    let (mut host, _) = join(&svc, "main", true, "Host").await;
    let (alice, _) = join(&svc, "main", false, "alice").await;
    for text in ["keep 1", "delete me", "keep 2"] {
        say(&alice, text).await;
    }
    let seen = until(&mut host, is_chat("keep 2")).await;
    let doomed = seen.iter().find(|v| is_chat("delete me")(v)).unwrap()["id"].clone();
    // From the host's own socket, as the watch page does it.
    send(&host, json!({"type": "delete", "id": doomed})).await;
    until(&mut host, |v| {
        v["type"] == "delete" && v["message_id"] == doomed
    })
    .await;
    svc.shutdown().await;
    store.close().await;

    let store = db.reopen().await;
    let svc = store_service(&store);
    let (_bob, welcome) = join(&svc, "main", false, "bob").await;
    let texts: Vec<&str> = welcome["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["keep 1", "keep 2"]);
    svc.shutdown().await;
    store.close().await;
}

#[tokio::test]
async fn a_room_missing_from_the_database_still_chats() {
    let (_db, store) = SqliteDb::new().await;
    let svc = store_service(&store);
    let (mut alice, _) = join(&svc, "ghost", false, "alice").await;
    say(&alice, "not saved").await;
    until(&mut alice, is_chat("not saved")).await;
    svc.shutdown().await;
    assert!(
        store.room("ghost").await.unwrap().is_none(),
        "chat creates no rooms"
    );
    store.close().await;
}

/// A private PostgreSQL schema for one test (`ROOMCAST_TEST_PG_URL`, default
/// `postgres://postgres@127.0.0.1:5432/test`; `skip` skips).
mod pg {
    use rand::RngCore;
    use sqlx::{AssertSqlSafe, Connection, Executor};

    pub struct Schema {
        base: String,
        name: String,
        pub url: String,
    }

    impl Schema {
        pub async fn create() -> Option<Schema> {
            let base = std::env::var("ROOMCAST_TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            if base == "skip" {
                eprintln!("ROOMCAST_TEST_PG_URL=skip: skipping the PostgreSQL run");
                return None;
            }
            let mut suffix = [0u8; 8];
            rand::rng().fill_bytes(&mut suffix);
            let name = format!(
                "rc_chat_test_{}",
                suffix
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
            let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
            conn.execute(AssertSqlSafe(format!("CREATE SCHEMA {name}")))
                .await
                .unwrap();
            conn.close().await.unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
            Some(Schema { base, name, url })
        }

        pub async fn drop_now(self) {
            let mut conn = sqlx::PgConnection::connect(&self.base).await.unwrap();
            conn.execute(AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                self.name
            )))
            .await
            .unwrap();
            conn.close().await.unwrap();
        }
    }
}
