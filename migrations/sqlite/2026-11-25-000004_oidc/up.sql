-- The OpenID Connect provider (SPEC C4): registered clients, the grants a user gave them
-- (one per authorization code exchanged) and the refresh tokens of each grant. Pending
-- authorization requests and codes live in the ephemeral store; tokens are kept only as
-- their SHA-256.
CREATE TABLE oidc_clients (
    client_id                 TEXT PRIMARY KEY NOT NULL,
    name                      TEXT NOT NULL,
    -- Hex SHA-256 of the secret; NULL for a public client (PKCE only).
    secret_sha256             TEXT,
    -- JSON arrays of strings.
    redirect_uris             TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    allowed_scopes            TEXT NOT NULL,
    id_token_alg              TEXT NOT NULL CHECK (id_token_alg IN ('ES256', 'RS256')),
    workspace_id              TEXT REFERENCES workspaces (id),
    required_acr              TEXT NOT NULL,
    source                    TEXT NOT NULL CHECK (source IN ('config', 'admin')),
    created_at                BIGINT NOT NULL,
    disabled_at               BIGINT
);

CREATE TABLE oidc_grants (
    id             TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id),
    client_id      TEXT NOT NULL REFERENCES oidc_clients (client_id),
    session_id     TEXT,
    key_id         TEXT,
    auth_time      BIGINT NOT NULL,
    acr            TEXT NOT NULL,
    -- JSON array of strings.
    amr            TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    revoked_reason TEXT
);
CREATE INDEX oidc_grants_user_idx ON oidc_grants (user_id);
CREATE INDEX oidc_grants_session_idx ON oidc_grants (session_id);

CREATE TABLE oidc_refresh_tokens (
    digest     TEXT PRIMARY KEY NOT NULL,
    grant_id   TEXT NOT NULL REFERENCES oidc_grants (id),
    client_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    scope      TEXT NOT NULL,
    -- What the token stands for (the grant's claims), as JSON.
    record     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
);
CREATE INDEX oidc_refresh_tokens_grant_idx ON oidc_refresh_tokens (grant_id);
