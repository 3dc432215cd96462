//! Behaviour tests. Each behaviour runs on three databases: a SQLite file in a temporary
//! directory, `sqlite::memory:`, and a fresh schema in the local PostgreSQL
//! (`ROOMCAST_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`; set it to `skip`
//! to skip the PostgreSQL runs, which otherwise fail when the server is unreachable).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use rand::RngCore;
use sqlx::{Connection, Executor};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SqliteFile,
    SqliteMemory,
    Postgres,
}

/// A store on a throwaway database, plus what it takes to reopen and clean it up.
struct TestDb {
    store: Store,
    kind: Kind,
    url: String,
    _dir: Option<tempfile::TempDir>,
    pg_schema: Option<PgSchema>,
}

impl TestDb {
    /// Opens a fresh database of `kind`; `None` if PostgreSQL runs are skipped.
    async fn open(kind: Kind) -> Option<TestDb> {
        let (url, dir, pg_schema) = match kind {
            Kind::SqliteFile => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("roomcast.db").display());
                (url, Some(dir), None)
            }
            Kind::SqliteMemory => ("sqlite::memory:".to_owned(), None, None),
            Kind::Postgres => {
                let base =
                    std::env::var("ROOMCAST_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
                if base == "skip" {
                    eprintln!(
                        "ROOMCAST_TEST_PG_URL=skip: skipping the PostgreSQL run of this test"
                    );
                    return None;
                }
                let schema = PgSchema::create(&base).await;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{}", schema.name);
                (url, None, Some(schema))
            }
        };
        let store = Store::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect {kind:?}: {e}"));
        Some(TestDb {
            store,
            kind,
            url,
            _dir: dir,
            pg_schema,
        })
    }

    /// Whether data outlives the store (false for `sqlite::memory:`).
    fn persistent(&self) -> bool {
        self.kind != Kind::SqliteMemory
    }

    async fn finish(mut self) {
        self.store.close().await;
        if let Some(schema) = self.pg_schema.take() {
            schema.drop_now().await;
        }
    }
}

/// A PostgreSQL schema private to one test; dropped at the end, also when the test panics.
struct PgSchema {
    base_url: String,
    name: String,
    dropped: bool,
}

impl PgSchema {
    async fn create(base_url: &str) -> PgSchema {
        let mut suffix = [0u8; 8];
        rand::rng().fill_bytes(&mut suffix);
        let name = format!("rc_test_{}", hex::encode(suffix));
        let mut conn = sqlx::PgConnection::connect(base_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to PostgreSQL at {} for the store tests: {e}\n\
                 (set ROOMCAST_TEST_PG_URL to another URL, or to `skip` to skip these runs)",
                    dburl::redact(base_url)
                )
            });
        conn.execute(AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .await
            .unwrap();
        conn.close().await.unwrap();
        PgSchema {
            base_url: base_url.to_owned(),
            name,
            dropped: false,
        }
    }

    async fn drop_now(mut self) {
        drop_schema(&self.base_url, &self.name).await;
        self.dropped = true;
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Panicking test: we may be inside a runtime, so drop the schema from another thread.
        let (base, name) = (self.base_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(drop_schema(&base, &name));
        })
        .join();
    }
}

async fn drop_schema(base_url: &str, name: &str) {
    let mut conn = sqlx::PgConnection::connect(base_url).await.unwrap();
    conn.execute(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {name} CASCADE"
    )))
    .await
    .unwrap();
    conn.close().await.unwrap();
}

/// For each behaviour `async fn NAME(db: &TestDb)`, a module `NAME` with one test per database.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;

            async fn run(kind: Kind) {
                let Some(db) = TestDb::open(kind).await else { return };
                super::$name(&db).await;
                db.finish().await;
            }

            #[tokio::test]
            async fn sqlite_file() {
                run(Kind::SqliteFile).await
            }

            #[tokio::test]
            async fn sqlite_memory() {
                run(Kind::SqliteMemory).await
            }

            #[tokio::test]
            async fn postgres() {
                run(Kind::Postgres).await
            }
        }
    )*};
}

on_every_backend!(
    migrations_are_idempotent,
    rooms_create_list_remove,
    invalid_room_names_are_rejected,
    labels_and_titles,
    add_key_then_authorize,
    wrong_or_malformed_keys_do_not_authorize,
    revoked_key_never_authorizes,
    rotate_revokes_old_keys,
    remove_room_deletes_its_keys,
    secrets_never_leave_add_key,
    data_survives_reconnect,
    active_key_ids_in_large_batches,
    concurrent_writers_get_distinct_ids,
);

