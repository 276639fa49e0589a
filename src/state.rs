//! `AppState`: everything a request needs, built once, cloned cheaply. No globals.

use std::sync::Arc;

use crate::attestation::{Policy, Verifier};
use crate::config::Config;
use crate::ephemeral::EphemeralStore;
use crate::storage::Storage;

/// Wall-clock time, behind a trait so tests can move it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> time::OffsetDateTime;
    fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub storage: Storage,
    pub ephemeral: Arc<dyn EphemeralStore>,
    pub verifier: Arc<Verifier>,
    pub clock: Arc<dyn Clock>,
    /// The exact origin browsers must report (from `server.public_url`).
    pub origin: Arc<str>,
    pub rp_id: Arc<str>,
    /// Parsed `server.trusted_proxies`.
    pub proxies: Arc<[(std::net::IpAddr, u8)]>,
    /// This process's request metrics (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Parsed `server.metrics_allow`: the peers `/metrics` answers.
    pub metrics_allow: Arc<[(std::net::IpAddr, u8)]>,
    /// Deployment-wide secret for keyed digests (stored in the database).
    pub lookup_key: Arc<[u8]>,
    /// Webhook and e-mail alerts on new sessions (`[alerts]`).
    pub alerts: Arc<crate::service::alerts::Alerts>,
    /// The OpenID Connect provider: token settings, discovery, signing keys.
    pub oidc: Arc<crate::service::oidc::Provider>,
    /// The SAML identity provider: entity ID, endpoints, signing keys.
    pub saml: Arc<crate::service::saml::Idp>,
}

impl AppState {
    /// The state an HTTP worker serves with, made on the worker's thread
    /// ([`EphemeralStore::for_worker`]); everything else is shared.
    pub fn for_worker(&self) -> AppState {
        let mut state = self.clone();
        if let Some(store) = self.ephemeral.for_worker() {
            state.ephemeral = store;
        }
        state
    }

    /// The client's address: the TCP peer, or what a trusted proxy forwarded.
    pub fn client_addr(
        &self,
        peer: std::net::IpAddr,
        forwarded_for: Option<&str>,
    ) -> std::net::IpAddr {
        resolve_client(&self.proxies, peer, forwarded_for)
    }

    pub fn policy(&self) -> &Policy {
        &self.config.policy
    }

    /// HMAC-SHA-256 of `data` under the deployment's lookup key.
    pub fn keyed_digest(&self, data: &[u8]) -> Vec<u8> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.lookup_key);
        ring::hmac::sign(&key, data).as_ref().to_vec()
    }

    pub fn now(&self) -> i64 {
        self.clock.unix()
    }

    /// A link to a path of this gateway, for people (printed, e-mailed, shown).
    pub fn link(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.config.server.public_url.trim_end_matches('/'),
            path
        )
    }
}

/// The TCP peer, or, when the peer is a trusted proxy, the right-most address in
/// `X-Forwarded-For` that is not a trusted proxy (addresses further left were written by
/// the client and prove nothing). `forwarded_for` is every line of the header, in order,
/// joined by commas. A hop that is not an address (`ip` or `ip:port`) ends the walk at the
/// last trusted proxy reached: what lies left of it cannot be read, so nothing there is
/// believed.
pub fn resolve_client(
    proxies: &[(std::net::IpAddr, u8)],
    peer: std::net::IpAddr,
    forwarded_for: Option<&str>,
) -> std::net::IpAddr {
    let trusted = |ip: &std::net::IpAddr| in_ranges(proxies, ip);
    if !trusted(&peer) {
        return peer;
    }
    let address = |hop: &str| {
        let hop = hop.trim();
        hop.parse::<std::net::IpAddr>()
            .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()))
            .ok()
    };
    let mut client = peer;
    for hop in forwarded_for.unwrap_or_default().rsplit(',') {
        if !trusted(&client) {
            break;
        }
        match address(hop) {
            Some(ip) => client = ip,
            None => break,
        }
    }
    client
}

/// Whether `ip` lies in one of `ranges`.
pub fn in_ranges(ranges: &[(std::net::IpAddr, u8)], ip: &std::net::IpAddr) -> bool {
    ranges.iter().any(|net| in_range(ip, net))
}

fn in_range(ip: &std::net::IpAddr, (net, len): &(std::net::IpAddr, u8)) -> bool {
    use std::net::IpAddr::{V4, V6};
    match (ip, net) {
        (V4(a), V4(b)) => {
            let shift = 32 - u32::from(*len);
            shift >= 32 || (u32::from(*a) >> shift) == (u32::from(*b) >> shift)
        }
        (V6(a), V6(b)) => {
            let shift = 128 - u32::from(*len);
            shift >= 128 || (u128::from(*a) >> shift) == (u128::from(*b) >> shift)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{in_range, resolve_client};

    #[test]
    fn ranges() {
        let net = crate::config::parse_cidr("10.0.0.0/8").unwrap();
        assert!(in_range(&"10.1.2.3".parse().unwrap(), &net));
        assert!(!in_range(&"11.0.0.1".parse().unwrap(), &net));
        let one = crate::config::parse_cidr("::1").unwrap();
        assert!(in_range(&"::1".parse().unwrap(), &one));
        assert!(!in_range(&"::2".parse().unwrap(), &one));
        let all = crate::config::parse_cidr("0.0.0.0/0").unwrap();
        assert!(in_range(&"8.8.8.8".parse().unwrap(), &all));
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxies = [crate::config::parse_cidr("10.0.0.0/8").unwrap()];
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        // Not from a proxy: the header is ignored.
        assert_eq!(
            resolve_client(&proxies, ip("203.0.113.9"), Some("1.2.3.4")),
            ip("203.0.113.9")
        );
        // From the proxy: the right-most untrusted hop, not what the client wrote first.
        assert_eq!(
            resolve_client(
                &proxies,
                ip("10.0.0.2"),
                Some("6.6.6.6, 198.51.100.7, 10.0.0.3")
            ),
            ip("198.51.100.7")
        );
        // A proxy with no header: the proxy itself.
        assert_eq!(
            resolve_client(&proxies, ip("10.0.0.2"), None),
            ip("10.0.0.2")
        );
        // Every hop trusted: the left-most, an internal client.
        assert_eq!(
            resolve_client(&proxies, ip("10.0.0.2"), Some("10.9.9.9, 10.0.0.3")),
            ip("10.9.9.9")
        );
        // Ports are allowed; a hop that is no address stops the walk at the proxy before
        // it, never at what the client wrote further left.
        assert_eq!(
            resolve_client(&proxies, ip("10.0.0.2"), Some("6.6.6.6, 198.51.100.7:4711")),
            ip("198.51.100.7")
        );
        assert_eq!(
            resolve_client(&proxies, ip("10.0.0.2"), Some("[2001:db8::7]:443")),
            ip("2001:db8::7")
        );
        assert_eq!(
            resolve_client(&proxies, ip("10.0.0.2"), Some("6.6.6.6, unknown, 10.0.0.3")),
            ip("10.0.0.3")
        );
        assert_eq!(
            resolve_client(&proxies, ip("10.0.0.2"), Some("")),
            ip("10.0.0.2")
        );
        // No proxies configured: always the peer.
        assert_eq!(
            resolve_client(&[], ip("10.0.0.2"), Some("1.2.3.4")),
            ip("10.0.0.2")
        );
    }
}
