//! Which accepted connections are served: the process's descriptor budget, the per-IP
//! connection cap, and the probe lane that keeps `/healthz` answering when both are spent.
//!
//! Why: a slow-read attack (pipelined requests whose answers are never read) held one
//! descriptor per connection; about 1,000 of them exhausted `RLIMIT_NOFILE`, `accept`
//! failed with EMFILE, and health checks, the WAL and the store had nothing left.
//!
//! Guarantees:
//! - at start the soft `RLIMIT_NOFILE` is raised towards the hard limit (as far as the
//!   server can use: [`MAX_OPEN_CONNECTIONS`] + [`FD_RESERVE`]), then read
//!   ([`FdLimit::raise`]); a limit under [`MIN_NOFILE`] stops start-up;
//! - at most `budget` = min(soft limit − [`FD_RESERVE`], [`MAX_OPEN_CONNECTIONS`]) TCP
//!   connections are served at once (HTTP and upgraded WebSockets alike: a socket keeps
//!   its connection's place), of which at most [`MAX_HTTP_CONNECTIONS`] not upgraded. The
//!   reserve keeps descriptors for the WAL, the store, the listener, the runtime, outgoing
//!   calls and the probe lane, so `accept` does not fail with EMFILE;
//! - one address (IPv6: its /64; an IPv4-mapped address: its IPv4 address — the rate
//!   limiter's keying) holds at most `[server] max_connections_per_ip` connections; a
//!   trusted proxy's own address is exempt (it carries many clients: limit them at the
//!   proxy), the budget still applies to it;
//! - a connection over a cap is accepted and closed at once, and counted
//!   (`dispatch_connections_refused_total{reason}`): it never waits in the backlog, where
//!   it would delay the health checks queued behind it;
//! - when the budget is spent, up to [`PROBE_LANE`] more connections (inside the reserve),
//!   at most [`PROBE_LANE_PER_IP`] per address, are served one request each within
//!   [`PROBE_DEADLINE`]: `GET /healthz`, `/readyz` and `/metrics` are answered as usual,
//!   anything else is `503 overloaded`, then the connection closes. Load balancers keep
//!   seeing a live process while it sheds load, and the address that spent the budget
//!   cannot fill the lane too;
//! - counting is exact: a place is taken before the connection is served and given back
//!   when its last holder (the connection's task or its WebSocket) drops it.

use std::collections::HashMap;
use std::fmt::Write;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::proxy::{TrustedProxies, canonical};

/// Descriptors kept out of the connection budget: the WAL's segments, `store.redb`, the
/// data directory's lock, the listener, the runtime's own (epoll, signals), outgoing
/// calls (the router, SMS) and the probe lane.
pub const FD_RESERVE: u64 = 64;

/// The least `RLIMIT_NOFILE` the server starts with: the reserve and as many connections.
pub const MIN_NOFILE: u64 = 2 * FD_RESERVE;

/// Most HTTP connections (not upgraded) served at once.
pub const MAX_HTTP_CONNECTIONS: usize = 20_000;

/// Most WebSockets open at once (`crate::ws::MAX_SOCKETS`), whatever the descriptors.
pub const MAX_WEBSOCKETS: usize = 100_000;

/// Most TCP connections served at once whatever the descriptors: the HTTP connections and
/// the WebSockets.
pub const MAX_OPEN_CONNECTIONS: usize = MAX_HTTP_CONNECTIONS + MAX_WEBSOCKETS;

/// Connections served beyond the budget, one probe request each (part of the reserve).
pub const PROBE_LANE: usize = 16;

/// Probe-lane connections one address may hold (trusted proxies excepted): the attacker
/// that spent the budget keeps most of the lane free for the health checker.
pub const PROBE_LANE_PER_IP: usize = 2;

/// How long a connection of the probe lane may take, TLS handshake and answer included.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// The process's descriptor limit (`RLIMIT_NOFILE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit in force (after raising it).
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

impl FdLimit {
    /// Raises the soft limit towards the hard one (no further than the server can use),
    /// then reads it (`rustix`: a safe wrapper of `getrlimit`/`setrlimit`). Where the
    /// platform has no such limit, the limit is taken as what the server can use.
    pub fn raise() -> FdLimit {
        let wanted = MAX_OPEN_CONNECTIONS as u64 + FD_RESERVE;
        #[cfg(unix)]
        {
            use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
            // `None` is "unlimited".
            let read = || {
                let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
                (current.unwrap_or(u64::MAX), maximum.unwrap_or(u64::MAX))
            };
            let (soft, hard) = read();
            let target = wanted.min(hard);
            if soft < target {
                let raised = Rlimit { current: Some(target), maximum: (hard != u64::MAX).then_some(hard) };
                if let Err(e) = setrlimit(Resource::Nofile, raised) {
                    tracing::warn!(error = %e, soft, hard, "could not raise the descriptor limit");
                }
            }
            let (soft, hard) = read();
            FdLimit { soft, hard }
        }
        #[cfg(not(unix))]
        FdLimit { soft: wanted, hard: wanted }
    }

