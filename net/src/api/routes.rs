//! The route table: every endpoint of the API, the one index of them. A reader finds
//! here every path and its method ([`Endpoint::route`]), who may call it, its rate
//! limits, its body limit and whether it takes an `Idempotency-Key` ([`Endpoint::spec`]).
//! The handlers are elsewhere (`dispatch` in `api/mod.rs` maps each endpoint to one).
//!
//! Guarantees: an unknown path is `404 not_found`, a known path with another method
//! `405 method_not_allowed`; path parameters are handed on unparsed (a malformed id is the
//! handler's `404`); each route's rights are declared once, in [`Endpoint::spec`], and the
//! pipeline checks them before any handler runs.

use dispatch_core::Role;
use hyper::Method;

use crate::auth::{ADMIN, Allow, DRIVER, RIDER, RIDER_OR_DRIVER, STAFF};
use crate::http::ApiError;
use crate::ratelimit::Class;

/// Every endpoint, with its path parameters (still unparsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /healthz`
    Healthz,
    /// `GET /readyz`
    Readyz,
    /// `GET /metrics`
    Metrics,
    /// `GET /v1/ws`
    Ws,
    /// `POST /v1/auth/otp`
    OtpIssue,
    /// `POST /v1/auth/otp/verify`
    OtpVerify,
    /// `POST /v1/admin/users`
    CreateUser,
    /// `POST /v1/admin/users/{id}/revoke-tokens`
    RevokeTokens(String),
    /// `POST /v1/admin/zones`
    CreateZone,
    /// `PUT /v1/admin/zones/{id}`
    ReplaceZone(String),
    /// `GET /v1/zones`
    ListZones,
    /// `GET /v1/zones/lookup`
    LookupZone,
    /// `POST /v1/admin/coupons`
    CreateCoupon,
    /// `POST /v1/fares/estimate`
    Estimate,
    /// `POST /v1/driver/status`
    DriverStatus,
    /// `POST /v1/driver/location`
    DriverLocation,
    /// `GET /v1/driver/offers`
    DriverOffers,
    /// `GET /v1/admin/drivers/nearby`
    DriversNearby,
    /// `GET /v1/admin/drivers`
    ListDrivers,
    /// `GET /v1/admin/drivers/{id}`
    GetDriver(String),
    /// `POST /v1/admin/drivers/{id}/suspend` (`true`) or `unsuspend`
    Suspend(String, bool),
    /// `POST /v1/trips`
    CreateTrip,
    /// `GET /v1/trips`
    ListTrips,
    /// `GET /v1/trips/{id}`
    GetTrip(String),
    /// `POST /v1/trips/{id}/{action}` (accept, decline, arrived, start, complete, cancel)
    TripAction(String, TripAction),
    /// `POST /v1/trips/{id}/bids`
    PlaceBid(String),
    /// `GET /v1/trips/{id}/bids`
    ListBids(String),
    /// `POST /v1/trips/{id}/bids/{bid_id}/accept`
    AcceptBid(String, String),
    /// `POST /v1/trips/{id}/rating`
    Rate(String),
    /// `POST /v1/trips/{id}/sos`
    Sos(String),
    /// `GET /v1/admin/trips`
    AdminTrips,
    /// `POST /v1/admin/trips/{id}/cancel`
    AdminCancel(String),
    /// `GET /v1/admin/alerts`
    ListAlerts,
    /// `POST /v1/admin/alerts/{id}/ack`
    AckAlert(String),
    /// `GET /v1/admin/stats`
    Stats,
    /// `GET /v1/admin/trips/{id}/events`
    TripEvents(String),
    /// `GET /v1/admin/trips/{id}/trail`
    TripTrail(String),
    /// `GET /v1/wallet`
    Wallet,
    /// `POST /v1/admin/wallets/{user_id}/credit`
    Credit(String),
    /// `POST /v1/admin/trips/{id}/refund`
    Refund(String),
    /// `GET /v1/admin/ledger/verify`
    LedgerVerify,
    /// `POST /v1/webhooks/{gateway}`
    Webhook(String),
    /// `POST /v1/admin/reconcile?gateway=`
    Reconcile,
    /// `GET /v1/admin/payments/dead-letters`
    DeadLetters,
    /// `POST /v1/trips/{id}/payment-method`
    PaymentMethod(String),
    /// `POST /v1/trips/{id}/cash-received`: its driver confirms a rider's switch to cash.
    CashReceived(String),
    /// `POST /v1/admin/trips/{id}/unlock`: staff unlock a pickup code locked by wrong codes.
    UnlockCode(String),
    /// `GET /console` and its assets.
    Console(ConsoleAsset),
}

