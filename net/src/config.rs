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
use serde::Deserialize;

use crate::error::Error;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
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
    /// `[gateways.<name>]`: payment gateways whose webhooks `/v1/webhooks/<name>` takes,
    /// besides the built-in `sim`.
    pub gateways: BTreeMap<String, GatewaySection>,
}

/// `[payments]`.
#[derive(Debug, Clone, Deserialize)]
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

/// `[gateways.<name>]`: a payment gateway's webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// How it signs its webhooks and shapes their bodies.
    pub scheme: GatewayScheme,
}

/// The webhook schemes a configured gateway may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Where to listen.
    pub listen: String,
    /// Largest request body, bytes (zone uploads: [`ZONE_BODY_BYTES`]).
    pub max_body_bytes: usize,
}

/// Largest zone upload, bytes (API.md: 1 MiB).
pub const ZONE_BODY_BYTES: usize = 1024 * 1024;

impl Default for ServerSection {
    fn default() -> Self {
        Self { listen: "127.0.0.1:8080".into(), max_body_bytes: 65_536 }
    }
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// The engine's data directory.
    pub data_dir: PathBuf,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self { data_dir: PathBuf::from("./data") }
    }
}

/// `[dispatch]`.
#[derive(Debug, Clone, Deserialize)]
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
        }
    }
}

/// `[route]`.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
        if self.server.max_body_bytes == 0 || self.server.max_body_bytes > ZONE_BODY_BYTES {
            return Err(format!("server.max_body_bytes must be 1-{ZONE_BODY_BYTES}"));
        }
        let l = &self.limits;
        if [l.trip_create_per_min, l.accept_per_min, l.user_per_min, l.ip_per_min].contains(&0) {
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
        self.rules().validate().map_err(|e| e.to_string())
    }

    /// The listening address.
    pub fn listen_addr(&self) -> Result<SocketAddr, Error> {
        self.server.listen.parse().map_err(|e| Error::Setting(format!("listen address {:?}: {e}", self.server.listen)))
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
            location_min_interval_ms: self.limits.location_min_interval_ms,
            wallet_hold_ttl_s: self.payments.wallet_hold_ttl_s,
            card_auth_ttl_s: self.payments.card_auth_ttl_s,
            ..DispatchRules::default()
        }
    }
}

/// The secrets, from the environment.
#[derive(Clone)]
pub struct Secrets {
    /// `DISPATCH_ADMIN_TOKEN`: the bootstrap admin's bearer token.
    pub admin_token: String,
    /// `DISPATCH_TOKEN_SECRET`: signs user tokens and keys OTP hashes.
    pub token_secret: Vec<u8>,
    /// `DISPATCH_WEBHOOK_SECRET_<NAME>` of every gateway (`sim` and each configured one),
    /// by gateway name. During a rotation a variable holds the new and the old secret,
    /// comma-separated; a signature made with any of them is accepted.
    pub webhook_secrets: BTreeMap<String, Vec<Vec<u8>>>,
    /// Some secret was made up by `--dev`.
    pub generated: bool,
    /// The admin token itself was made up by `--dev` (it is printed once at start; one
    /// taken from the environment never is).
    pub admin_token_generated: bool,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(redacted)")
    }
}

/// Least length of the admin token and the token secret, bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Least length of each webhook secret, bytes.
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 16;

impl Secrets {
    /// Reads the secrets through `env` (the process environment in production): the
    /// admin token, the token secret, and the webhook secrets of `sim` and of each of
    /// `gateways`. With `dev`, any missing one is generated; without, a missing one is an
    /// error naming it.
    pub fn from_env<'a>(
        env: impl Fn(&str) -> Option<String>,
        dev: bool,
        gateways: impl IntoIterator<Item = &'a str>,
    ) -> Result<Secrets, Error> {
        // Each secret: its value, and whether `--dev` made it up.
        let get = |name: &str, min: usize| -> Result<(String, bool), Error> {
            match env(name).filter(|v| !v.is_empty()) {
                Some(v) if v.len() < min => Err(Error::WeakSecret { name: name.to_owned(), min }),
                Some(v) => Ok((v, false)),
                None if dev => Ok((crate::hex::random_hex(32), true)),
                None => Err(Error::MissingSecret(name.to_owned())),
            }
        };
        let (admin_token, admin_token_generated) = get("DISPATCH_ADMIN_TOKEN", 16)?;
        let (token_secret, mut generated) = get("DISPATCH_TOKEN_SECRET", MIN_SECRET_BYTES)?;
        generated |= admin_token_generated;
        let token_secret = token_secret.into_bytes();
        let mut webhook_secrets = BTreeMap::new();
        for gateway in std::iter::once("sim").chain(gateways) {
            let var = webhook_secret_var(gateway);
            let (value, made_up) = get(&var, MIN_WEBHOOK_SECRET_BYTES)?;
            generated |= made_up;
            let secrets: Vec<Vec<u8>> =
                value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.as_bytes().to_vec()).collect();
            if secrets.is_empty() || secrets.iter().any(|s| s.len() < MIN_WEBHOOK_SECRET_BYTES) {
                return Err(Error::WeakSecret { name: var, min: MIN_WEBHOOK_SECRET_BYTES });
            }
            webhook_secrets.insert(gateway.to_owned(), secrets);
        }
        Ok(Secrets { admin_token, token_secret, webhook_secrets, generated, admin_token_generated })
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
    fn secrets_are_required_unless_dev() {
        let none = |_: &str| None;
        assert!(
            matches!(Secrets::from_env(none, false, []), Err(Error::MissingSecret(n)) if n == "DISPATCH_ADMIN_TOKEN")
        );
        let some = |k: &str| match k {
            "DISPATCH_ADMIN_TOKEN" => Some("a".repeat(32)),
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
        let admin_only = |k: &str| (k == "DISPATCH_ADMIN_TOKEN").then(|| "a".repeat(32));
        let dev = Secrets::from_env(admin_only, true, []).unwrap();
        assert!(dev.generated && !dev.admin_token_generated);
    }

    #[test]
    fn webhook_secrets_rotate_as_a_comma_separated_list() {
        let with = |webhook: &'static str| {
            move |k: &str| match k {
                "DISPATCH_ADMIN_TOKEN" | "DISPATCH_TOKEN_SECRET" => Some("a".repeat(32)),
                "DISPATCH_WEBHOOK_SECRET_SIM" | "DISPATCH_WEBHOOK_SECRET_PAYSTACK" => Some(webhook.to_owned()),
                _ => None,
            }
        };
        let s = Secrets::from_env(with("new-secret-0123456789, old-secret-0123456789"), false, ["paystack"]).unwrap();
        let both = vec![b"new-secret-0123456789".to_vec(), b"old-secret-0123456789".to_vec()];
        assert_eq!((&s.webhook_secrets["sim"], &s.webhook_secrets["paystack"]), (&both, &both));
        let weak = Secrets::from_env(with("new-secret-0123456789,short"), false, []);
        assert!(matches!(weak, Err(Error::WeakSecret { name, .. }) if name == "DISPATCH_WEBHOOK_SECRET_SIM"));
        // A configured gateway without its secret stops start-up, naming the variable.
        let missing = Secrets::from_env(with("new-secret-0123456789"), false, ["razorpay"]);
        assert!(matches!(missing, Err(Error::MissingSecret(n)) if n == "DISPATCH_WEBHOOK_SECRET_RAZORPAY"));
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
        assert!(Config::parse("[payments]\ncard_auth_ttl_s = 0\n").is_err());
    }
}
