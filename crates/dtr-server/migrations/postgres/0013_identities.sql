-- PostgreSQL twin of sqlite/0013_identities.sql.
-- Approver identities: users' roles (`reviewer`, `admin`), groups and
-- standard claims from `[[users]]`, each list space-separated; personal
-- API tokens of the admin API, stored as their SHA-256 only (the lookup
-- key) and revoked by setting `revoked_at`; and the user a review console
-- session belongs to (NULL for a session opened with the admin token).
ALTER TABLE users ADD COLUMN roles TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN user_groups TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN email TEXT;

CREATE TABLE user_tokens (
    id          TEXT PRIMARY KEY,
    username    TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX user_tokens_username ON user_tokens (username);

ALTER TABLE console_sessions ADD COLUMN username TEXT;
CREATE INDEX console_sessions_username ON console_sessions (username) WHERE username IS NOT NULL;