/// The operators' console's files, compiled into the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleAsset {
    /// `/console`
    Page,
    /// `/console/app.js`
    Script,
    /// `/console/app.css`
    Style,
}

/// A driver's or rider's step on a trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripAction {
    /// Take it.
    Accept,
    /// Say no.
    Decline,
    /// At the pickup.
    Arrived,
    /// Start with the pickup code.
    Start,
    /// End the ride.
    Complete,
    /// Cancel.
    Cancel,
}

/// What the pipeline needs to know about a route.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The route's name in metrics and logs (never the raw path).
    pub name: &'static str,
    /// Who may call it.
    pub allow: Allow,
    /// A route-specific rate limit on top of the per-user one.
    pub class: Option<Class>,
    /// Counted against `ip_per_min` when unauthenticated.
    pub ip_limited: bool,
    /// A zone upload (1 MiB body limit).
    pub large_body: bool,
    /// Takes `Idempotency-Key`.
    pub idempotent: bool,
}

const fn spec(name: &'static str, allow: Allow) -> Spec {
    Spec { name, allow, class: None, ip_limited: true, large_body: false, idempotent: false }
}

impl Endpoint {
    /// Matches a method and path; `Err` tells 404 from 405.
    pub fn route(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
        use Endpoint as E;
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let s = |i: usize| segs.get(i).map(|x| (*x).to_owned()).unwrap_or_default();
        let get = method == Method::GET;
        let post = method == Method::POST;
        let put = method == Method::PUT;
        let found = match segs.as_slice() {
            ["healthz"] => get.then_some(E::Healthz),
            ["readyz"] => get.then_some(E::Readyz),
            ["metrics"] => get.then_some(E::Metrics),
            ["v1", "ws"] => get.then_some(E::Ws),
            ["v1", "auth", "otp"] => post.then_some(E::OtpIssue),
            ["v1", "auth", "otp", "verify"] => post.then_some(E::OtpVerify),
            ["v1", "admin", "users"] => post.then_some(E::CreateUser),
            ["v1", "admin", "users", _, "revoke-tokens"] => post.then(|| E::RevokeTokens(s(3))),
            ["v1", "admin", "zones"] => post.then_some(E::CreateZone),
            ["v1", "admin", "zones", _] => put.then(|| E::ReplaceZone(s(3))),
            ["v1", "zones"] => get.then_some(E::ListZones),
            ["v1", "zones", "lookup"] => get.then_some(E::LookupZone),
            ["v1", "admin", "coupons"] => post.then_some(E::CreateCoupon),
            ["v1", "fares", "estimate"] => post.then_some(E::Estimate),
            ["v1", "driver", "status"] => post.then_some(E::DriverStatus),
            ["v1", "driver", "location"] => post.then_some(E::DriverLocation),
            ["v1", "driver", "offers"] => get.then_some(E::DriverOffers),
            ["v1", "admin", "drivers", "nearby"] => get.then_some(E::DriversNearby),
            ["v1", "admin", "drivers"] => get.then_some(E::ListDrivers),
            ["v1", "admin", "drivers", _] => get.then(|| E::GetDriver(s(3))),
            ["v1", "admin", "drivers", _, "suspend"] => post.then(|| E::Suspend(s(3), true)),
            ["v1", "admin", "drivers", _, "unsuspend"] => post.then(|| E::Suspend(s(3), false)),
            ["v1", "trips"] if post => Some(E::CreateTrip),
            ["v1", "trips"] => get.then_some(E::ListTrips),
            ["v1", "trips", _] => get.then(|| E::GetTrip(s(2))),
            ["v1", "trips", _, "bids"] if post => Some(E::PlaceBid(s(2))),
            ["v1", "trips", _, "bids"] => get.then(|| E::ListBids(s(2))),
            ["v1", "trips", _, "bids", _, "accept"] => post.then(|| E::AcceptBid(s(2), s(4))),
            ["v1", "trips", _, "rating"] => post.then(|| E::Rate(s(2))),
            ["v1", "trips", _, "sos"] => post.then(|| E::Sos(s(2))),
            ["v1", "trips", _, "payment-method"] => post.then(|| E::PaymentMethod(s(2))),
            ["v1", "trips", _, "cash-received"] => post.then(|| E::CashReceived(s(2))),
            ["v1", "trips", _, action] => {
                let a = match *action {
                    "accept" => TripAction::Accept,
                    "decline" => TripAction::Decline,
                    "arrived" => TripAction::Arrived,
                    "start" => TripAction::Start,
                    "complete" => TripAction::Complete,
                    "cancel" => TripAction::Cancel,
                    _ => return Err(ApiError::new("not_found", "no such endpoint")),
                };
                post.then(|| E::TripAction(s(2), a))
            }
            ["v1", "admin", "trips"] => get.then_some(E::AdminTrips),
            ["v1", "admin", "trips", _, "cancel"] => post.then(|| E::AdminCancel(s(3))),
            ["v1", "admin", "trips", _, "unlock"] => post.then(|| E::UnlockCode(s(3))),
            ["v1", "admin", "alerts"] => get.then_some(E::ListAlerts),
            ["v1", "admin", "alerts", _, "ack"] => post.then(|| E::AckAlert(s(3))),
            ["v1", "admin", "stats"] => get.then_some(E::Stats),
            ["v1", "admin", "trips", _, "events"] => get.then(|| E::TripEvents(s(3))),
            ["v1", "admin", "trips", _, "trail"] => get.then(|| E::TripTrail(s(3))),
            ["v1", "wallet"] => get.then_some(E::Wallet),
            ["v1", "admin", "wallets", _, "credit"] => post.then(|| E::Credit(s(3))),
            ["v1", "admin", "trips", _, "refund"] => post.then(|| E::Refund(s(3))),
            ["v1", "admin", "ledger", "verify"] => get.then_some(E::LedgerVerify),
            ["v1", "webhooks", _] => post.then(|| E::Webhook(s(2))),
            ["v1", "admin", "reconcile"] => post.then_some(E::Reconcile),
            ["v1", "admin", "payments", "dead-letters"] => get.then_some(E::DeadLetters),
            ["console"] => get.then_some(E::Console(ConsoleAsset::Page)),
            ["console", "app.js"] => get.then_some(E::Console(ConsoleAsset::Script)),
            ["console", "app.css"] => get.then_some(E::Console(ConsoleAsset::Style)),
            _ => return Err(ApiError::new("not_found", "no such endpoint")),
        };
        found.ok_or_else(|| ApiError::new("method_not_allowed", format!("{method} is not allowed here")))
    }

