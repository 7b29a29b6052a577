-- The user a client acts for (`[[clients]] owner`, an agent's principal):
-- who may decide that client's own deferrals at an interaction page.
ALTER TABLE clients ADD COLUMN owner TEXT;

-- Interaction handles are bearer secrets (DTR-11): from now on
-- `interaction_handle` holds only their SHA-256 (the lookup key), and the
-- handle itself is kept sealed (AES-GCM bound to the deferral id, as the
-- callback's code is) only so that polls can repeat the `interaction_uri`
-- (DTR-18). Handles stored in clear before cannot be hashed in SQL on
-- every database we support, so they are dropped: a link issued before
-- this upgrade stops working, its deferral shows as pending to reviewers,
-- who decide it or issue a fresh link (POST /admin/deferrals/{id}/interaction).
ALTER TABLE deferrals ADD COLUMN interaction_handle_sealed TEXT;
UPDATE deferrals SET interaction_handle = NULL WHERE interaction_handle IS NOT NULL;

-- Review console sessions, server-side so that logout, expiry and a new
-- admin token end them. Only the SHA-256 of the session id (the cookie)
-- is stored; `admin_fingerprint` is an HMAC of the admin token keyed by
-- the session id, so a session created under one admin token is refused
-- under another, and the table alone tells nothing about the token.
CREATE TABLE console_sessions (
    id_hash            TEXT PRIMARY KEY,
    admin_fingerprint  TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
