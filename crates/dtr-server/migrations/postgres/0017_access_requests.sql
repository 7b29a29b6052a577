-- dtr's own ARAP access request endpoint; see the SQLite migration of the
-- same number.
CREATE TABLE access_requests (
    client_id        TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    body_hash        TEXT NOT NULL,
    deferral_id      TEXT NOT NULL,
    task_sealed      TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    PRIMARY KEY (client_id, idempotency_key)
);
