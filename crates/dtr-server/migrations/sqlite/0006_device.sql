-- Device authorization grant (RFC 8628). Both codes are stored only as
-- SHA-256 hashes; the user code is single-use and unique while stored.
-- Times are Unix milliseconds.
CREATE TABLE device_codes (
    device_code_hash  TEXT PRIMARY KEY,
    user_code_hash    TEXT NOT NULL UNIQUE,
    client_id         TEXT NOT NULL,
    scope             TEXT NOT NULL,
    deferred_hint     INTEGER NOT NULL,   -- completion_mode=deferred at /device_authorization (DTR-5)
    state             TEXT NOT NULL,      -- pending | approved | denied | redeemed
    username          TEXT,
    session_id_hash   TEXT,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    interval_ms       INTEGER NOT NULL,
    last_polled_at    INTEGER,
    decided_at        INTEGER,
    redeemed_at       INTEGER
);
CREATE INDEX device_codes_expires ON device_codes (expires_at);

-- Wrong user-code entries per login session and per user, counted in a
-- window (RFC 8628 section 5.1: brute-force protection of user codes).
CREATE TABLE device_user_code_failures (
    key           TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL,
    window_start  INTEGER NOT NULL
);
