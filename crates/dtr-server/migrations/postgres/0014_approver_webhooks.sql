-- Approver webhooks; see the SQLite migration of the same number.
CREATE TABLE approver_notifications (
    deferral_id      TEXT NOT NULL,
    webhook_id       TEXT NOT NULL,
    url              TEXT NOT NULL,
    body             TEXT NOT NULL,
    state            TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_until      BIGINT,
    last_status      INTEGER,
    last_error       TEXT,
    finished_at      BIGINT,
    PRIMARY KEY (deferral_id, webhook_id)
);
CREATE INDEX approver_notifications_due ON approver_notifications (state, next_attempt_at);
