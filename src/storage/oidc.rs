//! The OpenID Connect provider's durable state: clients, grants and refresh tokens.
//!
//! A grant is what one exchanged authorization code stands for (user, client, session,
//! how the key was touched); every refresh token descends from one grant, so revoking the
//! grant revokes the whole family. Tokens are stored as their SHA-256 only.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::{db_err, StorageError};
use super::prepared::{GrantColumns, InsertGrants, InsertRefreshTokens, RefreshTokenColumns};
use super::schema::{oidc_clients, oidc_grants, oidc_refresh_tokens};
use super::{Storage, Tx};

/// A registered OpenID Connect client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcClient {
    pub client_id: String,
    pub name: String,
    /// Hex SHA-256 of the client secret; `None` for a public client.
    #[serde(skip_serializing)]
    pub secret_sha256: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub allowed_scopes: Vec<String>,
    /// `ES256` or `RS256`.
    pub id_token_alg: String,
    /// The workspace sign-ins for this client are forced into.
    pub workspace_id: Option<String>,
    /// `acr` values one of which every sign-in must meet.
    pub required_acr: Vec<String>,
    /// `config` or `admin`.
    pub source: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    /// The public keys a `private_key_jwt` client signs its assertions with (a JWKS
    /// document, kept as its text); such a client has no secret. Shown as a JSON object.
    #[serde(default, with = "jwks_as_json")]
    pub jwks: Option<String>,
}

/// A stored JWKS text shown as the JSON document it is (and read back from one).
mod jwks_as_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(text: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        text.as_deref()
            .map(|t| serde_json::from_str::<Value>(t).unwrap_or_else(|_| Value::from(t)))
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text),
            Some(doc) => Some(doc.to_string()),
        })
    }
}

#[derive(Queryable, Insertable, AsChangeset)]
#[diesel(table_name = oidc_clients, treat_none_as_null = true)]
struct ClientRow {
    client_id: String,
    name: String,
    secret_sha256: Option<String>,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    allowed_scopes: String,
    id_token_alg: String,
    workspace_id: Option<String>,
    required_acr: String,
    source: String,
    created_at: i64,
    disabled_at: Option<i64>,
    jwks: Option<String>,
}

fn to_json(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn from_json(what: &str, s: &str) -> Result<Vec<String>, StorageError> {
    serde_json::from_str(s).map_err(|e| StorageError::corrupt(format!("{what}: {e}")))
}

impl From<&OidcClient> for ClientRow {
    fn from(c: &OidcClient) -> Self {
        ClientRow {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            secret_sha256: c.secret_sha256.clone(),
            redirect_uris: to_json(&c.redirect_uris),
            post_logout_redirect_uris: to_json(&c.post_logout_redirect_uris),
            allowed_scopes: to_json(&c.allowed_scopes),
            id_token_alg: c.id_token_alg.clone(),
            workspace_id: c.workspace_id.clone(),
            required_acr: to_json(&c.required_acr),
            source: c.source.clone(),
            created_at: c.created_at,
            disabled_at: c.disabled_at,
            jwks: c.jwks.clone(),
        }
    }
}

/// PostgreSQL: the clients with these ids that exist ([`super::batched_reads`]).
pub(super) fn clients_by_id(
    conn: &mut diesel::PgConnection,
    ids: &[&String],
) -> Result<Vec<(String, OidcClient)>, StorageError> {
    oidc_clients::table
        .filter(oidc_clients::client_id.eq_any(ids))
        .load::<ClientRow>(conn)
        .map_err(db_err)?
        .into_iter()
        .map(|row| OidcClient::try_from(row).map(|c| (c.client_id.clone(), c)))
        .collect()
}

impl TryFrom<ClientRow> for OidcClient {
    type Error = StorageError;
    fn try_from(r: ClientRow) -> Result<Self, StorageError> {
        Ok(OidcClient {
            redirect_uris: from_json("oidc_clients.redirect_uris", &r.redirect_uris)?,
            post_logout_redirect_uris: from_json(
                "oidc_clients.post_logout_redirect_uris",
                &r.post_logout_redirect_uris,
            )?,
            allowed_scopes: from_json("oidc_clients.allowed_scopes", &r.allowed_scopes)?,
            required_acr: from_json("oidc_clients.required_acr", &r.required_acr)?,
            client_id: r.client_id,
            name: r.name,
            secret_sha256: r.secret_sha256,
            id_token_alg: r.id_token_alg,
            workspace_id: r.workspace_id,
            source: r.source,
            created_at: r.created_at,
            disabled_at: r.disabled_at,
            jwks: r.jwks,
        })
    }
}

/// What one exchanged authorization code stands for; the family of its refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcGrant {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    /// The keygate session the code was issued in.
    pub session_id: Option<String>,
    /// The key that signed that session in.
    pub key_id: Option<String>,
    pub auth_time: i64,
    pub acr: String,
    pub amr: Vec<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// `code_reuse`, `refresh_token_reuse`, `revoked_by_client`, …
    pub revoked_reason: Option<String>,
}

