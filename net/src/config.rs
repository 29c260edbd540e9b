//! Configuration of `dispatchd serve`: the TOML file of API.md "Running dispatchd",
//! command-line overrides, and the secrets (from the environment only).
//!
//! Guarantees: every key of API.md exists with its default; an unknown key or section is
//! refused (a typo never silently falls back to a default); flags override the file,
//! which overrides the defaults; secrets never come from the file or from a default
//! outside `--dev`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use dispatch_core::DispatchRules;
use dispatch_core::rules::{LearningWeights, MatchingMode};
use serde::{Deserialize, Serialize};

use crate::error::Error;

mod secrets;
pub use secrets::*;
// ----- issue 21 -----
mod cluster;
pub use cluster::{ClusterFlags, ClusterSection, valid_node_id};
// ----- issue 23: D -----
mod console;
pub use console::ConsoleSection;

/// The whole file. `Serialize`: the sample configuration's test walks its keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`.
    pub server: ServerSection,
    /// `[store]`.
    pub store: StoreSection,
    /// `[dispatch]`.
    pub dispatch: DispatchSection,
    /// `[route]`.
    pub route: RouteSection,
    /// `[limits]`.
    pub limits: LimitsSection,
    /// `[payments]`: how long holds last.
    pub payments: PaymentsSection,
    /// `[retention]`: how long what users wrote is kept (API.md v1.1).
    pub retention: RetentionSection,
    /// `[gateways.<name>]`: payment gateways whose webhooks `/v1/webhooks/<name>` takes,
    /// besides the built-in `sim`.
    pub gateways: BTreeMap<String, GatewaySection>,
    /// `[log]`.
    pub log: LogSection,
    /// `[notify]`: the push providers (API.md v1.1).
    pub notify: NotifySection,
    /// `[sms]`: how SMS leave (API.md v1.1).
    pub sms: SmsSection,
    /// `[email]`: the SMTP server (API.md v1.1).
    pub email: EmailSection,
    /// `[payouts]`: drivers' payouts and cash debt (API.md v1.1).
    pub payouts: PayoutsSection,
    // ----- issue 20: S -----
    /// `[roles.<name>]`: custom staff roles and their permissions (API.md v1.1 "Back
    /// office"). None by default.
    pub roles: BTreeMap<String, RoleSection>,
    // ----- issue 21 -----
    /// `[cluster]`: a node of a cluster sharing one command log (API.md "Cluster").
    pub cluster: ClusterSection,
    // ----- issue 23: D -----
    /// `[console]`: the console map's tile server (none by default: the offline map).
    pub console: ConsoleSection,
}

/// `[roles.<name>]` (API.md v1.1 "Back office"): a custom staff role, e.g.
/// `permissions = ["trips.read", "users.read"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSection {
    /// What the role may do: names of `crate::auth::Permission`.
    pub permissions: Vec<String>,
}

/// Most custom staff roles a configuration may define.
pub const MAX_ROLES: usize = 32;

/// `[payouts]` (API.md v1.1): drivers' payouts and cash debt.
///
/// ```toml
/// [payouts]
/// min_minor = 1000             # the smallest payout a driver may ask for
/// max_cash_debt_minor = 50000  # above this cash debt a driver cannot go online
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayoutsSection {
    /// The smallest payout, minor units (`DispatchRules::payout_min_minor`).
    pub min_minor: i64,
    /// The cash debt above which a driver cannot go online, minor units
    /// (`DispatchRules::max_cash_debt_minor`).
    pub max_cash_debt_minor: i64,
}

impl Default for PayoutsSection {
    fn default() -> Self {
        let r = DispatchRules::default();
        Self { min_minor: r.payout_min_minor, max_cash_debt_minor: r.max_cash_debt_minor }
    }
}

/// `[notify]` (API.md v1.1): the push providers' endpoints and ids. Secrets (the FCM
/// service account, the APNs key) come from the environment (`notify::Providers`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySection {
    /// FCM's API base URL.
    pub fcm_endpoint: String,
    /// Google's OAuth 2 token endpoint.
    pub fcm_token_url: String,
    /// The Firebase project (empty: the `project_id` of the service-account JSON).
    pub fcm_project_id: String,
    /// APNs' base URL (`https://api.sandbox.push.apple.com` for development builds).
    pub apns_endpoint: String,
    /// The APNs key's id (the JWT's `kid`).
    pub apns_key_id: String,
    /// The Apple developer team id (the JWT's `iss`).
    pub apns_team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub apns_topic: String,
    /// E.164 numbers that get every SOS by SMS.
    pub sos_phones: Vec<String>,
}

impl Default for NotifySection {
    fn default() -> Self {
        Self {
            fcm_endpoint: "https://fcm.googleapis.com".into(),
            fcm_token_url: "https://oauth2.googleapis.com/token".into(),
            fcm_project_id: String::new(),
            apns_endpoint: "https://api.push.apple.com".into(),
            apns_key_id: String::new(),
            apns_team_id: String::new(),
            apns_topic: String::new(),
            sos_phones: Vec::new(),
        }
    }
}

/// Which way SMS leave (`[sms] provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsProvider {
    /// `DISPATCH_SMS_SINK` (`log`, `file:`, `http(s)://`), as in v1.
    #[default]
    Sink,
    /// Twilio's Messages API; the sink is not used.
    Twilio,
}

/// `[sms]` (API.md v1.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsSection {
    /// `"sink"` or `"twilio"`.
    pub provider: SmsProvider,
    /// Twilio's API base URL.
    pub twilio_endpoint: String,
    /// The sender number or id (required with Twilio).
    pub from: String,
}

impl Default for SmsSection {
    fn default() -> Self {
        Self { provider: SmsProvider::Sink, twilio_endpoint: "https://api.twilio.com".into(), from: String::new() }
    }
}