/// Chat persistence behaviours (messages, bans, gifts, lotteries), on every backend too.
mod chat;
/// Host tokens and the moderation queue, on every backend too.
mod moderation;

fn secret_part(key: &str) -> &str {
    &key[key.len() - key::SECRET_LEN..]
}

async fn migrations_are_idempotent(db: &TestDb) {
    // Again on the same pool...
    migrate::migrator().run(&db.store.pool).await.unwrap();
    // ...and through a second store on the same database, while the first is open.
    if db.persistent() {
        let again = Store::connect(&db.url).await.unwrap();
        again.create_room("from-second").await.unwrap();
        again.close().await;
        assert!(db.store.room("from-second").await.unwrap().is_some());
    }
    let applied: i64 = sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations")
        .fetch_one(&db.store.pool)
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(applied, i64::try_from(migrate::MIGRATIONS.len()).unwrap());
    let sequences = sqlx::query("SELECT name FROM id_sequences ORDER BY name")
        .fetch_all(&db.store.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String, _>("name").unwrap())
        .collect::<Vec<_>>();
    assert_eq!(
        sequences,
        [
            "chat_gifts",
            "chat_lotteries",
            "moderation_queue",
            "rooms",
            "stream_keys"
        ]
    );
}

async fn rooms_create_list_remove(db: &TestDb) {
    let s = &db.store;
    assert_eq!(s.room_count().await.unwrap(), 0);
    assert!(s.list_rooms().await.unwrap().is_empty());

    let main = s.create_room("main").await.unwrap();
    assert_eq!(main.name, "main");
    assert_eq!(main.title, None);
    assert!(main.id > 0);
    assert!(main.created_ms > 1_600_000_000_000, "{}", main.created_ms);
    // Idempotent: the same room back.
    assert_eq!(s.create_room("main").await.unwrap(), main);

    let b = s.create_room("b-room_2").await.unwrap();
    let a = s.create_room("a").await.unwrap();
    assert!(b.id > main.id && a.id > b.id, "ids increase");
    assert_eq!(s.room("main").await.unwrap(), Some(main.clone()));
    assert_eq!(s.room("nope").await.unwrap(), None);
    let names: Vec<String> = s
        .list_rooms()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a", "b-room_2", "main"]);
    assert_eq!(s.room_count().await.unwrap(), 3);

    assert!(s.remove_room("b-room_2").await.unwrap());
    assert!(!s.remove_room("b-room_2").await.unwrap());
    assert!(!s.remove_room("never-was").await.unwrap());
    assert_eq!(s.room("b-room_2").await.unwrap(), None);
    assert_eq!(s.room_count().await.unwrap(), 2);
    // Ids are never reused.
    let c = s.create_room("b-room_2").await.unwrap();
    assert!(c.id > a.id);
}

async fn invalid_room_names_are_rejected(db: &TestDb) {
    let s = &db.store;
    let too_long = "a".repeat(65);
    let bad = [
        "",
        "Main",
        "a b",
        "a/b",
        "../etc",
        "caf\u{e9}",
        "a\n",
        "a.b",
        "%2e",
        too_long.as_str(),
    ];
    for name in bad {
        assert!(!valid_room_name(name), "{name:?}");
        let is_invalid = |r: Result<(), StoreError>| {
            assert!(
                matches!(r, Err(StoreError::InvalidRoomName(_))),
                "{name:?}: {r:?}"
            );
        };
        is_invalid(s.create_room(name).await.map(drop));
        is_invalid(s.room(name).await.map(drop));
        is_invalid(s.remove_room(name).await.map(drop));
        is_invalid(s.add_key(name, None).await.map(drop));
        is_invalid(s.list_keys(Some(name)).await.map(drop));
        is_invalid(s.rotate_keys(name).await.map(drop));
        is_invalid(s.set_room_title(name, None).await.map(drop));
    }
    assert_eq!(s.room_count().await.unwrap(), 0);
    // The message is actionable and cut short for absurd input.
    let err = s
        .create_room(&"X".repeat(10_000))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("a-z, 0-9"), "{err}");
    assert!(err.len() < 300, "{err}");

    for name in ["a", "0", "-", "_", "a-b_c-9", &"z".repeat(64)] {
        assert!(valid_room_name(name), "{name:?}");
        assert_eq!(s.create_room(name).await.unwrap().name, name);
    }
}

