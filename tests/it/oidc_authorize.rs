//! Authorization requests: every parsing rule (show vs redirect), the error and success
//! redirects, and the next step for a session (prompt, max_age, acr).

use keygate::oidc::assurance::{acr, SignInFacts, Verification};
use keygate::oidc::authorize::{
    Authentication, AuthorizationRequest, AuthorizeError, ClientKind, ClientView, SignInReason,
    Step, UntrustedAuthorizationRequest,
};
use keygate::oidc::keys::Algorithm;
use keygate::oidc::OidcError;
use time::{Duration, OffsetDateTime};
use url::Url;

const ISSUER: &str = "https://id.keygate.test";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "https://rp.example/cb?tenant=a";

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn client() -> ClientView {
    ClientView {
        client_id: "vendor".into(),
        redirect_uris: vec![REDIRECT.into(), "http://127.0.0.1:8400/cb".into()],
        kind: ClientKind::Confidential,
        allowed_scopes: vec!["profile".into(), "email".into(), "offline_access".into()],
        id_token_alg: Algorithm::Es256,
        workspace_id: Some("ws_42".into()),
        default_acr_values: vec![],
        required_acr_values: vec![],
    }
}

fn base() -> Vec<(&'static str, String)> {
    vec![
        ("client_id", "vendor".into()),
        ("redirect_uri", REDIRECT.into()),
        ("response_type", "code".into()),
        ("scope", "openid email".into()),
        ("state", "st-1".into()),
        ("nonce", "n-1".into()),
        ("code_challenge", CHALLENGE.into()),
        ("code_challenge_method", "S256".into()),
    ]
}

/// `base()` with `name` set to `value` (`None` removes it; a name not there is added).
fn with(name: &'static str, value: Option<&str>) -> Vec<(&'static str, String)> {
    let mut p: Vec<_> = base().into_iter().filter(|(k, _)| *k != name).collect();
    if let Some(v) = value {
        p.push((name, v.to_owned()));
    }
    p
}

