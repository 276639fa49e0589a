//! Token endpoint requests (RFC 6749 §3.2, §4.1.3, §6) and client authentication
//! (§2.3.1): `client_secret_basic`, `client_secret_post`, `private_key_jwt` (RFC 7523
//! §2.2, checked by [`super::client_assertion`]), or `none` for public clients.
//!
//! [`UntrustedTokenRequest::parse`] checks the shape only: one value per parameter, a
//! known `grant_type`, the parameters that grant needs, and at most one way of
//! authenticating the client. [`ClientAuth::verify`] then checks the credentials against
//! the registered client. The revocation and introspection endpoints authenticate clients
//! the same way ([`UntrustedTokenRequest::client_auth`]).
//!
//! `invalid_client` is answered with 401 (and `WWW-Authenticate: Basic` when the client
//! used the header); everything else with 400. That mapping lives in the HTTP layer.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::authorize::ClientKind;
use super::pkce::constant_time_eq;
use super::scope::Scopes;
use super::OidcError;

/// The longest parameter value read (codes, tokens, verifiers and secrets are far shorter).
const MAX_VALUE_LEN: usize = 4096;

/// How the client authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic` with the client ID and secret.
    Basic { client_id: String, secret: String },
    /// `client_id` and `client_secret` in the form body.
    Post { client_id: String, secret: String },
    /// A public client: `client_id` only.
    None { client_id: String },
    /// `private_key_jwt`: a JWT the client signed (`client_assertion`); `client_id` is the
    /// one it claims, not yet verified.
    Jwt {
        client_id: String,
        assertion: String,
    },
}

impl ClientAuth {
    /// The method's name as discovery lists it (`token_endpoint_auth_methods_supported`).
    pub fn method(&self) -> &'static str {
        match self {
            ClientAuth::Basic { .. } => "client_secret_basic",
            ClientAuth::Post { .. } => "client_secret_post",
            ClientAuth::None { .. } => "none",
            ClientAuth::Jwt { .. } => "private_key_jwt",
        }
    }
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("method", &self.method())
            .field("client_id", &self.client_id())
            .finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// The client ID, whichever way it came.
    pub fn client_id(&self) -> &str {
        match self {
            ClientAuth::Basic { client_id, .. }
            | ClientAuth::Post { client_id, .. }
            | ClientAuth::None { client_id }
            | ClientAuth::Jwt { client_id, .. } => client_id,
        }
    }

    /// Checks the credentials against the registered client (`None`: unknown client).
    /// Confidential clients must present the secret whose SHA-256 (hex) is
    /// `secret_sha256_hex`; public clients must present none. Every failure is
    /// `invalid_client` with one message, so the response does not tell which part failed.
    /// A client assertion is never accepted here: the service checks it against the
    /// client's registered keys ([`super::client_assertion::verify`]).
    pub fn verify(&self, client: Option<(ClientKind, Option<&str>)>) -> Result<(), OidcError> {
        let refuse = || OidcError::InvalidClient("client authentication failed".into());
        let (kind, stored) = client.ok_or_else(refuse)?;
        match (self, kind) {
            (ClientAuth::None { .. }, ClientKind::Public) => Ok(()),
            (
                ClientAuth::Basic { secret, .. } | ClientAuth::Post { secret, .. },
                ClientKind::Confidential,
            ) => {
                let stored = stored.ok_or_else(refuse)?;
                let presented = hex::encode(ring::digest::digest(
                    &ring::digest::SHA256,
                    secret.as_bytes(),
                ));
                if constant_time_eq(presented.as_bytes(), stored.to_ascii_lowercase().as_bytes()) {
                    Ok(())
                } else {
                    Err(refuse())
                }
            }
            _ => Err(refuse()),
        }
    }
}

/// What a token request asks for.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenGrant {
    /// `grant_type=authorization_code`.
    AuthorizationCode {
        code: String,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
    },
    /// `grant_type=refresh_token`, optionally narrowing the scope.
    RefreshToken {
        refresh_token: String,
        scope: Option<Scopes>,
    },
    /// `grant_type=client_credentials` (RFC 6749 §4.4): the client acting for itself.
    ClientCredentials { scope: Option<Scopes> },
    /// `grant_type=urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4).
    DeviceCode { device_code: String },
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenGrant::AuthorizationCode { redirect_uri, .. } => f
                .debug_struct("AuthorizationCode")
                .field("redirect_uri", redirect_uri)
                .finish_non_exhaustive(),
            TokenGrant::RefreshToken { scope, .. } => f
                .debug_struct("RefreshToken")
                .field("scope", scope)
                .finish_non_exhaustive(),
            TokenGrant::ClientCredentials { scope } => f
                .debug_struct("ClientCredentials")
                .field("scope", scope)
                .finish(),
            TokenGrant::DeviceCode { .. } => f.debug_struct("DeviceCode").finish_non_exhaustive(),
        }
    }
}

