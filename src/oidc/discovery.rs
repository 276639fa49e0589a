//! The discovery document (`/.well-known/openid-configuration`, OpenID Connect Discovery
//! 1.0 and RFC 8414), built with `openidconnect`'s typed `ProviderMetadata` plus the
//! members it has no fields for (PKCE methods, introspection, revocation, logout, RFC 9207).
//!
//! Build it once at start-up and serve the bytes: nothing in it changes per request.

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthUrl, AuthenticationContextClass, IssuerUrl, JsonWebKeySetUrl,
    ProviderMetadata, ResponseTypes, Scope, TokenUrl, UserInfoUrl,
};
use serde::{Deserialize, Serialize};

use super::assurance;
use super::scope;

/// Discovery members `openidconnect`'s `ProviderMetadata` has no fields for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeygateMetadata {
    pub code_challenge_methods_supported: Vec<String>,
    pub introspection_endpoint: String,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    pub revocation_endpoint: String,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub end_session_endpoint: String,
    pub authorization_response_iss_parameter_supported: bool,
    /// RFC 8628 §4.
    pub device_authorization_endpoint: String,
}

impl AdditionalProviderMetadata for KeygateMetadata {}

/// keygate's provider metadata type.
pub type KeygateProviderMetadata = ProviderMetadata<
    KeygateMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The provider's endpoint URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub userinfo: String,
    pub jwks: String,
    pub introspection: String,
    pub revocation: String,
    pub end_session: String,
    pub device_authorization: String,
}

impl Endpoints {
    /// keygate's paths under the issuer: `/oauth2/authorize`, `/oauth2/token`,
    /// `/oauth2/userinfo`, `/oauth2/jwks`, `/oauth2/introspect`, `/oauth2/revoke`,
    /// `/oauth2/logout`, `/oauth2/device_authorization`.
    pub fn under(issuer: &str) -> Endpoints {
        let base = issuer.trim_end_matches('/');
        let at = |path: &str| format!("{base}/oauth2/{path}");
        Endpoints {
            authorization: at("authorize"),
            token: at("token"),
            userinfo: at("userinfo"),
            jwks: at("jwks"),
            introspection: at("introspect"),
            revocation: at("revoke"),
            end_session: at("logout"),
            device_authorization: at("device_authorization"),
        }
    }
}

/// A URL in the configuration that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("discovery: {name} is not a valid URL ({reason})")]
pub struct DiscoveryError {
    pub name: &'static str,
    pub reason: String,
}

