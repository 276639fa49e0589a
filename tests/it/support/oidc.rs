//! An OpenID Connect test provider and an independent relying party: a running keygate with
//! three clients (a confidential one bound to the admin's workspace, one bound to another
//! workspace, a public one) and an enrolled admin, and helpers that drive the code flow
//! and verify ID tokens with the `openidconnect` crate against our discovery and JWKS.

use base64::Engine;
use openidconnect::core::{
    CoreGenderClaim, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{AdditionalClaims, ClientId, ClientSecret, IdToken};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::enrolment_http::{trusted_ca, TrustedCa};
use crate::signin_http::{admin_with_key, assertion_body, sign_in};
use crate::support::app::{Client, Reply, TestApp};
use crate::support::authenticator::{SoftAuthenticator, SoftCredential};

pub const CLIENT_ID: &str = "vendor-portal";
pub const REDIRECT: &str = "https://rp.example/cb";
pub const POST_LOGOUT: &str = "https://rp.example/signed-out";
/// Bound to a workspace the admin does not belong to.
pub const OTHER_ID: &str = "other-vendor";
pub const OTHER_REDIRECT: &str = "https://other.example/cb";
pub const PUBLIC_ID: &str = "cli-app";
pub const PUBLIC_REDIRECT: &str = "http://127.0.0.1:7777/callback";
pub const WORKSPACE_EXTERNAL: &str = "ws-acme-42";
pub const ALL_SCOPES: &str = "openid profile email offline_access keygate:key_evidence";

/// A running keygate with three clients and an enrolled admin (attested key, PIN).
pub struct Provider {
    pub app: TestApp,
    pub cred: SoftCredential,
    pub user_id: String,
    pub secret: String,
    /// The config file's text (clients, workspaces, trust), for a replica of this app.
    pub toml: String,
    _ca: Option<TrustedCa>,
    _secret_file: tempfile::NamedTempFile,
}

pub async fn provider() -> Provider {
    provider_with(&[]).await
}

/// [`provider`] with extra `KEYGATE__…` settings.
pub async fn provider_with(settings: &[(&str, &str)]) -> Provider {
    build(Some(trusted_ca()), settings).await
}

/// A provider whose admin enrolled a key keygate cannot attest (its CA is not trusted;
/// policy allows such keys): it signs in, but never earns the phishing-resistant values.
pub async fn unattested_provider() -> Provider {
    build(None, &[("policy.require_trusted_attestation", "false")]).await
}

/// [`unattested_provider`] with more config text.
pub async fn unattested_provider_with_config(extra: &str) -> Provider {
    build_with(
        None,
        &[("policy.require_trusted_attestation", "false")],
        extra,
    )
    .await
}

/// [`provider`] with more config text (e.g. more clients); `SECRET_FILE` in it stands for
/// the path of the file holding the confidential clients' secret.
pub async fn provider_with_config(extra: &str) -> Provider {
    build_with(Some(trusted_ca()), &[], extra).await
}

/// [`provider_with`] and [`provider_with_config`] together.
pub async fn provider_with_settings_and_config(settings: &[(&str, &str)], extra: &str) -> Provider {
    build_with(Some(trusted_ca()), settings, extra).await
}

async fn build(ca: Option<TrustedCa>, settings: &[(&str, &str)]) -> Provider {
    build_with(ca, settings, "").await
}

async fn build_with(ca: Option<TrustedCa>, settings: &[(&str, &str)], extra: &str) -> Provider {
    let untrusted = crate::support::authenticator::TestCa::new("Untrusted");
    let secret = format!("s3cret-{}", crate::support::db::random_hex(24));
    let secret_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(secret_file.path(), format!("{secret}\n")).expect("write secret");
    let toml = format!(
        r#"{ca}
[[workspaces]]
id = "acme"
name = "Acme"
external_id = "{WORKSPACE_EXTERNAL}"
members = ["admin@example.com"]

[[workspaces]]
id = "other"
name = "Other"
external_id = "ws-other-7"

[[oidc.clients]]
client_id = "{CLIENT_ID}"
name = "Vendor portal"
redirect_uris = ["{REDIRECT}"]
post_logout_redirect_uris = ["{POST_LOGOUT}"]
scopes = ["openid", "profile", "email", "offline_access", "keygate:key_evidence"]
workspace = "acme"
secret_file = "{file}"

[[oidc.clients]]
client_id = "{OTHER_ID}"
name = "Other vendor"
redirect_uris = ["{OTHER_REDIRECT}"]
workspace = "other"
secret_file = "{file}"

[[oidc.clients]]
client_id = "{PUBLIC_ID}"
name = "Command-line tool"
redirect_uris = ["{PUBLIC_REDIRECT}"]
scopes = ["openid", "offline_access"]
public = true
{extra}"#,
        ca = ca.as_ref().map(|c| c.toml.as_str()).unwrap_or_default(),
        file = secret_file.path().display(),
        extra = extra.replace("SECRET_FILE", &secret_file.path().display().to_string()),
    );
    let mut builder = TestApp::builder().with_toml(&toml);
    for (k, v) in settings {
        builder = builder.with(k, v);
    }
    let app = builder.start().await;
    let signer = ca.as_ref().map(|c| &c.ca).unwrap_or(&untrusted);
    let (cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(signer)).await;
    Provider {
        app,
        cred,
        user_id,
        secret,
        toml,
        _ca: ca,
        _secret_file: secret_file,
    }
}

impl Provider {
    /// The trusted attestation CA, for more keys that keygate accepts.
    pub fn trusted_ca(&self) -> Option<&crate::support::authenticator::TestCa> {
        self._ca.as_ref().map(|c| &c.ca)
    }

    /// A browser signed in with the admin's key.
    pub async fn browser(&mut self) -> Client {
        let (client, reply) = sign_in(&self.app, &mut self.cred, &self.user_id, None, |_| {}).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        client
    }

    /// A fresh key touch in `browser` (the sign-in page's ceremony).
    pub async fn touch(&mut self, browser: &mut Client) {
        // `?reauth=1`: the sign-in form even for a browser that is signed in.
        let page = browser.get("/?reauth=1").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = crate::support::app::csrf_of(&page.body);
        let options = browser
            .post_json("/api/signin/begin", Some(&csrf), &serde_json::json!({}))
            .await;
        assert_eq!(options.status, 200, "{}", options.body);
        let options = options.json();
        let body = assertion_body(&mut self.cred, &self.app, &options, &self.user_id, |_| {});
        let done = browser
            .post_json("/api/signin/finish", Some(&csrf), &body)
            .await;
        assert_eq!(done.status, 200, "{}", done.body);
    }

    pub fn basic(&self, client_id: &str, secret: &str) -> String {
        let raw = format!("{client_id}:{secret}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// POSTs a form to a token-style endpoint as `client_id` (Basic with the configured
    /// secret for confidential clients, `client_id` in the body for the public one).
    pub async fn post(&self, path: &str, client_id: &str, fields: &[(&str, &str)]) -> Reply {
        if client_id != PUBLIC_ID {
            return self.post_as(path, (client_id, &self.secret), fields).await;
        }
        let mut fields: Vec<(&str, &str)> = fields.to_vec();
        fields.push(("client_id", PUBLIC_ID));
        self.app
            .client()
            .post_with(
                path,
                &[],
                "application/x-www-form-urlencoded",
                form(&fields),
            )
            .await
    }

    /// POSTs a form to a token-style endpoint with `client_secret_basic` for `client_id`
    /// and `secret`.
    pub async fn post_as(
        &self,
        path: &str,
        (client_id, secret): (&str, &str),
        fields: &[(&str, &str)],
    ) -> Reply {
        self.app
            .client()
            .post_with(
                path,
                &[("Authorization", self.basic(client_id, secret))],
                "application/x-www-form-urlencoded",
                form(fields),
            )
            .await
    }

    /// A code for `client_id` in a signed-in `browser`, with a fresh PKCE pair.
    pub async fn code(&self, browser: &mut Client, client_id: &str, scope: &str) -> (String, Pkce) {
        let pkce = Pkce::new();
        let redirect = redirect_for(client_id);
        let r = browser
            .get(&authorize_path(
                client_id,
                redirect,
                scope,
                &pkce.challenge,
                &[("state", "st-1"), ("nonce", "n-1")],
            ))
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
        let loc = location(&self.app, &r);
        let code = param(&loc, "code").unwrap_or_else(|| panic!("no code in {loc}"));
        (code, pkce)
    }

    /// Exchanges a code; asserts success and returns the token response.
    pub async fn exchange(&self, client_id: &str, code: &str, pkce: &Pkce) -> Value {
        let redirect = redirect_for(client_id);
        let r = self
            .post(
                "/oauth2/token",
                client_id,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", redirect),
                    ("code_verifier", &pkce.verifier),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    /// Tokens for the vendor portal with every scope, from a signed-in browser.
    pub async fn tokens(&mut self) -> Value {
        let mut browser = self.browser().await;
        let (code, pkce) = self.code(&mut browser, CLIENT_ID, ALL_SCOPES).await;
        self.exchange(CLIENT_ID, &code, &pkce).await
    }

    pub async fn refresh(&self, client_id: &str, refresh_token: &str) -> Reply {
        self.post(
            "/oauth2/token",
            client_id,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    pub async fn userinfo(&self, access_token: &str) -> Reply {
        self.app
            .client()
            .get_with(
                "/oauth2/userinfo",
                &[("Authorization", format!("Bearer {access_token}"))],
            )
            .await
    }
}

/// The redirect URI each configured client registered.
pub fn redirect_for(client_id: &str) -> &'static str {
    match client_id {
        PUBLIC_ID => PUBLIC_REDIRECT,
        OTHER_ID => OTHER_REDIRECT,
        _ => REDIRECT,
    }
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        let verifier = crate::support::db::random_hex(32);
        let challenge = keygate::oidc::pkce::s256_challenge(&verifier);
        Pkce {
            verifier,
            challenge,
        }
    }
}

pub fn form(fields: &[(&str, &str)]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
        .into_bytes()
}

pub fn authorize_path(
    client_id: &str,
    redirect: &str,
    scope: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", scope)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    q.extend_pairs(extra);
    format!("/oauth2/authorize?{}", q.finish())
}

/// The `Location` of a redirect, made absolute.
pub fn location(app: &TestApp, r: &Reply) -> url::Url {
    let loc = r
        .header("location")
        .unwrap_or_else(|| panic!("no Location ({}): {}", r.status, r.body));
    url::Url::parse(&app.base)
        .unwrap()
        .join(&loc)
        .expect("a URL")
}

pub fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Follows the sign-in detour: the authorization request went to `/?continue=<id>`;
/// touch the key in `browser` and come back. Returns the final redirect.
pub async fn continue_after_touch(p: &mut Provider, browser: &mut Client, detour: &Reply) -> Reply {
    assert_eq!(detour.status, 303, "{}", detour.body);
    let loc = location(&p.app, detour);
    assert_eq!(loc.path(), "/", "{loc}");
    let id = param(&loc, "continue").expect("a continue id");
    let page = browser.get(&format!("/?continue={id}")).await;
    assert_eq!(
        page.status, 200,
        "the sign-in page shows even when signed in"
    );
    assert!(page.body.contains(&format!(
        "data-continue=\"/oauth2/authorize/continue?id={id}\""
    )));
    p.touch(browser).await;
    browser
        .get(&format!("/oauth2/authorize/continue?id={id}"))
        .await
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct KeygateClaims {
    pub workspace_id: Option<String>,
    pub key_aaguid: Option<String>,
    pub key_model: Option<String>,
    pub key_fips: Option<bool>,
    pub sid: Option<String>,
}
impl AdditionalClaims for KeygateClaims {}

pub type RpIdToken = IdToken<
    KeygateClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// What an independent relying party does: discovery, then the JWKS it names, then a
/// verifier for this client.
pub async fn relying_party(
    app: &TestApp,
    client_id: &str,
    secret: &str,
) -> CoreIdTokenVerifier<'static> {
    let mut c = app.client();
    let doc = c.get("/.well-known/openid-configuration").await;
    assert_eq!(doc.status, 200);
    let metadata: CoreProviderMetadata =
        serde_json::from_str(&doc.body).expect("provider metadata");
    assert_eq!(metadata.issuer().as_str(), app.base);
    let jwks_url = metadata.jwks_uri().url().clone();
    assert_eq!(jwks_url.origin().ascii_serialization(), app.base);
    let jwks = c.get(jwks_url.path()).await;
    assert_eq!(jwks.status, 200);
    let jwks: CoreJsonWebKeySet = serde_json::from_str(&jwks.body).expect("JWKS");
    CoreIdTokenVerifier::new_confidential_client(
        ClientId::new(client_id.into()),
        ClientSecret::new(secret.into()),
        metadata.issuer().clone(),
        jwks,
    )
    .set_allowed_algs([
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    ])
}

/// The claims of a compact JWS, unverified (for looking; verification is the RP's job).
pub fn claims_of(token: &str) -> Value {
    part_of(token, 1)
}

/// The protected header of a compact JWS, unverified.
pub fn header_of(token: &str) -> Value {
    part_of(token, 0)
}

fn part_of(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("a compact JWS");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("base64url"),
    )
    .expect("JSON")
}