/// A token request whose shape has been checked; credentials not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub client: ClientAuth,
    pub grant: TokenGrant,
}

/// The raw form body and `Authorization` header of a token (or revocation,
/// introspection) request. Nothing in it is trusted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UntrustedTokenRequest {
    pairs: Vec<(String, String)>,
    authorization: Option<String>,
}

impl std::fmt::Debug for UntrustedTokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UntrustedTokenRequest")
            .field(
                "parameters",
                &self.pairs.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl UntrustedTokenRequest {
    /// From an `application/x-www-form-urlencoded` body and the `Authorization` header; a
    /// body that is not UTF-8, or a parameter that does not decode to it, is
    /// `invalid_request`.
    pub fn from_form(
        body: impl AsRef<[u8]>,
        authorization: Option<&str>,
    ) -> Result<Self, OidcError> {
        let pairs = crate::form::pairs_of_body(body.as_ref())
            .map_err(|_| OidcError::InvalidRequest("the body is not UTF-8 form data".into()))?;
        Ok(Self::from_pairs(pairs, authorization))
    }

    /// From decoded pairs and the `Authorization` header.
    pub fn from_pairs<I, K, V>(pairs: I, authorization: Option<&str>) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        UntrustedTokenRequest {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            authorization: authorization.map(str::to_owned),
        }
    }

    /// One parameter's value; empty counts as absent; repeated or overlong is an error.
    fn get(&self, name: &str) -> Result<Option<&str>, OidcError> {
        let mut found = self.pairs.iter().filter(|(k, _)| k == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(OidcError::InvalidRequest(format!(
                "{name} is given more than once"
            )));
        }
        match first {
            Some((_, v)) if v.len() > MAX_VALUE_LEN => {
                Err(OidcError::InvalidRequest(format!("{name} is too long")))
            }
            Some((_, v)) if !v.is_empty() => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    /// One parameter's value (e.g. `token` at the introspection and revocation
    /// endpoints): empty counts as absent; repeated or overlong is `invalid_request`.
    pub fn param(&self, name: &str) -> Result<Option<&str>, OidcError> {
        self.get(name)
    }

    fn required(&self, name: &str) -> Result<String, OidcError> {
        self.get(name)?
            .map(str::to_owned)
            .ok_or_else(|| OidcError::InvalidRequest(format!("{name} is required")))
    }

    /// How the client authenticated (RFC 6749 §2.3): the Basic header, or `client_id`
    /// with `client_secret` in the body, or a `client_assertion` (RFC 7523 §2.2), or
    /// `client_id` alone; never two methods at once.
    pub fn client_auth(&self) -> Result<ClientAuth, OidcError> {
        let body_id = self.get("client_id")?;
        let body_secret = self.get("client_secret")?;
        let assertion_type = self.get("client_assertion_type")?;
        let assertion = self.get("client_assertion")?;
        if assertion_type.is_some() || assertion.is_some() {
            if self.authorization.is_some() || body_secret.is_some() {
                return Err(OidcError::InvalidRequest(
                    "use one client authentication method, not two".into(),
                ));
            }
            if assertion_type != Some(super::client_assertion::ASSERTION_TYPE) {
                return Err(OidcError::InvalidClient(format!(
                    "client_assertion_type must be {}",
                    super::client_assertion::ASSERTION_TYPE
                )));
            }
            let assertion = assertion.ok_or_else(|| {
                OidcError::InvalidClient("client_assertion is required with its type".into())
            })?;
            let client_id = super::client_assertion::claimed_client_id(assertion)?;
            if body_id.is_some_and(|b| b != client_id) {
                return Err(OidcError::InvalidClient(
                    "client_id does not match the client assertion".into(),
                ));
            }
            return Ok(ClientAuth::Jwt {
                client_id,
                assertion: assertion.to_owned(),
            });
        }
        if let Some(header) = self.authorization.as_deref() {
            let (id, secret) = parse_basic(header)?;
            if body_secret.is_some() {
                return Err(OidcError::InvalidRequest(
                    "use one client authentication method, not two".into(),
                ));
            }
            if body_id.is_some_and(|b| b != id) {
                return Err(OidcError::InvalidRequest(
                    "client_id does not match the Authorization header".into(),
                ));
            }
            return Ok(ClientAuth::Basic {
                client_id: id,
                secret,
            });
        }
        match (body_id, body_secret) {
            (Some(id), Some(secret)) => Ok(ClientAuth::Post {
                client_id: id.to_owned(),
                secret: secret.to_owned(),
            }),
            (Some(id), None) => Ok(ClientAuth::None {
                client_id: id.to_owned(),
            }),
            (None, _) => Err(OidcError::InvalidClient(
                "the request does not identify the client".into(),
            )),
        }
    }

    /// Checks the shape of a token request.
    pub fn parse(&self) -> Result<TokenRequest, OidcError> {
        if let Some((name, _)) = self
            .pairs
            .iter()
            .find(|(k, _)| self.pairs.iter().filter(|(n, _)| n == k).count() > 1)
        {
            let name: String = super::error::safe_description(name)
                .chars()
                .take(40)
                .collect();
            return Err(OidcError::InvalidRequest(format!(
                "{name} is given more than once"
            )));
        }
        let grant_type = self.required("grant_type")?;
        let client = self.client_auth()?;
        let grant =
            match grant_type.as_str() {
                "authorization_code" => TokenGrant::AuthorizationCode {
                    code: self.required("code")?,
                    redirect_uri: self.get("redirect_uri")?.map(str::to_owned),
                    code_verifier: self.get("code_verifier")?.map(str::to_owned),
                },
                "refresh_token" => TokenGrant::RefreshToken {
                    refresh_token: self.required("refresh_token")?,
                    scope: self.get("scope")?.map(Scopes::parse).transpose()?,
                },
                "client_credentials" => TokenGrant::ClientCredentials {
                    scope: self.get("scope")?.map(Scopes::parse).transpose()?,
                },
                super::device::GRANT_TYPE => TokenGrant::DeviceCode {
                    device_code: self.required("device_code")?,
                },
                _ => return Err(OidcError::UnsupportedGrantType(
                    "grant_type must be authorization_code, refresh_token, client_credentials or urn:ietf:params:oauth:grant-type:device_code"
                        .into(),
                )),
            };
        Ok(TokenRequest { client, grant })
    }
}

/// `Basic base64(urlencode(client_id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn parse_basic(header: &str) -> Result<(String, String), OidcError> {
    let bad = || OidcError::InvalidClient("the Authorization header is not valid Basic".into());
    let (scheme, value) = header.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") || value.len() > MAX_VALUE_LEN {
        return Err(bad());
    }
    let decoded = STANDARD.decode(value.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    // Each part is form-urlencoded ('+' is a space).
    let unescape = |s: &str| crate::form::component(s).map_err(|_| bad());
    let (id, secret) = (unescape(id)?, unescape(secret)?);
    if id.is_empty() || secret.is_empty() {
        return Err(bad());
    }
    Ok((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    const CODE: &str = "grant_type=authorization_code&code=kgc_x&redirect_uri=https%3A%2F%2Frp%2Fcb&code_verifier=v";

    #[test]
    fn a_client_assertion_is_one_method_and_names_its_client() {
        use super::super::client_assertion::ASSERTION_TYPE;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let part = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let assertion = format!(
            "{}.{}.c2ln",
            part(r#"{"alg":"ES256"}"#),
            part(r#"{"iss":"rp","sub":"rp"}"#)
        );
        let form = |extra: &str| {
            format!(
                "grant_type=client_credentials&client_assertion_type={}&client_assertion={assertion}{extra}",
                url::form_urlencoded::byte_serialize(ASSERTION_TYPE.as_bytes()).collect::<String>()
            )
        };
        let r = UntrustedTokenRequest::from_form(form(""), None)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            r.client,
            ClientAuth::Jwt {
                client_id: "rp".into(),
                assertion: assertion.clone()
            }
        );
        assert_eq!(
            format!("{:?}", r.client),
            r#"ClientAuth { method: "private_key_jwt", client_id: "rp", .. }"#
        );
        UntrustedTokenRequest::from_form(form("&client_id=rp"), None)
            .unwrap()
            .parse()
            .unwrap();
        for (extra, header, code) in [
            ("&client_id=other", None, "invalid_client"),
            ("&client_secret=s", None, "invalid_request"),
            ("", Some(basic("rp", "s")), "invalid_request"),
        ] {
            let e = UntrustedTokenRequest::from_form(form(extra), header.as_deref())
                .unwrap()
                .parse()
                .unwrap_err();
            assert_eq!(e.code(), code, "{extra}");
        }
        let other_type = format!(
            "grant_type=client_credentials&client_assertion_type=urn%3Aother&client_assertion={assertion}"
        );
        let no_assertion = "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
        for body in [other_type.as_str(), no_assertion] {
            let e = UntrustedTokenRequest::from_form(body, None)
                .unwrap()
                .parse()
                .unwrap_err();
            assert_eq!(e.code(), "invalid_client", "{body}");
        }
    }

    #[test]
    fn basic_post_and_none() {
        let r = UntrustedTokenRequest::from_form(CODE, Some(&basic("vendor", "s%3Acret")))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            r.client,
            ClientAuth::Basic {
                client_id: "vendor".into(),
                secret: "s:cret".into()
            }
        );
        assert!(
            matches!(r.grant, TokenGrant::AuthorizationCode { ref redirect_uri, .. }
            if redirect_uri.as_deref() == Some("https://rp/cb"))
        );
        let post = UntrustedTokenRequest::from_form(
            format!("{CODE}&client_id=vendor&client_secret=s"),
            None,
        )
        .unwrap();
        assert!(matches!(
            post.parse().unwrap().client,
            ClientAuth::Post { .. }
        ));
        let public =
            UntrustedTokenRequest::from_form(format!("{CODE}&client_id=app"), None).unwrap();
        assert!(matches!(
            public.parse().unwrap().client,
            ClientAuth::None { .. }
        ));
    }

    #[test]
    fn shape_errors() {
        let err = |body: &str, auth: Option<&str>| {
            UntrustedTokenRequest::from_form(body, auth)
                .unwrap()
                .parse()
                .unwrap_err()
                .code()
        };
        let b = basic("vendor", "s");
        assert_eq!(err("code=x", Some(&b)), "invalid_request");
        assert_eq!(
            err("grant_type=password", Some(&b)),
            "unsupported_grant_type"
        );
        assert!(matches!(
            UntrustedTokenRequest::from_form("grant_type=client_credentials&scope=keygate:compliance", Some(&b)).unwrap()
                .parse()
                .unwrap()
                .grant,
            TokenGrant::ClientCredentials { scope: Some(ref s) } if s.contains("keygate:compliance")
        ));
        assert_eq!(
            err("grant_type=client_credentials&scope=a\\b", Some(&b)),
            "invalid_scope"
        );
        assert_eq!(
            err("grant_type=authorization_code", Some(&b)),
            "invalid_request"
        );
        assert_eq!(err("grant_type=refresh_token", Some(&b)), "invalid_request");
        assert_eq!(err(&format!("{CODE}&code=y"), Some(&b)), "invalid_request");
        assert_eq!(err(CODE, None), "invalid_client");
        assert_eq!(
            err(&format!("{CODE}&client_secret=s"), Some(&b)),
            "invalid_request"
        );
        assert_eq!(
            err(&format!("{CODE}&client_id=other"), Some(&b)),
            "invalid_request"
        );
        for header in [
            "Bearer abc",
            "Basic !!!",
            "Basic",
            &basic("", "s"),
            &basic("id", ""),
        ] {
            assert_eq!(err(CODE, Some(header)), "invalid_client", "{header}");
        }
        assert_eq!(
            err(
                "grant_type=refresh_token&refresh_token=r&scope=a\\b",
                Some(&b)
            ),
            "invalid_scope"
        );
    }

    #[test]
    fn verify_checks_kind_and_secret() {
        let stored = hex::encode(ring::digest::digest(&ring::digest::SHA256, b"s3cret"));
        let basic = ClientAuth::Basic {
            client_id: "c".into(),
            secret: "s3cret".into(),
        };
        assert!(basic
            .verify(Some((ClientKind::Confidential, Some(&stored))))
            .is_ok());
        assert!(basic
            .verify(Some((
                ClientKind::Confidential,
                Some(&stored.to_uppercase())
            )))
            .is_ok());
        assert!(basic
            .verify(Some((ClientKind::Confidential, Some("00"))))
            .is_err());
        assert!(basic
            .verify(Some((ClientKind::Confidential, None)))
            .is_err());
        assert!(basic.verify(Some((ClientKind::Public, None))).is_err());
        assert!(basic.verify(None).is_err());
        let none = ClientAuth::None {
            client_id: "c".into(),
        };
        assert!(none.verify(Some((ClientKind::Public, None))).is_ok());
        assert!(none
            .verify(Some((ClientKind::Confidential, Some(&stored))))
            .is_err());
        assert!(!format!("{basic:?}").contains("s3cret"));
    }
}
