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
