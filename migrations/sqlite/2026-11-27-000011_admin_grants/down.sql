ALTER TABLE invitations DROP COLUMN approved_at;
ALTER TABLE invitations DROP COLUMN approved_by;
ALTER TABLE users DROP COLUMN admin_approved_by;
ALTER TABLE users DROP COLUMN admin_granted_by;
ALTER TABLE users DROP COLUMN admin_since;
