-- DPoP binding of deferrals (DTR-13): the RFC 7638 thumbprint of the key
-- that made the initial request; every poll and revocation must prove it.
ALTER TABLE deferrals ADD COLUMN dpop_jkt TEXT;

-- Single-use identifiers (DPoP proof jti, client assertion jti), kept until
-- they could no longer be accepted anyway. The key is a SHA-256 of the
-- kind, the issuer of the identifier and the identifier.
CREATE TABLE used_jtis (
    key         TEXT PRIMARY KEY,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX used_jtis_expires ON used_jtis (expires_at);

-- RFC 9449 section 5.2 client metadata: the client's access tokens, and so
-- its deferrals, must be DPoP-bound (DTR-14).
ALTER TABLE clients ADD COLUMN dpop_bound_access_tokens INTEGER NOT NULL DEFAULT 0;
