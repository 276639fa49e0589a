//! The `[oidc]` configuration section and the checks shared by config-declared and
//! admin-created clients.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::oidc::assurance;
use crate::oidc::keys::Algorithm;
use crate::oidc::scope;

/// `[oidc]`: token lifetimes, the workspace claim, key reloading and declared clients.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    pub id_token_ttl_secs: u64,
    pub access_token_ttl_secs: u64,
    /// The end of a refresh-token family (rotation does not extend it).
    pub refresh_token_ttl_secs: u64,
    pub code_ttl_secs: u64,
    /// How long an authorization request waits for the member's key touch.
    pub request_ttl_secs: u64,
    /// Claim (and userinfo member) that carries the client's workspace ID.
    pub workspace_claim: String,
    /// How often each replica looks for a rotated signing-key set in the database.
    pub key_reload_secs: u64,
    /// Token, introspection and revocation requests per client address per minute.
    pub token_requests_per_minute: u64,
    /// How long a device code and its user code live (RFC 8628 `expires_in`).
    pub device_code_ttl_secs: u64,
    /// The polling interval a device is given (RFC 8628 `interval`).
    pub device_poll_interval_secs: u64,
    /// User-code entries (and lookups) at `/device` per address per minute.
    pub device_entries_per_minute: u64,
    /// Lookups of one user code per minute, whoever makes them.
    pub device_code_lookups_per_minute: u64,
    /// Clients declared here are kept in step at start-up (GitOps).
    pub clients: Vec<OidcClientConfig>,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            id_token_ttl_secs: 600,
            access_token_ttl_secs: 600,
            refresh_token_ttl_secs: 12 * 3600,
            code_ttl_secs: 60,
            request_ttl_secs: 600,
            workspace_claim: "workspace_id".into(),
            key_reload_secs: 30,
            token_requests_per_minute: 600,
            device_code_ttl_secs: 600,
            device_poll_interval_secs: 5,
            device_entries_per_minute: 10,
            device_code_lookups_per_minute: 20,
            clients: Vec::new(),
        }
    }
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}

/// A client declared in the config file (`[[oidc.clients]]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcClientConfig {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Scopes the client may ask for (`openid` is always allowed).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub id_token_alg: Algorithm,
    /// keygate's id of the workspace sign-ins are forced into.
    #[serde(default)]
    pub workspace: Option<String>,
    /// A sign-in must meet one of these `acr` values, whatever the request says.
    #[serde(default)]
    pub required_acr: Vec<String>,
    /// A public client (native or browser app): no secret, PKCE only.
    #[serde(default)]
    pub public: bool,
    /// A file holding the client secret (confidential clients).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The name of an environment variable holding the client secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// A `private_key_jwt` client's public keys, a JWKS document (RFC 7517) inline...
    #[serde(default)]
    pub jwks: Option<String>,
    /// ... or in a file. Such a client has no secret.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
}

/// Shortest client secret accepted from configuration: secrets are stored as a fast
/// digest, which is only safe for high-entropy values.
pub const MIN_SECRET_LEN: usize = 32;

impl OidcClientConfig {
    /// The client's JWKS, from its file or inline, checked (`None` without one).
    pub fn jwks_document(&self) -> Result<Option<String>, String> {
        let text = match (&self.jwks, &self.jwks_file) {
            (None, None) => return Ok(None),
            (Some(inline), _) => inline.clone(),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "oidc.clients `{}`: jwks_file {}: {e}",
                    self.client_id,
                    path.display()
                )
            })?,
        };
        crate::oidc::client_assertion::ClientKeys::parse(&text)
            .map_err(|e| format!("oidc.clients `{}`: {e}", self.client_id))?;
        Ok(Some(text))
    }

    /// The client secret from its file or environment variable (`None` for a public
    /// client). Messages name the source, never the value.
    pub fn secret(&self) -> Result<Option<SecretString>, String> {
        let text = match (&self.secret_file, &self.secret_env) {
            (None, None) => return Ok(None),
            (Some(path), _) => std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "oidc.clients `{}`: secret_file {}: {e}",
                    self.client_id,
                    path.display()
                )
            })?,
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                format!(
                    "oidc.clients `{}`: the environment variable {var} is not set",
                    self.client_id
                )
            })?,
        };
        let secret = text.trim();
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "oidc.clients `{}`: the client secret must be at least {MIN_SECRET_LEN} characters",
                self.client_id
            ));
        }
        Ok(Some(SecretString::from(secret.to_string())))
    }
}

