-- A client's keys for private_key_jwt may live at a URL it controls
-- (RFC 7591 `jwks_uri`), fetched through the SSRF-safe client.
ALTER TABLE clients ADD COLUMN jwks_uri TEXT;