fn validate(pairs: Vec<(&'static str, String)>) -> Result<AuthorizationRequest, AuthorizeError> {
    validate_for(pairs, &client())
}

fn validate_for(
    pairs: Vec<(&'static str, String)>,
    client: &ClientView,
) -> Result<AuthorizationRequest, AuthorizeError> {
    let untrusted = UntrustedAuthorizationRequest::from_pairs(pairs);
    let found = match untrusted.client_id() {
        Ok(id) if id == client.client_id => Some(client),
        _ => None,
    };
    untrusted.validate(found, t0())
}

fn shown(r: Result<AuthorizationRequest, AuthorizeError>) -> OidcError {
    match r {
        Err(AuthorizeError::Show(e)) => {
            assert!(!e.may_redirect(), "{e:?}");
            e
        }
        other => panic!("expected an error to show, got {other:?}"),
    }
}

/// The error code and the redirect's query pairs.
fn redirected(r: Result<AuthorizationRequest, AuthorizeError>) -> (String, Vec<(String, String)>) {
    match r {
        Err(AuthorizeError::Redirect(r)) => {
            assert!(r.error.may_redirect());
            let loc = r.location(ISSUER);
            assert!(
                loc.as_str().starts_with("https://rp.example/cb?tenant=a&"),
                "{loc}"
            );
            (
                r.error.code().to_owned(),
                loc.query_pairs().into_owned().collect(),
            )
        }
        other => panic!("expected a redirected error, got {other:?}"),
    }
}

fn code_of(r: Result<AuthorizationRequest, AuthorizeError>) -> String {
    redirected(r).0
}

#[test]
fn a_good_request_validates() {
    let req = validate(base()).unwrap();
    assert_eq!(req.client_id, "vendor");
    assert_eq!(req.redirect_uri.as_str(), REDIRECT);
    assert_eq!(req.scopes.to_string(), "openid email");
    assert_eq!(req.state.as_deref(), Some("st-1"));
    assert_eq!(req.nonce.as_deref(), Some("n-1"));
    assert_eq!(req.code_challenge, CHALLENGE);
    assert_eq!(req.received_at, t0().unix_timestamp());
    // It survives the ephemeral store.
    let json = serde_json::to_string(&req).unwrap();
    assert_eq!(
        serde_json::from_str::<AuthorizationRequest>(&json).unwrap(),
        req
    );
    // From a raw query too, with ignored and unknown parameters.
    let q = format!(
        "client_id=vendor&redirect_uri={}&response_type=code&scope=openid&code_challenge={CHALLENGE}\
         &code_challenge_method=S256&ui_locales=de&display=page&login_hint=ada%40example.com&foo=bar",
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    );
    let req = UntrustedAuthorizationRequest::from_query(&q)
        .validate(Some(&client()), t0())
        .unwrap();
    assert_eq!(req.login_hint.as_deref(), Some("ada@example.com"));
    assert_eq!(req.state, None);
}

#[test]
fn client_and_redirect_uri_problems_are_shown_never_redirected() {
    assert!(matches!(
        shown(validate(with("client_id", None))),
        OidcError::UnknownClient(_)
    ));
    assert!(matches!(
        shown(validate(with("client_id", Some("stranger")))),
        OidcError::UnknownClient(_)
    ));
    let mut dup = base();
    dup.push(("client_id", "vendor".into()));
    assert!(matches!(shown(validate(dup)), OidcError::UnknownClient(_)));

    assert!(matches!(
        shown(validate(with("redirect_uri", None))),
        OidcError::InvalidRedirectUri(_)
    ));
    for near_miss in [
        "https://rp.example/cb",
        "https://rp.example/cb?tenant=a&x=1",
        "https://rp.example/cb/?tenant=a",
        "https://RP.example/cb?tenant=a",
        "http://rp.example/cb?tenant=a",
        "https://rp.example.evil.test/cb?tenant=a",
        "http://127.0.0.1:8401/cb",
    ] {
        let e = shown(validate(with("redirect_uri", Some(near_miss))));
        assert!(matches!(e, OidcError::InvalidRedirectUri(_)), "{near_miss}");
    }
    let mut dup = base();
    dup.push(("redirect_uri", REDIRECT.into()));
    assert!(matches!(
        shown(validate(dup)),
        OidcError::InvalidRedirectUri(_)
    ));
    // Even a broken rest of the request is shown when the redirect URI is wrong.
    let mut bad = with("redirect_uri", Some("https://evil.test/"));
    bad.retain(|(k, _)| *k != "response_type");
    shown(validate(bad));
}

#[test]
fn later_errors_redirect_with_description_state_and_iss() {
    let (code, q) = redirected(validate(with("response_type", Some("token"))));
    assert_eq!(code, "unsupported_response_type");
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("tenant"), Some("a"));
    assert_eq!(get("error"), Some("unsupported_response_type"));
    assert!(get("error_description").is_some_and(|d| !d.is_empty()));
    assert_eq!(get("state"), Some("st-1"));
    assert_eq!(get("iss"), Some(ISSUER));
}

#[test]
fn response_type_and_mode() {
    assert_eq!(
        code_of(validate(with("response_type", None))),
        "invalid_request"
    );
    for rt in ["token", "id_token", "code id_token", "none"] {
        assert_eq!(
            code_of(validate(with("response_type", Some(rt)))),
            "unsupported_response_type",
            "{rt}"
        );
    }
    assert_eq!(
        code_of(validate(with("response_mode", Some("fragment")))),
        "invalid_request"
    );
    assert!(validate(with("response_mode", Some("query"))).is_ok());
}

#[test]
fn scope_rules() {
    assert_eq!(code_of(validate(with("scope", None))), "invalid_scope");
    assert_eq!(
        code_of(validate(with("scope", Some("email profile")))),
        "invalid_scope"
    );
    assert_eq!(
        code_of(validate(with("scope", Some("openid admin")))),
        "invalid_scope"
    );
    assert_eq!(
        code_of(validate(with("scope", Some("openid keygate:key_evidence")))),
        "invalid_scope",
        "supported but not allowed for this client"
    );
    let mut evidence = client();
    evidence.allowed_scopes.push("keygate:key_evidence".into());
    assert!(validate_for(
        with("scope", Some("openid keygate:key_evidence")),
        &evidence
    )
    .is_ok());
    assert!(validate(with("scope", Some("openid offline_access profile"))).is_ok());
}

#[test]
fn pkce_is_mandatory_and_s256_only() {
    assert_eq!(
        code_of(validate(with("code_challenge", None))),
        "invalid_request"
    );
    assert_eq!(
        code_of(validate(with("code_challenge_method", None))),
        "invalid_request"
    );
    assert_eq!(
        code_of(validate(with("code_challenge_method", Some("plain")))),
        "invalid_request"
    );
    assert_eq!(
        code_of(validate(with("code_challenge_method", Some("s256")))),
        "invalid_request"
    );
    for bad in [
        "short",
        &format!("{CHALLENGE}A"),
        &CHALLENGE.replace('c', "+"),
    ] {
        assert_eq!(
            code_of(validate(with("code_challenge", Some(bad)))),
            "invalid_request"
        );
    }
}

#[test]
fn duplicate_parameters_are_invalid_requests() {
    for name in [
        "response_type",
        "scope",
        "nonce",
        "code_challenge",
        "prompt",
        "foo",
    ] {
        let mut p = base();
        p.push((name, "x".into()));
        p.push((name, "y".into()));
        let (code, q) = redirected(validate(p));
        assert_eq!(code, "invalid_request", "{name}");
        assert!(q.iter().any(|(k, v)| k == "state" && v == "st-1"));
    }
    // A repeated state is not echoed: which one would be the client's?
    let mut p = base();
    p.push(("state", "st-2".into()));
    let (code, q) = redirected(validate(p));
    assert_eq!(code, "invalid_request");
    assert!(!q.iter().any(|(k, _)| k == "state"));
}

#[test]
fn request_objects_and_other_parameters() {
    assert_eq!(
        code_of(validate(with("request", Some("eyJ...")))),
        "request_not_supported"
    );
    assert_eq!(
        code_of(validate(with("request_uri", Some("https://rp.example/r")))),
        "request_uri_not_supported"
    );
    for bad in ["none login", "create", "none consent"] {
        assert_eq!(
            code_of(validate(with("prompt", Some(bad)))),
            "invalid_request",
            "{bad}"
        );
    }
    for bad in ["-1", "1.5", "ten", "99999999999"] {
        assert_eq!(
            code_of(validate(with("max_age", Some(bad)))),
            "invalid_request",
            "{bad}"
        );
    }
    assert_eq!(
        validate(with("max_age", Some("0"))).unwrap().max_age,
        Some(0)
    );
    for bad in ["{", "[]", r#"{"id_token":{"acr":{"values":"phrh"}}}"#] {
        assert_eq!(
            code_of(validate(with("claims", Some(bad)))),
            "invalid_request",
            "{bad}"
        );
    }
    assert_eq!(
        code_of(validate(with("nonce", Some(&"n".repeat(513))))),
        "invalid_request"
    );
    let (code, q) = redirected(validate(with("state", Some(&"s".repeat(1025)))));
    assert_eq!(code, "invalid_request");
    assert!(!q.iter().any(|(k, _)| k == "state"));
    // Empty values count as absent.
    assert_eq!(validate(with("nonce", Some(""))).unwrap().nonce, None);
}

#[test]
fn acr_requests() {
    let essential = r#"{"id_token":{"acr":{"essential":true,"values":["phrh","phr"]}}}"#;
    let req = validate(with("claims", Some(essential))).unwrap();
    assert!(req.acr.essential);
    assert_eq!(req.acr.values, ["phrh", "phr"]);
    let unknown = r#"{"id_token":{"acr":{"essential":true,"value":"urn:example:gold"}}}"#;
    assert_eq!(
        code_of(validate(with("claims", Some(unknown)))),
        "unmet_authentication_requirements"
    );
    let req = validate(with("acr_values", Some("urn:example:gold phrh"))).unwrap();
    assert!(!req.acr.essential);
    assert_eq!(req.acr.values, ["urn:example:gold", "phrh"]);
    let mut defaults = client();
    defaults.default_acr_values = vec![acr::REFEDS_MFA.into()];
    let req = validate_for(base(), &defaults).unwrap();
    assert_eq!(
        (req.acr.values.as_slice(), req.acr.essential),
        (&[acr::REFEDS_MFA.to_owned()][..], false)
    );
}

// --- the next step -----------------------------------------------------------------

fn session(at: OffsetDateTime, attested: bool, verification: Verification) -> Authentication {
    Authentication {
        auth_time: at,
        facts: SignInFacts {
            attested,
            verification,
        },
    }
}

fn strong(at: OffsetDateTime) -> Authentication {
    session(at, true, Verification::Pin)
}

fn issued(step: Step) -> (String, Vec<String>) {
    match step {
        Step::Issue(a) => (a.acr, a.amr),
        other => panic!("expected Issue, got {other:?}"),
    }
}

fn refused(step: Step) -> &'static str {
    match step {
        Step::Refuse(e) => {
            assert!(e.may_redirect());
            e.code()
        }
        other => panic!("expected Refuse, got {other:?}"),
    }
}

