//! `TestApp`: keygate built in-process on the backend the environment selects, served on
//! 127.0.0.1 with an ephemeral port, and a small cookie-keeping HTTP client.
//!
//! Backend: `KEYGATE_TEST_DATABASE_URL` (PostgreSQL; each app gets its own schema) and
//! `KEYGATE_TEST_REDIS_URL` (each app gets its own key prefix); otherwise a SQLite file in a
//! temporary directory and the in-process store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use keygate::config::Config;
use keygate::state::{AppState, Clock};
use keygate::{build, App, BuildOptions};

/// A clock tests can move forward.
pub struct TestClock {
    offset: AtomicI64,
}

impl TestClock {
    pub fn new() -> Arc<TestClock> {
        Arc::new(TestClock {
            offset: AtomicI64::new(0),
        })
    }
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
            + time::Duration::seconds(self.offset.load(Ordering::SeqCst))
    }
}

fn random_suffix() -> String {
    keygate::service::tokens::new_id()[..12].to_string()
}

fn ephemeral_url() -> (String, String) {
    match std::env::var("KEYGATE_TEST_REDIS_URL") {
        Ok(url) => (url, format!("kgtest:{}:", random_suffix())),
        Err(_) => ("memory://".into(), "kg:".into()),
    }
}

pub struct TestAppBuilder {
    env: Vec<(String, String)>,
    config_file: Option<String>,
    /// Issue a bootstrap link (not for replicas of an app that already did).
    bootstrap: bool,
}

impl TestAppBuilder {
    /// Another replica of `primary`: the same database, the same shared store and key
    /// prefix, the same public URL (as behind one load balancer), its own port.
    pub fn replica_of(mut self, primary: &TestApp) -> Self {
        for (k, v) in [
            ("KEYGATE__DATABASE__URL", primary.database_url.clone()),
            ("KEYGATE__EPHEMERAL__URL", primary.ephemeral.0.clone()),
            ("KEYGATE__EPHEMERAL__PREFIX", primary.ephemeral.1.clone()),
            ("KEYGATE__SERVER__PUBLIC_URL", primary.base.clone()),
        ] {
            self.env.push((k.to_string(), v));
        }
        self.bootstrap = false;
        self
    }

    /// Sets a config value as a `KEYGATE__…` variable would (`"policy.fips_only", "true"`).
    pub fn with(mut self, key: &str, value: &str) -> Self {
        let name = format!("KEYGATE__{}", key.replace('.', "__").to_ascii_uppercase());
        self.env.push((name, value.to_string()));
        self
    }

    /// Adds TOML to the config file (for arrays of tables such as extra models).
    pub fn with_toml(mut self, toml: &str) -> Self {
        let f = self.config_file.get_or_insert_with(String::new);
        f.push_str(toml);
        f.push('\n');
        self
    }

    pub async fn start(self) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::support::db::test_storage_unmigrated(Some(1));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("addr").port();
        let (eph_url, prefix) = ephemeral_url();
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
            ("KEYGATE__SERVER__SHUTDOWN_TIMEOUT_SECS".into(), "1".into()),
            ("KEYGATE__DATABASE__URL".into(), db.url.clone()),
            ("KEYGATE__DATABASE__POOL_SIZE".into(), "4".into()),
            ("KEYGATE__EPHEMERAL__URL".into(), eph_url),
            ("KEYGATE__EPHEMERAL__PREFIX".into(), prefix),
            ("KEYGATE__ORGANISATION__NAME".into(), "Test Org".into()),
        ];
        env.extend(self.env);
        let lookup = |key: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let database_url = lookup("KEYGATE__DATABASE__URL");
        let ephemeral = (
            lookup("KEYGATE__EPHEMERAL__URL"),
            lookup("KEYGATE__EPHEMERAL__PREFIX"),
        );
        let public = lookup("KEYGATE__SERVER__PUBLIC_URL");
        let file = self.config_file.map(|text| {
            let path = dir.path().join("keygate.toml");
            std::fs::write(&path, text).expect("write config");
            path
        });
        let config = Config::load(file.as_deref(), env).expect("test config");
        let clock = TestClock::new();
        let App { state, bootstrap } = build(
            config,
            clock.clone(),
            BuildOptions {
                migrate: true,
                bootstrap: self.bootstrap,
            },
        )
        .await
        .expect("build keygate");
        let server = keygate::start(&state, listener).expect("start server");
        let handle = server.handle();
        actix_web::rt::spawn(server);
        TestApp {
            state,
            clock,
            base: public,
            address: format!("http://127.0.0.1:{port}"),
            database_url,
            ephemeral,
            bootstrap_link: bootstrap.map(|b| b.link),
            handle,
            _db: db,
            _dir: dir,
        }
    }
}

