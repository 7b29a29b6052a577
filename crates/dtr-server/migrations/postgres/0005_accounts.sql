-- PostgreSQL twin of sqlite/0005_accounts.sql.
-- Users, login sessions, consents, authorization requests (including
-- pushed ones, RFC 9126), authorization codes and refresh token families
-- (OAuth 2.1 sections 4.1 and 4.3, RFC 9700 section 4.14). Every bearer
-- secret (session id, code, refresh token, request_uri) is stored as its
-- SHA-256 only.

-- Users synced from `[[users]]`; `admin_disabled` survives restarts.
CREATE TABLE users (
    username        TEXT PRIMARY KEY,
    password_hash   TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL,
    admin_disabled  BOOLEAN NOT NULL DEFAULT FALSE
);

-- Login sessions: the cookie carries the id, the database its hash, so
-- every node sees a logout (DTR-23).
CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    username    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    ended_at    BIGINT
);
CREATE INDEX sessions_username ON sessions (username);

-- One consent per user and client; `id` changes when it is revoked and
-- granted again, so a deferral remembers exactly the consent it relied on.
CREATE TABLE consents (
    username    TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    id          TEXT NOT NULL UNIQUE,
    scope       TEXT NOT NULL,
    granted_at  BIGINT NOT NULL,
    PRIMARY KEY (username, client_id)
);

-- Validated authorization requests waiting for login and consent, and
-- pushed ones (RFC 9126); single use.
CREATE TABLE authorization_requests (
    id_hash     TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    request     JSONB NOT NULL,
    pushed      BOOLEAN NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

-- Authorization codes (OAuth 2.1 section 4.1.2): single use; a replay
-- revokes the family of tokens issued from the code (RFC 9700 section 2.1.1).
CREATE TABLE authorization_codes (
    code_hash   TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    family_id   TEXT NOT NULL,
    grant_data  JSONB NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

-- A family: every access and refresh token descending from one grant.
CREATE TABLE token_families (
    family_id   TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    username    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    family_id   TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    grant_data  JSONB NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

ALTER TABLE access_tokens ADD COLUMN family_id TEXT;
CREATE INDEX access_tokens_family ON access_tokens (family_id) WHERE family_id IS NOT NULL;

-- What the originating grant needs at redemption (user, session, consent,
-- refresh token family): re-checked before a token is issued (DTR-23).
ALTER TABLE deferrals ADD COLUMN grant_context JSONB;

-- RFC 9126 section 6: the client must push its authorization requests.
ALTER TABLE clients ADD COLUMN require_par BOOLEAN NOT NULL DEFAULT FALSE;
