-- Deferral at the authorization endpoint and signed request objects: the
-- client's opt-ins (config `[[clients]]` keys or RFC 7591 metadata).
ALTER TABLE clients ADD COLUMN deferred_authorization_endpoint BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN require_signed_request_object BOOLEAN NOT NULL DEFAULT FALSE;

-- A deferral that began at the authorization endpoint keeps the
-- authorization request's PKCE challenge (and its redirect URI when the
-- request named one): its first poll must prove the verifier
-- (RFC 7636 section 4.6), which is then recorded as done.
ALTER TABLE deferrals ADD COLUMN pkce_challenge TEXT;
ALTER TABLE deferrals ADD COLUMN pkce_redirect_uri TEXT;
ALTER TABLE deferrals ADD COLUMN pkce_verified_at BIGINT;
-- `completion_mode=deferred_interactive`: the client can send a user to an
-- interaction_uri. Rows from before were all created as interactive.
ALTER TABLE deferrals ADD COLUMN interactive BOOLEAN NOT NULL DEFAULT TRUE;
-- When the interaction was seen to begin (the user opened the page):
-- polls then answer `interaction_pending`.
ALTER TABLE deferrals ADD COLUMN interaction_started_at BIGINT;
