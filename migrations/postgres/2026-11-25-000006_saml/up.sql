-- The SAML identity provider (SPEC C5): registered service providers. The registration
-- itself (ACS URLs, NameID format, attribute mapping, context, certificates, options) is
-- JSON text in `settings`, checked by keygate before it is stored; the workspace binding
-- is a column so the database keeps it pointing at a real workspace. Request IDs (replay)
-- and pending requests live in the ephemeral store.
CREATE TABLE saml_service_providers (
    entity_id    TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    settings     TEXT NOT NULL,
    workspace_id TEXT REFERENCES workspaces (id),
    source       TEXT NOT NULL CHECK (source IN ('config', 'admin')),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    disabled_at  BIGINT
);