    /// Connections served at once: the soft limit less the reserve, at most
    /// [`MAX_OPEN_CONNECTIONS`]; an error when the limit is under [`MIN_NOFILE`].
    pub fn connection_budget(&self) -> Result<usize, String> {
        if self.soft < MIN_NOFILE {
            return Err(format!(
                "the descriptor limit (RLIMIT_NOFILE) is {}: dispatchd needs at least {MIN_NOFILE} \
                 ({FD_RESERVE} are kept in reserve); raise it (ulimit -n, LimitNOFILE=)",
                self.soft
            ));
        }
        Ok(usize::try_from(self.soft - FD_RESERVE).unwrap_or(usize::MAX).min(MAX_OPEN_CONNECTIONS))
    }
}

/// The transport's counters for `/metrics` (rendered by `crate::metrics`).
#[derive(Default)]
pub struct TransportCounters {
    /// TCP connections served now (HTTP and WebSocket; not the probe lane).
    pub connections_open: AtomicI64,
    /// The budget in force.
    pub connection_budget: AtomicI64,
    /// The soft `RLIMIT_NOFILE`.
    pub fd_limit: AtomicI64,
    /// Connections closed at once: over the per-IP cap.
    pub refused_per_ip: AtomicU64,
    /// Connections closed at once: budget and probe lane spent.
    pub refused_budget: AtomicU64,
    /// Connections served in the probe lane.
    pub probes: AtomicU64,
    /// Connections closed because their output was not taken within the write timeout.
    pub write_timeouts: Arc<AtomicU64>,
    /// `accept` failures (each followed by a short pause, never a spin).
    pub accept_errors: AtomicU64,
}

impl TransportCounters {
    /// Appends the Prometheus text of these counters.
    pub fn render(&self, o: &mut String) {
        // Written here rather than through `crate::metrics` (which uses these counters): no
        // module cycle.
        let family = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let r = Ordering::Relaxed;
        let series: [(&str, &str, &str, u64); 5] = [
            (
                "dispatch_connections_open",
                "gauge",
                "TCP connections served now (HTTP and WebSocket; not the probe lane).",
                u64::try_from(self.connections_open.load(r)).unwrap_or(0),
            ),
            (
                "dispatch_connection_budget",
                "gauge",
                "Connections served at once: the descriptor limit less the reserve.",
                u64::try_from(self.connection_budget.load(r)).unwrap_or(0),
            ),
            (
                "dispatch_probe_connections_total",
                "counter",
                "Connections served in the probe lane beyond the budget.",
                self.probes.load(r),
            ),
            (
                "dispatch_connection_write_timeouts_total",
                "counter",
                "Connections closed because their output was not taken within the write timeout.",
                self.write_timeouts.load(r),
            ),
            ("dispatch_accept_errors_total", "counter", "Errors accepting a connection.", self.accept_errors.load(r)),
        ];
        for (name, kind, help, v) in series {
            family(o, name, kind, help);
            let _ = writeln!(o, "{name} {v}");
        }
        family(
            o,
            "dispatch_connections_refused_total",
            "counter",
            "Connections accepted and closed at once, by reason (per_ip: the per-address cap; budget: no room).",
        );
        for (reason, n) in [("per_ip", &self.refused_per_ip), ("budget", &self.refused_budget)] {
            let _ = writeln!(o, "dispatch_connections_refused_total{{reason=\"{reason}\"}} {}", n.load(r));
        }
    }
}

/// The key an address is capped under: an IPv6 address's /64, an IPv4-mapped address's
/// IPv4 address (what `crate::ratelimit::Subject::key` does for rate limits).
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

#[derive(Default)]
struct Counts {
    /// Connections served (HTTP and upgraded).
    open: usize,
    /// Of which not upgraded.
    http: usize,
    /// In the probe lane.
    probes: usize,
    /// Connections per address key (served and probes; trusted proxies are not counted).
    by_ip: HashMap<IpAddr, usize>,
    /// Of which in the probe lane.
    probes_by_ip: HashMap<IpAddr, usize>,
}

/// The connection caps and what is counted against them.
pub struct Admission {
    budget: usize,
    per_ip: usize,
    proxies: TrustedProxies,
    counts: Mutex<Counts>,
    counters: Arc<TransportCounters>,
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address holds `max_connections_per_ip` connections already.
    PerIp,
    /// The budget and the probe lane are spent.
    Budget,
}

/// What to do with an accepted connection.
pub enum Admit {
    /// Serve it as usual.
    Serve(Admitted),
    /// Serve one probe request within [`PROBE_DEADLINE`].
    Probe(Admitted),
    /// Close it at once.
    Refuse(Refusal),
}

