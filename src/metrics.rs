//! Request metrics in the Prometheus text format (SPEC C12): per route and method, the
//! requests by status code and a histogram of their durations; the process's uptime and
//! version. Kept in memory by each process (a scrape asks each replica), counted by the
//! HTTP layer's request middleware, read by `GET /metrics`.
//!
//! Routes are the matched patterns (`/api/admin/members/{id}`), never the paths asked for:
//! the label set stays bounded and no identifier reaches the scraper.
//!
//! Also: ceremony outcomes by reason (enrolment, sign-in, OIDC token, SAML: the route's
//! ceremony and step, the outcome, and the error code the answer carried: every label from
//! fixed sets, so bounded), and process-wide series the storage and the ephemeral store
//! feed ([`PROCESS`]): group-commit batch sizes, queue waits and commit times, and the Redis
//! round trip per command.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Upper bounds of the duration histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5];

/// One route and method.
#[derive(Default)]
struct RouteStats {
    /// Requests by status code.
    statuses: Mutex<Vec<(u16, u64)>>,
    /// Requests no longer than each bucket's bound (not cumulative; summed when rendered).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// One route's stats by method.
type Methods = Vec<(String, Arc<RouteStats>)>;

/// The process's request metrics.
pub struct Metrics {
    started: Instant,
    /// By route pattern, then method: looked up with borrowed strings, no allocation.
    routes: RwLock<HashMap<String, Methods>>,
    /// Ceremony answers by (ceremony, step, outcome, reason).
    ceremonies: Mutex<HashMap<OutcomeKey, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            routes: RwLock::default(),
            ceremonies: Mutex::default(),
        }
    }
}

/// (ceremony, step, outcome, reason): every part from a fixed set.
type OutcomeKey = (&'static str, &'static str, &'static str, &'static str);

/// The error code an answer carried (set by the error responses, read by the metrics).
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

/// The ceremony and step a route pattern serves, if any.
fn ceremony_of(route: &str) -> Option<(&'static str, &'static str)> {
    Some(match route {
        "/api/enrol/begin" => ("enrolment", "begin"),
        "/api/enrol/finish" => ("enrolment", "finish"),
        "/api/signin/begin" => ("signin", "begin"),
        "/api/signin/finish" => ("signin", "finish"),
        "/oauth2/token" => ("oidc_token", "token"),
        "/saml/sso" => ("saml", "sso"),
        "/saml/continue" => ("saml", "continue"),
        "/saml/idp-initiated" => ("saml", "idp_initiated"),
        _ => return None,
    })
}

/// Most distinct outcome series kept (codes are a fixed set; this is a backstop).
const MAX_OUTCOME_SERIES: usize = 512;

/// A histogram with fixed bounds that can live in a `static`.
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations no larger than each bound (not cumulative), then past the last.
    buckets: [AtomicU64; 16],
    count: AtomicU64,
    /// The sum in millionths.
    sum_micros: AtomicU64,
}

impl Histogram {
    /// At most 15 bounds, ascending.
    pub const fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; 16],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len())
            .min(15);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = (value.max(0.0) * 1e6) as u64;
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, took: Duration) {
        self.observe(took.as_secs_f64());
    }

    /// The `_bucket`, `_sum` and `_count` lines of `name` with `labels` (`a="b",` or empty).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let bare = labels.trim_end_matches(',');
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}le=\"+Inf\"}} {count}\n{name}_sum{{{bare}}} {sum:.6}\n{name}_count{{{bare}}} {count}"
        );
    }
}

const SECONDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
const BATCH_SIZES: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The ephemeral store's commands, as [`ProcessMetrics::store`] names them.
pub const STORE_COMMANDS: [&str; 7] = ["get", "set", "set_nx", "take", "delete", "counted", "ping"];

/// Series of the whole process, fed by the storage and the ephemeral store.
pub struct ProcessMetrics {
    /// Jobs per group-commit transaction.
    pub batch_size: Histogram,
    /// From a job's queueing to the start of its batch.
    pub batch_wait: Histogram,
    /// One batch's transaction, start to commit.
    pub batch_commit: Histogram,
    /// Redis round trip per command ([`STORE_COMMANDS`] order).
    store: [Histogram; STORE_COMMANDS.len()],
    /// Commands sent again on a fresh connection after theirs died.
    pub store_retries: AtomicU64,
}