/// Claims keygate can put in ID tokens or userinfo (`workspace_claim` is the configured
/// workspace claim name).
pub fn claims_supported(workspace_claim: &str) -> Vec<String> {
    [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "at_hash",
        "sid",
        "name",
        "email",
        "email_verified",
        "key_aaguid",
        "key_model",
        "key_fips",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(std::iter::once(workspace_claim.to_owned()))
    .collect()
}

/// The provider metadata for `issuer` with these endpoints.
pub fn provider_metadata(
    issuer: &str,
    endpoints: &Endpoints,
    workspace_claim: &str,
) -> Result<KeygateProviderMetadata, DiscoveryError> {
    let url_err = |name: &'static str| {
        move |e: url::ParseError| DiscoveryError {
            name,
            reason: e.to_string(),
        }
    };
    let client_auth = vec![
        CoreClientAuthMethod::ClientSecretBasic,
        CoreClientAuthMethod::ClientSecretPost,
        CoreClientAuthMethod::PrivateKeyJwt,
        CoreClientAuthMethod::None,
    ];
    let secret_auth = vec![
        "client_secret_basic".to_owned(),
        "client_secret_post".to_owned(),
        "private_key_jwt".to_owned(),
    ];
    let additional = KeygateMetadata {
        code_challenge_methods_supported: vec!["S256".into()],
        introspection_endpoint: checked(&endpoints.introspection)
            .map_err(url_err("introspection_endpoint"))?,
        introspection_endpoint_auth_methods_supported: secret_auth.clone(),
        revocation_endpoint: checked(&endpoints.revocation)
            .map_err(url_err("revocation_endpoint"))?,
        revocation_endpoint_auth_methods_supported: [secret_auth, vec!["none".to_owned()]].concat(),
        end_session_endpoint: checked(&endpoints.end_session)
            .map_err(url_err("end_session_endpoint"))?,
        authorization_response_iss_parameter_supported: true,
        device_authorization_endpoint: checked(&endpoints.device_authorization)
            .map_err(url_err("device_authorization_endpoint"))?,
    };
    let metadata = KeygateProviderMetadata::new(
        IssuerUrl::new(issuer.to_owned()).map_err(url_err("issuer"))?,
        AuthUrl::new(endpoints.authorization.clone()).map_err(url_err("authorization_endpoint"))?,
        JsonWebKeySetUrl::new(endpoints.jwks.clone()).map_err(url_err("jwks_uri"))?,
        vec![ResponseTypes::new(vec![CoreResponseType::Code])],
        vec![CoreSubjectIdentifierType::Public],
        vec![
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        ],
        additional,
    )
    .set_token_endpoint(Some(
        TokenUrl::new(endpoints.token.clone()).map_err(url_err("token_endpoint"))?,
    ))
    .set_userinfo_endpoint(Some(
        UserInfoUrl::new(endpoints.userinfo.clone()).map_err(url_err("userinfo_endpoint"))?,
    ))
    .set_scopes_supported(Some(
        scope::SUPPORTED
            .iter()
            .map(|s| Scope::new((*s).to_owned()))
            .collect(),
    ))
    .set_response_modes_supported(Some(vec![CoreResponseMode::Query]))
    .set_grant_types_supported(Some(vec![
        CoreGrantType::AuthorizationCode,
        CoreGrantType::RefreshToken,
        CoreGrantType::ClientCredentials,
        CoreGrantType::DeviceCode,
    ]))
    .set_acr_values_supported(Some(
        assurance::acr::SUPPORTED
            .iter()
            .map(|a| AuthenticationContextClass::new((*a).to_owned()))
            .collect(),
    ))
    .set_token_endpoint_auth_methods_supported(Some(client_auth))
    .set_token_endpoint_auth_signing_alg_values_supported(Some(vec![
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    ]))
    .set_claim_types_supported(Some(vec![CoreClaimType::Normal]))
    .set_claims_supported(Some(
        claims_supported(workspace_claim)
            .into_iter()
            .map(CoreClaimName::new)
            .collect(),
    ))
    .set_claims_parameter_supported(Some(true))
    .set_request_parameter_supported(Some(false))
    .set_request_uri_parameter_supported(Some(false));
    Ok(metadata)
}

fn checked(url: &str) -> Result<String, url::ParseError> {
    url::Url::parse(url).map(|_| url.to_owned())
}

/// The discovery document as JSON bytes, ready to serve.
pub fn document(
    issuer: &str,
    endpoints: &Endpoints,
    workspace_claim: &str,
) -> Result<Vec<u8>, DiscoveryError> {
    let metadata = provider_metadata(issuer, endpoints, workspace_claim)?;
    serde_json::to_vec(&metadata).map_err(|e| DiscoveryError {
        name: "document",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_the_required_members() {
        let iss = "https://id.example.com";
        let doc: serde_json::Value =
            serde_json::from_slice(&document(iss, &Endpoints::under(iss), "workspace_id").unwrap())
                .unwrap();
        assert_eq!(doc["issuer"], iss);
        assert_eq!(doc["token_endpoint"], "https://id.example.com/oauth2/token");
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(doc["claims_parameter_supported"], true);
        assert_eq!(
            doc["device_authorization_endpoint"],
            "https://id.example.com/oauth2/device_authorization"
        );
        assert!(doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(super::super::device::GRANT_TYPE)));
        assert_eq!(doc["request_parameter_supported"], false);
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            serde_json::json!(["ES256", "RS256"])
        );
    }

    #[test]
    fn bad_urls_are_errors() {
        let mut e = Endpoints::under("https://id.example.com");
        e.revocation = "not a url".into();
        let err = provider_metadata("https://id.example.com", &e, "workspace_id").unwrap_err();
        assert_eq!(err.name, "revocation_endpoint");
    }
}
