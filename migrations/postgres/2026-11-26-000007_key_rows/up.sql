-- Every sign-in updates its key's counter, and PostgreSQL writes each update as a new row
-- version. Leave room on each page for the new version beside the old one (a HOT update: no
-- new index entries, and the old version is pruned in place). Most of the attestation
-- evidence stays in the row: PostgreSQL moves values out of line only until a row is under
-- ≈ 2 KB, and a key's row is ≈ 1.7–1.9 KB after that (docs/benchmarks.md).
ALTER TABLE credentials SET (fillfactor = 80);
