-- private_key_jwt clients: their registered public keys, a JWKS document (RFC 7517).
ALTER TABLE oidc_clients ADD COLUMN jwks TEXT;
