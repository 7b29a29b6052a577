-- Callback notifications (DTR-25..30).
--
-- The code and the client_notification_token must travel in clear in the
-- callback (DTR-26), so for clients with a notification endpoint they are
-- kept sealed (AES-256-GCM, see src/sealed.rs) until the callback is done;
-- the hashes stay the lookup keys.
ALTER TABLE deferrals ADD COLUMN code_sealed TEXT;
ALTER TABLE deferrals ADD COLUMN notification_token_sealed TEXT;
-- Not before: the deferred response has been written, plus a delay (DTR-27).
ALTER TABLE deferrals ADD COLUMN callback_not_before INTEGER;

-- The outbox: one row per resolved deferral, so a resolution is notified
-- at most once except by an explicit retry.
CREATE TABLE callbacks (
    deferral_id      TEXT PRIMARY KEY,
    endpoint         TEXT NOT NULL,
    state            TEXT NOT NULL,      -- pending | delivered | failed | suppressed
    created_at       INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_until      INTEGER,            -- set while a node delivers it
    last_status      INTEGER,
    last_error       TEXT,
    finished_at      INTEGER
);
CREATE INDEX callbacks_due ON callbacks (state, next_attempt_at);

-- The resolution and its callback job commit in one transaction: this
-- trigger runs inside the very UPDATE that decides the deferral, whatever
-- code path made it (reviewer, interaction page, approve_after, consent
-- staleness).
CREATE TRIGGER deferral_resolved_enqueue_callback
AFTER UPDATE OF state ON deferrals
WHEN OLD.state = 'pending' AND NEW.state IN ('approved', 'denied') AND NEW.code_sealed IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO callbacks (deferral_id, endpoint, state, created_at, next_attempt_at)
    SELECT NEW.id, c.notification_endpoint, 'pending', COALESCE(NEW.resolved_at, 0),
           MAX(COALESCE(NEW.resolved_at, 0), COALESCE(NEW.callback_not_before, 0))
    FROM clients c
    WHERE c.client_id = NEW.client_id AND c.notification_endpoint IS NOT NULL;
END;

-- Cancellation (DTR-32), redemption and expiry (DTR-27) suppress a
-- callback whose delivery has not started (no live lease).
CREATE TRIGGER deferral_finished_suppress_callback
AFTER UPDATE OF state ON deferrals
WHEN NEW.state IN ('cancelled', 'redeemed', 'expired')
BEGIN
    UPDATE callbacks SET state = 'suppressed', finished_at = COALESCE(NEW.redeemed_at, NEW.resolved_at)
    WHERE deferral_id = NEW.id AND state = 'pending' AND lease_until IS NULL;
END;
