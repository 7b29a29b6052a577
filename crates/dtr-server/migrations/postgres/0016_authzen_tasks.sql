-- ARAP access request tasks; see the SQLite migration of the same number.
CREATE TABLE authzen_tasks (
    deferral_id      TEXT PRIMARY KEY,
    task_id          TEXT NOT NULL,
    status_endpoint  TEXT NOT NULL,
    cancel_endpoint  TEXT,
    callback_hash    TEXT NOT NULL UNIQUE,
    evaluation       TEXT NOT NULL,
    state            TEXT NOT NULL,
    next_poll_at     BIGINT NOT NULL,
    polls            INTEGER NOT NULL DEFAULT 0,
    expires_at       BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX authzen_tasks_due ON authzen_tasks (state, next_poll_at);
