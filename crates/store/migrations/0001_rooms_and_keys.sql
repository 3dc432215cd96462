-- roomcast schema, version 1: rooms and stream keys.
--
-- This file runs unchanged on SQLite and on PostgreSQL (see src/migrate.rs for the rules every
-- migration here follows). In short: only BIGINT and TEXT columns; timestamps are BIGINT unix
-- milliseconds; hashes are lowercase hex TEXT; ids are allocated by the application from
-- id_sequences, never by the engine (INTEGER PRIMARY KEY AUTOINCREMENT is SQLite-only and
-- BIGSERIAL / IDENTITY is PostgreSQL-only).

-- One row per table whose ids the application allocates. `last_id` is the last id handed out;
-- allocation is `UPDATE ... SET last_id = last_id + 1 ... RETURNING last_id` inside the
-- transaction that inserts the row, so ids are unique, increasing, and never reused (even after
-- a delete), on both engines and across processes. A later migration that adds a table adds
-- its row here.
CREATE TABLE id_sequences (
    name TEXT NOT NULL PRIMARY KEY,
    last_id BIGINT NOT NULL
);

INSERT INTO id_sequences (name, last_id) VALUES ('rooms', 0), ('stream_keys', 0);

-- Rooms. `name` is public (URLs, chat) and matches [a-z0-9_-]{1,64}; the application checks it.
-- Later tables (chat history, bans, gifts, lottery) reference rooms(id) ON DELETE CASCADE.
CREATE TABLE rooms (
    id BIGINT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    title TEXT,
    created_ms BIGINT NOT NULL
);

-- Stream keys. A key reads `rc_<lookup>_<secret>`: `lookup` is public and finds the row,
-- only SHA-256(secret) is stored (hex). A revoked key keeps its row (revoked_ms set) so
-- `key list` shows its history; removing the room deletes its keys.
CREATE TABLE stream_keys (
    id BIGINT NOT NULL PRIMARY KEY,
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    lookup TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    label TEXT,
    created_ms BIGINT NOT NULL,
    last_used_ms BIGINT,
    revoked_ms BIGINT
);

CREATE INDEX stream_keys_room_id ON stream_keys (room_id);