/// An admitted connection's places: its TCP place (shared with its WebSocket once
/// upgraded, through [`ConnTicket`]) and, while it speaks HTTP, its HTTP place.
pub struct Admitted {
    /// The TCP place (hand a [`ConnTicket`] to whatever outlives the HTTP connection).
    pub tcp: Arc<TcpPlace>,
    _http: Option<HttpPlace>,
}

/// A TCP connection's place in the budget, the probe lane and its address's count.
pub struct TcpPlace {
    admission: Arc<Admission>,
    key: Option<IpAddr>,
    probe: bool,
}

struct HttpPlace {
    admission: Arc<Admission>,
}

/// The TCP place of the connection a request came on, in its extensions: a WebSocket
/// upgrade keeps it for the socket's life.
#[derive(Clone)]
pub struct ConnTicket(pub Arc<TcpPlace>);

impl Admission {
    /// Serves at most `budget` connections, `per_ip` per address outside `proxies`.
    pub fn new(budget: usize, per_ip: usize, proxies: TrustedProxies, counters: Arc<TransportCounters>) -> Self {
        counters.connection_budget.store(i64::try_from(budget).unwrap_or(i64::MAX), Ordering::Relaxed);
        Admission { budget, per_ip, proxies, counts: Mutex::new(Counts::default()), counters }
    }

    /// The budget in force.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Decides about a connection just accepted from `peer`.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Admit {
        let key = (!self.proxies.trusts(peer)).then(|| ip_key(peer));
        let mut c = self.counts.lock();
        if let Some(k) = key
            && c.by_ip.get(&k).copied().unwrap_or(0) >= self.per_ip
        {
            drop(c);
            self.counters.refused_per_ip.fetch_add(1, Ordering::Relaxed);
            return Admit::Refuse(Refusal::PerIp);
        }
        let lane_room = |c: &Counts| {
            c.probes < PROBE_LANE
                && key.is_none_or(|k| c.probes_by_ip.get(&k).copied().unwrap_or(0) < PROBE_LANE_PER_IP)
        };
        let probe = if c.open < self.budget && c.http < MAX_HTTP_CONNECTIONS {
            c.open += 1;
            c.http += 1;
            false
        } else if lane_room(&c) {
            c.probes += 1;
            if let Some(k) = key {
                *c.probes_by_ip.entry(k).or_default() += 1;
            }
            true
        } else {
            drop(c);
            self.counters.refused_budget.fetch_add(1, Ordering::Relaxed);
            return Admit::Refuse(Refusal::Budget);
        };
        if let Some(k) = key {
            *c.by_ip.entry(k).or_default() += 1;
        }
        // Under the lock: the gauge follows the count in order.
        self.counters.connections_open.store(i64::try_from(c.open).unwrap_or(i64::MAX), Ordering::Relaxed);
        drop(c);
        let tcp = Arc::new(TcpPlace { admission: Arc::clone(self), key, probe });
        if probe {
            self.counters.probes.fetch_add(1, Ordering::Relaxed);
            Admit::Probe(Admitted { tcp, _http: None })
        } else {
            Admit::Serve(Admitted { tcp, _http: Some(HttpPlace { admission: Arc::clone(self) }) })
        }
    }
}

impl Drop for TcpPlace {
    fn drop(&mut self) {
        let mut c = self.admission.counts.lock();
        if self.probe {
            c.probes = c.probes.saturating_sub(1);
            if let Some(k) = self.key
                && let Some(n) = c.probes_by_ip.get_mut(&k)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.probes_by_ip.remove(&k);
                }
            }
        } else {
            c.open = c.open.saturating_sub(1);
        }
        if let Some(k) = self.key
            && let Some(n) = c.by_ip.get_mut(&k)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by_ip.remove(&k);
            }
        }
        self.admission.counters.connections_open.store(i64::try_from(c.open).unwrap_or(i64::MAX), Ordering::Relaxed);
    }
}

