-- The inbox: where the batching writer appends each delivery before acknowledging it. An
-- append to one table with no secondary index is the cheapest durable write SQLite offers;
-- moving rows from here into `events` and `deliveries` (grouping, indexing) happens in the
-- same transaction when the writer has nothing else waiting, or later when it is idle.
CREATE TABLE inbox (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL,
    source           TEXT NOT NULL,
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
    body             BLOB NOT NULL,
    body_sha256      BLOB NOT NULL,
    signature        TEXT NOT NULL,
    signature_reason TEXT,
    rejected         INTEGER NOT NULL,
    too_large        INTEGER NOT NULL,
    response_status  INTEGER NOT NULL
);