impl OidcConfig {
    /// Checks lifetimes and every declared client; `workspaces` are the ids declared in
    /// the config file (a client may also name one an admin created).
    pub fn validate(&self) -> Result<(), String> {
        for (name, value, min, max) in [
            (
                "oidc.id_token_ttl_secs",
                self.id_token_ttl_secs,
                60,
                24 * 3600,
            ),
            (
                "oidc.access_token_ttl_secs",
                self.access_token_ttl_secs,
                60,
                24 * 3600,
            ),
            (
                "oidc.refresh_token_ttl_secs",
                self.refresh_token_ttl_secs,
                60,
                90 * 24 * 3600,
            ),
            ("oidc.code_ttl_secs", self.code_ttl_secs, 10, 60),
            ("oidc.request_ttl_secs", self.request_ttl_secs, 60, 3600),
            ("oidc.key_reload_secs", self.key_reload_secs, 1, 3600),
            (
                "oidc.device_code_ttl_secs",
                self.device_code_ttl_secs,
                60,
                1800,
            ),
            (
                "oidc.device_poll_interval_secs",
                self.device_poll_interval_secs,
                1,
                60,
            ),
            (
                "oidc.device_entries_per_minute",
                self.device_entries_per_minute,
                1,
                1000,
            ),
            (
                "oidc.device_code_lookups_per_minute",
                self.device_code_lookups_per_minute,
                1,
                1000,
            ),
            (
                "oidc.token_requests_per_minute",
                self.token_requests_per_minute,
                1,
                10_000_000,
            ),
        ] {
            if value < min || value > max {
                return Err(format!("{name} = {value} is outside {min}..={max}"));
            }
        }
        let mut settings = crate::oidc::tokens::TokenSettings::new("https://issuer.invalid");
        settings.workspace_claim = self.workspace_claim.clone();
        settings
            .validate()
            .map_err(|e| format!("oidc.workspace_claim: {e}"))?;
        let mut seen = std::collections::HashSet::new();
        for c in &self.clients {
            let id = &c.client_id;
            if !valid_client_id(id) || !seen.insert(id.as_str()) {
                return Err(format!(
                    "oidc.clients: `{id}` must be a unique client_id of 1 to 128 letters, digits, `.`, `_`, `~` or `-`"
                ));
            }
            check_client(
                &c.name,
                &c.redirect_uris,
                &c.post_logout_redirect_uris,
                &c.scopes,
                &c.required_acr,
            )
            .map_err(|e| format!("oidc.clients `{id}`: {e}"))?;
            let keys = c.jwks.is_some() || c.jwks_file.is_some();
            if c.jwks.is_some() && c.jwks_file.is_some() {
                return Err(format!(
                    "oidc.clients `{id}`: set one of jwks and jwks_file, not both"
                ));
            }
            if c.jwks.is_some() {
                c.jwks_document()?;
            }
            let secrets =
                usize::from(c.secret_file.is_some()) + usize::from(c.secret_env.is_some());
            let problem = match (c.public, keys, secrets) {
                (true, false, 0) | (false, true, 0) | (false, false, 1) => None,
                (true, _, _) => Some("a public client has no secret and no keys (drop secret_file / secret_env / jwks)"),
                (false, true, _) => Some("a private_key_jwt client (jwks) has no secret: drop secret_file / secret_env"),
                (false, false, 0) => Some("a confidential client needs secret_file, secret_env, jwks or jwks_file (or public = true)"),
                (false, false, _) => Some("set one of secret_file and secret_env, not both"),
            };
            if let Some(problem) = problem {
                return Err(format!("oidc.clients `{id}`: {problem}"));
            }
        }
        Ok(())
    }
}

/// `client_id`: 1 to 128 unreserved URL characters.
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Checks what a client registers: a name, redirect URIs keygate may send codes to, known
/// scopes and `acr` values.
pub fn check_client(
    name: &str,
    redirect_uris: &[String],
    post_logout_redirect_uris: &[String],
    scopes: &[String],
    required_acr: &[String],
) -> Result<(), String> {
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err("a client needs a name of at most 100 printable characters".into());
    }
    if redirect_uris.is_empty() {
        return Err("a client needs at least one redirect URI".into());
    }
    if redirect_uris.len() > 20 || post_logout_redirect_uris.len() > 20 {
        return Err("at most 20 redirect URIs of each kind".into());
    }
    for uri in redirect_uris.iter().chain(post_logout_redirect_uris) {
        check_redirect_uri(uri)?;
    }
    for s in scopes {
        if !scope::SUPPORTED.contains(&s.as_str()) && !scope::GRANT_MARKS.contains(&s.as_str()) {
            return Err(format!(
                "unknown scope `{}` (known: {}, and {} for the device grant)",
                s.escape_default(),
                scope::SUPPORTED.join(", "),
                scope::DEVICE_GRANT
            ));
        }
    }
    for a in required_acr {
        if !assurance::understands(a) {
            return Err(format!("unknown acr value `{}`", a.escape_default()));
        }
    }
    Ok(())
}

/// A redirect URI keygate may send a browser to: absolute, no fragment, `https` (plain
/// `http` only to this machine), or a private-use scheme with a dot (RFC 8252 §7.1).
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let shown = || uri.escape_default().to_string();
    if uri.len() > 512 {
        return Err("a redirect URI is longer than 512 characters".into());
    }
    let url = Url::parse(uri).map_err(|e| format!("`{}` is not an absolute URL ({e})", shown()))?;
    if url.fragment().is_some() {
        return Err(format!("`{}` may not have a fragment", shown()));
    }
    // Compared as written at authorization and as parsed at the exchange: the two agree
    // only for a URI already in its parsed form.
    if url.as_str() != uri {
        return Err(format!(
            "`{}` is not written in its canonical form: register it as `{}`",
            shown(),
            url.as_str().escape_default()
        ));
    }
    let host = url.host_str().unwrap_or_default();
    match url.scheme() {
        "https" if !host.is_empty() => Ok(()),
        "http" if matches!(host, "localhost" | "127.0.0.1" | "[::1]") => Ok(()),
        "http" | "https" => Err(format!(
            "`{}` must use https (plain http only to localhost)",
            shown()
        )),
        scheme if scheme.contains('.') => Ok(()),
        _ => Err(format!(
            "`{}`: use https, or a private-use scheme like com.example.app:/callback",
            shown()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris() {
        for ok in [
            "https://rp.example/cb",
            "http://localhost:8000/cb",
            "http://127.0.0.1/cb?x=1",
            "com.example.app:/callback",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://rp.example/cb",
            "https://rp.example/cb#x",
            "/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            // Not in canonical form: the exchange could never match them.
            "https://rp.example",
            "https://RP.example/cb",
            "https://rp.example:443/cb",
            "https://rp.example/a b",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_ids() {
        assert!(valid_client_id("vendor-portal_1.x~"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("a b"));
        assert!(!valid_client_id(&"a".repeat(129)));
    }
}
