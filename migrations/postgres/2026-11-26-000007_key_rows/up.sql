-- Every sign-in updates its key's counter, and PostgreSQL writes each update as a new row
-- version. Keep the attestation evidence (most of the row, ≈ 1.7 KB) out of line, so an
-- update copies a narrow row, and leave room on each page for the new version beside the
-- old one (a HOT update: no new index entries, and the old version is pruned in place).
ALTER TABLE credentials SET (fillfactor = 80);
