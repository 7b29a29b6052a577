-- Token exchange (RFC 8693): the tokens an exchanged token was made from,
-- its subject token and, for a delegation, its actor token. A token is
-- valid only while every token it descends from is (unrevoked, its family
-- unrevoked, its user enabled): each check walks these links up, so a
-- revocation by any node is seen by every node at once, whatever the
-- length of the chain, and a token exchanged a moment after its subject
-- was revoked is born dead. A table rather than one parent_jti column
-- because a delegation has two parents.
CREATE TABLE token_parents (
    jti         TEXT NOT NULL,
    parent_jti  TEXT NOT NULL,
    -- The child's expiry (ms): never later than its parents', so the
    -- links go when the child does.
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (jti, parent_jti)
);
CREATE INDEX token_parents_expires ON token_parents (expires_at);
