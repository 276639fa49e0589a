-- keygate initial schema (PostgreSQL). Keep in step with ../../sqlite/ (same names).
-- Ids and JSON are TEXT, times are unix seconds (BIGINT), binary is BYTEA.

CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    email        TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    status       TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at   BIGINT NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE credentials (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id),
    credential_id       BYTEA NOT NULL,
    public_key_cose     BYTEA NOT NULL,
    alg                 BIGINT NOT NULL,
    sign_count          BIGINT NOT NULL,
    aaguid              TEXT NOT NULL,
    model               TEXT,
    fips                BOOLEAN NOT NULL,
    firmware            TEXT,
    fmt                 TEXT NOT NULL,
    attestation_kind    TEXT NOT NULL,
    trust_anchor        TEXT,
    trust_anchor_sha256 TEXT,
    leaf_sha256         TEXT,
    chain_json          TEXT NOT NULL,
    attestation_object  BYTEA NOT NULL,
    client_data_json    BYTEA NOT NULL,
    user_verified       BOOLEAN NOT NULL,
    backup_eligible     BOOLEAN NOT NULL,
    phishing_resistant  BOOLEAN NOT NULL,
    policy_version      BIGINT NOT NULL,
    decision_json       TEXT NOT NULL,
    nickname            TEXT NOT NULL,
    enrolled_at         BIGINT NOT NULL,
    enrolled_by         TEXT NOT NULL,
    revoked_at          BIGINT,
    revoked_by          TEXT,
    last_used_at        BIGINT,
    CONSTRAINT credentials_credential_id_key UNIQUE (credential_id)
);
CREATE INDEX credentials_user_id_idx ON credentials (user_id);

CREATE TABLE invitations (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('bootstrap', 'invite', 'recovery')),
    email        TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_by   TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    used_by      TEXT,
    revoked_at   BIGINT,
    CONSTRAINT invitations_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX invitations_created_at_idx ON invitations (created_at);

CREATE TABLE audit_events (
    seq       BIGINT PRIMARY KEY,
    id        TEXT NOT NULL,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    reason    TEXT,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    CONSTRAINT audit_events_id_key UNIQUE (id)
);
CREATE INDEX audit_events_at_idx ON audit_events (at);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, seq);
CREATE INDEX audit_events_action_idx ON audit_events (action, seq);
CREATE INDEX audit_events_subject_idx ON audit_events (subject, seq);

-- The chain head: appends serialise on this single row (UPDATE takes the row lock).
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