#[test]
fn no_session_signs_in_unless_prompt_none() {
    let req = validate(base()).unwrap();
    assert_eq!(
        req.next_step(None, t0()),
        Step::SignIn(SignInReason::NoSession)
    );
    let none = validate(with("prompt", Some("none"))).unwrap();
    assert_eq!(refused(none.next_step(None, t0())), "login_required");
    let earlier = strong(t0() - Duration::hours(1));
    let (acr_value, amr) = issued(none.next_step(Some(&earlier), t0()));
    assert_eq!(acr_value, "phrh");
    assert_eq!(amr, ["hwk", "pop", "pin", "mfa"]);
}

#[test]
fn prompt_login_and_select_account_force_a_fresh_touch() {
    for (prompt, reason) in [
        ("login", SignInReason::PromptLogin),
        ("select_account", SignInReason::SelectAccount),
    ] {
        let req = validate(with("prompt", Some(prompt))).unwrap();
        let old = strong(t0() - Duration::seconds(5));
        assert_eq!(req.next_step(Some(&old), t0()), Step::SignIn(reason));
        let fresh = strong(t0() + Duration::seconds(20));
        issued(req.next_step(Some(&fresh), t0() + Duration::seconds(21)));
    }
    // consent needs no touch.
    let req = validate(with("prompt", Some("consent"))).unwrap();
    assert!(req.prompt.consent);
    issued(req.next_step(Some(&strong(t0() - Duration::hours(1))), t0()));
}