async fn labels_and_titles(db: &TestDb) {
    let s = &db.store;
    let k = s
        .add_key("main", Some("studio OBS \u{1f3a5}"))
        .await
        .unwrap();
    let none = s.add_key("main", Some("")).await.unwrap();
    let keys = s.list_keys(Some("main")).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].id, k.id);
    assert_eq!(keys[0].label.as_deref(), Some("studio OBS \u{1f3a5}"));
    assert_eq!(keys[1].id, none.id);
    assert_eq!(keys[1].label, None);

    for bad in ["a\nb", "\u{1b}[31mred", &"x".repeat(129)] {
        let err = s.add_key("main", Some(bad)).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidText { what: "label", .. }),
            "{err:?}"
        );
    }
    assert_eq!(s.list_keys(Some("main")).await.unwrap().len(), 2);

    assert!(s.set_room_title("main", Some("Friday jam")).await.unwrap());
    assert_eq!(
        s.room("main").await.unwrap().unwrap().title.as_deref(),
        Some("Friday jam")
    );
    assert!(s.set_room_title("main", None).await.unwrap());
    assert_eq!(s.room("main").await.unwrap().unwrap().title, None);
    assert!(!s.set_room_title("nope", Some("x")).await.unwrap());
}

async fn add_key_then_authorize(db: &TestDb) {
    let s = &db.store;
    // add_key creates the room.
    let k = s.add_key("studio", Some("OBS")).await.unwrap();
    assert_eq!(k.room, "studio");
    assert!(s.room("studio").await.unwrap().is_some());
    assert_eq!(k.secret.len(), key::KEY_LEN);
    assert!(k.secret.starts_with("rc_"));

    let before = s.list_keys(Some("studio")).await.unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].id, k.id);
    assert_eq!(before[0].room, "studio");
    assert_eq!(before[0].label.as_deref(), Some("OBS"));
    assert_eq!(before[0].last_used_ms, None);
    assert_eq!(before[0].revoked_ms, None);

    let grant = s.authorize_key(&k.secret).await.unwrap();
    assert_eq!(
        grant,
        Some(KeyGrant {
            key_id: k.id,
            room: "studio".into()
        })
    );
    let after = s.list_keys(Some("studio")).await.unwrap();
    let used = after[0].last_used_ms.expect("last_used_ms recorded");
    assert!(used >= after[0].created_ms);

    // A second key for the same room, and a key for another room, stay distinct.
    let k2 = s.add_key("studio", None).await.unwrap();
    let other = s.add_key("other", None).await.unwrap();
    assert_ne!(k2.secret, k.secret);
    assert!(k2.id > k.id);
    assert_eq!(
        s.authorize_key(&k2.secret).await.unwrap().unwrap().key_id,
        k2.id
    );
    assert_eq!(
        s.authorize_key(&other.secret).await.unwrap().unwrap().room,
        "other"
    );
    assert_eq!(s.list_keys(None).await.unwrap().len(), 3);
    assert_eq!(s.list_keys(Some("studio")).await.unwrap().len(), 2);
    assert!(s.list_keys(Some("no-such-room")).await.unwrap().is_empty());
    assert_eq!(
        s.active_key_ids(&[k.id, k2.id, other.id]).await.unwrap(),
        [k.id, k2.id, other.id]
    );
}