pub struct TestApp {
    pub state: AppState,
    pub clock: Arc<TestClock>,
    /// `http://localhost:PORT`, the configured public URL and WebAuthn origin.
    pub base: String,
    pub bootstrap_link: Option<String>,
    /// Where this process listens (differs from `base` for a replica).
    pub address: String,
    database_url: String,
    ephemeral: (String, String),
    handle: actix_web::dev::ServerHandle,
    _db: crate::support::db::TestDb,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            env: Vec::new(),
            config_file: None,
            bootstrap: true,
        }
    }

    pub async fn start() -> TestApp {
        Self::builder().start().await
    }

    /// Moves the clock to the first second of a minute. Rate limits count per clock minute:
    /// a test that counts up to a limit must not see the minute turn halfway.
    pub fn at_start_of_minute(&self) {
        let into = self.state.now().rem_euclid(60);
        self.clock.advance((61 - into).rem_euclid(60));
    }

    pub fn origin(&self) -> &str {
        &self.base
    }

    /// The row id of the first key `list_credentials` gives.
    pub async fn first_key_id(&self) -> String {
        self.state
            .storage
            .run(|s| s.list_credentials())
            .await
            .unwrap()[0]
            .id
            .clone()
    }

    /// A new browser-like client with its own cookies.
    pub fn client(&self) -> Client {
        Client {
            base: self.address.clone(),
            cookies: BTreeMap::new(),
            http: awc::Client::builder()
                .disable_redirects()
                .timeout(std::time::Duration::from_secs(20))
                .finish(),
        }
    }

    /// The path part of the bootstrap link (`/enrol/<token>`).
    pub fn bootstrap_path(&self) -> String {
        let link = self.bootstrap_link.as_deref().expect("a bootstrap link");
        link.trim_start_matches(&self.base).to_string()
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// The response parts tests look at.
pub struct Reply {
    pub status: u16,
    pub headers: awc::http::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

pub struct Client {
    base: String,
    pub cookies: BTreeMap<String, String>,
    http: awc::Client,
}

impl Client {
    /// Sends the next requests to another replica, keeping the cookies (as a load
    /// balancer would).
    pub fn switch_to(&mut self, app: &TestApp) {
        self.base = app.address.clone();
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, headers: &awc::http::header::HeaderMap) {
        for v in headers.get_all("set-cookie") {
            let Ok(s) = v.to_str() else { continue };
            let Ok(c) = actix_web::cookie::Cookie::parse(s.to_string()) else {
                continue;
            };
            let removed =
                c.max_age().is_some_and(|a| a.is_zero() || a.is_negative()) || c.value().is_empty();
            if removed {
                self.cookies.remove(c.name());
            } else {
                self.cookies
                    .insert(c.name().to_string(), c.value().to_string());
            }
        }
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let url = format!("{}{}", self.base, path);
        let mut req = match method {
            "GET" => self.http.get(&url),
            "PUT" => self.http.put(&url),
            _ => self.http.post(&url),
        };
        if !self.cookies.is_empty() {
            req = req.insert_header(("Cookie", self.cookie_header()));
        }
        // Appended: a header named twice is sent as two lines.
        for (k, v) in headers {
            req = req.append_header((*k, v.clone()));
        }
        let mut res = match body {
            Some((ctype, bytes)) => req
                .insert_header(("Content-Type", ctype))
                .send_body(bytes)
                .await
                .expect("request"),
            None => req.send().await.expect("request"),
        };
        let body = res.body().limit(4 * 1024 * 1024).await.expect("body");
        let headers = res.headers().clone();
        self.keep_cookies(&headers);
        Reply {
            status: res.status().as_u16(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send("GET", path, &[], None).await
    }

    /// POSTs JSON with the given CSRF token header (or none).
    pub async fn post_json(
        &mut self,
        path: &str,
        csrf: Option<&str>,
        body: &serde_json::Value,
    ) -> Reply {
        self.post_raw(path, csrf, body.to_string().into_bytes())
            .await
    }

    pub async fn put_json(
        &mut self,
        path: &str,
        csrf: Option<&str>,
        body: &serde_json::Value,
    ) -> Reply {
        let headers: Vec<(&str, String)> = csrf
            .map(|c| vec![("X-CSRF-Token", c.to_string())])
            .unwrap_or_default();
        let body = body.to_string().into_bytes();
        self.send("PUT", path, &headers, Some(("application/json", body)))
            .await
    }

    pub async fn post_raw(&mut self, path: &str, csrf: Option<&str>, body: Vec<u8>) -> Reply {
        let headers: Vec<(&str, String)> = csrf
            .map(|c| vec![("X-CSRF-Token", c.to_string())])
            .unwrap_or_default();
        self.send("POST", path, &headers, Some(("application/json", body)))
            .await
    }

    /// GETs with extra headers (e.g. `Authorization: Bearer …`).
    pub async fn get_with(&mut self, path: &str, headers: &[(&str, String)]) -> Reply {
        self.send("GET", path, headers, None).await
    }

    /// POSTs a raw body with a content type and extra headers.
    pub async fn post_with(
        &mut self,
        path: &str,
        headers: &[(&str, String)],
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        self.send("POST", path, headers, Some((content_type, body)))
            .await
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            "POST",
            path,
            &[],
            Some(("application/x-www-form-urlencoded", body.into_bytes())),
        )
        .await
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The CSRF token a page carries (`<meta name="csrf-token">` or a hidden `csrf` field).
pub fn csrf_of(html: &str) -> String {
    for marker in ["name=\"csrf-token\" content=\"", "name=\"csrf\" value=\""] {
        if let Some(start) = html.find(marker) {
            let rest = &html[start + marker.len()..];
            if let Some(end) = rest.find('"') {
                return rest[..end].to_string();
            }
        }
    }
    panic!("no CSRF token in page: {html}");
}
