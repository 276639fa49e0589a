-- PostgreSQL drops the grant's foreign keys (see ../../postgres/). SQLite checks them with
-- an in-process index probe, no lock and no query, and cannot drop a constraint without
-- rebuilding the table under its refresh tokens: kept.
SELECT 1;
