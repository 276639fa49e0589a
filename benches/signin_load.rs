//! Load generator over HTTP, 64 concurrent clients, against keygate in this process:
//! whole key sign-ins (begin → key touch → finish with a new session, from a start page each
//! browser loaded once; `KEYGATE_BENCH_WITH_PAGE=1` loads the page in every sign-in), or with
//! `KEYGATE_BENCH_MODE=exchange|discovery|jwks` OpenID Connect code exchanges (each after an
//! authorize; the latency is the token endpoint's), the discovery document or the JWKS.
//!
//! `cargo bench --bench signin_load` runs the measurement on the embedded default
//! (SQLite + in-process store); with `KEYGATE_BENCH_DATABASE_URL=postgres://…` and
//! `KEYGATE_BENCH_REDIS_URL=redis://…` on PostgreSQL + Redis (in a schema and under a key prefix
//! of its own, both dropped at the end, so runs do not inherit each other's rows). It prints sign-ins/s, p50/p99
//! latency, the CPU the server threads and the client threads used (they share the two
//! cores), and the raw ECDSA P-256 verify bound measured in the same run.
//! `KEYGATE_BENCH_SCHEMA_SQL` is run once after the migrations (a schema experiment without a
//! rebuild); `KEYGATE__…` variables of the environment override its keygate settings (a
//! setting tried without a rebuild). `signin_load: measuring` on stderr marks the start of the
//! measured phase (to attach a profiler to it alone). Without `--bench` (as `cargo test --all-targets` runs it) it does a short smoke run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keygate::state::SystemClock;

/// The allocator `keygate serve` runs with (src/main.rs), so the server side measures the same.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use keygate::storage::{NewCredential, NewUser, Role};
use keygate::{build, BuildOptions, Config};

#[path = "../tests/it/support/authenticator.rs"]
mod authenticator;
#[path = "support/http1.rs"]
mod http1;

use http1::{Conn, Response};

use authenticator::{
    b64url, AssertOptions, RegisterOptions, SoftAuthenticator, SoftCredential, TestCa,
};

struct Settings {
    clients: usize,
    /// Sign-in mode: load the start page inside every measured sign-in
    /// (`KEYGATE_BENCH_WITH_PAGE=1`), not once per browser.
    with_page: bool,
    duration: Duration,
    mode: Mode,
}

/// What each client does in a loop (`KEYGATE_BENCH_MODE`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Start page, begin, key touch, finish: a whole sign-in with a new session.
    Signin,
    /// A signed-in browser's authorize (303 with a code) then the code exchange at the
    /// token endpoint (ID token + access token signed), PKCE S256.
    Exchange,
    /// The code exchange alone (SPEC §9): each client first gets codes from authorize
    /// (`KEYGATE_BENCH_CODES` each, not measured), then redeems them at the token endpoint.
    Token,
    /// `GET /.well-known/openid-configuration`.
    Discovery,
    /// `GET /oauth2/jwks`.
    Jwks,
}

fn mode() -> Mode {
    match std::env::var("KEYGATE_BENCH_MODE").as_deref() {
        Ok("exchange") => Mode::Exchange,
        Ok("token") => Mode::Token,
        Ok("discovery") => Mode::Discovery,
        Ok("jwks") => Mode::Jwks,
        _ => Mode::Signin,
    }
}

