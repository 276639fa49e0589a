-- Signed-in sessions: the live record is in the ephemeral store (under token_hash); this
-- table is the durable index (list, end one, end all, end on key revocation) and history.
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id),
    token_hash    TEXT NOT NULL,
    key_id        TEXT,
    user_verified BOOLEAN NOT NULL,
    ip            TEXT,
    user_agent    TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    ended_at      BIGINT,
    ended_by      TEXT
);
CREATE INDEX sessions_user_idx ON sessions (user_id, expires_at);
CREATE INDEX sessions_key_idx ON sessions (key_id);
