-- ARAP access request tasks: one per deferral that an AuthZEN requestable
-- denial sent to an access request service. Written before the deferral
-- (a task without its deferral is dropped by the poller); polled under a
-- lease (`next_poll_at` pushed ahead by the claim). The callback URL's
-- secret path segment is stored only as its SHA-256.
CREATE TABLE authzen_tasks (
    deferral_id      TEXT PRIMARY KEY,
    task_id          TEXT NOT NULL,
    status_endpoint  TEXT NOT NULL,
    cancel_endpoint  TEXT,
    callback_hash    TEXT NOT NULL UNIQUE,
    evaluation       TEXT NOT NULL,      -- JSON: the batch and the submitted indices
    state            TEXT NOT NULL,      -- pending | cancel | done
    next_poll_at     INTEGER NOT NULL,
    polls            INTEGER NOT NULL DEFAULT 0,
    expires_at       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX authzen_tasks_due ON authzen_tasks (state, next_poll_at);
