-- Callback notifications (DTR-25..30); see the SQLite migration of the
-- same number for the reasoning.
ALTER TABLE deferrals ADD COLUMN code_sealed TEXT;
ALTER TABLE deferrals ADD COLUMN notification_token_sealed TEXT;
ALTER TABLE deferrals ADD COLUMN callback_not_before BIGINT;

CREATE TABLE callbacks (
    deferral_id      TEXT PRIMARY KEY,
    endpoint         TEXT NOT NULL,
    state            TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_until      BIGINT,
    last_status      INTEGER,
    last_error       TEXT,
    finished_at      BIGINT
);
CREATE INDEX callbacks_due ON callbacks (state, next_attempt_at);

-- The resolution and its callback job commit in one transaction.
CREATE FUNCTION dtr_deferral_state_changed() RETURNS trigger AS $$
BEGIN
    IF OLD.state = 'pending' AND NEW.state IN ('approved', 'denied') AND NEW.code_sealed IS NOT NULL THEN
        INSERT INTO callbacks (deferral_id, endpoint, state, created_at, next_attempt_at)
        SELECT NEW.id, c.notification_endpoint, 'pending', COALESCE(NEW.resolved_at, 0),
               GREATEST(COALESCE(NEW.resolved_at, 0), COALESCE(NEW.callback_not_before, 0))
        FROM clients c
        WHERE c.client_id = NEW.client_id AND c.notification_endpoint IS NOT NULL
        ON CONFLICT (deferral_id) DO NOTHING;
    ELSIF NEW.state IN ('cancelled', 'redeemed', 'expired') THEN
        UPDATE callbacks SET state = 'suppressed', finished_at = COALESCE(NEW.redeemed_at, NEW.resolved_at)
        WHERE deferral_id = NEW.id AND state = 'pending' AND lease_until IS NULL;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER deferral_state_changed
AFTER UPDATE OF state ON deferrals
FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
EXECUTE FUNCTION dtr_deferral_state_changed();
