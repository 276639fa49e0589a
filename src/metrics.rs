//! Request metrics in the Prometheus text format (SPEC C12): per route and method, the
//! requests by status code and a histogram of their durations; the process's uptime and
//! version. Kept in memory by each process (a scrape asks each replica), counted by the
//! HTTP layer's request middleware, read by `GET /metrics`.
//!
//! Routes are the matched patterns (`/api/admin/members/{id}`), never the paths asked for:
//! the label set stays bounded and no identifier reaches the scraper.

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
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            routes: RwLock::default(),
        }
    }
}

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
        out
    }
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
