-- Routing and four eyes: who may decide a deferral (its rule's
-- `approvers`, space-separated as written there; empty: admins and the
-- interaction page's default decider) and how many distinct approvals it
-- needs; the approvals given so far; and the append-only event log of
-- each deferral (the audit trail).
ALTER TABLE deferrals ADD COLUMN approvers TEXT NOT NULL DEFAULT '';
ALTER TABLE deferrals ADD COLUMN approvals_required INTEGER NOT NULL DEFAULT 1;
-- What an approval granted of the requested authorization_details
-- (DTR-24: narrowed per [[authorization_details_types]]), or NULL: as asked.
ALTER TABLE deferrals ADD COLUMN granted_authorization_details JSONB;
-- An approval's `approved_until` (ms): the token never outlives it.
ALTER TABLE deferrals ADD COLUMN approved_until BIGINT;

CREATE TABLE deferral_approvals (
    deferral_id TEXT NOT NULL,
    approver    TEXT NOT NULL,       -- a username, or 'admin' for the admin token
    at          BIGINT NOT NULL,
    scope       TEXT NOT NULL,       -- what this approver allowed (DTR-24)
    approved_until BIGINT,         -- and until when, if they limited it
    authorization_details JSONB,  -- aligned with the request, null where dropped; NULL: as asked
    PRIMARY KEY (deferral_id, approver)
);

CREATE TABLE deferral_events (
    seq         BIGSERIAL PRIMARY KEY,
    deferral_id TEXT NOT NULL,
    type        TEXT NOT NULL,
    actor       TEXT,
    at          BIGINT NOT NULL,
    detail      JSONB
);
CREATE INDEX deferral_events_by_deferral ON deferral_events (deferral_id, seq);
CREATE INDEX deferral_events_by_time ON deferral_events (at);