    /// The trip a route is about (for logs).
    pub fn trip_id(&self) -> Option<&str> {
        use Endpoint as E;
        match self {
            E::GetTrip(t)
            | E::TripAction(t, _)
            | E::PlaceBid(t)
            | E::ListBids(t)
            | E::AcceptBid(t, _)
            | E::Rate(t)
            | E::Sos(t)
            | E::AdminCancel(t)
            | E::TripEvents(t)
            | E::PaymentMethod(t)
            | E::CashReceived(t)
            | E::UnlockCode(t)
            | E::TripTrail(t)
            | E::Refund(t) => Some(t),
            _ => None,
        }
    }

    /// The route's rights and limits: the one table of who may call what.
    pub fn spec(&self) -> Spec {
        use Endpoint as E;
        let idem = |s: Spec| Spec { idempotent: true, ..s };
        match self {
            E::Healthz => Spec { ip_limited: false, ..spec("healthz", Allow::Anyone) },
            E::Readyz => Spec { ip_limited: false, ..spec("readyz", Allow::Anyone) },
            E::Metrics => Spec { ip_limited: false, ..spec("metrics", ADMIN) },
            E::Ws => spec("ws", Allow::Authenticated),
            E::OtpIssue => spec("otp_issue", Allow::Anyone),
            E::OtpVerify => spec("otp_verify", Allow::Anyone),
            E::CreateUser => idem(spec("admin_create_user", ADMIN)),
            E::RevokeTokens(_) => idem(spec("admin_revoke_tokens", ADMIN)),
            E::CreateZone => Spec { large_body: true, ..idem(spec("admin_create_zone", ADMIN)) },
            E::ReplaceZone(_) => Spec { large_body: true, ..spec("admin_replace_zone", ADMIN) },
            E::ListZones => spec("zones", Allow::Authenticated),
            E::LookupZone => spec("zone_lookup", Allow::Authenticated),
            E::CreateCoupon => idem(spec("admin_create_coupon", ADMIN)),
            E::Estimate => spec("fare_estimate", RIDER),
            E::DriverStatus => idem(spec("driver_status", DRIVER)),
            E::DriverLocation => spec("driver_location", DRIVER),
            E::DriverOffers => spec("driver_offers", DRIVER),
            E::DriversNearby => spec("admin_drivers_nearby", STAFF),
            E::ListDrivers => spec("admin_drivers", STAFF),
            E::GetDriver(_) => spec("admin_driver", STAFF),
            E::Suspend(..) => idem(spec("admin_suspend", ADMIN)),
            E::CreateTrip => Spec { class: Some(Class::TripCreate), ..idem(spec("trip_create", RIDER)) },
            E::ListTrips => spec("trips", RIDER_OR_DRIVER),
            E::GetTrip(_) => spec("trip", Allow::Roles(&[Role::Rider, Role::Driver, Role::Support, Role::Admin])),
            E::TripAction(_, a) => match a {
                TripAction::Accept => Spec { class: Some(Class::Accept), ..idem(spec("trip_accept", DRIVER)) },
                TripAction::Decline => idem(spec("trip_decline", DRIVER)),
                TripAction::Arrived => idem(spec("trip_arrived", DRIVER)),
                TripAction::Start => idem(spec("trip_start", DRIVER)),
                TripAction::Complete => idem(spec("trip_complete", DRIVER)),
                TripAction::Cancel => idem(spec("trip_cancel", RIDER_OR_DRIVER)),
            },
            E::PlaceBid(_) => idem(spec("trip_bid", DRIVER)),
            E::ListBids(_) => spec("trip_bids", RIDER),
            E::AcceptBid(..) => idem(spec("trip_bid_accept", RIDER)),
            E::Rate(_) => idem(spec("trip_rating", RIDER_OR_DRIVER)),
            E::Sos(_) => idem(spec("trip_sos", RIDER_OR_DRIVER)),
            E::AdminTrips => spec("admin_trips", STAFF),
            E::AdminCancel(_) => idem(spec("admin_trip_cancel", STAFF)),
            E::ListAlerts => spec("admin_alerts", STAFF),
            E::AckAlert(_) => idem(spec("admin_alert_ack", STAFF)),
            E::Stats => spec("admin_stats", STAFF),
            E::TripEvents(_) => spec("admin_trip_events", STAFF),
            E::TripTrail(_) => spec("admin_trip_trail", STAFF),
            E::Wallet => spec("wallet", RIDER_OR_DRIVER),
            E::Credit(_) => idem(spec("admin_wallet_credit", ADMIN)),
            E::Refund(_) => idem(spec("admin_trip_refund", STAFF)),
            E::LedgerVerify => spec("admin_ledger_verify", ADMIN),
            // Signed webhooks are not counted against `ip_per_min`; a bad signature is (handler).
            E::Webhook(_) => Spec { ip_limited: false, ..spec("webhook", Allow::Anyone) },
            // A settlement report can be long: the 1 MiB limit of zone uploads.
            E::Reconcile => Spec { large_body: true, ..spec("admin_reconcile", ADMIN) },
            E::DeadLetters => spec("admin_dead_letters", STAFF),
            E::PaymentMethod(_) => idem(spec("trip_payment_method", RIDER)),
            E::CashReceived(_) => idem(spec("trip_cash_received", DRIVER)),
            E::UnlockCode(_) => idem(spec("admin_trip_unlock", STAFF)),
            // Static files carry no data: the console signs in with a staff token in the page.
            E::Console(_) => Spec { ip_limited: false, ..spec("console", Allow::Anyone) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_tells_404_from_405_and_names_every_route() {
        let r = |m: Method, p: &str| Endpoint::route(&m, p);
        assert_eq!(r(Method::GET, "/v1/trips/trp_1"), Ok(Endpoint::GetTrip("trp_1".into())));
        assert_eq!(
            r(Method::POST, "/v1/trips/trp_1/accept/"),
            Ok(Endpoint::TripAction("trp_1".into(), TripAction::Accept))
        );
        assert_eq!(r(Method::POST, "/v1/trips/x/bids/y/accept"), Ok(Endpoint::AcceptBid("x".into(), "y".into())));
        assert_eq!(r(Method::GET, "/v1/nope").unwrap_err().code, "not_found");
        assert_eq!(r(Method::POST, "/v1/trips/t/fly").unwrap_err().code, "not_found");
        assert_eq!(r(Method::DELETE, "/v1/trips").unwrap_err().code, "method_not_allowed");
        assert_eq!(r(Method::GET, "/healthz").map(|e| e.spec().ip_limited), Ok(false));
        assert_eq!(r(Method::POST, "/v1/webhooks/sim").map(|e| e.spec().ip_limited), Ok(false));
        // Every state-changing route of an authenticated caller takes an idempotency key.
        for (m, p) in
            [(Method::POST, "/v1/trips"), (Method::POST, "/v1/trips/t/accept"), (Method::POST, "/v1/admin/users")]
        {
            assert!(r(m, p).unwrap().spec().idempotent, "{p}");
        }
    }
}