/// `[email]` (API.md v1.1): `smtp_url` empty means no email is sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailSection {
    /// `smtp://host:port` (STARTTLS), `smtps://host:port` (TLS), or
    /// `smtp+insecure://127.0.0.1:port` (loopback only); a user may precede the host.
    pub smtp_url: String,
    /// The sender (`noreply@example.com` or `Name <noreply@example.com>`).
    pub from: String,
}

/// `+` and 8 to 15 digits (E.164).
pub fn is_e164(phone: &str) -> bool {
    phone.strip_prefix('+').is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// `[log]`: what the JSON log lines on stderr include.
///
/// ```toml
/// [log]
/// level = "info"   # a tracing filter: "warn", "info,dispatch_server=debug", ...
/// ```
///
/// `RUST_LOG`, when set, wins over `level` (the usual way to turn logging up for one run).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// A filter directive of `tracing_subscriber::EnvFilter`: a level (`error`, `warn`,
    /// `info`, `debug`, `trace`, `off`) or `target=level` pairs, comma-separated.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self { level: "info".into() }
    }
}

impl LogSection {
    /// The filter in force: `RUST_LOG` (`rust_log`) when set and not empty, else
    /// `level`; an invalid one is an error naming where it came from.
    pub fn filter(&self, rust_log: Option<&str>) -> Result<tracing_subscriber::EnvFilter, String> {
        match rust_log.filter(|v| !v.trim().is_empty()) {
            Some(v) => parse_filter(v).map_err(|e| format!("RUST_LOG: {e}")),
            None => parse_filter(&self.level).map_err(|e| format!("log.level: {e}")),
        }
    }
}

/// A filter directive string, strictly: anything `EnvFilter` would skip with a warning
/// (a bad level, a malformed directive) is an error here, and so is a bare word that is
/// not a level (`EnvFilter` would take `"loud"` as a target name and log nothing else;
/// a target's every level is spelt `target=trace`).
fn parse_filter(directives: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    let bad = |e: &dyn std::fmt::Display| {
        format!("{directives:?} is not a log filter ({e}): e.g. \"info\" or \"warn,dispatch_server=debug\"")
    };
    let parts: Vec<&str> = directives.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    if parts.is_empty() {
        return Err(bad(&"it is empty"));
    }
    for d in parts.iter().filter(|d| !d.contains(['=', '['])) {
        d.parse::<tracing::level_filters::LevelFilter>()
            .map_err(|_| bad(&format!("{d:?} is not a level: error, warn, info, debug, trace or off")))?;
    }
    tracing_subscriber::EnvFilter::builder().parse(parts.join(",")).map_err(|e| bad(&e))
}

/// `[payments]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsSection {
    /// A wallet hold placed at booking is released after this if nothing settled it.
    pub wallet_hold_ttl_s: u32,
    /// A card authorisation not captured after this lapses (`expired`).
    pub card_auth_ttl_s: u32,
}

impl Default for PaymentsSection {
    fn default() -> Self {
        let r = DispatchRules::default();
        Self { wallet_hold_ttl_s: r.wallet_hold_ttl_s, card_auth_ttl_s: r.card_auth_ttl_s }
    }
}

/// `[retention]` (API.md v1.1): how long the engine keeps what users wrote.
///
/// ```toml
/// [retention]
/// chat_days = 30        # a trip's chat messages, from when each was posted (1-3650)
/// positions_days = 30   # drivers' recorded positions, whole UTC days (1-3650)
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Days a chat message is kept after it was posted (`DispatchRules::chat_retention_s`).
    pub chat_days: u32,
    // ----- issue 20: P -----
    /// Days drivers' recorded positions are kept in the history: older UTC days are
    /// pruned in bounded batches off the writer's path (`EngineConfig::positions_days`).
    pub positions_days: u32,
}

/// The longest `[retention] positions_days` (ten years).
pub const MAX_POSITIONS_DAYS: u32 = 3650;

/// The longest `[retention] chat_days` (ten years).
pub const MAX_CHAT_DAYS: u32 = 3650;

impl Default for RetentionSection {
    fn default() -> Self {
        Self {
            chat_days: DispatchRules::default().chat_retention_s / 86_400,
            positions_days: dispatch_core::engine::DEFAULT_POSITIONS_DAYS,
        }
    }
}

/// `[gateways.<name>]`: a payment gateway's webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// How it signs its webhooks and shapes their bodies.
    pub scheme: GatewayScheme,
    /// `scheme = "stripe"` only: Stripe's API base URL (default `https://api.stripe.com`;
    /// tests point it at a fake). With a Stripe gateway configured, card trips are paid
    /// through it instead of `sim` (`crate::stripe`), with `DISPATCH_STRIPE_SECRET_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    /// `scheme = "stripe"` only: the PaymentMethod authorisations are confirmed with
    /// (default `pm_card_visa`, Stripe's test card).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
}

/// The webhook schemes a configured gateway may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayScheme {
    /// `Stripe-Signature: t=…,v1=…` (HMAC-SHA256 of `"<t>.<body>"`), Stripe's event body.
    Stripe,
    /// `x-paystack-signature`: hex HMAC-SHA512 of the body, Paystack's event body.
    Paystack,
    /// `X-Razorpay-Signature`: hex HMAC-SHA256 of the body, Razorpay's event body.
    Razorpay,
}

/// Whether `name` may name a gateway: 1-32 of `a-z`, `0-9`, `_`.
pub fn valid_gateway_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The environment variable holding a gateway's webhook secrets.
pub fn webhook_secret_var(gateway: &str) -> String {
    format!("DISPATCH_WEBHOOK_SECRET_{}", gateway.to_ascii_uppercase())
}