#[test]
fn max_age_forces_a_fresh_touch_when_the_session_is_older() {
    let req = validate(with("max_age", Some("300"))).unwrap();
    let now = t0();
    issued(req.next_step(Some(&strong(now - Duration::seconds(300))), now));
    assert_eq!(
        req.next_step(Some(&strong(now - Duration::seconds(301))), now),
        Step::SignIn(SignInReason::MaxAge)
    );
    let zero = validate(with("max_age", Some("0"))).unwrap();
    assert_eq!(
        zero.next_step(Some(&strong(now - Duration::seconds(1))), now),
        Step::SignIn(SignInReason::MaxAge)
    );
    issued(zero.next_step(Some(&strong(now)), now + Duration::seconds(30)));
    let mut silent = with("max_age", Some("60"));
    silent.push(("prompt", "none".into()));
    let silent = validate(silent).unwrap();
    assert_eq!(
        refused(silent.next_step(Some(&strong(now - Duration::hours(2))), now)),
        "login_required"
    );
}

#[test]
fn essential_acr_is_met_or_refused_after_a_fresh_touch() {
    let essential = r#"{"id_token":{"acr":{"essential":true,"values":["phrh"]}}}"#;
    let req = validate(with("claims", Some(essential))).unwrap();
    let before = t0() - Duration::minutes(5);
    let after = t0() + Duration::seconds(10);
    // An unattested key (allowed by an admin) cannot earn phrh: one more touch is asked,
    // and a fresh touch with it still cannot.
    let unattested = session(before, false, Verification::Pin);
    assert_eq!(
        req.next_step(Some(&unattested), t0()),
        Step::SignIn(SignInReason::Assurance)
    );
    let unattested_fresh = session(after, false, Verification::Pin);
    assert_eq!(
        refused(req.next_step(Some(&unattested_fresh), after)),
        "unmet_authentication_requirements"
    );
    let presence_only = session(after, true, Verification::Presence);
    assert_eq!(
        refused(req.next_step(Some(&presence_only), after)),
        "unmet_authentication_requirements"
    );
    let (acr_value, amr) = issued(req.next_step(Some(&strong(after)), after));
    assert_eq!(acr_value, "phrh");
    assert!(amr.contains(&"hwk".to_owned()));
    // prompt=none cannot ask for the touch.
    let mut silent = with("claims", Some(essential));
    silent.push(("prompt", "none".into()));
    let silent = validate(silent).unwrap();
    assert_eq!(
        refused(silent.next_step(Some(&unattested), t0())),
        "login_required"
    );
}

