-- The inbox keeps each batch of the delivery log as the log encoded it: one row per batch
-- instead of one row of 25 columns per delivery, so the writer's append under load is three
-- values per batch. The writer decodes batches when it indexes them
-- (server/src/storage/inbox.rs).
--
-- Deliveries an earlier version left in its inbox are indexed here first, as that version
-- would have: oldest first, duplicates grouped under the event of their first delivery.
INSERT INTO sources (name, created_at)
    SELECT source, MIN(received_at) FROM inbox GROUP BY source
    ON CONFLICT DO NOTHING;
INSERT INTO events (source, dedupe_key, event_id, type, version, date_occurred, occurred_at,
                    body_kind, parse_error, body_sha256, received_at, last_received_at, signature)
    SELECT source, dedupe_key, event_id, type, version, date_occurred, occurred_at,
           body_kind, parse_error, body_sha256, received_at, received_at, signature
    FROM inbox WHERE true ORDER BY seq
    ON CONFLICT (source, dedupe_key) DO UPDATE SET
        delivery_count = events.delivery_count + 1,
        last_received_at = excluded.received_at,
        signature = excluded.signature,
        body_differs = events.body_differs OR events.body_sha256 <> excluded.body_sha256;
INSERT INTO deliveries (id, event_key, source, method, path, query, headers, remote_addr,
                        received_at, size, content_type, body, signature, signature_reason,
                        rejected, too_large, body_differs, response_status)
    SELECT i.id, e.key, i.source, i.method, i.path, i.query, i.headers, i.remote_addr,
           i.received_at, i.size, i.content_type, i.body, i.signature, i.signature_reason,
           i.rejected, i.too_large, e.body_sha256 <> i.body_sha256, i.response_status
    FROM inbox i JOIN events e ON e.source = i.source AND e.dedupe_key = i.dedupe_key
    ORDER BY i.seq;
DROP TABLE inbox;

CREATE TABLE inbox (
    -- The delivery log's sequence number of the batch's first delivery; the others follow it.
    first_seq INTEGER PRIMARY KEY,
    count     INTEGER NOT NULL,
    -- The deliveries, encoded as in the delivery log (server/src/storage/delivery_log.rs).
    records   BLOB NOT NULL
);
