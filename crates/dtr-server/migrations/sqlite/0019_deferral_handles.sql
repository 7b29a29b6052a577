-- A second handle of a deferral: the auth_req_id that the CIBA bridge
-- gives a deferral of any grant (login_hint_token =
-- urn:dtr:deferral:<deferral_code>). Stored as a SHA-256 like the code
-- (DTR-9); one per deferral; gone with its deferral. The handle and the
-- bearer token of the ping that announces it are kept sealed until the
-- notification is sent (as deferrals keep theirs, DTR-29).
CREATE TABLE deferral_handles (
    handle_hash  TEXT PRIMARY KEY,
    deferral_id  TEXT NOT NULL UNIQUE REFERENCES deferrals (id) ON DELETE CASCADE,
    client_id    TEXT NOT NULL,
    handle_sealed TEXT,
    token_sealed TEXT,
    created_at   INTEGER NOT NULL
);

-- The token response of a CIBA push (CIBA Core 1.0 section 10.3.1),
-- sealed, written before the redemption it records commits: a retry
-- after a failed delivery sends the same response again, and a crash
-- before the redemption committed leaves a payload whose token was never
-- valid, which the retry replaces. Deleted once delivered.
CREATE TABLE ciba_push_payloads (
    deferral_id     TEXT PRIMARY KEY REFERENCES deferrals (id) ON DELETE CASCADE,
    payload_sealed  TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