#[test]
fn non_essential_acr_is_best_effort() {
    let req = validate(with("acr_values", Some("phrh"))).unwrap();
    let unattested = session(
        t0() - Duration::minutes(1),
        false,
        Verification::Fingerprint,
    );
    let (acr_value, amr) = issued(req.next_step(Some(&unattested), t0()));
    assert_eq!(acr_value, acr::REFEDS_MFA);
    assert_eq!(amr, ["pop", "fpt", "mfa"]);
    let req = validate(with("acr_values", Some("urn:example:gold phr"))).unwrap();
    assert_eq!(issued(req.next_step(Some(&strong(t0())), t0())).0, "phr");
}

#[test]
fn vendor_vocabularies() {
    let now = t0();
    let bio = session(now - Duration::minutes(1), true, Verification::Fingerprint);
    let ask = |values: &str| {
        let req = validate(with("acr_values", Some(values))).unwrap();
        issued(req.next_step(Some(&bio), now))
    };
    assert_eq!(
        ask(acr::REFEDS_MFA),
        (
            acr::REFEDS_MFA.into(),
            vec!["hwk".into(), "pop".into(), "fpt".into(), "mfa".into()]
        )
    );
    assert_eq!(
        ask(acr::AAL2_PHISHING_RESISTANT).0,
        acr::AAL2_PHISHING_RESISTANT
    );
    assert_eq!(ask(acr::MS_MULTIPLE_AUTHN).0, acr::MS_MULTIPLE_AUTHN);
    assert_eq!(
        ask(acr::ENTRA_POSSESSION_OR_INHERENCE),
        (
            acr::ENTRA_POSSESSION_OR_INHERENCE.into(),
            vec!["hwk".into()]
        )
    );
}

#[test]
fn a_client_requirement_holds_whatever_the_request_says() {
    let mut strict = client();
    strict.required_acr_values = vec!["phrh".into()];
    let req = validate_for(with("acr_values", Some(acr::REFEDS_MFA)), &strict).unwrap();
    let fresh_unattested = session(t0() + Duration::seconds(5), false, Verification::Pin);
    assert_eq!(
        refused(req.next_step(Some(&fresh_unattested), t0() + Duration::seconds(5))),
        "unmet_authentication_requirements"
    );
    // Met: the request's own value is emitted.
    assert_eq!(
        issued(req.next_step(Some(&strong(t0())), t0())).0,
        acr::REFEDS_MFA
    );
    let plain = validate_for(base(), &strict).unwrap();
    assert_eq!(issued(plain.next_step(Some(&strong(t0())), t0())).0, "phrh");
}

#[test]
fn success_and_late_error_locations() {
    let req = validate(base()).unwrap();
    let loc = req.code_location("kgc_abc", ISSUER);
    let q: Vec<(String, String)> = loc.query_pairs().into_owned().collect();
    assert_eq!(
        q,
        [
            ("tenant".into(), "a".into()),
            ("code".into(), "kgc_abc".into()),
            ("state".into(), "st-1".into()),
            ("iss".into(), ISSUER.into()),
        ]
    );
    let loc = req.error_location(&OidcError::LoginRequired("sign in \"now\"".into()), ISSUER);
    let parsed = Url::parse(loc.as_str()).unwrap();
    let desc = parsed
        .query_pairs()
        .find(|(k, _)| k == "error_description")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert_eq!(desc, "sign in now");
}
