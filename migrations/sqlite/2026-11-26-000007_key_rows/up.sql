-- PostgreSQL storage parameters for the credentials table (see ../../postgres/); SQLite
-- updates a row in place and has nothing to change.
SELECT 1;
