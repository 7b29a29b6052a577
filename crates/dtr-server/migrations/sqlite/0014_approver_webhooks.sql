-- Approver webhooks: the outbox of notifications sent when a deferral
-- lands in the queue of a group or user a `[[webhooks]]` entry watches.
-- One row per (deferral, webhook), written right after the deferral, so a
-- notification is neither lost nor queued twice across restarts; the
-- body (no code, token or handle) is fixed at enqueue time and signed at
-- each attempt. `webhook_id` is derived from the entry's approvers and URL.
CREATE TABLE approver_notifications (
    deferral_id      TEXT NOT NULL,
    webhook_id       TEXT NOT NULL,
    url              TEXT NOT NULL,
    body             TEXT NOT NULL,
    state            TEXT NOT NULL,      -- pending | delivered | failed
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,   -- the deferral's: no attempt after it
    next_attempt_at  INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_until      INTEGER,            -- set while a node delivers it
    last_status      INTEGER,
    last_error       TEXT,
    finished_at      INTEGER,
    PRIMARY KEY (deferral_id, webhook_id)
);
CREATE INDEX approver_notifications_due ON approver_notifications (state, next_attempt_at);