fn settings() -> Settings {
    let full = std::env::args().any(|a| a == "--bench");
    if full {
        Settings {
            clients: env_usize("KEYGATE_BENCH_CLIENTS", 64),
            with_page: env_usize("KEYGATE_BENCH_WITH_PAGE", 0) == 1,
            duration: Duration::from_secs(env_usize("KEYGATE_BENCH_SECONDS", 10) as u64),
            mode: mode(),
        }
    } else {
        Settings {
            clients: 4,
            with_page: env_usize("KEYGATE_BENCH_WITH_PAGE", 0) == 1,
            duration: Duration::from_millis(500),
            mode: mode(),
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) from a `/proc/.../stat` file: the whole process for
/// `/proc/self/stat` (exited threads included), one thread for `/proc/thread-self/stat`.
fn cpu_seconds(stat_path: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let Ok(stat) = std::fs::read_to_string(stat_path) else {
        return 0.0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    fields
        .get(11)
        .zip(fields.get(12))
        .and_then(|(u, s)| Some(u.parse::<f64>().ok()? + s.parse::<f64>().ok()?))
        .unwrap_or(0.0)
        / tick
}

/// Raw ECDSA P-256 verifications per second on one core (the crypto bound).
fn raw_ecdsa_bound() -> f64 {
    use ring::signature::{
        EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
        ECDSA_P256_SHA256_ASN1_SIGNING,
    };
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .expect("key");
    let msg = [7u8; 64];
    let sig = key.sign(&rng, &msg).expect("sign");
    let public =
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref().to_vec());
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(700) {
        public.verify(&msg, sig.as_ref()).expect("verify");
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

struct Member {
    user_id: String,
    credential: SoftCredential,
}

fn config(
    port: u16,
    dir: &std::path::Path,
    database_url: Option<&str>,
    redis_keys: Option<&RunKeys>,
) -> Config {
    let mut env = vec![
        (
            "KEYGATE__SERVER__BIND".to_string(),
            format!("127.0.0.1:{port}"),
        ),
        (
            "KEYGATE__SERVER__PUBLIC_URL".into(),
            format!("http://localhost:{port}"),
        ),
        ("KEYGATE__SERVER__WORKERS".into(), "2".into()),
        (
            "KEYGATE__RATE_LIMIT__CEREMONIES_PER_MINUTE".into(),
            "1000000".into(),
        ),
        (
            "KEYGATE__DATABASE__URL".into(),
            format!("sqlite://{}/bench.db", dir.display()),
        ),
        ("KEYGATE__DATABASE__POOL_SIZE".into(), "8".into()),
        (
            "KEYGATE__OIDC__TOKEN_REQUESTS_PER_MINUTE".into(),
            "1000000".into(),
        ),
        (
            "KEYGATE__RATE_LIMIT__AUTHORIZATION_REQUESTS_PER_MINUTE".into(),
            "1000000".into(),
        ),
    ];
    // Any setting can be tried without a rebuild: `KEYGATE__…` variables of the
    // environment come after the load generator's own, and win.
    env.extend(std::env::vars().filter(|(k, _)| k.starts_with("KEYGATE__")));
    if let Some(url) = database_url {
        env.push(("KEYGATE__DATABASE__URL".into(), url.to_owned()));
    }
    if let Some(keys) = redis_keys {
        env.push(("KEYGATE__EPHEMERAL__URL".into(), keys.url.clone()));
        env.push(("KEYGATE__EPHEMERAL__PREFIX".into(), keys.prefix.clone()));
    }
    let file = dir.join("bench.toml");
    std::fs::write(
        &file,
        "[[oidc.clients]]\nclient_id = \"bench-cli\"\nname = \"Bench\"\nredirect_uris = [\"http://127.0.0.1:9/cb\"]\nscopes = [\"openid\"]\npublic = true\n",
    )
    .expect("bench config file");
    Config::load(Some(&file), env).expect("bench config")
}

/// The x5c certificates (DER, leaf first) of a packed attestation object.
fn attestation_chain(attestation_object: &[u8]) -> Vec<Vec<u8>> {
    use ciborium::Value;
    let field = |map: &Value, name: &str| -> Option<Value> {
        map.as_map()?
            .iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v.clone())
    };
    let object: Value = ciborium::from_reader(attestation_object).expect("attestation object");
    field(&object, "attStmt")
        .and_then(|statement| field(&statement, "x5c"))
        .and_then(|x5c| x5c.into_array().ok())
        .map(|certs| {
            certs
                .into_iter()
                .filter_map(|c| c.into_bytes().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Members with one software key each, written straight to storage (setup, not measured),
/// each key's row as an enrolment stores it (the evidence: attestation object, client data,
/// the chain received, its digests, the policy decision).
async fn seed(state: &keygate::state::AppState, n: usize, origin: &str) -> Vec<Member> {
    let ca = TestCa::new("Bench");
    let auth = SoftAuthenticator::new(&ca);
    let mut members = Vec::with_capacity(n);
    let run = keygate::service::tokens::new_id();
    for i in 0..n {
        let reg = auth.register(&RegisterOptions {
            rp_id: "localhost".into(),
            origin: origin.into(),
            ..RegisterOptions::default()
        });
        let chain = attestation_chain(&reg.attestation_object);
        assert!(!chain.is_empty(), "a packed attestation carries its chain");
        let user_id = keygate::service::tokens::new_id();
        let user = NewUser {
            id: user_id.clone(),
            email: format!("bench{i}-{run}@example.com"),
            display_name: format!("Bench {i}"),
            role: Role::Member,
            created_at: 0,
        };
        let cred = NewCredential {
            id: keygate::service::tokens::new_id(),
            user_id: user_id.clone(),
            credential_id: reg.credential.id.clone(),
            public_key_cose: reg.credential.public_key_cose.clone(),
            alg: reg.credential.alg,
            sign_count: 0,
            aaguid: "fa2b99dc-9e39-4257-8f92-4a30d23c4118".into(),
            model: Some("YubiKey 5 NFC".into()),
            fips: false,
            firmware: None,
            fmt: "packed".into(),
            attestation_kind: "basic".into(),
            trust_anchor: Some("Bench".into()),
            trust_anchor_sha256: Some(sha256_hex(ca.root_der())),
            leaf_sha256: chain.first().map(|leaf| sha256_hex(leaf)),
            chain_json: serde_json::to_string(&chain.iter().map(|c| b64url(c)).collect::<Vec<_>>())
                .expect("chain"),
            attestation_object: reg.attestation_object.clone(),
            client_data_json: reg.client_data_json.clone(),
            user_verified: true,
            backup_eligible: false,
            phishing_resistant: true,
            policy_version: 1,
            decision_json: serde_json::json!({
                "accepted": true,
                "phishing_resistant": true,
                "policy_version": 1,
            })
            .to_string(),
            nickname: "Bench key".into(),
            enrolled_at: 0,
            enrolled_by: "bench".into(),
        };
        state
            .storage
            .run(move |s| {
                s.transaction(|tx| {
                    tx.insert_user(&user)?;
                    tx.insert_credential(&cred)?;
                    Ok(())
                })
            })
            .await
            .expect("seed member");
        members.push(Member {
            user_id,
            credential: reg.credential,
        });
    }
    members
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = text.find(start)? + start.len();
    let j = text[i..].find(end)? + i;
    Some(&text[i..j])
}

fn keep_cookies(jar: &mut BTreeMap<String, String>, res: &Response) {
    for (k, v) in res.set_cookies() {
        jar.insert(k.to_string(), v.to_string());
    }
}

fn cookie_header(jar: &BTreeMap<String, String>) -> String {
    jar.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A browser that has loaded the start page: its cookies (the double-submit CSRF cookie)
/// and the page's CSRF token.
#[derive(Clone)]
struct StartPage {
    jar: BTreeMap<String, String>,
    csrf: String,
}

/// `GET /`, as a browser opening the start page.
async fn open_start_page(conn: &mut Conn) -> Result<StartPage, String> {
    let mut jar = BTreeMap::new();
    let res = conn
        .request("GET", "/", &[], b"")
        .await
        .map_err(|e| format!("GET /: {e}"))?;
    keep_cookies(&mut jar, &res);
    let page = String::from_utf8_lossy(&res.body);
    let csrf = between(&page, "name=\"csrf-token\" content=\"", "\"")
        .ok_or("no CSRF token")?
        .to_string();
    Ok(StartPage { jar, csrf })
}

/// A JSON `POST` from the browser whose cookies are `jar`, with its CSRF token.
async fn post_json(
    conn: &mut Conn,
    path: &str,
    jar: &BTreeMap<String, String>,
    csrf: &str,
    body: &[u8],
) -> std::io::Result<Response> {
    let cookies = cookie_header(jar);
    conn.request(
        "POST",
        path,
        &[
            ("Cookie", &cookies),
            ("X-CSRF-Token", csrf),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await
}

/// One measured sign-in: from a copy of `page` when given, else after loading the start page.
async fn sign_in(
    conn: &mut Conn,
    origin: &str,
    member: &mut Member,
    page: Option<&StartPage>,
) -> Result<Phases, String> {
    let mut page = match page {
        Some(p) => p.clone(),
        None => open_start_page(conn).await?,
    };
    sign_in_from(conn, origin, member, &mut page).await
}

/// How long a sign-in's two requests took, each from sending it to its whole answer.
#[derive(Clone, Copy)]
struct Phases {
    begin: Duration,
    finish: Duration,
}

/// The key sign-in from a loaded start page (SPEC §9 "start + finish + session"): begin
/// (a new anonymous session and a challenge), the key's signature, finish (verified, a new
/// signed-in session). The cookies end up in `page.jar`; `Err` names the step that failed.
async fn sign_in_from(
    conn: &mut Conn,
    origin: &str,
    member: &mut Member,
    page: &mut StartPage,
) -> Result<Phases, String> {
    let jar = &mut page.jar;
    let csrf = page.csrf.clone();
    let t = Instant::now();
    let res = post_json(conn, "/api/signin/begin", jar, &csrf, b"{}")
        .await
        .map_err(|e| format!("begin: {e}"))?;
    let begin = t.elapsed();
    keep_cookies(jar, &res);
    let options: serde_json::Value =
        serde_json::from_slice(&res.body).map_err(|e| format!("begin body: {e}"))?;
    let challenge = options["challenge"]
        .as_str()
        .ok_or_else(|| format!("no challenge: {options}"))?;
    let challenge = keygate::service::tokens::from_b64url(challenge).ok_or("bad challenge")?;
    let a = member.credential.get(&AssertOptions {
        rp_id: "localhost".into(),
        origin: origin.into(),
        challenge,
        ..AssertOptions::default()
    });
    let id = b64url(&member.credential.id);
    let body = serde_json::json!({ "credential": {
    "id": id, "rawId": id, "type": "public-key",
    "response": {
        "clientDataJSON": b64url(&a.client_data_json),
        "authenticatorData": b64url(&a.authenticator_data),
        "signature": b64url(&a.signature),
        "userHandle": b64url(&hex::decode(&member.user_id).unwrap_or_default()),
    }}});
    let t = Instant::now();
    let res = post_json(
        conn,
        "/api/signin/finish",
        jar,
        &csrf,
        body.to_string().as_bytes(),
    )
    .await
    .map_err(|e| format!("finish: {e}"))?;
    if res.status != 200 {
        return Err(format!("finish answered {}", res.status));
    }
    let finish = t.elapsed();
    keep_cookies(jar, &res);
    Ok(Phases { begin, finish })
}

/// A signed-in browser's cookies and CSRF token (exchange mode signs in once).
struct Browser {
    jar: BTreeMap<String, String>,
}

async fn signed_in_browser(
    conn: &mut Conn,
    origin: &str,
    member: &mut Member,
) -> Result<Browser, String> {
    let mut page = open_start_page(conn).await?;
    sign_in_from(conn, origin, member, &mut page).await?;
    Ok(Browser { jar: page.jar })
}

/// A code from authorize (303 to the client with it) and its PKCE verifier.
async fn authorize(conn: &mut Conn, browser: &Browser) -> Result<(String, String), String> {
    let verifier = keygate::service::tokens::new_id() + &keygate::service::tokens::new_id();
    let challenge = keygate::oidc::pkce::s256_challenge(&verifier);
    let res = conn
        .request(
            "GET",
            &format!(
                "/oauth2/authorize?response_type=code&client_id=bench-cli&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid&code_challenge={challenge}&code_challenge_method=S256&state=s"
            ),
            &[("Cookie", &cookie_header(&browser.jar))],
            b"",
        )
        .await
        .map_err(|e| format!("authorize: {e}"))?;
    let location = res
        .header("location")
        .ok_or_else(|| format!("authorize answered {} without a redirect", res.status))?;
    let code = between(location, "code=", "&")
        .or_else(|| location.split("code=").nth(1))
        .ok_or("no code")?
        .to_string();
    Ok((code, verifier))
}

/// The code exchange at the token endpoint (ID token + access token); returns its latency.
async fn redeem(conn: &mut Conn, (code, verifier): &(String, String)) -> Result<Duration, String> {
    let body = format!(
        "grant_type=authorization_code&client_id=bench-cli&code={code}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&code_verifier={verifier}"
    );
    let t = Instant::now();
    let res = conn
        .request(
            "POST",
            "/oauth2/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .await
        .map_err(|e| format!("token: {e}"))?;
    if res.status != 200 {
        return Err(format!("token answered {}", res.status));
    }
    let tokens: serde_json::Value =
        serde_json::from_slice(&res.body).map_err(|e| format!("token body: {e}"))?;
    if tokens["id_token"].as_str().is_none() || tokens["access_token"].as_str().is_none() {
        return Err(format!("token answered without the tokens: {tokens}"));
    }
    Ok(t.elapsed())
}

/// authorize (303 with a code) then the token endpoint; returns the token step's latency.
async fn exchange(conn: &mut Conn, browser: &Browser) -> Result<Duration, String> {
    let code = authorize(conn, browser).await?;
    redeem(conn, &code).await
}

async fn get_ok(conn: &mut Conn, path: &str) -> Result<(), String> {
    let res = conn
        .request("GET", path, &[], b"")
        .await
        .map_err(|e| e.to_string())?;
    if res.status != 200 {
        return Err(format!("{path} answered {}", res.status));
    }
    Ok(())
}

/// A PostgreSQL schema of its own for one run, so that no run meets the rows (and dead
/// row versions) of an earlier one; dropped at the end.
struct RunSchema {
    admin: keygate::storage::Storage,
    name: String,
}

impl RunSchema {
    /// Creates the schema; returns it with `base` pointed at it (`search_path`).
    fn create(base: &str) -> (RunSchema, String) {
        let admin = keygate::storage::Storage::connect(base, Some(1)).expect("PostgreSQL");
        let name = format!("kgbench_{}", keygate::service::tokens::new_id());
        admin
            .debug_execute(&format!("CREATE SCHEMA {name}"))
            .expect("create the run's schema");
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-csearch_path%3D{name}");
        (RunSchema { admin, name }, url)
    }
}

impl Drop for RunSchema {
    fn drop(&mut self) {
        let _ = self
            .admin
            .debug_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

/// The run's key prefix on Redis (`KEYGATE_BENCH_REDIS_URL`), its keys deleted at the end
/// like the schema (sessions would otherwise stay for their 12 hours).
struct RunKeys {
    url: String,
    prefix: String,
}

impl Drop for RunKeys {
    fn drop(&mut self) {
        use redis::Commands;
        let deleted = redis::Client::open(self.url.as_str())
            .and_then(|client| client.get_connection())
            .and_then(|mut conn| {
                let keys = conn
                    .scan_match::<_, String>(format!("{}*", self.prefix))?
                    .collect::<Result<Vec<String>, _>>()?;
                for chunk in keys.chunks(1000) {
                    redis::cmd("DEL").arg(chunk).query::<()>(&mut conn)?;
                }
                Ok(keys.len())
            });
        if let Err(e) = deleted {
            eprintln!(
                "signin_load: the run's Redis keys ({}*) were not deleted: {e}",
                self.prefix
            );
        }
    }
}

/// The `p` quantile of `sorted` (ascending); 0 when empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

fn main() {
    let s = settings();
    let schema = std::env::var("KEYGATE_BENCH_DATABASE_URL")
        .ok()
        .map(|base| RunSchema::create(&base));
    let database_url = schema.as_ref().map(|(_, url)| url.clone());
    let redis_keys = std::env::var("KEYGATE_BENCH_REDIS_URL")
        .ok()
        .map(|url| RunKeys {
            url,
            prefix: format!("kgbench:{}:", keygate::service::tokens::new_id()),
        });
    let backend = if std::env::var("KEYGATE_BENCH_DATABASE_URL").is_ok() {
        "PostgreSQL + Redis"
    } else {
        "embedded default (SQLite + in-process store)"
    };
    let bound = raw_ecdsa_bound();
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let base = format!("http://localhost:{port}");
    let (addr, host) = (
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        format!("localhost:{port}"),
    );
    // keygate runs on its own thread whose runtime keeps running: the Redis connection's
    // driver task lives there, as it does under `keygate serve`.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (base2, clients) = (base.clone(), s.clients);
    let run_config = config(
        port,
        dir.path(),
        database_url.as_deref(),
        redis_keys.as_ref(),
    );
    let server_thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let app = build(
                run_config,
                Arc::new(SystemClock),
                BuildOptions {
                    migrate: true,
                    bootstrap: false,
                },
            )
            .await
            .expect("build keygate");
            // An experiment on the schema without a rebuild (an index dropped, say): SQL run
            // once after the migrations, before any row is seeded.
            if let Ok(sql) = std::env::var("KEYGATE_BENCH_SCHEMA_SQL") {
                app.state
                    .storage
                    .debug_execute(&sql)
                    .expect("KEYGATE_BENCH_SCHEMA_SQL");
            }
            let server = keygate::start(&app.state, listener).expect("start");
            let members = seed(&app.state, clients, &base2).await;
            let _ = ready_tx.send((server.handle(), members));
            server.await.expect("server");
        });
    });
    let (handle, members) = ready_rx.recv().expect("keygate started");

    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    // Sign-in mode: each sign-in's begin and finish, in ms.
    let phases = Arc::new(Mutex::new(Vec::<(f64, f64)>::new()));
    let first_error = Arc::new(Mutex::new(None::<String>));
    // Every client gets ready (start page, signed-in browser, codes) before the clock
    // starts; once all are, the barrier's leader starts it: `ready` carries the client
    // thread's CPU time at that moment.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<f64>();
    let s_mode = s.mode;
    let with_page = s.with_page;
    let codes_per_client = env_usize("KEYGATE_BENCH_CODES", 1500);
    let load = {
        let (done, failed, stop, latencies, phases, first_error, base) = (
            done.clone(),
            failed.clone(),
            stop.clone(),
            latencies.clone(),
            phases.clone(),
            first_error.clone(),
            base.clone(),
        );
        let host = host.clone();
        std::thread::Builder::new()
            .name("loadgen".into())
            .spawn(move || {
                let barrier = Arc::new(tokio::sync::Barrier::new(members.len()));
                actix_web::rt::System::new().block_on(async move {
                    let mut tasks = Vec::new();
                    for mut member in members {
                        let mode = s_mode;
                        let (done, failed, stop, latencies, phases, first_error, base, host) = (
                            done.clone(),
                            failed.clone(),
                            stop.clone(),
                            latencies.clone(),
                            phases.clone(),
                            first_error.clone(),
                            base.clone(),
                            host.clone(),
                        );
                        let (barrier, ready_tx) = (barrier.clone(), ready_tx.clone());
                        tasks.push(actix_web::rt::spawn(async move {
                            let mut conn = Conn::new(addr, &host);
                            let mut mine = Vec::new();
                            let mut my_phases = Vec::new();
                            let fail = |e: String| {
                                first_error.lock().expect("lock").get_or_insert(e);
                                // Nobody measures anything: the run ends at once.
                                stop.store(true, Ordering::Relaxed);
                            };
                            // Sign-in mode: the start page is loaded once, as by a browser
                            // on it; each sign-in then starts from its cookies (a new
                            // anonymous session, challenge, touch, signed-in session).
                            let setup = async {
                                let start_page = if mode == Mode::Signin && !with_page {
                                    Some(open_start_page(&mut conn).await?)
                                } else {
                                    None
                                };
                                let browser = if matches!(mode, Mode::Exchange | Mode::Token) {
                                    Some(signed_in_browser(&mut conn, &base, &mut member).await?)
                                } else {
                                    None
                                };
                                let mut codes = Vec::new();
                                if let (Mode::Token, Some(b)) = (mode, &browser) {
                                    for _ in 0..codes_per_client {
                                        codes.push(authorize(&mut conn, b).await?);
                                    }
                                }
                                Ok::<_, String>((start_page, browser, codes))
                            };
                            let ready = setup.await;
                            if barrier.wait().await.is_leader() {
                                let _ = ready_tx.send(cpu_seconds("/proc/thread-self/stat"));
                            }
                            let (start_page, browser, mut codes) = match ready {
                                Ok(r) => r,
                                Err(e) => return fail(e),
                            };
                            codes.reverse();
                            while !stop.load(Ordering::Relaxed) {
                                let t = Instant::now();
                                let outcome = match (mode, &browser) {
                                    (Mode::Signin, _) => {
                                        sign_in(&mut conn, &base, &mut member, start_page.as_ref())
                                            .await
                                            .map(|p| {
                                                my_phases.push((
                                                    p.begin.as_secs_f64() * 1000.0,
                                                    p.finish.as_secs_f64() * 1000.0,
                                                ));
                                                t.elapsed()
                                            })
                                    }
                                    (Mode::Exchange, Some(b)) => exchange(&mut conn, b).await,
                                    (Mode::Token, _) => match codes.pop() {
                                        Some(code) => redeem(&mut conn, &code).await,
                                        // Out of codes: the measurement ends here.
                                        None => {
                                            stop.store(true, Ordering::Relaxed);
                                            break;
                                        }
                                    },
                                    (Mode::Discovery, _) => {
                                        get_ok(&mut conn, "/.well-known/openid-configuration")
                                            .await
                                            .map(|()| t.elapsed())
                                    }
                                    (Mode::Jwks, _) => get_ok(&mut conn, "/oauth2/jwks")
                                        .await
                                        .map(|()| t.elapsed()),
                                    (Mode::Exchange, None) => Err("no browser".into()),
                                };
                                match outcome {
                                    Ok(latency) => {
                                        mine.push(latency.as_secs_f64() * 1000.0);
                                        done.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Err(e) => {
                                        failed.fetch_add(1, Ordering::Relaxed);
                                        first_error.lock().expect("lock").get_or_insert(e);
                                    }
                                }
                            }
                            latencies.lock().expect("lock").extend(mine);
                            phases.lock().expect("lock").extend(my_phases);
                        }));
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                });
                // This thread is the whole client: its CPU, read before it exits.
                cpu_seconds("/proc/thread-self/stat")
            })
            .expect("loadgen thread")
    };
    let client_cpu0 = ready_rx.recv().expect("clients ready");
    let cpu_total0 = cpu_seconds("/proc/self/stat");
    let started = Instant::now();
    // For a profiler attached to the measured phase alone.
    eprintln!(
        "signin_load: measuring for {:.0} s",
        s.duration.as_secs_f64()
    );
    while started.elapsed() < s.duration && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_client = load.join().expect("loadgen thread") - client_cpu0;
    let cpu_total = cpu_seconds("/proc/self/stat") - cpu_total0;
    actix_web::rt::System::new().block_on(handle.stop(true));
    let _ = server_thread.join();

    let ok = done.load(Ordering::Relaxed);
    let bad = failed.load(Ordering::Relaxed);
    let mut lat = latencies.lock().expect("lock").clone();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| percentile(&lat, p);
    println!(
        "signin_load: {:?}{} on {backend}, {} concurrent clients, {elapsed:.1} s",
        s.mode,
        if s.mode == Mode::Signin && s.with_page {
            " (start page loaded in each)"
        } else {
            ""
        },
        s.clients
    );
    println!(
        "  per second {:.0}  (ok {ok}, failed {bad})  p50 {:.1} ms  p99 {:.1} ms",
        ok as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
    println!(
        "  CPU: server {:.2} cores, client {:.2} cores",
        (cpu_total - cpu_client).max(0.0) / elapsed,
        cpu_client / elapsed
    );
    let phases = phases.lock().expect("lock").clone();
    if !phases.is_empty() {
        let (mut begin, mut finish): (Vec<f64>, Vec<f64>) = phases.into_iter().unzip();
        begin.sort_by(f64::total_cmp);
        finish.sort_by(f64::total_cmp);
        println!(
            "  begin p50 {:.1} ms  p99 {:.1} ms;  finish p50 {:.1} ms  p99 {:.1} ms",
            percentile(&begin, 0.50),
            percentile(&begin, 0.99),
            percentile(&finish, 0.50),
            percentile(&finish, 0.99)
        );
    }
    println!("  raw ECDSA P-256 verify bound (same run, one core): {bound:.0}/s");
    if let Some(e) = first_error.lock().expect("lock").take() {
        println!("  first error: {e}");
    }
    assert!(ok > 0, "nothing succeeded");
    assert_eq!(bad, 0, "every request succeeds");
}
