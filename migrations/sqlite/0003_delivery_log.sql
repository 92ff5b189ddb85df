-- The delivery log (server/src/storage/delivery_log.rs) keeps each delivery durable from its
-- acknowledgement until SQLite has it for good. This row holds the id stamped on the log's
-- batches, so that another database's log is never recovered into this one, and the sequence
-- number of the last delivery appended to the inbox: at start-up, everything after it is
-- recovered from the log.
CREATE TABLE delivery_log (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    log_id      BLOB NOT NULL,
    applied_seq INTEGER NOT NULL
);

INSERT INTO delivery_log (id, log_id, applied_seq) VALUES (1, randomblob(16), 0);
