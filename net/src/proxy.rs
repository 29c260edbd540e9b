//! Who the client is when `dispatchd` runs behind a proxy: `[server] trusted_proxies` (a
//! list of CIDRs, empty by default) and `[server] proxy_header` (the header those proxies
//! set: `x-forwarded-for`, the default, or `forwarded`, RFC 7239's `for=`).
//!
//! Guarantees:
//! - a forwarding header is believed only when the TCP peer is inside a trusted CIDR;
//!   from anyone else it is ignored and the peer is the client;
//! - the client is the right-most address of the header that is not itself a trusted
//!   proxy (each proxy appends the address it saw, so only the right-hand end is written
//!   by machines we trust: a client prepending addresses of its choice changes nothing);
//!   when every address is trusted, the left-most; an entry that is not an address
//!   (`unknown`, an obfuscated name, garbage) stops the walk at the last trusted hop, so
//!   a forged or broken header never yields an address a client picked;
//! - only the configured header is read (a proxy that sets one usually passes the other
//!   through from the client untouched), and at most [`MAX_HOPS`] entries are walked;
//! - IPv4-mapped IPv6 addresses are compared and returned as IPv4.
//!
//! The address found here keys the rate limits and the request's log line; the per-IP
//! connection cap applies to TCP peers, never to a trusted proxy's own address
//! (`crate::admission`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hyper::HeaderMap;
use serde::{Deserialize, Serialize};

/// Most entries of a forwarding header walked from the right (a chain of proxies is a few
/// hops; a longer header is a client's padding).
pub const MAX_HOPS: usize = 16;

/// An IP network: an address and a prefix length, host bits cleared. A bare address is
/// a /32 (IPv4) or a /128 (IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & v4_mask(self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & v6_mask(self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