async fn wrong_or_malformed_keys_do_not_authorize(db: &TestDb) {
    let s = &db.store;
    let k = s.add_key("main", None).await.unwrap();
    let other = key::generate().unwrap();

    // Right lookup id, wrong secret (well-formed).
    let wrong = format!(
        "{}{}",
        &k.secret[..k.secret.len() - key::SECRET_LEN],
        secret_part(&other.key)
    );
    assert_eq!(wrong.len(), key::KEY_LEN);
    assert_eq!(s.authorize_key(&wrong).await.unwrap(), None);
    // One character off at the very end.
    let mut last_off = k.secret.clone();
    let last = last_off.pop().unwrap();
    last_off.push(if last == 'a' { 'b' } else { 'a' });
    assert_eq!(s.authorize_key(&last_off).await.unwrap(), None);
    // Unknown lookup id with the right secret.
    let moved = format!("rc_{}_{}", other.lookup, secret_part(&k.secret));
    assert_eq!(s.authorize_key(&moved).await.unwrap(), None);
    // Never issued.
    assert_eq!(s.authorize_key(&other.key).await.unwrap(), None);

    let huge = "rc_".repeat(100_000);
    let malformed = [
        String::new(),
        "main".into(),
        k.secret.to_uppercase(),
        format!(" {}", k.secret),
        format!("{}\n", k.secret),
        format!("{}?sig=1", k.secret),
        k.secret[..k.secret.len() - 1].to_string(),
        k.secret.replace('_', "-"),
        "rc_\u{e9}\u{e9}\u{e9}\u{e9}_".repeat(4),
        "\0".repeat(key::KEY_LEN),
        huge,
    ];
    for m in &malformed {
        assert_eq!(
            s.authorize_key(m).await.unwrap(),
            None,
            "{:?}",
            &m[..m.len().min(60)]
        );
    }
    // Failed attempts do not count as use.
    assert_eq!(s.list_keys(None).await.unwrap()[0].last_used_ms, None);
    // The real key still works.
    assert!(s.authorize_key(&k.secret).await.unwrap().is_some());
}

async fn revoked_key_never_authorizes(db: &TestDb) {
    let s = &db.store;
    let k1 = s.add_key("main", None).await.unwrap();
    let k2 = s.add_key("main", None).await.unwrap();
    assert!(s.authorize_key(&k1.secret).await.unwrap().is_some());

    assert!(s.revoke_key(k1.id).await.unwrap());
    assert!(!s.revoke_key(k1.id).await.unwrap(), "already revoked");
    assert!(!s.revoke_key(999_999).await.unwrap(), "no such key");
    assert_eq!(s.authorize_key(&k1.secret).await.unwrap(), None);
    assert_eq!(s.authorize_key(&k1.secret).await.unwrap(), None);
    assert!(s.authorize_key(&k2.secret).await.unwrap().is_some());

    assert_eq!(
        s.active_key_ids(&[k1.id, k2.id, 999_999]).await.unwrap(),
        [k2.id]
    );
    assert_eq!(
        s.active_key_ids(&[k2.id, k2.id, k1.id]).await.unwrap(),
        [k2.id]
    );
    assert!(s.active_key_ids(&[]).await.unwrap().is_empty());

    let keys = s.list_keys(Some("main")).await.unwrap();
    let info1 = keys.iter().find(|i| i.id == k1.id).unwrap();
    assert!(info1.revoked_ms.is_some());
    assert!(info1.last_used_ms.is_some(), "history is kept");
    assert_eq!(
        keys.iter().find(|i| i.id == k2.id).unwrap().revoked_ms,
        None
    );
}

async fn rotate_revokes_old_keys(db: &TestDb) {
    let s = &db.store;
    let old1 = s.add_key("main", Some("one")).await.unwrap();
    let old2 = s.add_key("main", Some("two")).await.unwrap();
    let elsewhere = s.add_key("other", None).await.unwrap();

    let new = s.rotate_keys("main").await.unwrap();
    assert_eq!(new.room, "main");
    assert!(new.id > old2.id);
    assert_eq!(s.authorize_key(&old1.secret).await.unwrap(), None);
    assert_eq!(s.authorize_key(&old2.secret).await.unwrap(), None);
    assert_eq!(
        s.authorize_key(&new.secret).await.unwrap().unwrap().key_id,
        new.id
    );
    assert!(s.authorize_key(&elsewhere.secret).await.unwrap().is_some());
    assert_eq!(
        s.active_key_ids(&[old1.id, old2.id, new.id, elsewhere.id])
            .await
            .unwrap(),
        [elsewhere.id, new.id]
    );
    let keys = s.list_keys(Some("main")).await.unwrap();
    assert_eq!(keys.len(), 3);
    assert!(
        keys.iter()
            .filter(|k| k.id != new.id)
            .all(|k| k.revoked_ms.is_some())
    );

    // Rotating again revokes the previous new key.
    let newer = s.rotate_keys("main").await.unwrap();
    assert_eq!(
        s.active_key_ids(&[new.id, newer.id]).await.unwrap(),
        [newer.id]
    );

    // A missing room is an error, and is not created.
    let err = s.rotate_keys("typo").await.unwrap_err();
    assert!(
        matches!(err, StoreError::RoomNotFound(ref r) if r == "typo"),
        "{err:?}"
    );
    assert_eq!(s.room("typo").await.unwrap(), None);
    // A room without keys just gets one.
    s.create_room("empty").await.unwrap();
    let first = s.rotate_keys("empty").await.unwrap();
    assert!(s.authorize_key(&first.secret).await.unwrap().is_some());
}