#[derive(Queryable)]
#[diesel(table_name = oidc_grants)]
struct GrantRow {
    id: String,
    user_id: String,
    client_id: String,
    session_id: Option<String>,
    key_id: Option<String>,
    auth_time: i64,
    acr: String,
    amr: String,
    created_at: i64,
    revoked_at: Option<i64>,
    revoked_reason: Option<String>,
}

impl TryFrom<GrantRow> for OidcGrant {
    type Error = StorageError;
    fn try_from(r: GrantRow) -> Result<Self, StorageError> {
        Ok(OidcGrant {
            amr: from_json("oidc_grants.amr", &r.amr)?,
            id: r.id,
            user_id: r.user_id,
            client_id: r.client_id,
            session_id: r.session_id,
            key_id: r.key_id,
            auth_time: r.auth_time,
            acr: r.acr,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
            revoked_reason: r.revoked_reason,
        })
    }
}

/// One refresh token (by digest) of a grant.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = oidc_refresh_tokens)]
pub struct RefreshTokenRecord {
    /// Hex SHA-256 of the token.
    pub digest: String,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    /// What the token stands for, as JSON (the protocol core's refresh record).
    pub record: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// Set when it was exchanged for a new one: presenting it again is reuse.
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Tx<'_> {
    pub fn insert_oidc_client(&mut self, client: &OidcClient) -> Result<(), StorageError> {
        diesel::insert_into(oidc_clients::table)
            .values(ClientRow::from(client))
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(())
    }

    /// Replaces every field of an existing client but `created_at` and `disabled_at`
    /// (a client an admin disabled stays disabled). `false` if there is none.
    pub fn update_oidc_client(&mut self, client: &OidcClient) -> Result<bool, StorageError> {
        let row = ClientRow::from(client);
        let n = diesel::update(oidc_clients::table.find(&client.client_id))
            .set((
                oidc_clients::name.eq(row.name),
                oidc_clients::secret_sha256.eq(row.secret_sha256),
                oidc_clients::redirect_uris.eq(row.redirect_uris),
                oidc_clients::post_logout_redirect_uris.eq(row.post_logout_redirect_uris),
                oidc_clients::allowed_scopes.eq(row.allowed_scopes),
                oidc_clients::id_token_alg.eq(row.id_token_alg),
                oidc_clients::workspace_id.eq(row.workspace_id),
                oidc_clients::required_acr.eq(row.required_acr),
                oidc_clients::source.eq(row.source),
                oidc_clients::jwks.eq(row.jwks),
            ))
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(n > 0)
    }

    pub fn oidc_client(&mut self, client_id: &str) -> Result<Option<OidcClient>, StorageError> {
        oidc_clients::table
            .find(client_id)
            .first::<ClientRow>(self.conn)
            .optional()
            .map_err(db_err)?
            .map(OidcClient::try_from)
            .transpose()
    }

    pub fn list_oidc_clients(&mut self) -> Result<Vec<OidcClient>, StorageError> {
        oidc_clients::table
            .order(oidc_clients::name.asc())
            .load::<ClientRow>(self.conn)
            .map_err(db_err)?
            .into_iter()
            .map(OidcClient::try_from)
            .collect()
    }

    /// Disables a client (it can no longer sign anyone in or get tokens) and revokes
    /// every grant it holds. `false` if it does not exist or was already disabled.
    pub fn disable_oidc_client(&mut self, client_id: &str, at: i64) -> Result<bool, StorageError> {
        self.atomically(|tx| {
            let n = diesel::update(
                oidc_clients::table
                    .find(client_id)
                    .filter(oidc_clients::disabled_at.is_null()),
            )
            .set(oidc_clients::disabled_at.eq(Some(at)))
            .execute(tx.conn)
            .map_err(db_err)?;
            if n == 0 {
                return Ok(false);
            }
            tx.revoke_client_grants(client_id, "client_disabled", at)?;
            Ok(true)
        })
    }

