//! The OpenAPI document (`docs/openapi.yaml`) against the running server: every JSON answer
//! of a representative run (enrolment, sign-in, admin APIs, the OpenID provider, the device
//! grant, the compliance pull, the audit API, errors including 400, 401, 403 and 429) is
//! validated against the schema the document gives for that operation and status by an
//! independent JSON Schema 2020-12 validator (Python `jsonschema`); every operation of the
//! document must have been exercised (or be in [`NOT_EXERCISED`]); every endpoint of
//! `docs/api.md` must be in the document; and `/api/openapi.json` serves the same document
//! to admins only.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::enrolment_http::{finish_body, options_for, token_of};
use crate::signin_http::assertion_body;
use crate::support::app::{csrf_of, Client, Reply};
use crate::support::authenticator::{SoftAuthenticator, TestCa};
use crate::support::oidc::*;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Operations of the document the run below does not reach, and why.
const NOT_EXERCISED: &[&str] = &[
    // Needs a second admin (two-person rule); covered by admin_grants_http.
    "POST /api/admin/invitations/{id}/approve",
    // Needs two admins and a member who lost their keys; covered by recovery_http.
    "POST /api/admin/recovery/{id}/approve",
    // A request body of SP metadata XML; covered by saml_admin.
    "POST /api/admin/saml/service-providers/import",
];

const CLIENTS: &str = r#"
[[oidc.clients]]
client_id = "device-cli"
name = "Deploy CLI"
redirect_uris = ["http://127.0.0.1/unused"]
scopes = ["openid", "profile", "email", "offline_access", "keygate:device"]
public = true

[[oidc.clients]]
client_id = "compliance-org"
name = "Organisation compliance pull"
redirect_uris = ["https://org-vendor.example/cb"]
scopes = ["keygate:compliance"]
secret_file = "SECRET_FILE"
"#;

fn yaml_path() -> String {
    format!("{}/docs/openapi.yaml", env!("CARGO_MANIFEST_DIR"))
}