impl ProcessMetrics {
    /// The round-trip histogram of `command` (one of [`STORE_COMMANDS`]).
    pub fn store(&self, command: &str) -> Option<&Histogram> {
        STORE_COMMANDS
            .iter()
            .position(|c| *c == command)
            .map(|i| &self.store[i])
    }
}

/// The process's storage and store series.
pub static PROCESS: ProcessMetrics = ProcessMetrics {
    batch_size: Histogram::new(&BATCH_SIZES),
    batch_wait: Histogram::new(&SECONDS),
    batch_commit: Histogram::new(&SECONDS),
    store: [const { Histogram::new(&SECONDS) }; STORE_COMMANDS.len()],
    store_retries: AtomicU64::new(0),
};

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, method: &str, route: &str, status: u16, took: Duration) {
        let stats = self.stats(method, route);
        {
            let mut statuses = stats.statuses.lock().unwrap_or_else(|p| p.into_inner());
            match statuses.iter_mut().find(|(code, _)| *code == status) {
                Some((_, n)) => *n += 1,
                None => statuses.push((status, 1)),
            }
        }
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| secs <= *bound) {
            stats.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        stats.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        stats.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts a ceremony's answer: a route that serves a ceremony step, its status, and
    /// the error code the answer carried (an error without one counts as `unspecified`).
    /// A code on a successful status is a refusal delivered in the answer itself (a SAML
    /// Response with a non-success status, posted to the SP by a 200 page).
    pub fn record_outcome(&self, route: &str, status: u16, code: Option<&'static str>) {
        let Some((ceremony, step)) = ceremony_of(route) else {
            return;
        };
        let (outcome, reason) = match (status, code) {
            (0..=399, None) => ("success", "ok"),
            (0..=499, code) => ("refused", code.unwrap_or("unspecified")),
            (_, code) => ("error", code.unwrap_or("unspecified")),
        };
        let mut map = self.ceremonies.lock().unwrap_or_else(|p| p.into_inner());
        let key = (ceremony, step, outcome, reason);
        if map.len() >= MAX_OUTCOME_SERIES && !map.contains_key(&key) {
            return;
        }
        *map.entry(key).or_default() += 1;
    }

    fn stats(&self, method: &str, route: &str) -> Arc<RouteStats> {
        let find = |methods: &Methods| {
            methods
                .iter()
                .find(|(m, _)| m == method)
                .map(|(_, s)| s.clone())
        };
        {
            let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = routes.get(route).and_then(find) {
                return s;
            }
        }
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        let methods = routes.entry(route.to_owned()).or_default();
        if let Some(s) = find(methods) {
            return s;
        }
        let stats = Arc::new(RouteStats::default());
        methods.push((method.to_owned(), stats.clone()));
        stats
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP keygate_build_info keygate's version.\n# TYPE keygate_build_info gauge\nkeygate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            out,
            "# HELP keygate_uptime_seconds Seconds since this process started.\n# TYPE keygate_uptime_seconds gauge\nkeygate_uptime_seconds {:.3}",
            self.started.elapsed().as_secs_f64()
        );
        let mut routes: Vec<((String, String), Arc<RouteStats>)> = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flat_map(|(route, methods)| {
                methods
                    .iter()
                    .map(|(method, s)| ((method.clone(), route.clone()), s.clone()))
            })
            .collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str("# HELP keygate_http_requests_total HTTP requests answered, by route, method and status code.\n# TYPE keygate_http_requests_total counter\n");
        for ((method, route), stats) in &routes {
            let mut statuses = stats
                .statuses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            statuses.sort_unstable();
            for (code, n) in statuses {
                let _ = writeln!(
                    out,
                    "keygate_http_requests_total{{method=\"{}\",route=\"{}\",code=\"{code}\"}} {n}",
                    label(method),
                    label(route)
                );
            }
        }
        out.push_str("# HELP keygate_http_request_duration_seconds Time to answer HTTP requests, by route and method.\n# TYPE keygate_http_request_duration_seconds histogram\n");
        for ((method, route), stats) in &routes {
            let (method, route) = (label(method), label(route));
            let mut cumulative = 0u64;
            for (bound, n) in BUCKETS.iter().zip(&stats.buckets) {
                cumulative += n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "keygate_http_request_duration_seconds_bucket{{method=\"{method}\",route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = stats.count.load(Ordering::Relaxed);
            let sum = stats.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "keygate_http_request_duration_seconds_bucket{{method=\"{method}\",route=\"{route}\",le=\"+Inf\"}} {count}\n\
                 keygate_http_request_duration_seconds_sum{{method=\"{method}\",route=\"{route}\"}} {sum:.6}\n\
                 keygate_http_request_duration_seconds_count{{method=\"{method}\",route=\"{route}\"}} {count}"
            );
        }
        self.render_outcomes(&mut out);
        render_process(&mut out);
        out
    }

    fn render_outcomes(&self, out: &mut String) {
        let mut outcomes: Vec<(OutcomeKey, u64)> = self
            .ceremonies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, n)| (*k, *n))
            .collect();
        outcomes.sort_unstable();
        out.push_str("# HELP keygate_ceremony_outcomes_total Ceremony answers (enrolment, sign-in, OIDC token, SAML) by step, outcome and reason (the error code).\n# TYPE keygate_ceremony_outcomes_total counter\n");
        for ((ceremony, step, outcome, reason), n) in outcomes {
            let _ = writeln!(
                out,
                "keygate_ceremony_outcomes_total{{ceremony=\"{ceremony}\",step=\"{step}\",outcome=\"{outcome}\",reason=\"{}\"}} {n}",
                label(reason)
            );
        }
    }
}

