-- Dynamic client registration (RFC 7591) and its management (RFC 7592):
-- the registration access token, stored as a SHA-256 like every bearer
-- secret, and the client metadata document as registered.
ALTER TABLE clients ADD COLUMN registration_token_hash TEXT;
ALTER TABLE clients ADD COLUMN metadata TEXT;
