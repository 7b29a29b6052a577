-- dtr's own ARAP access request endpoint: the Idempotency-Key of each
-- submission, per submitting client, with the hash of its canonical body
-- (a repeat with another body is a duplicate_request) and the task id
-- sealed (the task id is the deferral's code, stored elsewhere only as a
-- hash), so that a repeat gets the same task handle.
CREATE TABLE access_requests (
    client_id        TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    body_hash        TEXT NOT NULL,
    deferral_id      TEXT NOT NULL,
    task_sealed      TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    PRIMARY KEY (client_id, idempotency_key)
);
