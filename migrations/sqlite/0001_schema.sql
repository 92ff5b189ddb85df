-- Hookscope's schema. Times are microseconds since the Unix epoch, UTC.
--
-- `deliveries` is the record of what arrived, exactly as it arrived. The writer appends each
-- delivery in the transaction whose commit acknowledges it, numbered by `seq` in commit order;
-- a delivery row is never changed afterwards. Indexing follows behind: it groups deliveries into
-- `events` (one per source and envelope id) and links them in `event_deliveries`, and
-- `indexing.indexed_seq` says how far it has got. Everything after it is acknowledged but not
-- listed yet (the API's `pending`).
CREATE TABLE deliveries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    source           TEXT NOT NULL,
    -- What groups deliveries into one event: the envelope id, or the delivery's own id when
    -- the body is not an envelope (such a body is an event of its own).
    dedupe_key       TEXT NOT NULL,
    event_id         TEXT,
    type             TEXT,
    version          TEXT,
    date_occurred    TEXT,
    occurred_at      INTEGER,
    body_kind        TEXT NOT NULL,
    parse_error      TEXT,
    method           TEXT NOT NULL,
    path             TEXT NOT NULL,
    query            TEXT,
    headers          TEXT NOT NULL,
    remote_addr      TEXT,
    received_at      INTEGER NOT NULL,
    size             INTEGER NOT NULL,
    content_type     TEXT,
    body_sha256      BLOB NOT NULL,
    signature        TEXT NOT NULL,
    signature_reason TEXT,
    rejected         INTEGER NOT NULL,
    too_large        INTEGER NOT NULL,
    response_status  INTEGER NOT NULL,
    -- Last, so that reading the other columns never touches a large body's overflow pages.
    body             BLOB NOT NULL
);

CREATE TABLE sources (
    name       TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL
);

-- An event shows its first delivery: that delivery's body (`first_seq`) and its signature
-- verdict. Later deliveries (a sender's retries) add to the counts and the flags.
CREATE TABLE events (
    key              INTEGER PRIMARY KEY,
    source           TEXT NOT NULL,
    dedupe_key       TEXT NOT NULL,
    event_id         TEXT,
    type             TEXT,
    version          TEXT,
    date_occurred    TEXT,
    occurred_at      INTEGER,
    body_kind        TEXT NOT NULL,
    parse_error      TEXT,
    first_seq        INTEGER NOT NULL,
    body_sha256      BLOB NOT NULL,
    body_differs     INTEGER NOT NULL DEFAULT 0,
    received_at      INTEGER NOT NULL,
    last_received_at INTEGER NOT NULL,
    delivery_count   INTEGER NOT NULL DEFAULT 1,
    signature        TEXT NOT NULL,
    valid_deliveries INTEGER NOT NULL,
    verdicts_differ  INTEGER NOT NULL DEFAULT 0,
    UNIQUE (source, dedupe_key)
);
CREATE INDEX events_type_key ON events (type, key);
CREATE INDEX events_received_at ON events (received_at);
CREATE INDEX events_occurred_at ON events (occurred_at);

CREATE TABLE event_deliveries (
    event_key INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (event_key, seq)
) WITHOUT ROWID;

CREATE TABLE indexing (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_seq INTEGER NOT NULL
);
INSERT INTO indexing (id, indexed_seq) VALUES (1, 0);