fn v4_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn v6_mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("{s:?} is not an IP network (e.g. \"10.0.0.0/8\", \"2001:db8::/32\", \"127.0.0.1\")");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = canonical(addr.trim().parse::<IpAddr>().map_err(|_| bad())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4_mask(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & v6_mask(prefix))),
        };
        Ok(Cidr { network, prefix })
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(s: String) -> Result<Cidr, String> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The header trusted proxies put the client's address in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx's `$proxy_add_x_forwarded_for`,
    /// HAProxy's `option forwardfor`, most cloud load balancers).
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1;proto=https`.
    #[serde(rename = "forwarded")]
    Forwarded,
}

/// The proxies whose forwarding header is believed, and which header that is.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<Cidr>,
    header: ProxyHeader,
}

impl TrustedProxies {
    /// Trusts `nets`, reading `header`.
    pub fn new(nets: Vec<Cidr>, header: ProxyHeader) -> Self {
        TrustedProxies { nets, header }
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client's address for a request that came from `peer` with `headers` (see the
    /// module's guarantees).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if self.nets.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let name = match self.header {
            ProxyHeader::XForwardedFor => "x-forwarded-for",
            ProxyHeader::Forwarded => "forwarded",
        };
        // Several header lines are one list, in order.
        let entries: Vec<&str> =
            headers.get_all(name).iter().map(|v| v.to_str().unwrap_or("garbage")).flat_map(|v| v.split(',')).collect();
        let mut client = peer;
        for entry in entries.iter().rev().take(MAX_HOPS) {
            let hop = match self.header {
                ProxyHeader::XForwardedFor => node(entry),
                ProxyHeader::Forwarded => forwarded_for(entry),
            };
            match hop {
                Some(ip) if !self.trusts(ip) => return ip,
                Some(ip) => client = ip,
                None => return client,
            }
        }
        client
    }
}

/// An IPv4-mapped IPv6 address as IPv4; anything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The `for=` node of one element of a `Forwarded` header (`for=192.0.2.60;proto=http`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case("for").then(|| node(value.trim().trim_matches('"'))).flatten()
    })
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`. `unknown`, obfuscated names and garbage: `None`.
fn node(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let ip = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok())) {
            return None;
        }
        IpAddr::V6(v6.parse().ok()?)
    } else if let Ok(ip) = s.parse::<IpAddr>() {
        ip
    } else {
        let (v4, port) = s.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        IpAddr::V4(v4.parse().ok()?)
    };
    Some(canonical(ip))
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn headers(name: &'static str, values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cidrs_parse_normalise_and_contain() {
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("127.0.0.1").to_string(), "127.0.0.1/32");
        assert_eq!(cidr("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(cidr("::ffff:192.0.2.1").to_string(), "192.0.2.1/32");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert!(cidr("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(cidr("10.0.0.0/8").contains(ip("::ffff:10.0.0.9")), "a mapped address is its IPv4 address");
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")), "families never mix");
        assert!(cidr("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        for bad in ["", "10.0.0.0/33", "2001:db8::/129", "10.0.0/8", "example.com", "10.0.0.0/x", "10.0.0.0/-1"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_header_is_believed_only_from_a_trusted_peer() {
        let proxies = TrustedProxies::new(vec![cidr("10.0.0.0/8")], ProxyHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &["203.0.113.1"]);
        assert_eq!(proxies.client_ip(ip("10.0.0.5"), &h), ip("203.0.113.1"));
        assert_eq!(proxies.client_ip(ip("198.51.100.9"), &h), ip("198.51.100.9"), "an untrusted peer");
        assert_eq!(TrustedProxies::default().client_ip(ip("10.0.0.5"), &h), ip("10.0.0.5"), "nothing trusted");
        assert_eq!(proxies.client_ip(ip("10.0.0.5"), &HeaderMap::new()), ip("10.0.0.5"), "no header");
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let proxies = TrustedProxies::new(vec![cidr("10.0.0.0/8"), cidr("192.0.2.0/24")], ProxyHeader::XForwardedFor);
        let peer = ip("10.0.0.5");
        let client = |values: &[&'static str]| proxies.client_ip(peer, &headers("x-forwarded-for", values));
        // A client prepends what it likes; the proxies appended the rest.
        assert_eq!(client(&["6.6.6.6, 203.0.113.1, 192.0.2.7"]), ip("203.0.113.1"));
        // Several header lines are one list.
        assert_eq!(client(&["6.6.6.6", "203.0.113.1", "192.0.2.7"]), ip("203.0.113.1"));
        // Ports and brackets as some proxies write them; mapped addresses as IPv4.
        assert_eq!(client(&["203.0.113.1:4711"]), ip("203.0.113.1"));
        assert_eq!(client(&["[2001:db8::7]:4711"]), ip("2001:db8::7"));
        assert_eq!(client(&["2001:db8::7"]), ip("2001:db8::7"));
        assert_eq!(client(&["::ffff:203.0.113.1"]), ip("203.0.113.1"));
        // Every hop trusted: the left-most.
        assert_eq!(client(&["192.0.2.1, 10.1.1.1"]), ip("192.0.2.1"));
        // Garbage stops the walk at the last trusted hop, never at what the client wrote.
        assert_eq!(client(&["203.0.113.1, garbage"]), peer);
        assert_eq!(client(&["203.0.113.1, unknown, 192.0.2.9"]), ip("192.0.2.9"));
        assert_eq!(client(&[""]), peer);
        // Only MAX_HOPS entries are walked.
        let padded: &'static str = Box::leak(format!("203.0.113.1{}", ", 10.0.0.1".repeat(MAX_HOPS)).into_boxed_str());
        assert_eq!(client(&[padded]), ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_for_is_read_only_when_configured() {
        let proxies = TrustedProxies::new(vec![cidr("10.0.0.0/8")], ProxyHeader::Forwarded);
        let peer = ip("10.0.0.5");
        let mut h = headers(
            "forwarded",
            &[r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, For=10.0.0.3;by=10.0.0.5"#],
        );
        assert_eq!(proxies.client_ip(peer, &h), ip("2001:db8:cafe::17"));
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        assert_eq!(proxies.client_ip(peer, &h), ip("2001:db8:cafe::17"), "X-Forwarded-For is not read");
        let h = headers("forwarded", &["for=_hidden, for=10.0.0.3"]);
        assert_eq!(proxies.client_ip(peer, &h), ip("10.0.0.3"), "an obfuscated node stops the walk");
        let h = headers("forwarded", &["for=192.0.2.43:47011;proto=http"]);
        assert_eq!(proxies.client_ip(peer, &h), ip("192.0.2.43"));
        let h = headers("forwarded", &["proto=https"]);
        assert_eq!(proxies.client_ip(peer, &h), peer, "an element without for=");
        let xff_only = TrustedProxies::new(vec![cidr("10.0.0.0/8")], ProxyHeader::XForwardedFor);
        assert_eq!(xff_only.client_ip(peer, &headers("forwarded", &["for=192.0.2.43"])), peer);
    }

    #[test]
    fn config_values_deserialise() {
        #[derive(Deserialize)]
        struct T {
            nets: Vec<Cidr>,
            header: ProxyHeader,
        }
        let t: T = toml::from_str("nets = [\"10.0.0.0/8\", \"::1\"]\nheader = \"forwarded\"").unwrap();
        assert_eq!((t.nets.len(), t.header), (2, ProxyHeader::Forwarded));
        let err = toml::from_str::<T>("nets = [\"10.0.0.0/40\"]\nheader = \"forwarded\"").err().unwrap();
        assert!(err.to_string().contains("not an IP network"), "{err}");
        assert!(toml::from_str::<T>("nets = []\nheader = \"x-real-ip\"").is_err());
    }
}