fn render_process(out: &mut String) {
    let p = &PROCESS;
    out.push_str("# HELP keygate_group_commit_batch_size Audited writes committed together in one transaction.\n# TYPE keygate_group_commit_batch_size histogram\n");
    p.batch_size
        .render(out, "keygate_group_commit_batch_size", "");
    out.push_str("# HELP keygate_group_commit_wait_seconds Time an audited write waited for its batch to start.\n# TYPE keygate_group_commit_wait_seconds histogram\n");
    p.batch_wait
        .render(out, "keygate_group_commit_wait_seconds", "");
    out.push_str("# HELP keygate_group_commit_seconds Time one batch took, from its start to its commit.\n# TYPE keygate_group_commit_seconds histogram\n");
    p.batch_commit
        .render(out, "keygate_group_commit_seconds", "");
    out.push_str("# HELP keygate_store_command_seconds Round trip of ephemeral-store (Redis) commands, by command.\n# TYPE keygate_store_command_seconds histogram\n");
    for (command, h) in STORE_COMMANDS.iter().zip(&p.store) {
        h.render(
            out,
            "keygate_store_command_seconds",
            &format!("command=\"{command}\","),
        );
    }
    let _ = writeln!(
        out,
        "# HELP keygate_store_retries_total Store commands sent again on a fresh connection after theirs died.\n# TYPE keygate_store_retries_total counter\nkeygate_store_retries_total {}",
        p.store_retries.load(Ordering::Relaxed)
    );
}

/// A label value with `\`, `"` and newlines escaped, as the text format asks.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_status_and_buckets_cumulatively() {
        let m = Metrics::default();
        m.record("GET", "/oauth2/jwks", 200, Duration::from_micros(500));
        m.record("GET", "/oauth2/jwks", 200, Duration::from_millis(30));
        m.record("GET", "/oauth2/jwks", 304, Duration::from_secs(5));
        m.record("POST", "/a\"b", 400, Duration::from_millis(2));
        let text = m.render();
        for line in [
            r#"keygate_http_requests_total{method="GET",route="/oauth2/jwks",code="200"} 2"#,
            r#"keygate_http_requests_total{method="GET",route="/oauth2/jwks",code="304"} 1"#,
            r#"keygate_http_request_duration_seconds_bucket{method="GET",route="/oauth2/jwks",le="0.001"} 1"#,
            r#"keygate_http_request_duration_seconds_bucket{method="GET",route="/oauth2/jwks",le="0.05"} 2"#,
            r#"keygate_http_request_duration_seconds_bucket{method="GET",route="/oauth2/jwks",le="2.5"} 2"#,
            r#"keygate_http_request_duration_seconds_bucket{method="GET",route="/oauth2/jwks",le="+Inf"} 3"#,
            r#"keygate_http_request_duration_seconds_count{method="GET",route="/oauth2/jwks"} 3"#,
            r#"keygate_http_requests_total{method="POST",route="/a\"b",code="400"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(text.contains("keygate_build_info{version=\""));
    }
}
