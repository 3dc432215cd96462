-- roomcast schema, version 2: chat history, bans, gifts and lottery results.
--
-- Portable like 0001 (see src/migrate.rs): BIGINT and TEXT only, booleans as 0/1, timestamps
-- as BIGINT unix milliseconds. Every table references rooms (id) ON DELETE CASCADE, and
-- Store::remove_room also deletes their rows explicitly (SQLite enforces foreign keys only when
-- the connection enables them).

-- Chat and danmaku lines. `message_id` is not allocated here: it is the chat core's frame id,
-- unique and increasing per room (it is derived from the clock, below 2^53), so a retried
-- write is recognised by the primary key. A deleted message keeps its row, with `deleted_ms`
-- and `deleted_by` set, for moderation records; history queries skip it. Old rows are pruned
-- by `ts_ms` (Store::prune_chat_messages).
CREATE TABLE chat_messages (
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    message_id BIGINT NOT NULL,
    ts_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    user_name TEXT NOT NULL,
    host BIGINT NOT NULL,
    body TEXT NOT NULL,
    color TEXT,
    position_ms BIGINT,
    deleted_ms BIGINT,
    deleted_by TEXT,
    PRIMARY KEY (room_id, message_id)
);

CREATE INDEX chat_messages_ts ON chat_messages (ts_ms);

-- Bans, per room. `user_key` is the display name trimmed and lower-cased (Unicode), the key the
-- chat compares names by; the application computes it (SQL LOWER() differs between engines).
CREATE TABLE chat_bans (
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_key TEXT NOT NULL,
    banned_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_key)
);

-- Gifts, append-only: one row per gift message. `stream_ms` identifies the stream the gift
-- belongs to (when it started, unix milliseconds; 0 when no stream had started), so per-stream
-- totals are a GROUP BY.
CREATE TABLE chat_gifts (
    id BIGINT NOT NULL PRIMARY KEY,
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    stream_ms BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    gift TEXT NOT NULL,
    gift_count BIGINT NOT NULL,
    gift_value BIGINT NOT NULL,
    ts_ms BIGINT NOT NULL
);

CREATE INDEX chat_gifts_room_stream ON chat_gifts (room_id, stream_ms);

-- Lotteries that ended: drawn (winner NULL when nobody entered) or cancelled.
CREATE TABLE chat_lotteries (
    id BIGINT NOT NULL PRIMARY KEY,
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    keyword TEXT NOT NULL,
    outcome TEXT NOT NULL,
    entrants BIGINT NOT NULL,
    winner TEXT,
    opened_by TEXT NOT NULL,
    closed_by TEXT NOT NULL,
    opened_ms BIGINT NOT NULL,
    closed_ms BIGINT NOT NULL
);

CREATE INDEX chat_lotteries_room ON chat_lotteries (room_id, id);

INSERT INTO id_sequences (name, last_id) VALUES ('chat_gifts', 0), ('chat_lotteries', 0);