    /// Revokes every live grant of a client (with the tokens issued from them); returns
    /// how many.
    pub fn revoke_client_grants(
        &mut self,
        client_id: &str,
        reason: &str,
        at: i64,
    ) -> Result<usize, StorageError> {
        self.atomically(|tx| {
            let grants: Vec<String> = oidc_grants::table
                .filter(oidc_grants::client_id.eq(client_id))
                .filter(oidc_grants::revoked_at.is_null())
                .select(oidc_grants::id)
                .load(tx.conn)
                .map_err(db_err)?;
            for g in &grants {
                tx.revoke_oidc_grant(g, reason, at)?;
            }
            Ok(grants.len())
        })
    }

    pub fn insert_oidc_grant(&mut self, grant: &OidcGrant) -> Result<(), StorageError> {
        self.insert_grant_row(grant, false).map(|_| ())
    }

    /// Revokes the grant `grant.id` names, or stores `grant` (already revoked) in its place
    /// when its exchange has not written it yet, so that the exchange fails when it does.
    /// Safe when several run at once, with each other and with the exchange: the insert
    /// does nothing where a row with that ID exists (on PostgreSQL it waits for the
    /// transaction that wrote one), then the update revokes whatever is there.
    pub fn revoke_or_reserve_grant(
        &mut self,
        grant: &OidcGrant,
        reason: &str,
        at: i64,
    ) -> Result<(), StorageError> {
        self.atomically(|tx| {
            tx.insert_grant_row(grant, true)?;
            tx.revoke_oidc_grant(&grant.id, reason, at)?;
            Ok(())
        })
    }

    /// Rows inserted: 0 only when `if_absent` and the grant exists.
    fn insert_grant_row(
        &mut self,
        grant: &OidcGrant,
        if_absent: bool,
    ) -> Result<usize, StorageError> {
        // Every column bound (NULLs too): one SQL text, prepared once per connection.
        let g = grant;
        let insert = diesel::insert_into(oidc_grants::table).values((
            oidc_grants::id.eq(&g.id),
            oidc_grants::user_id.eq(&g.user_id),
            oidc_grants::client_id.eq(&g.client_id),
            oidc_grants::session_id.eq(&g.session_id),
            oidc_grants::key_id.eq(&g.key_id),
            oidc_grants::auth_time.eq(g.auth_time),
            oidc_grants::acr.eq(&g.acr),
            oidc_grants::amr.eq(to_json(&g.amr)),
            oidc_grants::created_at.eq(g.created_at),
            oidc_grants::revoked_at.eq(g.revoked_at),
            oidc_grants::revoked_reason.eq(&g.revoked_reason),
        ));
        if !if_absent {
            return insert.execute(self.conn).map_err(db_err);
        }
        let insert = insert.on_conflict_do_nothing();
        match &mut *self.conn {
            super::DbConnection::Pg(pg) => insert.execute(pg),
            super::DbConnection::Sqlite(sqlite) => insert.execute(sqlite),
        }
        .map_err(db_err)
    }

    /// Stores the grant of an exchanged code with the first refresh token issued from it.
    /// In a group commit both wait for the end of the batch, when its grants are inserted
    /// together (one statement per table on PostgreSQL); a grant already there fails the
    /// job with `Conflict` either way.
    pub fn insert_issued_grant(
        &mut self,
        grant: OidcGrant,
        refresh: Option<RefreshTokenRecord>,
    ) -> Result<(), StorageError> {
        match self.batch.as_mut() {
            Some(batch) => {
                batch.grants.push((grant, refresh));
                Ok(())
            }
            None => self.atomically(|tx| tx.insert_grants(vec![(grant, refresh)])),
        }
    }

    /// Inserts the grants the batch's jobs queued.
    pub(super) fn insert_queued_grants(&mut self) -> Result<(), StorageError> {
        match self.batch.as_mut() {
            Some(batch) if !batch.grants.is_empty() => {
                let queued = std::mem::take(&mut batch.grants);
                self.insert_grants(queued)
            }
            _ => Ok(()),
        }
    }

