-- Dynamic client registration (RFC 7591) and its management (RFC 7592).
ALTER TABLE clients ADD COLUMN registration_token_hash TEXT;
ALTER TABLE clients ADD COLUMN metadata JSONB;