/// `[server]`: where and how connections are taken (the transport: `crate::listener`,
/// `crate::admission`, `crate::proxy`, `crate::tls`). Defaults:
///
/// ```toml
/// [server]
/// listen = "127.0.0.1:8080"
/// max_body_bytes = 65536
/// write_timeout_s = 10           # output a client does not take within this closes its connection
/// max_connections_per_ip = 256   # open connections per client address (IPv6: per /64)
/// ws_per_user = 5                # open WebSockets per rider or driver
/// ws_per_staff = 50              # open WebSockets per staff member
/// trusted_proxies = []           # CIDRs whose forwarding header is believed, e.g. ["10.0.0.0/8"]
/// proxy_header = "x-forwarded-for"   # or "forwarded" (RFC 7239 for=)
/// # tls_cert = "/etc/dispatch/cert.pem"   # both set: HTTPS and wss:// only, with HSTS
/// # tls_key = "/etc/dispatch/key.pem"
/// cors_origins = []              # browser origins allowed cross-origin, e.g. ["https://ops.example.com"], or ["*"]
/// transparent_huge_pages = false # false: THP off for the process (`crate::memory`); true: the system's setting
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Where to listen.
    pub listen: String,
    /// Largest request body, bytes (zone uploads: [`ZONE_BODY_BYTES`]).
    pub max_body_bytes: usize,
    /// From the moment a write to a client has to wait, the seconds it has to take all
    /// the pending output (a response, an upgrade, a WebSocket frame) before the
    /// connection is closed (`crate::timed_io`). 1 to [`MAX_WRITE_TIMEOUT_S`].
    pub write_timeout_s: u64,
    /// Open connections one client address may hold (IPv6: per /64); one more is accepted
    /// and closed at once. Not applied to a trusted proxy's own address.
    pub max_connections_per_ip: usize,
    /// Open WebSockets per rider or driver; one more upgrade is `429 rate_limited`.
    pub ws_per_user: usize,
    /// Open WebSockets per staff member (the console, in several tabs).
    pub ws_per_staff: usize,
    /// Proxies whose forwarding header names the client (`crate::proxy`); empty: the TCP
    /// peer is the client, whatever the headers say.
    pub trusted_proxies: Vec<crate::proxy::Cidr>,
    /// The header those proxies set.
    pub proxy_header: crate::proxy::ProxyHeader,
    /// PEM certificate chain: with `tls_key`, the listener speaks TLS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Origins (`scheme://host[:port]`) whose pages may call the API from a browser
    /// (CORS, `crate::cors`), or `["*"]` for any; empty: same-origin pages only.
    pub cors_origins: Vec<String>,
    /// Whether the process may use transparent huge pages (`crate::memory`): `false` (the
    /// default) turns them off for it, as their first-touch zeroing lands on requests'
    /// tails; `true` leaves the system's setting.
    pub transparent_huge_pages: bool,
}

/// Largest zone upload, bytes (API.md: 1 MiB).
pub const ZONE_BODY_BYTES: usize = 1024 * 1024;

/// Largest `[server] write_timeout_s`: an hour.
pub const MAX_WRITE_TIMEOUT_S: u64 = 3600;

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 65_536,
            write_timeout_s: 10,
            max_connections_per_ip: 256,
            ws_per_user: 5,
            ws_per_staff: 50,
            trusted_proxies: Vec::new(),
            proxy_header: crate::proxy::ProxyHeader::XForwardedFor,
            tls_cert: None,
            tls_key: None,
            cors_origins: Vec::new(),
            transparent_huge_pages: false,
        }
    }
}

impl ServerSection {
    /// `write_timeout_s` as a duration.
    pub fn write_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.write_timeout_s)
    }

    /// The certificate and key files, when TLS is on.
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        self.tls_cert.as_deref().zip(self.tls_key.as_deref())
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 || self.max_body_bytes > ZONE_BODY_BYTES {
            return Err(format!("server.max_body_bytes must be 1-{ZONE_BODY_BYTES}"));
        }
        if !(1..=MAX_WRITE_TIMEOUT_S).contains(&self.write_timeout_s) {
            return Err(format!("server.write_timeout_s must be 1-{MAX_WRITE_TIMEOUT_S}"));
        }
        for (name, v) in [
            ("max_connections_per_ip", self.max_connections_per_ip),
            ("ws_per_user", self.ws_per_user),
            ("ws_per_staff", self.ws_per_staff),
        ] {
            if v == 0 {
                return Err(format!("server.{name} must be at least 1"));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("server.tls_cert and server.tls_key go together: set both, or neither".into());
        }
        crate::cors::validate(&self.cors_origins)
    }
}

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// The engine's data directory.
    pub data_dir: PathBuf,
    /// A checkpoint is taken once this many records were logged since the last one
    /// (then the WAL below it is released, and what finished leaves the hot state for
    /// the history). Default 100,000; at least 10.
    pub checkpoint_every_records: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self { data_dir: PathBuf::from("./data"), checkpoint_every_records: 100_000 }
    }
}

/// `[dispatch]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchSection {
    /// Drivers offered a trip at once.
    pub offers_per_round: u16,
    /// An offer lapses after this.
    pub offer_ttl_s: u32,
    /// No driver by then: expired.
    pub timeout_s: u32,
    /// Search radius.
    pub search_radius_m: u32,
    /// Older positions are never offered trips.
    pub stale_location_s: u32,
    /// Grace for a driver on a trip whose socket dropped.
    pub disconnect_grace_s: u32,
    /// A ride booked ahead starts searching this long before its `scheduled_at`.
    pub schedule_lead_s: u32,
    /// How a new trip finds its first drivers: `greedy` (at once, nearest first) or
    /// `batched` (collected for `batch_window_ms`, assigned together at least total
    /// pickup cost; issue 22).
    pub mode: MatchingMode,
    /// In `batched` mode, how long trips are collected (100-10000 ms, below `timeout_s`).
    pub batch_window_ms: u32,
    /// In `batched` mode, seconds the window's assigned offer is its trip's only one
    /// before a greedy round joins it (0: at once; `offer_ttl_s` or more: never).
    pub batch_exclusive_s: u32,
    /// In `batched` mode, a round offers only drivers whose pickup ETA is within this many
    /// seconds of the round's best (0: no bound).
    pub batch_round_slack_s: u32,
    /// The ranking that learns: per cent of the pickup cost added for a driver who
    /// accepts none of its recent offers (0-1000; 0: off).
    pub learning_acceptance_pct: u16,
    /// The ranking that learns: per cent of the cost taken off a driver idle 20 minutes
    /// or more (0-90; 0: off).
    pub learning_idle_pct: u16,
}

