-- roomcast schema, version 3: room host tokens and the moderation command queue.
--
-- Portable like 0001 (see src/migrate.rs): BIGINT and TEXT only, timestamps as BIGINT unix
-- milliseconds, ids from id_sequences. Both tables reference rooms (id) ON DELETE CASCADE and
-- are listed in ROOM_TABLES, so Store::remove_room deletes their rows explicitly too.

-- Host tokens, at most one per room (the primary key): rotating replaces the row, revoking
-- deletes it. A token reads `rh_<lookup>_<secret>` like a stream key with another prefix:
-- `lookup` is public and finds the row, only SHA-256(secret) is stored (lowercase hex).
CREATE TABLE room_host_tokens (
    room_id BIGINT NOT NULL PRIMARY KEY REFERENCES rooms (id) ON DELETE CASCADE,
    lookup TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

-- Moderation commands for the running server, queued by another process (the CLI).
-- `command` is the JSON of a ModerationRequest (`{"type":"ban","user":"bob"}`, ...).
-- `state` moves pending -> taken (claimed by one server, in the transaction that read it) ->
-- done | failed (`error` holds the message). `taken_ms` and `finished_ms` record when; finished
-- rows are pruned by `finished_ms` (Store::prune_moderation).
CREATE TABLE moderation_queue (
    id BIGINT NOT NULL PRIMARY KEY,
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    command TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    created_ms BIGINT NOT NULL,
    taken_ms BIGINT,
    finished_ms BIGINT
);

CREATE INDEX moderation_queue_state ON moderation_queue (state, id);
CREATE INDEX moderation_queue_room ON moderation_queue (room_id);

INSERT INTO id_sequences (name, last_id) VALUES ('moderation_queue', 0);
