CREATE INDEX sessions_key_idx ON sessions (key_id);
CREATE INDEX oidc_grants_user_idx ON oidc_grants (user_id);
CREATE INDEX oidc_grants_session_idx ON oidc_grants (session_id);