    fn insert_grants(
        &mut self,
        queued: Vec<(OidcGrant, Option<RefreshTokenRecord>)>,
    ) -> Result<(), StorageError> {
        let pg = match &mut *self.conn {
            super::DbConnection::Pg(pg) if queued.len() > 1 => pg,
            _ => {
                for (grant, refresh) in &queued {
                    self.insert_oidc_grant(grant)?;
                    if let Some(r) = refresh {
                        self.insert_refresh_token(r)?;
                    }
                }
                return Ok(());
            }
        };
        let (mut grants, mut refresh) = (GrantColumns::default(), RefreshTokenColumns::default());
        for (g, r) in &queued {
            grants.id.push(g.id.clone());
            grants.user_id.push(g.user_id.clone());
            grants.client_id.push(g.client_id.clone());
            grants.session_id.push(g.session_id.clone());
            grants.key_id.push(g.key_id.clone());
            grants.auth_time.push(g.auth_time);
            grants.acr.push(g.acr.clone());
            grants.amr.push(to_json(&g.amr));
            grants.created_at.push(g.created_at);
            grants.revoked_at.push(g.revoked_at);
            grants.revoked_reason.push(g.revoked_reason.clone());
            if let Some(r) = r {
                refresh.digest.push(r.digest.clone());
                refresh.grant_id.push(r.grant_id.clone());
                refresh.client_id.push(r.client_id.clone());
                refresh.user_id.push(r.user_id.clone());
                refresh.scope.push(r.scope.clone());
                refresh.record.push(r.record.clone());
                refresh.created_at.push(r.created_at);
                refresh.expires_at.push(r.expires_at);
                refresh.used_at.push(r.used_at);
                refresh.revoked_at.push(r.revoked_at);
            }
        }
        InsertGrants(&grants).execute(pg).map_err(db_err)?;
        if !refresh.digest.is_empty() {
            InsertRefreshTokens(&refresh).execute(pg).map_err(db_err)?;
        }
        Ok(())
    }

    pub fn oidc_grant(&mut self, id: &str) -> Result<Option<OidcGrant>, StorageError> {
        oidc_grants::table
            .find(id)
            .first::<GrantRow>(self.conn)
            .optional()
            .map_err(db_err)?
            .map(OidcGrant::try_from)
            .transpose()
    }

    /// Revokes a grant and every refresh token of it. `false` if there is no such grant
    /// or it was already revoked.
    pub fn revoke_oidc_grant(
        &mut self,
        id: &str,
        reason: &str,
        at: i64,
    ) -> Result<bool, StorageError> {
        self.atomically(|tx| {
            let n = diesel::update(
                oidc_grants::table
                    .find(id)
                    .filter(oidc_grants::revoked_at.is_null()),
            )
            .set((
                oidc_grants::revoked_at.eq(Some(at)),
                oidc_grants::revoked_reason.eq(Some(reason)),
            ))
            .execute(tx.conn)
            .map_err(db_err)?;
            diesel::update(
                oidc_refresh_tokens::table
                    .filter(oidc_refresh_tokens::grant_id.eq(id))
                    .filter(oidc_refresh_tokens::revoked_at.is_null()),
            )
            .set(oidc_refresh_tokens::revoked_at.eq(Some(at)))
            .execute(tx.conn)
            .map_err(db_err)?;
            Ok(n > 0)
        })
    }

    pub fn insert_refresh_token(&mut self, r: &RefreshTokenRecord) -> Result<(), StorageError> {
        diesel::insert_into(oidc_refresh_tokens::table)
            .values(r)
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(())
    }

    pub fn refresh_token(
        &mut self,
        digest: &str,
    ) -> Result<Option<RefreshTokenRecord>, StorageError> {
        oidc_refresh_tokens::table
            .find(digest)
            .first(self.conn)
            .optional()
            .map_err(db_err)
    }

    /// Marks a refresh token used, only if it was neither used nor revoked: of two
    /// concurrent exchanges of one token exactly one gets `true`.
    pub fn use_refresh_token(&mut self, digest: &str, at: i64) -> Result<bool, StorageError> {
        let n = diesel::update(
            oidc_refresh_tokens::table
                .find(digest)
                .filter(oidc_refresh_tokens::used_at.is_null())
                .filter(oidc_refresh_tokens::revoked_at.is_null()),
        )
        .set(oidc_refresh_tokens::used_at.eq(Some(at)))
        .execute(self.conn)
        .map_err(db_err)?;
        Ok(n == 1)
    }
}

impl Storage {
    pub fn oidc_client(&self, client_id: &str) -> Result<Option<OidcClient>, StorageError> {
        self.with_conn(|tx| tx.oidc_client(client_id))
    }

    pub fn list_oidc_clients(&self) -> Result<Vec<OidcClient>, StorageError> {
        self.with_conn(|tx| tx.list_oidc_clients())
    }

    pub fn oidc_grant(&self, id: &str) -> Result<Option<OidcGrant>, StorageError> {
        self.with_conn(|tx| tx.oidc_grant(id))
    }

    pub fn refresh_token(&self, digest: &str) -> Result<Option<RefreshTokenRecord>, StorageError> {
        self.with_conn(|tx| tx.refresh_token(digest))
    }
}
