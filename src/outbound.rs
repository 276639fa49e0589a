//! Where keygate's own outgoing requests may go (alert and SIEM webhooks; an upstream
//! identity provider later). A URL an admin typed must not become a way into the network
//! keygate runs in (SSRF): an address that is loopback, private, link-local, unique-local,
//! shared (carrier-grade NAT), unspecified, multicast, reserved or set aside for
//! documentation and benchmarks is refused unless `outbound.allow_private_ranges` names a
//! range holding it. Literal addresses are checked when the config loads; names are checked
//! on every connection, after they resolve (so a name that later resolves elsewhere gains
//! nothing). No framework here: the HTTP client wires [`OutboundPolicy::check`] into its
//! resolver (`service::webhook`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused as a destination.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is a {kind} address; keygate sends nothing there unless outbound.allow_private_ranges holds it")]
pub struct Refused {
    pub ip: IpAddr,
    pub kind: &'static str,
}

/// The ranges an operator allowed despite being special (e.g. an in-cluster SIEM
/// collector at 10.0.3.7/32).
#[derive(Clone, Debug, Default)]
pub struct OutboundPolicy {
    allowed: Vec<(IpAddr, u8)>,
}

impl OutboundPolicy {
    /// From `outbound.allow_private_ranges`; the error names the entry that is no address
    /// or CIDR range.
    pub fn new(allowed: &[String]) -> Result<Self, String> {
        let allowed = allowed
            .iter()
            .map(|r| {
                crate::config::parse_cidr(r).ok_or_else(|| {
                    format!("outbound.allow_private_ranges: {r:?} is not an address or CIDR range")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(OutboundPolicy { allowed })
    }

    /// Whether keygate may connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let Some(kind) = special(ip) else {
            return Ok(());
        };
        let embedded = embedded_v4(ip).map(IpAddr::V4);
        let allowed = crate::state::in_ranges(&self.allowed, &ip)
            || embedded.is_some_and(|v4| crate::state::in_ranges(&self.allowed, &v4));
        if allowed {
            Ok(())
        } else {
            Err(Refused { ip, kind })
        }
    }

    /// Checks a URL's host when it is a literal address (names are checked at connect time).
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refused> {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check(IpAddr::V6(v6)),
            _ => Ok(()),
        }
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`) or NAT64 (`64:ff9b::/96`)
/// IPv6 address.
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| {
        let o = v6.octets();
        Ipv4Addr::new(o[12], o[13], o[14], o[15])
    })
}

/// What kind of special-purpose address `ip` is (IANA's special-purpose registries), or
/// `None` for an ordinary public one.
pub fn special(ip: IpAddr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return special_v4(v4);
    }
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [0, ..] => "unspecified",
        [127, ..] => "loopback",
        [10, ..] | [192, 168, ..] => "private",
        [172, b, ..] if (16..32).contains(&b) => "private",
        [169, 254, ..] => "link-local",
        [100, b, ..] if (64..128).contains(&b) => "shared (carrier-grade NAT)",
        [192, 0, 0, _] => "protocol-assignment",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation",
        [198, 18 | 19, ..] => "benchmarking",
        [a, ..] if (224..240).contains(&a) => "multicast",
        [a, ..] if a >= 240 => "reserved",
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if s[0] & 0xffc0 == 0xfe80 {
        "link-local"
    } else if s[0] & 0xfe00 == 0xfc00 {
        "unique-local"
    } else if s[0] & 0xffc0 == 0xfec0 {
        "site-local"
    } else if s[0] & 0xff00 == 0xff00 {
        "multicast"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "documentation"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_addresses_are_named_and_public_ones_pass() {
        for (a, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd00::1", "unique-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::a00:1", "private"),
            ("ff02::1", "multicast"),
        ] {
            assert_eq!(special(ip(a)), Some(kind), "{a}");
        }
        for a in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "1.1.1.1",
        ] {
            assert_eq!(special(ip(a)), None, "{a}");
        }
    }

    #[test]
    fn allowed_ranges_open_only_themselves() {
        let policy = OutboundPolicy::new(&["127.0.0.1/32".into(), "10.0.3.0/24".into()]).unwrap();
        assert!(policy.check(ip("127.0.0.1")).is_ok());
        assert!(policy.check(ip("::ffff:127.0.0.1")).is_ok());
        assert!(policy.check(ip("10.0.3.7")).is_ok());
        assert!(policy.check(ip("8.8.8.8")).is_ok());
        let refused = policy.check(ip("10.0.4.1")).unwrap_err();
        assert_eq!(refused.kind, "private");
        assert!(refused
            .to_string()
            .contains("outbound.allow_private_ranges"));
        assert!(policy.check(ip("127.0.0.2")).is_err());
        assert!(policy.check(ip("::1")).is_err());
        assert!(OutboundPolicy::default().check(ip("127.0.0.1")).is_err());
        assert!(OutboundPolicy::new(&["not a range".into()]).is_err());
    }

    #[test]
    fn literal_hosts_in_urls_are_checked() {
        let policy = OutboundPolicy::default();
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(policy.check_url(&url("http://127.0.0.1:9/x")).is_err());
        assert!(policy.check_url(&url("https://[::1]/x")).is_err());
        assert!(policy
            .check_url(&url("https://169.254.169.254/latest"))
            .is_err());
        assert!(policy
            .check_url(&url("https://hooks.example.com/x"))
            .is_ok());
        assert!(policy.check_url(&url("https://93.184.216.34/x")).is_ok());
    }
}
