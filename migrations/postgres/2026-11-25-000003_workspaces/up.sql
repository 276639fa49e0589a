-- Workspaces (SPEC C6): a vendor's workspace or organisation that sign-ins are forced
-- into. `external_id` is the vendor's own ID (e.g. a ChatGPT workspace ID), carried in
-- assertions as `workspace_id`.
CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    external_id TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('config', 'admin')),
    created_at  BIGINT NOT NULL,
    CONSTRAINT workspaces_external_id_key UNIQUE (external_id)
);

CREATE TABLE workspace_members (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    user_id      TEXT NOT NULL REFERENCES users (id),
    added_at     BIGINT NOT NULL,
    added_by     TEXT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_user_idx ON workspace_members (user_id);