async fn remove_room_deletes_its_keys(db: &TestDb) {
    let s = &db.store;
    let gone1 = s.add_key("gone", None).await.unwrap();
    let gone2 = s.add_key("gone", None).await.unwrap();
    s.revoke_key(gone2.id).await.unwrap();
    let kept = s.add_key("kept", None).await.unwrap();

    assert!(s.remove_room("gone").await.unwrap());
    assert_eq!(s.authorize_key(&gone1.secret).await.unwrap(), None);
    assert_eq!(
        s.active_key_ids(&[gone1.id, kept.id]).await.unwrap(),
        [kept.id]
    );
    let keys = s.list_keys(None).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, kept.id);
    let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM stream_keys")
        .fetch_one(&s.pool)
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(rows, 1, "rows deleted, not just hidden");
    assert!(!s.revoke_key(gone1.id).await.unwrap());

    // A room of the same name later starts clean, and key ids are not reused.
    let again = s.add_key("gone", None).await.unwrap();
    assert!(again.id > kept.id);
    assert_eq!(s.list_keys(Some("gone")).await.unwrap().len(), 1);
    assert_eq!(s.authorize_key(&gone1.secret).await.unwrap(), None);
}

async fn secrets_never_leave_add_key(db: &TestDb) {
    let s = &db.store;
    let k = s.add_key("main", Some("label")).await.unwrap();
    s.authorize_key(&k.secret).await.unwrap().unwrap();
    let rotated = s.rotate_keys("main").await.unwrap();
    let hash = key::hash_secret(secret_part(&k.secret));
    let forbidden = [
        k.secret.as_str(),
        secret_part(&k.secret),
        hash.as_str(),
        rotated.secret.as_str(),
        secret_part(&rotated.secret),
    ];

    let listed = s.list_keys(None).await.unwrap();
    let json = serde_json::to_string(&listed).unwrap();
    let room_json = serde_json::to_string(&s.list_rooms().await.unwrap()).unwrap();
    let grant = format!("{:?}", s.authorize_key(&rotated.secret).await.unwrap());
    let outputs = [
        json.clone(),
        format!("{listed:?}"),
        room_json,
        format!("{k:?}"),
        format!("{rotated:?}"),
        format!("{s:?}"),
        grant,
    ];
    for out in &outputs {
        for secret in forbidden {
            assert!(!out.contains(secret), "{out} contains a secret");
        }
    }
    assert!(json.contains("\"label\":\"label\""), "{json}");
    assert!(format!("{k:?}").contains("<redacted>"));

    // The database holds the hash of the secret, never the secret itself.
    let rows = sqlx::query("SELECT lookup, secret_hash, label FROM stream_keys")
        .fetch_all(&s.pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        for col in ["lookup", "secret_hash", "label"] {
            let v: Option<String> = row.try_get(col).unwrap();
            let v = v.unwrap_or_default();
            assert!(
                !v.contains(secret_part(&k.secret)),
                "{col} holds the secret"
            );
            assert!(
                !v.contains(secret_part(&rotated.secret)),
                "{col} holds the secret"
            );
        }
    }
}

async fn data_survives_reconnect(db: &TestDb) {
    if !db.persistent() {
        return; // an in-memory database ends with its store
    }
    let k = db.store.add_key("main", Some("kept")).await.unwrap();
    let revoked = db.store.add_key("main", None).await.unwrap();
    db.store.revoke_key(revoked.id).await.unwrap();
    db.store
        .set_room_title("main", Some("Title"))
        .await
        .unwrap();
    db.store.close().await;

    let reopened = Store::connect(&db.url).await.unwrap();
    let room = reopened.room("main").await.unwrap().unwrap();
    assert_eq!(room.title.as_deref(), Some("Title"));
    assert_eq!(reopened.list_keys(None).await.unwrap().len(), 2);
    assert_eq!(
        reopened
            .authorize_key(&k.secret)
            .await
            .unwrap()
            .map(|g| g.key_id),
        Some(k.id)
    );
    assert_eq!(reopened.authorize_key(&revoked.secret).await.unwrap(), None);
    // Ids continue after the reconnect.
    assert!(reopened.add_key("main", None).await.unwrap().id > revoked.id);
    reopened.close().await;
}