fn python_has(modules: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True (skip) when Python's `yaml` and `jsonschema` are missing outside CI; in CI, a panic.
fn validator_missing() -> bool {
    crate::support::skip::unless_available(
        python_has("yaml, jsonschema"),
        "python3 with PyYAML and jsonschema",
    )
}

/// The answers of the run: operation (method, path template), status, media type,
/// headers and JSON body.
#[derive(Default)]
struct Recorder(Vec<Value>);

impl Recorder {
    fn add(&mut self, method: &str, template: &str, r: &Reply) {
        let content_type = r.header("content-type").unwrap_or_default();
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let body =
            if (media == "application/json" || media.ends_with("+json")) && !r.body.is_empty() {
                serde_json::from_str(&r.body)
                    .unwrap_or_else(|e| panic!("{method} {template}: not JSON ({e}): {}", r.body))
            } else {
                Value::Null
            };
        let headers: serde_json::Map<String, Value> = r
            .headers
            .iter()
            .map(|(k, v)| {
                let v = v.to_str().unwrap_or_default().to_string();
                (k.as_str().to_ascii_lowercase(), Value::String(v))
            })
            .collect();
        self.0.push(json!({
            "method": method, "path": template, "status": r.status,
            "media": media, "empty": r.body.is_empty(), "headers": headers, "body": body,
        }));
    }
}

/// Validates the recorded answers against the document; returns the validator's problems.
fn validate(records: &[Value], skip: &[&str]) -> Vec<String> {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(serde_json::to_string(records).unwrap().as_bytes())
        .expect("write records");
    let out = Command::new("python3")
        .args([
            "-c",
            VALIDATOR,
            &yaml_path(),
            &file.path().display().to_string(),
            &serde_json::to_string(skip).unwrap(),
        ])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() || !stdout.is_empty(),
        "validator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_string).collect()
}

/// Checks each record against `paths.<template>.<method>.responses.<status>`: declared,
/// required headers present, media type declared, JSON body valid against its schema
/// (JSON Schema 2020-12, `$ref`s resolved in the document); then that every operation
/// was exercised unless listed as skipped. Prints one problem a line.
const VALIDATOR: &str = r#"
import json, sys, yaml
from urllib.parse import quote
from jsonschema import Draft202012Validator
doc = yaml.safe_load(open(sys.argv[1]))
records = json.load(open(sys.argv[2]))
skip = set(json.loads(sys.argv[3]))
problems, seen = [], set()
def esc(s): return s.replace('~', '~0').replace('/', '~1')
def deref(obj, pointer):
    while '$ref' in obj:
        pointer = obj['$ref'][1:]
        obj = doc
        for part in pointer.strip('/').split('/'):
            obj = obj[part.replace('~1', '/').replace('~0', '~')]
    return obj, pointer
for r in records:
    m, p, st = r['method'].lower(), r['path'], str(r['status'])
    seen.add((m, p))
    where = f"{r['method']} {p} {st}"
    op = doc['paths'].get(p, {}).get(m)
    if op is None:
        problems.append(f"{where}: no such operation in the document"); continue
    if st not in op.get('responses', {}):
        problems.append(f"{where}: status not documented"); continue
    resp, ptr = deref(op['responses'][st], f"/paths/{esc(p)}/{m}/responses/{st}")
    for name, h in resp.get('headers', {}).items():
        h, _ = deref(h, '')
        if h.get('required') and name.lower() not in r['headers']:
            problems.append(f"{where}: required header {name} missing")
    content = resp.get('content', {})
    if r['empty']:
        if content:
            problems.append(f"{where}: empty body, document declares {sorted(content)}")
        continue
    if r['media'] not in content:
        problems.append(f"{where}: media type {r['media']!r} not declared ({sorted(content)})"); continue
    if r['body'] is None or 'schema' not in content[r['media']]:
        continue
    pointer = ptr + '/content/' + esc(r['media']) + '/schema'
    root = dict(doc)
    root['$ref'] = '#' + quote(pointer, safe='/~')
    v = Draft202012Validator(root)
    for e in sorted(v.iter_errors(r['body']), key=lambda e: list(e.absolute_path))[:5]:
        at = '/'.join(str(x) for x in e.absolute_path)
        problems.append(f"{where}: at /{at}: {e.message[:300]}")
for p, item in doc['paths'].items():
    for m in item:
        if m in ('get', 'put', 'post', 'delete', 'patch') and (m, p) not in seen \
                and f"{m.upper()} {p}" not in skip:
            problems.append(f"{m.upper()} {p}: never exercised (run it or list it as skipped)")
for s in sorted(problems):
    print(s)
"#;

/// Sign-in through the start page with the admin's key, recorded.
async fn recorded_sign_in(p: &mut Provider, rec: &mut Recorder) -> Client {
    let mut browser = p.app.client();
    let page = browser.get("/").await;
    let csrf = csrf_of(&page.body);
    let options = browser
        .post_json("/api/signin/begin", Some(&csrf), &json!({}))
        .await;
    rec.add("POST", "/api/signin/begin", &options);
    let body = assertion_body(&mut p.cred, &p.app, &options.json(), &p.user_id, |_| {});
    let done = browser
        .post_json("/api/signin/finish", Some(&csrf), &body)
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    rec.add("POST", "/api/signin/finish", &done);
    browser
}

/// An invitation for `email` made by the admin; returns its id and link path.
async fn invite(
    browser: &mut Client,
    csrf: &str,
    email: &str,
    rec: &mut Recorder,
) -> (String, String) {
    let r = browser
        .post_json(
            "/api/admin/invitations",
            Some(csrf),
            &json!({ "email": email, "display_name": "Mia Member", "role": "member" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    rec.add("POST", "/api/admin/invitations", &r);
    let j = r.json();
    let link = j["link"].as_str().unwrap();
    let path = link[link.find("/enrol/").unwrap()..].to_string();
    (j["id"].as_str().unwrap().to_string(), path)
}

/// Enrols a member through `path` with `key`; records begin and finish.
async fn enrol(
    p: &Provider,
    path: &str,
    key: &SoftAuthenticator,
    rec: &mut Recorder,
) -> (Client, Reply) {
    let mut member = p.app.client();
    let page = member.get(path).await;
    let csrf = csrf_of(&page.body);
    let options = member
        .post_json(
            "/api/enrol/begin",
            Some(&csrf),
            &json!({ "token": token_of(path) }),
        )
        .await;
    rec.add("POST", "/api/enrol/begin", &options);
    let reg = key.register(&options_for(&p.app, &options));
    let done = member
        .post_json(
            "/api/enrol/finish",
            Some(&csrf),
            &finish_body(&reg, "Primary"),
        )
        .await;
    rec.add("POST", "/api/enrol/finish", &done);
    (member, done)
}

/// Runs the representative flow and returns what it recorded.
async fn run_flow() -> Vec<Value> {
    let mut p = provider_with_config(CLIENTS).await;
    let mut rec = Recorder::default();
    let anonymous = p.app.client().get("/api/admin/members").await;
    assert_eq!(anonymous.status, 401);
    rec.add("GET", "/api/admin/members", &anonymous);

    // Probes and discovery.
    let mut any = p.app.client();
    for path in [
        "/healthz",
        "/readyz",
        "/.well-known/openid-configuration",
        "/oauth2/jwks",
    ] {
        let r = any.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        rec.add("GET", path, &r);
    }

    // Sign-in, the member's own API.
    let mut admin = recorded_sign_in(&mut p, &mut rec).await;
    for path in ["/api/me", "/api/me/sessions", "/api/openapi.json"] {
        let r = admin.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        rec.add("GET", path, &r);
    }
    let page = admin.get("/admin/members").await;
    let csrf = csrf_of(&page.body);

    // Admin reads.
    for path in [
        "/api/admin/dashboard",
        "/api/admin/members",
        "/api/admin/invitations",
        "/api/admin/workspaces",
        "/api/admin/clients",
        "/api/admin/saml/service-providers",
    ] {
        let r = admin.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        rec.add("GET", path, &r);
    }
    let uid = p.user_id.clone();
    let r = admin.get(&format!("/api/admin/members/{uid}")).await;
    rec.add("GET", "/api/admin/members/{id}", &r);
    let r = admin.get("/api/admin/members/no-such-member").await;
    assert_eq!(r.status, 404);
    rec.add("GET", "/api/admin/members/{id}", &r);
    let r = admin
        .get(&format!("/api/admin/members/{uid}/recovery"))
        .await;
    rec.add("GET", "/api/admin/members/{id}/recovery", &r);
    let r = admin
        .post_json(
            &format!("/api/admin/members/{uid}/recovery"),
            Some(&csrf),
            &json!({ "reason": "lost" }),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    rec.add("POST", "/api/admin/members/{id}/recovery", &r);
    let r = admin
        .post_json(
            &format!("/api/admin/members/{uid}/disable"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    rec.add("POST", "/api/admin/members/{id}/disable", &r);
    let r = admin
        .post_json(
            "/api/admin/keys/no-such-key/revoke",
            Some(&csrf),
            &json!({}),
        )
        .await;
    rec.add("POST", "/api/admin/keys/{id}/revoke", &r);
    let r = admin.get("/api/admin/audit?limit=0").await;
    assert_eq!(r.status, 400);
    rec.add("GET", "/api/admin/audit", &r);
    let r = admin.get("/api/admin/audit?limit=5").await;
    rec.add("GET", "/api/admin/audit", &r);
    let r = admin
        .get("/api/admin/audit/export?from_seq=1&to_seq=3")
        .await;
    rec.add("GET", "/api/admin/audit/export", &r);
    let r = admin.get("/api/admin/audit/export?from_seq=x").await;
    rec.add("GET", "/api/admin/audit/export", &r);

    // A member: an invitation, a refused key (policy: refusals), an accepted one.
    let (inv_id, path) = invite(&mut admin, &csrf, "mia@example.com", &mut rec).await;
    let untrusted = SoftAuthenticator::new(&TestCa::new("Nobody trusts this"));
    let (_, refused) = enrol(&p, &path, &untrusted, &mut rec).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let trusted = SoftAuthenticator::new(p.trusted_ca().expect("trusted CA"));
    let (mut member, done) = enrol(&p, &path, &trusted, &mut rec).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let member_id = done.json()["user_id"].as_str().unwrap().to_string();
    let r = member.get("/api/openapi.json").await;
    assert_eq!(r.status, 403, "{}", r.body);
    rec.add("GET", "/api/openapi.json", &r);
    let r = admin
        .post_json(
            &format!("/api/admin/invitations/{inv_id}/revoke"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    rec.add("POST", "/api/admin/invitations/{id}/revoke", &r);
    let r = admin
        .post_json(
            &format!("/api/admin/members/{member_id}/sessions/end"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    rec.add("POST", "/api/admin/members/{id}/sessions/end", &r);
    let r = admin
        .post_json(
            &format!("/api/admin/members/{member_id}/enable"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    rec.add("POST", "/api/admin/members/{id}/enable", &r);

    // Workspaces.
    let r = admin
        .post_json(
            "/api/admin/workspaces",
            Some(&csrf),
            &json!({ "name": "Beta", "external_id": "ws-beta" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    rec.add("POST", "/api/admin/workspaces", &r);
    let ws = r.json()["id"].as_str().unwrap().to_string();
    let r = admin
        .post_json(
            "/api/admin/workspaces",
            Some(&csrf),
            &json!({ "name": "Beta", "external_id": "ws-beta" }),
        )
        .await;
    rec.add("POST", "/api/admin/workspaces", &r);
    let r = admin
        .post_json(
            &format!("/api/admin/workspaces/{ws}/members"),
            Some(&csrf),
            &json!({ "email": "mia@example.com" }),
        )
        .await;
    rec.add("POST", "/api/admin/workspaces/{id}/members", &r);
    let r = admin
        .post_json(
            &format!("/api/admin/workspaces/{ws}/members"),
            Some(&csrf),
            &json!({ "email": "nobody@example.com" }),
        )
        .await;
    rec.add("POST", "/api/admin/workspaces/{id}/members", &r);
    let r = admin
        .post_json(
            &format!("/api/admin/workspaces/{ws}/members/{member_id}/remove"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    rec.add(
        "POST",
        "/api/admin/workspaces/{id}/members/{user}/remove",
        &r,
    );
    let r = admin
        .get(&format!("/api/admin/workspaces/{ws}/managed-config/codex"))
        .await;
    rec.add("GET", "/api/admin/workspaces/{id}/managed-config/codex", &r);

    // Clients: create, change, new secret, disable; a refused one.
    let r = admin
        .post_json(
            "/api/admin/clients",
            Some(&csrf),
            &json!({ "name": "Made here", "redirect_uris": ["https://made.example/cb"] }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    rec.add("POST", "/api/admin/clients", &r);
    let cid = r.json()["client_id"].as_str().unwrap().to_string();
    let r = admin
        .post_json(
            "/api/admin/clients",
            Some(&csrf),
            &json!({ "name": "Bad", "redirect_uris": ["http://bad.example/cb"] }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    rec.add("POST", "/api/admin/clients", &r);
    let r = admin
        .put_json(
            &format!("/api/admin/clients/{cid}"),
            Some(&csrf),
            &json!({ "name": "Renamed", "redirect_uris": ["https://made.example/cb"] }),
        )
        .await;
    rec.add("PUT", "/api/admin/clients/{client_id}", &r);
    let r = admin
        .post_json(
            &format!("/api/admin/clients/{cid}/secret"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    rec.add("POST", "/api/admin/clients/{client_id}/secret", &r);
    let r = admin
        .post_json(
            &format!("/api/admin/clients/{cid}/disable"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    rec.add("POST", "/api/admin/clients/{client_id}/disable", &r);

    // SAML service providers.
    let r = admin
        .post_json(
            "/api/admin/saml/service-providers",
            Some(&csrf),
            &json!({ "entity_id": "https://sp.example/metadata", "acs_urls": ["https://sp.example/acs"] }),
        )
        .await;
    rec.add("POST", "/api/admin/saml/service-providers", &r);
    let r = admin
        .post_json(
            "/api/admin/saml/service-providers/enabled",
            Some(&csrf),
            &json!({ "entity_id": "https://sp.example/metadata", "enabled": false }),
        )
        .await;
    rec.add("POST", "/api/admin/saml/service-providers/enabled", &r);
    let r = admin
        .post_json(
            "/api/admin/saml/service-providers",
            Some(&csrf),
            &json!({ "entity_id": "x" }),
        )
        .await;
    rec.add("POST", "/api/admin/saml/service-providers", &r);

    // The OpenID provider: code flow, refresh, userinfo, introspection, revocation, errors.
    let mut browser = p.browser().await;
    let (code, pkce) = p.code(&mut browser, CLIENT_ID, ALL_SCOPES).await;
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    let r = p.post("/oauth2/token", CLIENT_ID, &fields).await;
    assert_eq!(r.status, 200, "{}", r.body);
    rec.add("POST", "/oauth2/token", &r);
    let tokens = r.json();
    let r = p
        .post_as(
            "/oauth2/token",
            (CLIENT_ID, "wrong"),
            &[("grant_type", "refresh_token"), ("refresh_token", "kgr_x")],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    rec.add("POST", "/oauth2/token", &r);
    let access = tokens["access_token"].as_str().unwrap();
    let r = p.userinfo(access).await;
    rec.add("GET", "/oauth2/userinfo", &r);
    let r = p
        .app
        .client()
        .post_with(
            "/oauth2/userinfo",
            &[("Authorization", format!("Bearer {access}"))],
            "application/x-www-form-urlencoded",
            vec![],
        )
        .await;
    rec.add("POST", "/oauth2/userinfo", &r);
    let r = p.userinfo("not-a-token").await;
    assert_eq!(r.status, 401);
    rec.add("GET", "/oauth2/userinfo", &r);
    let r = p
        .post("/oauth2/introspect", CLIENT_ID, &[("token", access)])
        .await;
    rec.add("POST", "/oauth2/introspect", &r);
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let r = p.refresh(CLIENT_ID, refresh).await;
    assert_eq!(r.status, 200, "{}", r.body);
    rec.add("POST", "/oauth2/token", &r);
    let newer = r.json()["refresh_token"].as_str().unwrap().to_string();
    let r = p
        .post("/oauth2/revoke", CLIENT_ID, &[("token", &newer)])
        .await;
    rec.add("POST", "/oauth2/revoke", &r);
    let r = p
        .post("/oauth2/introspect", CLIENT_ID, &[("token", &newer)])
        .await;
    rec.add("POST", "/oauth2/introspect", &r);
    // The code again: refused (and its grant revoked).
    let r = p.post("/oauth2/token", CLIENT_ID, &fields).await;
    assert_eq!(r.status, 400, "{}", r.body);
    rec.add("POST", "/oauth2/token", &r);

    // The device grant.
    let device = |fields: &[(&str, &str)]| {
        let mut f = fields.to_vec();
        f.push(("client_id", "device-cli"));
        form(&f)
    };
    let r = p
        .app
        .client()
        .post_with(
            "/oauth2/device_authorization",
            &[],
            "application/x-www-form-urlencoded",
            device(&[("scope", "openid")]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    rec.add("POST", "/oauth2/device_authorization", &r);
    let d = r.json();
    let (user_code, device_code) = (
        d["user_code"].as_str().unwrap(),
        d["device_code"].as_str().unwrap(),
    );
    let poll = p
        .app
        .client()
        .post_with(
            "/oauth2/token",
            &[],
            "application/x-www-form-urlencoded",
            device(&[("grant_type", DEVICE_GRANT), ("device_code", device_code)]),
        )
        .await;
    rec.add("POST", "/oauth2/token", &poll);
    let (_, dcsrf) = crate::device_flow::open_page(&mut browser, user_code).await;
    let r = browser
        .post_json(
            "/api/device/approve/begin",
            Some(&dcsrf),
            &json!({ "user_code": user_code }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    rec.add("POST", "/api/device/approve/begin", &r);
    let r = crate::device_flow::finish(&mut p, &mut browser, &dcsrf, &r.json(), user_code).await;
    assert_eq!(r.status, 200, "{}", r.body);
    rec.add("POST", "/api/device/approve/finish", &r);

    // The compliance pull, up to its rate limit (429 with Retry-After).
    let r = p
        .post_as(
            "/oauth2/token",
            ("compliance-org", &p.secret),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "keygate:compliance"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    rec.add("POST", "/oauth2/token", &r);
    let bearer = vec![(
        "Authorization",
        format!("Bearer {}", r.json()["access_token"].as_str().unwrap()),
    )];
    let mut pull = p.app.client();
    let r = pull
        .get_with("/api/compliance/report?format=json", &bearer)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    rec.add("GET", "/api/compliance/report", &r);
    let report_id = r.json()["report_id"].as_str().unwrap().to_string();
    let r = pull
        .get_with(
            &format!("/api/compliance/evidence?report={report_id}"),
            &bearer,
        )
        .await;
    rec.add("GET", "/api/compliance/evidence", &r);
    let r = pull.get_with("/api/compliance/report", &bearer).await;
    rec.add("GET", "/api/compliance/report", &r);
    let r = pull
        .get_with(
            "/api/compliance/report?format=json",
            &[("Authorization", "Bearer nope".into())],
        )
        .await;
    assert_eq!(r.status, 401);
    rec.add("GET", "/api/compliance/report", &r);
    let r = pull
        .get_with("/api/compliance/report?format=xml", &bearer)
        .await;
    rec.add("GET", "/api/compliance/report", &r);
    let mut limited = None;
    for _ in 0..10 {
        let r = pull
            .get_with("/api/compliance/report?format=json", &bearer)
            .await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("the compliance pull is rate limited");
    assert!(limited.header("retry-after").is_some());
    rec.add("GET", "/api/compliance/report", &limited);

    rec.0
}

#[actix_web::test]
async fn real_answers_match_the_documents_schemas() {
    if validator_missing() {
        return;
    }
    let records = run_flow().await;
    let problems = validate(&records, NOT_EXERCISED);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The validator is not vacuous: an answer with a field the schema does not allow, a
/// status the document does not list and a missing required header are each reported.
#[test]
fn the_validator_reports_drift() {
    if validator_missing() {
        return;
    }
    let headers = json!({});
    let records = vec![
        json!({ "method": "GET", "path": "/healthz", "status": 200, "media": "application/json",
                "empty": false, "headers": headers, "body": { "status": "ok", "extra": 1 } }),
        json!({ "method": "GET", "path": "/healthz", "status": 418, "media": "application/json",
                "empty": false, "headers": headers, "body": {} }),
        json!({ "method": "GET", "path": "/api/compliance/report", "status": 429,
                "media": "application/json", "empty": false, "headers": headers,
                "body": { "error": "rate_limited", "message": "slow down" } }),
    ];
    let problems = validate(&records, &[]);
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(
        has("GET /healthz 200: at /: Additional properties"),
        "{problems:?}"
    );
    assert!(
        has("GET /healthz 418: status not documented"),
        "{problems:?}"
    );
    assert!(
        has("429: required header Retry-After missing"),
        "{problems:?}"
    );
    assert!(has("POST /oauth2/token: never exercised"), "{problems:?}");
}

/// Every endpoint docs/api.md names with a JSON answer is an operation of the document.
#[test]
fn every_endpoint_of_api_md_is_in_the_document() {
    if validator_missing() {
        return;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            &yaml_path(),
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let api =
        std::fs::read_to_string(format!("{}/docs/api.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    // Inside backquotes: `GET /api/…`, `POST /oauth2/…` (odd pieces of a split on '`').
    let spans = api.split('`').skip(1).step_by(2).filter_map(|span| {
        let (m, path) = span.split_once(' ')?;
        (["GET", "POST", "PUT"].contains(&m) && path.starts_with('/'))
            .then(|| (m.to_string(), path.to_string()))
    });
    let mut missing = Vec::new();
    for (method, raw) in spans {
        let path = raw.split('?').next().unwrap().split('[').next().unwrap();
        let json_api = path.starts_with("/api/")
            || path.starts_with("/oauth2/")
                && !path.starts_with("/oauth2/authorize")
                && !path.starts_with("/oauth2/logout")
            || path.starts_with("/.well-known/")
            || path == "/healthz"
            || path == "/readyz";
        if !json_api {
            continue;
        }
        let op = doc["paths"][path][method.to_ascii_lowercase()].is_object();
        if !op {
            missing.push(format!("{method} {path}"));
        }
    }
    assert!(
        missing.is_empty(),
        "in docs/api.md, not in docs/openapi.yaml: {missing:?}"
    );
}

#[actix_web::test]
async fn the_document_is_served_to_admins_as_the_yamls_json() {
    if validator_missing() {
        return;
    }
    let mut p = provider().await;
    let r = p.app.client().get("/api/openapi.json").await;
    assert_eq!(r.status, 401, "{}", r.body);
    let mut admin = p.browser().await;
    let r = admin.get("/api/openapi.json").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            &yaml_path(),
        ])
        .output()
        .expect("python3");
    let from_yaml: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        r.json(),
        from_yaml,
        "docs/openapi.json is stale: run scripts/openapi-json"
    );
}
