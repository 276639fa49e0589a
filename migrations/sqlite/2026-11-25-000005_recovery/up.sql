-- Recovery of a member who lost every key (SPEC C2): one admin opens a request, a second,
-- different admin approves it; the approval issues a one-time recovery invitation bound to
-- the member. Approval is a conditional UPDATE so two approvals cannot both win.
CREATE TABLE recovery_requests (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id),
    requested_by  TEXT NOT NULL REFERENCES users (id),
    reason        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    approved_by   TEXT REFERENCES users (id),
    approved_at   BIGINT,
    invitation_id TEXT REFERENCES invitations (id),
    completed_at  BIGINT,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'completed')),
    CONSTRAINT recovery_requests_two_admins CHECK (approved_by IS NULL OR approved_by <> requested_by)
);

CREATE INDEX recovery_requests_user ON recovery_requests (user_id);
CREATE INDEX recovery_requests_invitation ON recovery_requests (invitation_id);