async fn active_key_ids_in_large_batches(db: &TestDb) {
    let s = &db.store;
    let a = s.add_key("main", None).await.unwrap();
    let b = s.add_key("main", None).await.unwrap();
    let c = s.add_key("main", None).await.unwrap();
    s.revoke_key(b.id).await.unwrap();
    // More ids than one IN list takes, with the real ones in different chunks.
    let mut ids: Vec<i64> = (1_000..2_300).collect();
    ids.insert(0, c.id);
    ids.push(a.id);
    ids.push(b.id);
    assert_eq!(s.active_key_ids(&ids).await.unwrap(), [a.id, c.id]);
}

async fn concurrent_writers_get_distinct_ids(db: &TestDb) {
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let s = db.store.clone();
            tokio::spawn(async move {
                let room = if i % 2 == 0 { "busy" } else { "busier" };
                s.add_key(room, None).await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap().id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 12);
    assert_eq!(db.store.room_count().await.unwrap(), 2);
    assert_eq!(db.store.list_keys(None).await.unwrap().len(), 12);
}

// ----- connection errors (no database needed, or one that fails) -----

#[tokio::test]
async fn unsupported_url_is_a_clear_error() {
    let err = Store::connect("mysql://root:hunter2@localhost/db")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err:?}");
    assert!(
        msg.contains("sqlite://") && msg.contains("postgres://"),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[tokio::test]
async fn missing_sqlite_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let url = format!("sqlite://{}/roomcast.db", missing.display());
    let err = Store::connect(&url).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(msg.starts_with("cannot open database sqlite://"), "{msg}");
    assert!(
        msg.contains("no-such-dir") && msg.contains("does not exist"),
        "{msg}"
    );
    assert!(
        !missing.exists(),
        "the directory is not created behind the operator's back"
    );
}

#[tokio::test]
async fn sqlite_file_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(mode, "wal");
    store.close().await;
    assert!(path.is_file());

    // `sqlite:FILE` and the default's relative form `sqlite://./DIR/FILE`. The working
    // directory is shared by parallel tests, so reach the temporary directory from it through
    // `..` up to the root.
    let path2 = dir.path().join("other.db");
    let store = Store::connect(&format!("sqlite:{}", path2.display()))
        .await
        .unwrap();
    store.close().await;
    assert!(path2.is_file());
    #[cfg(unix)]
    {
        let cwd = std::env::current_dir().unwrap();
        let up = "../".repeat(cwd.components().count().saturating_sub(1));
        let abs = dir.path().join("relative.db");
        let rel = format!(
            "./{up}{}",
            abs.display().to_string().trim_start_matches('/')
        );
        let store = Store::connect(&format!("sqlite://{rel}")).await.unwrap();
        store.create_room("main").await.unwrap();
        store.close().await;
        assert!(abs.is_file(), "{rel}");
    }
}

#[tokio::test]
async fn missing_postgres_database_is_named() {
    let base = std::env::var("ROOMCAST_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
    if base == "skip" {
        eprintln!("ROOMCAST_TEST_PG_URL=skip: skipping missing_postgres_database_is_named");
        return;
    }
    let (server, _) = base.rsplit_once('/').unwrap();
    let url = format!("{server}/rc_no_such_database");
    let err = Store::connect(&url).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    assert!(msg.starts_with("cannot open database postgres"), "{msg}");
    assert!(
        msg.contains("rc_no_such_database") && msg.contains("does not exist"),
        "{msg}"
    );
}

#[tokio::test]
async fn connect_failure_names_the_database_without_password() {
    // Port 1 on localhost: nothing listens, the connection is refused at once (and retried
    // by the pool until the timeout).
    let err = Store::connect_with_timeout(
        "postgres://alice:hunter2@127.0.0.1:1/roomcast",
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    // The real cause, not the pool's "timed out".
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    assert!(
        msg.starts_with("cannot open database postgres://alice:***@127.0.0.1:1/roomcast: "),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
}

#[tokio::test]
async fn postgres_store_reports_backend_and_redacted_url() {
    let Some(db) = TestDb::open(Kind::Postgres).await else {
        return;
    };
    assert_eq!(db.store.backend(), Backend::Postgres);
    assert_eq!(db.store.backend().to_string(), "postgres");
    assert!(db.store.redacted_url().starts_with("postgres://"));
    db.finish().await;
}