impl Default for DispatchSection {
    fn default() -> Self {
        let r = DispatchRules::default();
        Self {
            offers_per_round: r.offers_per_round,
            offer_ttl_s: r.offer_ttl_s,
            timeout_s: r.timeout_s,
            search_radius_m: r.search_radius_m,
            stale_location_s: r.stale_location_s,
            disconnect_grace_s: r.disconnect_grace_s,
            schedule_lead_s: r.schedule_lead_s,
            mode: r.matching,
            batch_window_ms: r.batch_window_ms,
            batch_exclusive_s: r.batch_exclusive_s,
            batch_round_slack_s: r.batch_round_slack_s,
            learning_acceptance_pct: r.learning.acceptance_pct,
            learning_idle_pct: r.learning.idle_pct,
        }
    }
}

/// `[route]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteSection {
    /// Straight-line fallback: great-circle distance × this.
    pub detour_factor: f64,
    /// Straight-line fallback speed.
    pub city_speed_kmh: f64,
    /// An OSRM-compatible `/route/v1` service (`http://` only): estimates and bookings are
    /// priced on its routes, falling back to the straight line (see `server::Routes`).
    pub router_url: Option<String>,
}

impl Default for RouteSection {
    fn default() -> Self {
        Self { detour_factor: 1.3, city_speed_kmh: 30.0, router_url: None }
    }
}

/// `[limits]`: requests per minute unless named otherwise; each allows a burst of its full amount.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Trip creations per rider.
    pub trip_create_per_min: u32,
    /// Accepts per driver.
    pub accept_per_min: u32,
    /// Positions closer together than this coalesce.
    pub location_min_interval_ms: u32,
    /// Requests per authenticated user.
    pub user_per_min: u32,
    /// Unauthenticated requests per IP.
    pub ip_per_min: u32,
    /// Open trips one rider may have.
    pub open_trips_per_rider: u16,
    /// Rides booked ahead (not yet dispatched) one rider may have; they do not count
    /// as open trips until dispatch starts.
    pub scheduled_trips_per_rider: u16,
    /// Chat messages per user (HTTP and WebSocket together).
    pub chat_per_min: u32,
    // ----- issue 20: P -----
    /// The share of the writer's queue, in percent (1-100), that commands about one zone
    /// may hold at once: one more answers `503 overloaded` for that zone only.
    pub zone_queue_share_pct: u8,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            trip_create_per_min: 10,
            accept_per_min: 20,
            location_min_interval_ms: 1000,
            user_per_min: 120,
            ip_per_min: 60,
            open_trips_per_rider: 3,
            scheduled_trips_per_rider: DispatchRules::default().scheduled_trips_per_rider,
            chat_per_min: 30,
            zone_queue_share_pct: dispatch_core::engine::DEFAULT_ZONE_QUEUE_SHARE_PCT,
        }
    }
}

impl Config {
    /// The defaults, or `path`'s contents over them.
    pub fn load(path: Option<&Path>) -> Result<Config, Error> {
        let Some(path) = path else { return Ok(Config::default()) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config { path: path.display().to_string(), message: e.to_string() })?;
        Config::parse(&text).map_err(|message| Error::Config { path: path.display().to_string(), message })
    }

