-- (PostgreSQL) Keep in step with ../../sqlite/ (same names).
-- Who made each admin an admin, and since when: the two-admin rules (recovery and admin
-- invitations) never count an admin as second to the one who made them admin, nor one made
-- admin after the request was opened. See docs/decisions.md.
ALTER TABLE users ADD COLUMN admin_since BIGINT;
-- The actor that created the invitation (`user:<id>`, `cli`, `system` for the bootstrap
-- link) and the second admin who approved it (`user:<id>`), when one had to.
ALTER TABLE users ADD COLUMN admin_granted_by TEXT;
ALTER TABLE users ADD COLUMN admin_approved_by TEXT;
-- An admin invitation made while two or more admins exist waits for a second admin.
ALTER TABLE invitations ADD COLUMN approved_by TEXT;
ALTER TABLE invitations ADD COLUMN approved_at BIGINT;

-- Admins from before: admin since they joined, made admin by whoever created the link
-- they joined through.
UPDATE users SET admin_since = created_at WHERE role = 'admin';
UPDATE users SET admin_granted_by = (
    SELECT i.created_by FROM invitations i
    WHERE i.used_by = users.id AND i.role = 'admin' AND i.kind IN ('bootstrap', 'invite')
    ORDER BY i.used_at ASC, i.id ASC LIMIT 1
) WHERE role = 'admin';
