-- Events group the deliveries that carry the same envelope id from the same source; a body
-- without an envelope id is an event of its own (its dedupe_key is its delivery's id).
-- Times are microseconds since the Unix epoch, UTC.
CREATE TABLE sources (
    name       TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL
);

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
    body_sha256      BLOB NOT NULL,
    body_differs     INTEGER NOT NULL DEFAULT 0,
    received_at      INTEGER NOT NULL,
    last_received_at INTEGER NOT NULL,
    delivery_count   INTEGER NOT NULL DEFAULT 1,
    signature        TEXT NOT NULL,
    UNIQUE (source, dedupe_key)
);
CREATE INDEX events_type_key ON events (type, key);
CREATE INDEX events_received_at ON events (received_at);
CREATE INDEX events_occurred_at ON events (occurred_at);

CREATE TABLE deliveries (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    event_key        INTEGER NOT NULL REFERENCES events (key),
    source           TEXT NOT NULL,
    method           TEXT NOT NULL,
    path             TEXT NOT NULL,
    query            TEXT,
    headers          TEXT NOT NULL,
    remote_addr      TEXT,
    received_at      INTEGER NOT NULL,
    size             INTEGER NOT NULL,
    content_type     TEXT,
    body             BLOB NOT NULL,
    signature        TEXT NOT NULL,
    signature_reason TEXT,
    rejected         INTEGER NOT NULL,
    too_large        INTEGER NOT NULL,
    body_differs     INTEGER NOT NULL,
    response_status  INTEGER NOT NULL
);
CREATE INDEX deliveries_event_key ON deliveries (event_key, seq);