    /// Parses TOML text (unknown keys are errors).
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        self.server.validate()?;
        let l = &self.limits;
        if [l.trip_create_per_min, l.accept_per_min, l.user_per_min, l.ip_per_min, l.chat_per_min].contains(&0) {
            return Err("limits: every *_per_min must be at least 1".into());
        }
        dispatch_core::route::StraightLine::new(self.route.detour_factor, self.route.city_speed_kmh)
            .map_err(|e| format!("route: {e}"))?;
        for name in self.gateways.keys() {
            if !valid_gateway_name(name) {
                return Err(format!("gateways.{name}: a gateway name is 1-32 of a-z, 0-9 and _"));
            }
            if name == "sim" {
                return Err("gateways.sim: the sim gateway is built in and takes no configuration".into());
            }
        }
        for (name, g) in &self.gateways {
            let stripe_only = g.api_base.is_some() || g.payment_method.is_some();
            if g.scheme != GatewayScheme::Stripe && stripe_only {
                return Err(format!("gateways.{name}: api_base and payment_method are for scheme = \"stripe\""));
            }
            // Parsed whole when the gateway is built (`crate::stripe`); the scheme here.
            if g.api_base.as_ref().is_some_and(|b| !b.starts_with("https://") && !b.starts_with("http://")) {
                return Err(format!("gateways.{name}: api_base must be an http:// or https:// URL"));
            }
            if g.payment_method.as_ref().is_some_and(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_graphic())) {
                return Err(format!("gateways.{name}: payment_method must be a PaymentMethod id"));
            }
        }
        if self.gateways.values().filter(|g| g.scheme == GatewayScheme::Stripe).count() > 1 {
            return Err("gateways: at most one gateway has scheme = \"stripe\" (card trips are paid through it)".into());
        }
        if !(1..=MAX_CHAT_DAYS).contains(&self.retention.chat_days) {
            return Err(format!("retention: chat_days must be 1-{MAX_CHAT_DAYS}"));
        }
        if !(1..=MAX_POSITIONS_DAYS).contains(&self.retention.positions_days) {
            return Err(format!("retention: positions_days must be 1-{MAX_POSITIONS_DAYS}"));
        }
        if !(1..=100).contains(&self.limits.zone_queue_share_pct) {
            return Err("limits: zone_queue_share_pct must be 1-100".into());
        }
        self.log.filter(None)?;
        self.validate_roles()?;
        self.cluster.validate()?;
        self.console.validate()?;
        if self.notify.sos_phones.len() > dispatch_core::outbox::MAX_SOS_PHONES {
            return Err(format!("notify: sos_phones names at most {} phones", dispatch_core::outbox::MAX_SOS_PHONES));
        }
        if let Some(bad) = self.notify.sos_phones.iter().find(|p| !is_e164(p)) {
            return Err(format!("notify: sos_phones: {bad:?} is not an E.164 number (+ and 8-15 digits)"));
        }
        if self.sms.provider == SmsProvider::Twilio && self.sms.from.trim().is_empty() {
            return Err("sms: from must be set when provider = \"twilio\"".into());
        }
        if !self.email.smtp_url.is_empty() && self.email.from.trim().is_empty() {
            return Err("email: from must be set when smtp_url is".into());
        }
        self.rules().validate().map_err(|e| e.to_string())
    }

    // ----- issue 20: S -----
    /// `[roles.<name>]`: at most [`MAX_ROLES`], each checked by `auth::custom_role`.
    fn validate_roles(&self) -> Result<(), String> {
        if self.roles.len() > MAX_ROLES {
            return Err(format!("roles: at most {MAX_ROLES} custom roles"));
        }
        self.roles.iter().try_for_each(|(name, r)| crate::auth::custom_role(name, &r.permissions).map(drop))
    }

    /// The permissions of custom role `name`; `None` when no such role is configured.
    pub fn role_permissions(&self, name: &str) -> Option<crate::auth::Permissions> {
        self.roles.get(name).and_then(|r| crate::auth::custom_role(name, &r.permissions).ok())
    }

    /// The listening address.
    pub fn listen_addr(&self) -> Result<SocketAddr, Error> {
        self.server.listen.parse().map_err(|e| Error::Setting(format!("listen address {:?}: {e}", self.server.listen)))
    }

    /// The gateway card trips are paid through: the `[gateways.<name>]` with
    /// `scheme = "stripe"` if there is one, else the built-in `sim`.
    pub fn card_gateway(&self) -> &str {
        self.gateways.iter().find(|(_, g)| g.scheme == GatewayScheme::Stripe).map_or("sim", |(name, _)| name.as_str())
    }

    /// The engine's rules from `[dispatch]` and `[limits]`.
    pub fn rules(&self) -> DispatchRules {
        let d = &self.dispatch;
        DispatchRules {
            offers_per_round: d.offers_per_round,
            offer_ttl_s: d.offer_ttl_s,
            timeout_s: d.timeout_s,
            search_radius_m: d.search_radius_m,
            stale_location_s: d.stale_location_s,
            disconnect_grace_s: d.disconnect_grace_s,
            open_trips_per_rider: self.limits.open_trips_per_rider,
            schedule_lead_s: d.schedule_lead_s,
            scheduled_trips_per_rider: self.limits.scheduled_trips_per_rider,
            location_min_interval_ms: self.limits.location_min_interval_ms,
            wallet_hold_ttl_s: self.payments.wallet_hold_ttl_s,
            card_auth_ttl_s: self.payments.card_auth_ttl_s,
            chat_retention_s: self.retention.chat_days.saturating_mul(86_400),
            sos_phones: self.notify.sos_phones.clone(),
            payout_min_minor: self.payouts.min_minor,
            max_cash_debt_minor: self.payouts.max_cash_debt_minor,
            card_gateway: self.card_gateway().to_owned(),
            matching: d.mode,
            batch_window_ms: d.batch_window_ms,
            batch_exclusive_s: d.batch_exclusive_s,
            batch_round_slack_s: d.batch_round_slack_s,
            learning: LearningWeights { acceptance_pct: d.learning_acceptance_pct, idle_pct: d.learning_idle_pct },
            ..DispatchRules::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_api_md_defaults_and_unknown_keys_are_refused() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.server.max_body_bytes, 65_536);
        assert_eq!(c.store.data_dir, PathBuf::from("./data"));
        assert_eq!(c.dispatch.offers_per_round, 5);
        assert_eq!(c.dispatch.disconnect_grace_s, 300);
        assert_eq!(c.route.detour_factor, 1.3);
        assert_eq!(c.limits.ip_per_min, 60);
        assert!(Config::parse("[server]\nlisten_addr = \"x\"").unwrap_err().contains("unknown field"));
        assert!(Config::parse("[nope]\n").is_err());
        let c = Config::parse("[limits]\nuser_per_min = 5\n[dispatch]\ntimeout_s = 60").unwrap();
        assert_eq!((c.limits.user_per_min, c.rules().timeout_s, c.limits.ip_per_min), (5, 60, 60));
    }

    #[test]
    fn the_matching_keys_reach_the_rules_and_are_checked() {
        let r = Config::parse("").unwrap().rules();
        assert_eq!((r.matching, r.batch_window_ms, r.learning), (MatchingMode::Greedy, 4_000, LearningWeights::OFF));
        let c = Config::parse(
            "[dispatch]\nmode = \"batched\"\nbatch_window_ms = 1500\nlearning_acceptance_pct = 50\nlearning_idle_pct = 25",
        )
        .unwrap();
        let r = c.rules();
        assert_eq!((r.matching, r.batch_window_ms, r.learning), (MatchingMode::Batched, 1_500, LearningWeights::TUNED));
        assert!(Config::parse("[dispatch]\nmode = \"random\"").is_err());
        assert!(Config::parse("[dispatch]\nbatch_window_ms = 50").unwrap_err().contains("batch_window_ms"));
        assert!(Config::parse("[dispatch]\nlearning_idle_pct = 95").unwrap_err().contains("idle_pct"));
    }

    #[test]
    fn the_notification_sections_have_api_md_defaults_and_are_checked() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.notify.fcm_endpoint, "https://fcm.googleapis.com");
        assert_eq!(c.notify.fcm_token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(c.notify.apns_endpoint, "https://api.push.apple.com");
        assert!(c.notify.fcm_project_id.is_empty() && c.notify.apns_topic.is_empty() && c.notify.sos_phones.is_empty());
        assert_eq!((c.sms.provider, c.sms.twilio_endpoint.as_str()), (SmsProvider::Sink, "https://api.twilio.com"));
        assert!(c.email.smtp_url.is_empty() && c.email.from.is_empty());
        let c = Config::parse(
            "[notify]\nsos_phones = [\"+201001234567\"]\n[sms]\nprovider = \"twilio\"\nfrom = \"Dispatch\"\n",
        );
        assert_eq!(c.unwrap().sms.provider, SmsProvider::Twilio);
        for (bad, says) in [
            ("[notify]\nsos_phones = [\"01001234567\"]", "sos_phones"),
            ("[notify]\nsos_phones = [\"+20 100\"]", "sos_phones"),
            ("[notify]\napns_key = \"x\"", "unknown field"),
            ("[sms]\nprovider = \"vonage\"", "unknown variant"),
            ("[sms]\nprovider = \"twilio\"", "from"),
            ("[email]\nsmtp_url = \"smtp://mail.example.com\"", "from"),
            ("[email]\nsmtp_host = \"x\"", "unknown field"),
        ] {
            let e = Config::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    // ----- issue 20: S -----
    #[test]
    fn custom_staff_roles_are_named_well_and_grant_known_permissions_only() {
        use crate::auth::{Permission, Permissions};
        let c = Config::parse("").unwrap();
        assert!(c.roles.is_empty());
        let c = Config::parse(
            "[roles.finance]\npermissions = [\"users.read\", \"reports.read\"]\n[roles.empty]\npermissions = []\n",
        )
        .unwrap();
        assert_eq!(
            c.role_permissions("finance"),
            Some(Permissions::of(&[Permission::UsersRead, Permission::ReportsRead]))
        );
        assert_eq!(c.role_permissions("empty"), Some(Permissions::NONE));
        assert_eq!(c.role_permissions("support"), None);
        let e = Config::parse("[roles.finance]\npermissions = [\"users.read\", \"users.fly\"]\n").unwrap_err();
        assert!(e.contains("users.fly"), "{e}");
        for bad in ["admin", "Finance", "fin-ance", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"] {
            assert!(Config::parse(&format!("[roles.{bad}]\npermissions = []\n")).is_err(), "{bad}");
        }
        assert!(Config::parse("[roles.finance]\npermissions = []\ncolour = 1\n").is_err(), "unknown key");
        let many: String = (0..=MAX_ROLES).map(|i| format!("[roles.r{i}]\npermissions = []\n")).collect();
        assert!(Config::parse(&many).is_err(), "33 roles");
    }

    #[test]
    fn cors_origins_default_to_none_and_are_checked_at_start() {
        assert!(Config::parse("").unwrap().server.cors_origins.is_empty());
        let c = Config::parse("[server]\ncors_origins = [\"https://ops.example.com\", \"http://localhost:3000\"]\n");
        assert_eq!(c.unwrap().server.cors_origins.len(), 2);
        assert!(Config::parse("[server]\ncors_origins = [\"*\"]\n").is_ok());
        for bad in
            ["[\"https://ops.example.com/\"]", "[\"ops.example.com\"]", "[\"*\", \"https://a.example\"]", "\"*\""]
        {
            let e = Config::parse(&format!("[server]\ncors_origins = {bad}\n")).unwrap_err();
            assert!(e.contains("cors_origins") || e.contains("invalid type"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_transport_keys_of_server_have_their_defaults_and_bounds() {
        let s = Config::parse("").unwrap().server;
        assert_eq!((s.write_timeout_s, s.max_connections_per_ip, s.ws_per_user, s.ws_per_staff), (10, 256, 5, 50));
        assert!(s.trusted_proxies.is_empty() && s.tls().is_none());
        assert_eq!(s.proxy_header, crate::proxy::ProxyHeader::XForwardedFor);
        let s = Config::parse(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nproxy_header = \"forwarded\"\n\
             tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nwrite_timeout_s = 3\n",
        )
        .unwrap()
        .server;
        assert_eq!(s.trusted_proxies.len(), 2);
        assert_eq!(s.tls(), Some((Path::new("c.pem"), Path::new("k.pem"))));
        assert_eq!(s.write_timeout(), std::time::Duration::from_secs(3));
        for bad in [
            "[server]\nwrite_timeout_s = 0",
            "[server]\nwrite_timeout_s = 3601",
            "[server]\nmax_connections_per_ip = 0",
            "[server]\nws_per_user = 0",
            "[server]\nws_per_staff = 0",
            "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]",
            "[server]\nproxy_header = \"x-real-ip\"",
            "[server]\ntls_cert = \"c.pem\"",
            "[server]\ntls_key = \"k.pem\"",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
        let err = Config::parse("[server]\ntls_cert = \"c.pem\"").unwrap_err();
        assert!(err.contains("tls_key"), "{err}");
    }

    /// A secret that passes [`secret_weakness`].
    const STRONG: &str = "test-secret-0123456789abcdefghij";

    /// Finding 10c of issue 24: secrets were checked for their length only.
    #[test]
    fn finding_10c_secrets_need_128_bits_for_their_alphabet_and_variety() {
        for (weak, why) in [
            ("aaaaaaaaaaaaaaaa", "128 bits"),
            (&"a".repeat(64), "different characters"),
            ("abababababababababababababababab", "different characters"),
            ("0123456789abcdef", "128 bits"),                // 16 hex digits: 64 bits
            ("0123456789abcdef0123456789abcde", "128 bits"), // 31 hex digits
            ("passwordpassword", "128 bits"),
            ("Zm9vYmFyYmF6cXV4cXV1eA", ""), // 22 base64 characters: 132 bits (passes)
            ("1234567890123456789012345678901234567", "128 bits"), // 37 digits: 123 bits
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabcdefgh!", "more than half"),
            ("k#8Lq!z@2Wm$9Xr^4Tv&", ""), // 20 characters of any kind: 131 bits (passes)
        ] {
            match secret_weakness(weak) {
                None => assert_eq!(why, "", "{weak} was accepted"),
                Some(reason) => {
                    assert!(!why.is_empty() && reason.contains(why), "{weak}: {reason}");
                    assert!(!reason.contains(weak), "the reason never quotes the secret");
                }
            }
        }
        for strong in [STRONG, "0123456789abcdef0123456789abcdef", "0123456789ABCDEF0123456789ABCDEF"] {
            assert_eq!(secret_weakness(strong), None, "{strong}");
        }
        // What `--dev` makes passes, every time.
        for _ in 0..2_000 {
            let made = crate::hex::random_hex(32);
            assert_eq!(secret_weakness(&made), None, "{made}");
        }
        let env = |admin: &'static str| {
            move |k: &str| match k {
                "DISPATCH_ADMIN_TOKEN" => Some(admin.to_owned()),
                _ => Some(STRONG.to_owned()),
            }
        };
        assert!(matches!(
            Secrets::from_env(env("aaaaaaaaaaaaaaaa"), false, []),
            Err(Error::GuessableSecret { name, .. }) if name == "DISPATCH_ADMIN_TOKEN"
        ));
        let rotation = |k: &str| match k {
            "DISPATCH_WEBHOOK_SECRET_SIM" => Some(format!("{STRONG},passwordpassword")),
            _ => Some(STRONG.to_owned()),
        };
        assert!(matches!(
            Secrets::from_env(rotation, false, []),
            Err(Error::GuessableSecret { name, .. }) if name == "DISPATCH_WEBHOOK_SECRET_SIM"
        ));
        assert!(Secrets::from_env(|_: &str| None, true, []).is_ok(), "--dev's own secrets pass");
    }

    #[test]
    fn secrets_are_required_unless_dev() {
        let none = |_: &str| None;
        assert!(
            matches!(Secrets::from_env(none, false, []), Err(Error::MissingSecret(n)) if n == "DISPATCH_ADMIN_TOKEN")
        );
        let some = |k: &str| match k {
            "DISPATCH_ADMIN_TOKEN" => Some(STRONG.into()),
            "DISPATCH_TOKEN_SECRET" => Some("short".into()),
            _ => None,
        };
        assert!(matches!(
            Secrets::from_env(some, false, []),
            Err(Error::WeakSecret { name, .. }) if name == "DISPATCH_TOKEN_SECRET"
        ));
        let dev = Secrets::from_env(none, true, ["paystack"]).unwrap();
        assert!(dev.webhook_secrets.contains_key("sim") && dev.webhook_secrets.contains_key("paystack"));
        assert!(dev.generated && dev.admin_token_generated && dev.token_secret.len() >= MIN_SECRET_BYTES);
        // Only the token secret is made up: the admin token came from the environment.
        let admin_only = |k: &str| (k == "DISPATCH_ADMIN_TOKEN").then(|| STRONG.to_owned());
        let dev = Secrets::from_env(admin_only, true, []).unwrap();
        assert!(dev.generated && !dev.admin_token_generated);
    }

    #[test]
    fn webhook_secrets_rotate_as_a_comma_separated_list() {
        let with = |webhook: &'static str| {
            move |k: &str| match k {
                "DISPATCH_ADMIN_TOKEN" | "DISPATCH_TOKEN_SECRET" => Some(STRONG.into()),
                "DISPATCH_WEBHOOK_SECRET_SIM" | "DISPATCH_WEBHOOK_SECRET_PAYSTACK" => Some(webhook.to_owned()),
                _ => None,
            }
        };
        let s =
            Secrets::from_env(with("new-secret-0123456789ab, old-secret-0123456789ab"), false, ["paystack"]).unwrap();
        let both = vec![b"new-secret-0123456789ab".to_vec(), b"old-secret-0123456789ab".to_vec()];
        assert_eq!((&s.webhook_secrets["sim"], &s.webhook_secrets["paystack"]), (&both, &both));
        let weak = Secrets::from_env(with("new-secret-0123456789ab,short"), false, []);
        assert!(matches!(weak, Err(Error::WeakSecret { name, .. }) if name == "DISPATCH_WEBHOOK_SECRET_SIM"));
        // A configured gateway without its secret stops start-up, naming the variable.
        let missing = Secrets::from_env(with("new-secret-0123456789ab"), false, ["razorpay"]);
        assert!(matches!(missing, Err(Error::MissingSecret(n)) if n == "DISPATCH_WEBHOOK_SECRET_RAZORPAY"));
    }

    #[test]
    fn the_metrics_token_is_optional_and_held_to_the_secrets_rules() {
        let with = |metrics: Option<&'static str>| {
            move |k: &str| match k {
                METRICS_TOKEN_VAR => metrics.map(str::to_owned),
                _ => Some(STRONG.to_owned()),
            }
        };
        assert_eq!(Secrets::from_env(with(None), false, []).unwrap().metrics_token, None);
        assert_eq!(Secrets::from_env(with(None), true, []).unwrap().metrics_token, None, "--dev makes none up");
        assert_eq!(Secrets::from_env(with(Some("")), false, []).unwrap().metrics_token, None);
        let m = "metrics-0123456789abcdefghijklm";
        assert_eq!(Secrets::from_env(with(Some(m)), false, []).unwrap().metrics_token.as_deref(), Some(m));
        assert!(matches!(
            Secrets::from_env(with(Some("short")), false, []),
            Err(Error::WeakSecret { name, .. }) if name == METRICS_TOKEN_VAR
        ));
        assert!(matches!(
            Secrets::from_env(with(Some("metricsmetricsmetrics")), true, []),
            Err(Error::GuessableSecret { name, .. }) if name == METRICS_TOKEN_VAR
        ));
    }

    #[test]
    fn the_log_level_is_a_filter_and_rust_log_wins() {
        assert_eq!(Config::parse("").unwrap().log.level, "info");
        let c = Config::parse("[log]\nlevel = \"warn,dispatch_server=debug\"\n").unwrap();
        assert!(c.log.filter(None).is_ok());
        for bad in
            ["[log]\nlevel = \"loud\"", "[log]\nlevel = \"\"", "[log]\nlevel = \"x=verbose\"", "[log]\nlvl = \"info\""]
        {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
        let warn = Config::parse("[log]\nlevel = \"warn\"").unwrap().log;
        assert_eq!(warn.filter(None).unwrap().max_level_hint(), Some(tracing::level_filters::LevelFilter::WARN));
        let debug = warn.filter(Some("debug")).unwrap();
        assert_eq!(debug.max_level_hint(), Some(tracing::level_filters::LevelFilter::DEBUG), "RUST_LOG wins");
        assert_eq!(warn.filter(Some(" ")).unwrap().max_level_hint(), Some(tracing::level_filters::LevelFilter::WARN));
        let err = warn.filter(Some("loud")).unwrap_err();
        assert!(err.starts_with("RUST_LOG"), "{err}");
    }

    #[test]
    fn gateways_and_payments_are_configured_in_toml() {
        let c = Config::parse(
            "[gateways.paystack]\nscheme = \"paystack\"\n[gateways.rzp]\nscheme = \"razorpay\"\n\
             [payments]\ncard_auth_ttl_s = 3600\n",
        )
        .unwrap();
        assert_eq!(c.gateways["paystack"].scheme, GatewayScheme::Paystack);
        assert_eq!(c.gateways["rzp"].scheme, GatewayScheme::Razorpay);
        assert_eq!((c.rules().card_auth_ttl_s, c.rules().wallet_hold_ttl_s), (3600, 86_400));
        assert!(Config::parse("[gateways.x]\nscheme = \"paypal\"\n").is_err());
        assert!(Config::parse("[gateways.x]\nscheme = \"stripe\"\nsecret = \"no\"\n").is_err(), "no secrets in files");
        assert!(Config::parse("[gateways.Bad-Name]\nscheme = \"stripe\"\n").is_err());
        assert!(Config::parse("[gateways.sim]\nscheme = \"stripe\"\n").is_err());
        // Card trips go through sim unless a Stripe gateway is configured.
        assert_eq!((c.card_gateway(), c.rules().card_gateway.as_str()), ("sim", "sim"));
        let stripe =
            Config::parse("[gateways.stripe]\nscheme = \"stripe\"\napi_base = \"http://127.0.0.1:9\"\n").unwrap();
        assert_eq!((stripe.card_gateway(), stripe.rules().card_gateway.as_str()), ("stripe", "stripe"));
        assert_eq!(stripe.gateways["stripe"].api_base.as_deref(), Some("http://127.0.0.1:9"));
        for bad in [
            "[gateways.paystack]\nscheme = \"paystack\"\napi_base = \"https://api.paystack.co\"\n",
            "[gateways.stripe]\nscheme = \"stripe\"\napi_base = \"ftp://stripe\"\n",
            "[gateways.stripe]\nscheme = \"stripe\"\npayment_method = \"\"\n",
            "[gateways.a]\nscheme = \"stripe\"\n[gateways.b]\nscheme = \"stripe\"\n",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
        assert!(Config::parse("[payments]\ncard_auth_ttl_s = 0\n").is_err());
    }

    // ----- issue 20: P -----
    #[test]
    fn positions_retention_and_zone_shares_have_their_defaults_and_bounds() {
        let c = Config::parse("").unwrap();
        assert_eq!((c.retention.positions_days, c.limits.zone_queue_share_pct), (30, 50));
        let c = Config::parse("[limits]\nzone_queue_share_pct = 100\n[retention]\npositions_days = 3650\n").unwrap();
        assert_eq!((c.retention.positions_days, c.limits.zone_queue_share_pct), (3650, 100));
        for bad in [
            "[retention]\npositions_days = 0",
            "[retention]\npositions_days = 3651",
            "[limits]\nzone_queue_share_pct = 0",
            "[limits]\nzone_queue_share_pct = 101",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chat_limits_and_retention_have_their_defaults_and_bounds() {
        let c = Config::parse("").unwrap();
        assert_eq!((c.limits.chat_per_min, c.retention.chat_days), (30, 30));
        assert_eq!(c.rules().chat_retention_s, 30 * 86_400);
        let c = Config::parse("[limits]\nchat_per_min = 3\n[retention]\nchat_days = 7\n").unwrap();
        assert_eq!((c.limits.chat_per_min, c.rules().chat_retention_s), (3, 7 * 86_400));
        for bad in [
            "[limits]\nchat_per_min = 0",
            "[retention]\nchat_days = 0",
            "[retention]\nchat_days = 3651",
            "[retention]\nchat_weeks = 1",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }
}
