-- Keys of ID tokens (OpenID Connect Core 1.0 section 10.1) by JWS
-- algorithm: the RS256 key, made on first use and never replaced, so ID
-- tokens already issued keep verifying across restarts and nodes. (ES256
-- ID tokens use the access token key of signing_keys.)
CREATE TABLE id_token_keys (
    alg          TEXT PRIMARY KEY,
    private_der  BLOB NOT NULL,
    created_at   INTEGER NOT NULL
);
