-- Indexes no query reads, written on the hottest paths: the session's key (a sign-in each;
-- ending a key's sessions goes through the member's live sessions, `sessions_user_idx`) and
-- the grant's member and session (an exchanged code each; refresh tokens outlive the session
-- by design, and a member's refresh is checked against the member at refresh time). Each
-- was one more b-tree leaf written per row, at a position per member or per session.
-- A feature that looks rows up by these columns brings its index back with it.
-- See docs/decisions.md.
DROP INDEX sessions_key_idx;
DROP INDEX oidc_grants_user_idx;
DROP INDEX oidc_grants_session_idx;