impl Drop for HttpPlace {
    fn drop(&mut self) {
        let mut c = self.admission.counts.lock();
        c.http = c.http.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use crate::proxy::{Cidr, ProxyHeader};
    use crate::ratelimit::Subject;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn admission(budget: usize, per_ip: usize, trusted: &[&str]) -> Arc<Admission> {
        let nets = trusted.iter().map(|c| c.parse::<Cidr>().unwrap()).collect();
        let proxies = TrustedProxies::new(nets, ProxyHeader::XForwardedFor);
        Arc::new(Admission::new(budget, per_ip, proxies, Arc::new(TransportCounters::default())))
    }

    fn served(a: Admit) -> Admitted {
        match a {
            Admit::Serve(x) => x,
            Admit::Probe(_) => panic!("probe lane"),
            Admit::Refuse(r) => panic!("refused: {r:?}"),
        }
    }

    #[test]
    fn one_address_is_capped_and_gets_its_places_back() {
        let a = admission(100, 2, &[]);
        let (x, _y) = (served(a.admit(ip("192.0.2.1"))), served(a.admit(ip("192.0.2.1"))));
        assert!(matches!(a.admit(ip("192.0.2.1")), Admit::Refuse(Refusal::PerIp)));
        assert!(matches!(a.admit(ip("::ffff:192.0.2.1")), Admit::Refuse(Refusal::PerIp)), "mapped: the same");
        let _other = served(a.admit(ip("192.0.2.2")));
        // IPv6: one /64 is one address.
        let _v6 = (served(a.admit(ip("2001:db8:1:2::1"))), served(a.admit(ip("2001:db8:1:2::ffff"))));
        assert!(matches!(a.admit(ip("2001:db8:1:2:abcd::9")), Admit::Refuse(Refusal::PerIp)));
        let _next64 = served(a.admit(ip("2001:db8:1:3::1")));
        drop(x);
        let _again = served(a.admit(ip("192.0.2.1")));
        assert_eq!(a.counters.refused_per_ip.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn the_key_is_the_rate_limiters() {
        for s in ["192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1", "2001:db8:0:0:ffff::1"] {
            assert_eq!(Subject::Ip(ip_key(ip(s))), Subject::Ip(ip(s)).key(), "{s}");
        }
    }

    #[test]
    fn over_the_budget_the_probe_lane_then_refusals_and_a_websocket_keeps_its_place() {
        let a = admission(2, 100, &[]);
        let first = served(a.admit(ip("192.0.2.1")));
        let _second = served(a.admit(ip("192.0.2.2")));
        // One address gets PROBE_LANE_PER_IP places of the lane; the others the rest.
        let lane = |who: &str| match a.admit(ip(who)) {
            Admit::Probe(p) => p,
            _ => panic!("{who} is not in the probe lane"),
        };
        let mut probes: Vec<_> = (0..PROBE_LANE_PER_IP).map(|_| lane("198.51.100.1")).collect();
        assert!(matches!(a.admit(ip("198.51.100.1")), Admit::Refuse(Refusal::Budget)));
        probes.extend((PROBE_LANE_PER_IP..PROBE_LANE).map(|i| lane(&format!("198.51.100.{}", i + 2))));
        assert!(matches!(a.admit(ip("203.0.113.1")), Admit::Refuse(Refusal::Budget)));
        drop(probes);
        assert!(matches!(a.admit(ip("203.0.113.1")), Admit::Probe(_)), "the lane is free again");
        // An upgraded connection: its HTTP task ends, its WebSocket keeps the TCP place.
        let ticket = ConnTicket(Arc::clone(&first.tcp));
        drop(first);
        let (open, http) = {
            let c = a.counts.lock();
            (c.open, c.http)
        };
        assert_eq!((open, http), (2, 1));
        assert!(matches!(a.admit(ip("203.0.113.2")), Admit::Probe(_)), "still full");
        drop(ticket);
        let _third = served(a.admit(ip("203.0.113.2")));
        assert_eq!(a.counters.connections_open.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_trusted_proxy_is_not_capped_per_address_but_the_budget_holds() {
        let a = admission(3, 1, &["10.0.0.0/8"]);
        let _held: Vec<_> = (0..3).map(|_| served(a.admit(ip("10.0.0.7")))).collect();
        assert!(matches!(a.admit(ip("10.0.0.7")), Admit::Probe(_)));
        assert!(a.counts.lock().by_ip.is_empty());
    }

    #[test]
    fn the_budget_is_the_limit_less_the_reserve() {
        let budget = |soft| FdLimit { soft, hard: soft }.connection_budget();
        assert_eq!(budget(256), Ok(192));
        assert_eq!(budget(1 << 40), Ok(MAX_OPEN_CONNECTIONS));
        assert!(budget(MIN_NOFILE - 1).unwrap_err().contains("RLIMIT_NOFILE"));
        assert_eq!(budget(MIN_NOFILE), Ok(usize::try_from(FD_RESERVE).unwrap()));
        // The lane fits in the reserve, with room for the process's own descriptors.
        assert!((PROBE_LANE as u64) * 2 <= FD_RESERVE);
    }

    #[test]
    fn counters_render_in_the_prometheus_format() {
        let c = TransportCounters::default();
        c.refused_budget.fetch_add(3, Ordering::Relaxed);
        let mut o = String::new();
        c.render(&mut o);
        assert!(o.contains("dispatch_connections_refused_total{reason=\"budget\"} 3\n"), "{o}");
        assert!(o.contains("# TYPE dispatch_connections_open gauge\ndispatch_connections_open 0\n"), "{o}");
    }
}
