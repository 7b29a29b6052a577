-- PostgreSQL twin of sqlite/0001_init.sql: the same tables and meaning.
-- Times are Unix milliseconds (BIGINT), flags BOOLEAN, JSON documents JSONB.

-- Clients: configured (and later registered) clients. Secrets only as
-- Argon2id PHC strings.
CREATE TABLE clients (
    client_id              TEXT PRIMARY KEY,
    secret_hash            TEXT,
    auth_method            TEXT NOT NULL,
    grant_types            TEXT[] NOT NULL,
    scope                  TEXT NOT NULL,
    redirect_uris          TEXT[] NOT NULL,
    jwks                   JSONB,
    notification_endpoint  TEXT,
    enabled                BOOLEAN NOT NULL,
    admin_disabled         BOOLEAN NOT NULL DEFAULT FALSE
);

-- Deferrals. The code is stored only as its SHA-256 (DTR-9); `id` is the
-- separate opaque identifier reviewers see. Polling state (last_polled_at,
-- slow_down_count) lives here so that every node sees it (DTR-19).
CREATE TABLE deferrals (
    id                       TEXT PRIMARY KEY,
    code_hash                TEXT NOT NULL UNIQUE,
    client_id                TEXT NOT NULL,
    grant_type               TEXT NOT NULL,
    scope                    TEXT NOT NULL,
    granted_scope            TEXT,
    authorization_details    JSONB,
    subject                  TEXT,
    state                    TEXT NOT NULL,
    interaction_handle       TEXT UNIQUE,
    progress                 TEXT,
    deny_reason              TEXT,
    decided_by               TEXT,
    created_at               BIGINT NOT NULL,
    expires_at               BIGINT NOT NULL,
    interval_ms              BIGINT NOT NULL,
    auto_approve_at          BIGINT,
    last_polled_at           BIGINT,
    slow_down_count          INTEGER NOT NULL DEFAULT 0,
    polling_blocked          BOOLEAN NOT NULL DEFAULT FALSE,
    notification_token_hash  TEXT,
    resolved_at              BIGINT,
    redeemed_at              BIGINT
);
CREATE INDEX deferrals_created ON deferrals (created_at);
CREATE INDEX deferrals_state_expires ON deferrals (state, expires_at);
CREATE INDEX deferrals_auto_approve ON deferrals (auto_approve_at) WHERE auto_approve_at IS NOT NULL;

-- Issued access tokens, for revocation and introspection.
CREATE TABLE access_tokens (
    jti          TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL,
    issued_at    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    deferral_id  TEXT
);
CREATE INDEX access_tokens_expires ON access_tokens (expires_at);

-- Signing keys of access tokens; the first row is never replaced.
CREATE TABLE signing_keys (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    private_der  BYTEA NOT NULL,
    created_at   BIGINT NOT NULL
);
