//! The HTTP API: the route table, the request pipeline, and one handler per endpoint.
//!
//! Pipeline of every request ([`handle`]): request id → route match → authentication
//! (skipped on routes open to anyone, which ignore `Authorization`) → rate limits → the route's permission ([`crate::auth::authorize`]) → body (limited,
//! strict JSON) → handler → engine command (never blocking a runtime thread: the engine
//! answers through a oneshot) or a read of the engine's view → response with
//! `X-Request-Id`, one JSON log line and metrics.
//!
//! Guarantees: paths, status codes and error codes are API.md's; each route's rights are
//! declared once, in [`Endpoint::spec`]; a state-changing POST with `Idempotency-Key`
//! runs at most once per (principal, key), replays answer `Idempotent-Replayed: true`,
//! and a key already in flight is `409 idempotency_key_in_use`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use dispatch_core::clock::{Clock, SystemClock, Timestamp};
use dispatch_core::command::IdempotencyKey;
use dispatch_core::id::{AlertId, BidId, ZoneId};
use dispatch_core::trip::Parcel;
use dispatch_core::{
    Actor, Availability, Category, Command, LocationReport, NewTrip, NewUser, Outcome, PaymentMethod, Place, Role,
    Trip, TripId, TripKind, TripStatus, TripsOf, UserId, Vehicle, ZoneSpec,
};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::auth::{self, ADMIN, Allow, DRIVER, Principal, RIDER, RIDER_OR_DRIVER, STAFF};
use crate::http::{self, ApiError, Cursor, Query, Resp, json_response, lat_lng, no_content, parse_json};
use crate::ratelimit::{Class, Subject};
use crate::render;
use crate::server::App;

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
    /// `GET /console` and its assets.
    Console(ConsoleAsset),
}

/// Most positions `GET /v1/admin/trips/{id}/trail` answers (a sample when there are more).
pub const TRAIL_MAX_POINTS: usize = 5_000;

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

impl ConsoleAsset {
    fn response(self) -> Resp {
        let (content_type, body) = match self {
            ConsoleAsset::Page => ("text/html; charset=utf-8", include_str!("../console/index.html")),
            ConsoleAsset::Script => ("text/javascript; charset=utf-8", include_str!("../console/app.js")),
            ConsoleAsset::Style => ("text/css; charset=utf-8", include_str!("../console/app.css")),
        };
        http::text_response(content_type, body.to_owned())
    }
}

/// Whether `path` is the console's (its headers go on every answer there, errors too).
fn is_console_path(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// The headers of API.md on a console response.
fn console_headers(h: &mut hyper::HeaderMap) {
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
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
            // Static files carry no data: the console signs in with a staff token in the page.
            E::Console(_) => Spec { ip_limited: false, ..spec("console", Allow::Anyone) },
        }
    }
}

/// Handles one request end to end (never fails: errors become error responses). Its one
/// log line names the user (the signed-in one for an OTP verify) and the trip (the new
/// one for a booking), never a token, a code or a phone number.
pub async fn handle(app: Arc<App>, peer: IpAddr, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let request_id = http::request_id(req.headers());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut seen = Seen::default();
    let (name, result) = match Endpoint::route(&method, &path) {
        Err(e) => ("unmatched", Err(e)),
        Ok(ep) => {
            let spec = ep.spec();
            // Only well-formed ids reach the log (a path segment is caller-controlled text).
            seen.trip_id = ep.trip_id().and_then(|t| t.parse::<TripId>().ok());
            (spec.name, pipeline(&app, peer, ep, spec, req, &mut seen).await)
        }
    };
    let Seen { who, trip_id } = seen;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    if is_console_path(&path) {
        console_headers(resp.headers_mut());
    }
    let status = resp.status().as_u16();
    app.metrics.record(name, status, started.elapsed());
    let user = who.and_then(Principal::user_id).map(|u| u.to_string());
    tracing::info!(
        request_id = %request_id,
        method = %method,
        route = name,
        status,
        trip_id = trip_id.map(|t| t.to_string()).as_deref().unwrap_or("-"),
        user_id = user.as_deref().unwrap_or(if matches!(who, Some(Principal::BootstrapAdmin)) { "admin" } else { "-" }),
        took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    resp
}

/// What a request's log line says about who called and which trip it was about, as
/// learnt along the pipeline (a sign-in learns its user, a booking its new trip).
#[derive(Default)]
struct Seen {
    who: Option<Principal>,
    trip_id: Option<TripId>,
}

async fn pipeline(
    app: &Arc<App>,
    peer: IpAddr,
    ep: Endpoint,
    spec: Spec,
    req: Request<Incoming>,
    seen: &mut Seen,
) -> Result<Resp, ApiError> {
    // Routes open to anyone ignore credentials: a stale or malformed token must not turn
    // a health check, a sign-in or a gateway's webhook into a 401.
    let token = (spec.allow != Allow::Anyone)
        .then(|| {
            req.headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(auth::bearer)
                .map(str::to_owned)
                .or_else(|| {
                    // Browsers cannot set headers on a WebSocket: `?token=` there only.
                    (ep == Endpoint::Ws)
                        .then(|| Query::parse(req.uri().query()).get("token").map(str::to_owned))
                        .flatten()
                })
        })
        .flatten();
    let who = match token {
        None => None,
        Some(t) => match app.authenticate(&t) {
            Ok(p) => Some(p),
            Err(e) => {
                // A bad token is an unauthenticated request: it pays the IP limit (token guessing).
                app.limit(spec, Class::Ip, Subject::Ip(peer))?;
                return Err(e);
            }
        },
    };
    seen.who = who;
    match who {
        None if spec.ip_limited => app.limit(spec, Class::Ip, Subject::Ip(peer))?,
        Some(Principal::User { id, .. }) => app.limit(spec, Class::User, Subject::User(id.raw()))?,
        _ => {}
    }
    auth::authorize(spec.allow, who)?;
    if let (Some(class), Some(id)) = (spec.class, who.and_then(Principal::user_id)) {
        app.limit(spec, class, Subject::User(id.raw()))?;
    }
    if ep == Endpoint::Ws {
        let who = who.ok_or_else(|| ApiError::new("unauthorized", "a bearer token is required"))?;
        return crate::ws::upgrade(Arc::clone(app), who, req);
    }
    let idem_key = req.headers().get("idempotency-key").map(|v| v.to_str().map(str::to_owned));
    let query = Query::parse(req.uri().query());
    let limit = if spec.large_body { crate::config::ZONE_BODY_BYTES } else { app.config.server.max_body_bytes };
    let (parts, body) = req.into_parts();
    let body = http::read_body(&parts.headers, body, limit).await?;
    // Webhooks read their gateway's signature header (and event id headers).
    let headers = matches!(ep, Endpoint::Webhook(_)).then(|| parts.headers.clone()).unwrap_or_default();
    let mut ctx = Ctx { app, who, peer, query, body, headers, keyed: None, replayed: false, new_trip: None };
    let _guard = match (spec.idempotent, idem_key, who) {
        (true, Some(key), Some(p)) => {
            let key = key.map_err(|_| ApiError::invalid("Idempotency-Key must be 1-255 printable ASCII characters"))?;
            let hash = request_hash(&parts.method, &path_of(&parts.uri), &ctx.body);
            let key = IdempotencyKey { principal: p.actor(), key, request_hash: hash };
            key.validate()?;
            let guard = app.inflight.claim(&key)?;
            ctx.keyed = Some(key);
            Some(guard)
        }
        _ => None,
    };
    let result = ctx.dispatch(ep).await;
    seen.who = ctx.who;
    seen.trip_id = seen.trip_id.or(ctx.new_trip);
    let mut resp = result?;
    if ctx.replayed {
        resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

fn path_of(uri: &hyper::Uri) -> String {
    uri.path().to_owned()
}

fn request_hash(method: &Method, path: &str, body: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(method.as_str().as_bytes());
    ctx.update(b"\n");
    ctx.update(path.as_bytes());
    ctx.update(b"\n");
    ctx.update(body);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// One request's context inside its handler.
struct Ctx<'a> {
    app: &'a Arc<App>,
    who: Option<Principal>,
    peer: IpAddr,
    query: Query,
    body: Bytes,
    /// The request's headers (webhooks only; empty otherwise).
    headers: hyper::HeaderMap,
    keyed: Option<IdempotencyKey>,
    replayed: bool,
    /// The trip a booking created (for the request's log line).
    new_trip: Option<TripId>,
}

fn parse_id<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, ApiError> {
    // A malformed id names nothing that exists: 404, like an unknown one.
    s.parse().map_err(|_| ApiError::not_found(what))
}

fn now() -> Timestamp {
    SystemClock.now()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointIn {
    lat: f64,
    lng: f64,
}

impl PointIn {
    fn get(&self) -> Result<dispatch_core::LatLng, ApiError> {
        lat_lng(self.lat, self.lng)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceIn {
    lat: f64,
    lng: f64,
    #[serde(default)]
    address: Option<String>,
}

impl PlaceIn {
    fn get(self) -> Result<Place, ApiError> {
        Ok(Place { point: lat_lng(self.lat, self.lng)?, address: self.address })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonIn {
    #[serde(default)]
    reason: String,
}

/// `POST /v1/driver/location` and the WS `location` message (without `type`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationIn {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lng: f64,
    /// Degrees from north.
    #[serde(default)]
    pub heading_deg: Option<f32>,
    /// Metres per second.
    #[serde(default)]
    pub speed_mps: Option<f32>,
    /// Accuracy, metres (accepted, not used yet).
    #[serde(default)]
    pub accuracy_m: Option<f32>,
    /// The phone's time (accepted, not trusted: the engine stamps its own).
    #[serde(default)]
    pub recorded_at: Option<String>,
}

impl LocationIn {
    /// The engine's report (`invalid_coordinates` / `invalid_request` on bad values).
    pub fn report(&self) -> Result<LocationReport, ApiError> {
        let point = lat_lng(self.lat, self.lng)?;
        if self.heading_deg.is_some_and(|h| !(0.0..=360.0).contains(&h))
            || self.speed_mps.is_some_and(|s| !(0.0..=200.0).contains(&s))
            || self.accuracy_m.is_some_and(|a| !(0.0..=100_000.0).contains(&a))
        {
            return Err(ApiError::invalid("heading_deg must be 0-360, speed_mps 0-200, accuracy_m positive"));
        }
        if let Some(t) = &self.recorded_at {
            http::parse_rfc3339(t, "recorded_at")?;
        }
        Ok(LocationReport { point, heading_deg: self.heading_deg, speed_mps: self.speed_mps })
    }
}

impl Ctx<'_> {
    fn principal(&self) -> Result<Principal, ApiError> {
        self.who.ok_or_else(|| ApiError::new("unauthorized", "a bearer token is required"))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, empty_ok: bool) -> Result<T, ApiError> {
        parse_json(&self.body, empty_ok)
    }

    /// Sends a command as the caller, under the request's idempotency key if any.
    async fn submit(&mut self, command: Command) -> Result<Outcome, ApiError> {
        let actor = self.principal()?.actor();
        let command = match self.keyed.clone() {
            Some(key) => Command::Keyed { key, command: Box::new(command), archived: None },
            None => command,
        };
        match self.app.submit(actor, command).await? {
            Outcome::Replayed(inner) => {
                self.replayed = true;
                Ok(*inner)
            }
            o => Ok(o),
        }
    }

    fn for_rider(&self, t: &Trip) -> bool {
        self.who.and_then(Principal::user_id) == Some(t.rider_id)
    }

    fn trip_out(&self, status: StatusCode, o: Outcome) -> Result<Resp, ApiError> {
        match o {
            Outcome::Trip(t) => Ok(json_response(status, &render::trip(&t, self.for_rider(&t)))),
            other => Err(unexpected(&other)),
        }
    }

    /// A trip the caller may see: its rider, its driver, staff. Anyone else: 404.
    async fn visible_trip(&self, id: &str) -> Result<Arc<Trip>, ApiError> {
        let id: TripId = parse_id(id, "trip")?;
        let t = self.app.blocking(move |e| e.find_trip(id)).await?.ok_or_else(|| ApiError::not_found("trip"))?;
        let p = self.principal()?;
        let mine = p.user_id().is_some_and(|u| t.rider_id == u || t.driver_id == Some(u));
        if mine || p.is_staff() { Ok(t) } else { Err(ApiError::not_found("trip")) }
    }

    async fn dispatch(&mut self, ep: Endpoint) -> Result<Resp, ApiError> {
        use Endpoint as E;
        let app = Arc::clone(self.app);
        match ep {
            E::Healthz => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
            E::Readyz => Ok(app.readiness()),
            E::Metrics => Ok(http::text_response("text/plain; version=0.0.4", app.metrics.render(&app.engine))),
            E::Ws => Err(ApiError::new("not_found", "no such endpoint")),
            E::OtpIssue => self.otp_issue().await,
            E::OtpVerify => self.otp_verify().await,
            E::CreateUser => self.create_user().await,
            E::RevokeTokens(id) => {
                self.json::<Empty>(true)?;
                let user_id: UserId = parse_id(&id, "user")?;
                self.submit(Command::RevokeTokens { user_id }).await?;
                Ok(no_content())
            }
            E::CreateZone => {
                let zone: ZoneSpec = self.json(false)?;
                match self.submit(Command::CreateZone { id: None, zone: Box::new(zone) }).await? {
                    Outcome::Zone(z) => Ok(json_response(StatusCode::CREATED, &render::zone(&z))),
                    o => Err(unexpected(&o)),
                }
            }
            E::ReplaceZone(id) => {
                let zone_id: ZoneId = parse_id(&id, "zone")?;
                let zone: ZoneSpec = self.json(false)?;
                match self.submit(Command::ReplaceZone { zone_id, zone: Box::new(zone) }).await? {
                    Outcome::Zone(z) => Ok(json_response(StatusCode::OK, &render::zone(&z))),
                    o => Err(unexpected(&o)),
                }
            }
            E::ListZones => {
                let items: Vec<Value> = app.engine.read(|v| v.catalog().zones().map(|z| render::zone(z)).collect());
                Ok(json_response(StatusCode::OK, &json!({"items": items, "next_cursor": null})))
            }
            E::LookupZone => {
                let p = lat_lng(self.query.f64("lat")?, self.query.f64("lng")?)?;
                let z = app.engine.read(|v| v.catalog().lookup(p).map(Arc::clone))?;
                Ok(json_response(StatusCode::OK, &render::zone(&z)))
            }
            E::CreateCoupon => self.create_coupon().await,
            E::Estimate => self.estimate().await,
            E::DriverStatus => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct In {
                    status: String,
                    #[serde(default)]
                    location: Option<PointIn>,
                }
                let b: In = self.json(false)?;
                let online = match b.status.as_str() {
                    "online" => true,
                    "offline" => false,
                    _ => return Err(ApiError::invalid("status must be online or offline")),
                };
                let location = b.location.map(|l| l.get()).transpose()?;
                match self.submit(Command::SetDriverStatus { online, location }).await? {
                    Outcome::Driver(d) => Ok(json_response(StatusCode::OK, &render::driver(&d, now()))),
                    o => Err(unexpected(&o)),
                }
            }
            E::DriverLocation => {
                let b: LocationIn = self.json(false)?;
                let report = b.report()?;
                self.submit(Command::UpdateLocation(report)).await?;
                Ok(no_content())
            }
            E::DriverOffers => {
                let me = self.principal()?.user_id().ok_or_else(|| ApiError::new("forbidden", "drivers only"))?;
                let items: Vec<Value> = app
                    .engine
                    .offers_for(me)
                    .iter()
                    .filter_map(|t| {
                        let o = t.offer_to(me)?;
                        (o.state == dispatch_core::OfferState::Pending)
                            .then(|| render::offer(t, o.expires_at, o.distance_to_pickup_m))
                    })
                    .collect();
                Ok(json_response(StatusCode::OK, &json!({"items": items})))
            }
            E::DriversNearby => {
                let p = lat_lng(self.query.f64("lat")?, self.query.f64("lng")?)?;
                let radius = self.query.parsed::<f64>("radius_m")?.unwrap_or(5_000.0);
                if !(radius.is_finite() && (1.0..=100_000.0).contains(&radius)) {
                    return Err(ApiError::invalid("radius_m must be 1-100000"));
                }
                let limit = http::limit(&self.query)?;
                // The writer's R-tree, asked right after a commit (never a scan of every driver).
                let (tx, rx) = oneshot::channel();
                app.engine.nearby_drivers_with(p, radius, limit, move |r| {
                    let _ = tx.send(r);
                })?;
                let near = match rx.await {
                    Ok(r) => r.map_err(ApiError::from)?,
                    Err(_) => return Err(ApiError::from_core(&dispatch_core::Error::ShutDown)),
                };
                let t = now();
                let items: Vec<Value> = near
                    .into_iter()
                    .map(|n| {
                        let mut v = render::driver(&n.driver, t);
                        v["distance_m"] = json!(n.distance_m.round() as u64);
                        v
                    })
                    .collect();
                Ok(json_response(StatusCode::OK, &json!({"items": items})))
            }
            E::ListDrivers => self.list_drivers(),
            E::GetDriver(id) => {
                let driver_id: UserId = parse_id(&id, "driver")?;
                let d = app.engine.driver(driver_id).ok_or_else(|| ApiError::not_found("driver"))?;
                Ok(json_response(StatusCode::OK, &render::driver(&d, now())))
            }
            E::Suspend(id, suspended) => {
                let b: ReasonIn = self.json(true)?;
                let driver_id: UserId = parse_id(&id, "driver")?;
                match self.submit(Command::SetDriverSuspended { driver_id, suspended, reason: b.reason }).await? {
                    Outcome::Driver(d) => Ok(json_response(StatusCode::OK, &render::driver(&d, now()))),
                    o => Err(unexpected(&o)),
                }
            }
            E::CreateTrip => self.create_trip().await,
            E::ListTrips => {
                let p = self.principal()?;
                let id = p.user_id().ok_or_else(|| ApiError::new("forbidden", "riders and drivers only"))?;
                let of = if p.role() == Role::Driver { TripsOf::Driver(id) } else { TripsOf::Rider(id) };
                self.list_trips(of).await
            }
            E::GetTrip(id) => {
                let t = self.visible_trip(&id).await?;
                let mut v = render::trip(&t, self.for_rider(&t));
                if self.principal()?.is_staff() {
                    // Operators talk to the people of a trip: staff see their names.
                    let name = |u: UserId| app.engine.user(u).map(|u| u.name.clone());
                    v["rider_name"] = json!(name(t.rider_id));
                    v["driver_name"] = json!(t.driver_id.and_then(name));
                }
                Ok(json_response(StatusCode::OK, &v))
            }
            E::TripAction(id, action) => self.trip_action(&id, action).await,
            E::PlaceBid(id) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct In {
                    amount_minor: i64,
                }
                let b: In = self.json(false)?;
                let trip_id: TripId = parse_id(&id, "trip")?;
                match self.submit(Command::PlaceBid { id: None, trip_id, amount_minor: b.amount_minor }).await? {
                    Outcome::Bid { bid, trip } => {
                        Ok(json_response(StatusCode::CREATED, &render::bid(&trip.id.to_string(), &bid)))
                    }
                    o => Err(unexpected(&o)),
                }
            }
            E::ListBids(id) => {
                let t = self.visible_trip(&id).await?;
                if !self.for_rider(&t) {
                    return Err(ApiError::not_found("trip"));
                }
                let tid = t.id.to_string();
                let items: Vec<Value> = t.bids.iter().map(|b| render::bid(&tid, b)).collect();
                Ok(json_response(StatusCode::OK, &json!({"items": items})))
            }
            E::AcceptBid(id, bid) => {
                self.json::<Empty>(true)?;
                let trip_id: TripId = parse_id(&id, "trip")?;
                let bid_id: BidId = parse_id(&bid, "bid")?;
                let o = self.submit(Command::AcceptBid { trip_id, bid_id }).await?;
                self.trip_out(StatusCode::OK, o)
            }
            E::Rate(id) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct In {
                    stars: u8,
                    #[serde(default)]
                    comment: Option<String>,
                }
                let b: In = self.json(false)?;
                if !(1..=5).contains(&b.stars) {
                    return Err(ApiError::invalid("stars must be 1 to 5"));
                }
                let trip_id: TripId = parse_id(&id, "trip")?;
                let (stars, comment) = (b.stars, b.comment.clone());
                self.submit(Command::RateTrip { trip_id, stars, comment }).await?;
                Ok(json_response(
                    StatusCode::CREATED,
                    &json!({"trip_id": trip_id.to_string(), "stars": stars, "comment": b.comment}),
                ))
            }
            E::Sos(id) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct In {
                    #[serde(default)]
                    location: Option<PointIn>,
                    #[serde(default)]
                    note: Option<String>,
                }
                let b: In = self.json(true)?;
                let trip_id: TripId = parse_id(&id, "trip")?;
                let location = b.location.map(|l| l.get()).transpose()?;
                match self.submit(Command::RaiseSos { id: None, trip_id, location, note: b.note }).await? {
                    Outcome::Alert(a) => Ok(json_response(StatusCode::CREATED, &render::alert(&a))),
                    o => Err(unexpected(&o)),
                }
            }
            E::AdminTrips => self.list_trips(TripsOf::All).await,
            E::AdminCancel(id) => {
                let b: ReasonIn = self.json(true)?;
                let trip_id: TripId = parse_id(&id, "trip")?;
                let o = self.submit(Command::CancelTrip { trip_id, reason: b.reason }).await?;
                self.trip_out(StatusCode::OK, o)
            }
            E::ListAlerts => {
                let status = self.query.get("status").map(str::to_owned);
                let mut alerts: Vec<_> = app.engine.read(|v| {
                    v.alerts().filter(|a| status.as_deref().is_none_or(|s| a.status.as_str() == s)).cloned().collect()
                });
                alerts.sort_by_key(|a| (a.raised_at, a.id));
                let limit = http::limit(&self.query)?;
                let items: Vec<Value> = alerts.iter().take(limit).map(|a| render::alert(a)).collect();
                Ok(json_response(StatusCode::OK, &json!({"items": items, "next_cursor": null})))
            }
            E::AckAlert(id) => {
                self.json::<Empty>(true)?;
                let alert_id: AlertId = parse_id(&id, "alert")?;
                match self.submit(Command::AckAlert { alert_id }).await? {
                    Outcome::Alert(a) => Ok(json_response(StatusCode::OK, &render::alert(&a))),
                    o => Err(unexpected(&o)),
                }
            }
            E::Stats => Ok(json_response(StatusCode::OK, &app.stats())),
            E::TripEvents(id) => {
                let t = self.visible_trip(&id).await?;
                Ok(json_response(StatusCode::OK, &json!({"items": render::timeline(&t), "next_cursor": null})))
            }
            E::TripTrail(id) => self.trip_trail(&id).await,
            E::Wallet => self.wallet().await,
            E::Credit(id) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct In {
                    amount_minor: i64,
                    currency: dispatch_core::Currency,
                    reason: String,
                }
                let b: In = self.json(false)?;
                let user_id: UserId = parse_id(&id, "user")?;
                let c = Command::CreditWallet {
                    id: None,
                    user_id,
                    amount_minor: b.amount_minor,
                    currency: b.currency,
                    reason: b.reason,
                };
                match self.submit(c).await? {
                    Outcome::Transfer(t) => Ok(json_response(StatusCode::CREATED, &render::transfer(&t, None))),
                    o => Err(unexpected(&o)),
                }
            }
            E::Refund(id) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct In {
                    amount_minor: i64,
                    reason: String,
                }
                let b: In = self.json(false)?;
                let trip_id: TripId = parse_id(&id, "trip")?;
                let c = Command::Refund { id: None, trip_id, amount_minor: b.amount_minor, reason: b.reason };
                match self.submit(c).await? {
                    Outcome::Transfer(t) => Ok(json_response(StatusCode::CREATED, &render::transfer(&t, None))),
                    o => Err(unexpected(&o)),
                }
            }
            E::LedgerVerify => {
                let r = app.engine.read(|v| v.ledger_verify());
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"balanced": r.balanced, "accounts": r.accounts, "transfers": r.transfers,
                        "sum_minor": i64::try_from(r.sum_minor).unwrap_or(i64::MAX)}),
                ))
            }
            E::Webhook(gateway) => self.webhook(&gateway).await,
            E::Reconcile => self.reconcile().await,
            E::DeadLetters => {
                let items: Vec<Value> = app
                    .engine
                    .read(dispatch_core::payment::dead_letters)
                    .iter()
                    .map(|(trip_id, d)| render::dead_letter(*trip_id, d))
                    .collect();
                Ok(json_response(StatusCode::OK, &json!({"items": items, "next_cursor": null})))
            }
            E::PaymentMethod(id) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct In {
                    method: PaymentMethod,
                }
                let b: In = self.json(false)?;
                let trip_id: TripId = parse_id(&id, "trip")?;
                let o = self.submit(Command::SetPaymentMethod { trip_id, method: b.method }).await?;
                self.trip_out(StatusCode::OK, o)
            }
            E::Console(asset) => Ok(asset.response()),
        }
    }

    /// `GET /v1/admin/trips/{id}/trail`: where the trip's driver went from the accept to
    /// the end (or now), oldest first, at most [`TRAIL_MAX_POINTS`] (evenly sampled).
    async fn trip_trail(&self, id: &str) -> Result<Resp, ApiError> {
        let t = self.visible_trip(id).await?;
        let trail = match (t.driver_id, t.accepted_at) {
            (Some(driver), Some(from)) => {
                let until = if t.status.is_terminal() { t.ended_at.unwrap_or(t.updated_at) } else { now() };
                Some(self.app.blocking(move |e| e.driver_trail(driver, from, until, TRAIL_MAX_POINTS)).await?)
            }
            _ => None,
        };
        let items: Vec<Value> = trail.iter().flat_map(|tr| tr.points.iter()).map(render::trail_point).collect();
        let recorded = trail.as_ref().map_or(0, |tr| tr.recorded);
        let sampled = items.len() < recorded;
        Ok(json_response(
            StatusCode::OK,
            &json!({"items": items, "recorded": recorded, "sampled": sampled,
                "truncated": trail.is_some_and(|tr| tr.truncated), "next_cursor": null}),
        ))
    }

    async fn wallet(&self) -> Result<Resp, ApiError> {
        use dispatch_core::ledger::{AccountKey, AccountKind};
        let p = self.principal()?;
        let me = p.user_id().ok_or_else(|| ApiError::new("forbidden", "riders and drivers only"))?;
        let kind = if p.role() == Role::Driver { AccountKind::DriverEarnings } else { AccountKind::RiderWallet };
        let currency = match self.query.get("currency") {
            Some(c) => c.parse::<dispatch_core::Currency>().map_err(|e| ApiError::invalid(e.to_string()))?,
            None => self.app.default_currency()?,
        };
        let key = AccountKey::of(kind, me, currency);
        let limit = http::limit(&self.query)?;
        let after = Cursor::from_query(&self.query)?
            .map(|c| {
                dispatch_core::id::TransferId::from_raw(c.id)
                    .map(|id| (Timestamp::from_millis(c.at_ms), id))
                    .ok_or_else(|| ApiError::invalid("cursor is malformed"))
            })
            .transpose()?;
        let account = self.app.engine.read(|v| v.account(&key));
        // Hot and archived entries alike (settled transfers leave the hot state).
        let entries = self.app.blocking(move |e| e.statement(&key, after, limit)).await?;
        let last = entries.last().map(|t| Cursor { at_ms: t.at.as_millis(), id: t.id.raw() });
        let items = entries.iter().map(|t| render::transfer(t, Some(&key))).collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "balance": {"amount_minor": account.balance(), "currency": currency.code(),
                            "currency_exponent": currency.exponent()},
                "available_minor": account.available(),
                "entries": http::page(items, limit, last),
            }),
        ))
    }

    /// `POST /v1/webhooks/{gateway}`: the gateway's signature first, then its body
    /// mapped to the engine's payment event. A stale or disagreeing event is answered
    /// `processed` with `"applied": false` and the reason (a gateway retries anything
    /// else); an event type the engine does not act on likewise.
    async fn webhook(&mut self, gateway: &str) -> Result<Resp, ApiError> {
        let hooks = self.app.gateways.get(gateway).ok_or_else(|| ApiError::not_found("gateway"))?;
        if let Err(e) = hooks.verify(&self.headers, &self.body, now().as_secs()) {
            // Unsigned and forged calls pay the IP limit.
            self.app.limit(Endpoint::Webhook(String::new()).spec(), Class::Ip, Subject::Ip(self.peer))?;
            return Err(ApiError::new("invalid_signature", e.to_string()));
        }
        let event = hooks.parse(&self.headers, &self.body)?;
        let answer = |status: &str, applied: bool, reason: Option<String>| {
            let mut v = json!({"status": status, "applied": applied});
            if let Some(r) = reason {
                v["reason"] = json!(r);
            }
            json_response(StatusCode::OK, &v)
        };
        let (Some(kind), Some(trip_id), Some(currency)) = (event.kind, event.trip_id, event.currency) else {
            return Ok(answer("processed", false, Some(format!("event type {} is not acted on", event.event_type))));
        };
        let c = Command::PaymentEvent {
            gateway: gateway.to_owned(),
            event_id: event.event_id,
            kind,
            trip_id,
            amount_minor: event.amount_minor,
            currency,
            archived: None,
        };
        match self.app.submit(Actor::System, c).await? {
            Outcome::PaymentEvent { duplicate: true, .. } => Ok(answer("duplicate", false, None)),
            Outcome::PaymentEvent { duplicate: false, ignored } => Ok(answer("processed", ignored.is_none(), ignored)),
            o => Err(unexpected(&o)),
        }
    }

    /// `POST /v1/admin/reconcile?gateway=`: the settlement CSV of the body against the
    /// ledger (`dispatch_core::payment::reconcile_report`, as `dispatchd reconcile`).
    async fn reconcile(&mut self) -> Result<Resp, ApiError> {
        use dispatch_core::payment::{ReconcileError, Side};
        let gateway = self.query.get("gateway").ok_or_else(|| ApiError::invalid("?gateway= is required"))?;
        if self.app.gateways.get(gateway).is_none() {
            return Err(ApiError::not_found("gateway"));
        }
        let csv = std::str::from_utf8(&self.body)
            .map_err(|_| ApiError::invalid("the settlement report must be UTF-8 text"))?
            .to_owned();
        let engine = Arc::clone(&self.app.engine);
        let report = tokio::task::spawn_blocking(move || dispatch_core::payment::reconcile_report(&engine, &csv))
            .await
            .map_err(|_| ApiError::new("internal", "internal error"))?;
        let report = match report {
            Ok(r) => r,
            Err(ReconcileError::Settlement(line)) => return Err(ApiError::invalid(line)),
            Err(ReconcileError::Engine(e)) => return Err(ApiError::from(e)),
        };
        let side = |s: Option<Side>| {
            s.map_or(Value::Null, |s| {
                json!({"amount_minor": s.amount_minor, "currency": s.currency.code(),
                    "status": s.status.map(|p| p.as_str())})
            })
        };
        let mismatches: Vec<Value> = report
            .mismatches
            .iter()
            .map(|m| {
                json!({"kind": m.kind.as_str(), "trip_id": m.trip_id.to_string(),
                    "ledger": side(m.ledger), "gateway": side(m.gateway)})
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({"matched": report.matched, "mismatches": mismatches, "trips": report.trips, "rows": report.rows}),
        ))
    }

    async fn otp_issue(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            phone: String,
            role: Role,
        }
        let b: In = self.json(false)?;
        dispatch_core::user::validate_phone(&b.phone)?;
        if !matches!(b.role, Role::Rider | Role::Driver) {
            return Err(ApiError::invalid("role must be rider or driver"));
        }
        let code = crate::sms::new_code();
        let code_hash = self.app.keys.otp_hash(&b.phone, &code);
        let o = self
            .app
            .submit(Actor::System, Command::IssueOtp { phone: b.phone.clone(), role: b.role, code_hash })
            .await?;
        match o {
            Outcome::OtpIssued { expires_in_s } => {
                self.app.sms.send(&b.phone, &format!("Your dispatch code is {code}"), Some(&code));
                Ok(json_response(StatusCode::ACCEPTED, &json!({"expires_in_s": expires_in_s})))
            }
            o => Err(unexpected(&o)),
        }
    }

    async fn otp_verify(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            phone: String,
            code: String,
        }
        let b: In = self.json(false)?;
        dispatch_core::user::validate_phone(&b.phone)?;
        let code_hash = self.app.keys.otp_hash(&b.phone, &b.code);
        let o =
            self.app.submit(Actor::System, Command::VerifyOtp { phone: b.phone, code_hash, new_user_id: None }).await?;
        match o {
            Outcome::User(u) => {
                let token = self.app.keys.token_for(&u, now().as_secs());
                self.who = Some(Principal::User { id: u.id, role: u.role });
                Ok(json_response(StatusCode::OK, &json!({"token": token, "user": render::user(&u)})))
            }
            Outcome::OtpRefused { locked } => Err(ApiError::new(
                "invalid_otp",
                if locked { "wrong code; the phone is now locked for an hour" } else { "wrong or expired code" },
            )),
            o => Err(unexpected(&o)),
        }
    }

    async fn create_user(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            role: Role,
            name: String,
            phone: String,
            #[serde(default)]
            vehicle: Option<Vehicle>,
        }
        let b: In = self.json(false)?;
        let new = NewUser { id: None, role: b.role, name: b.name, phone: b.phone, vehicle: b.vehicle };
        match self.submit(Command::CreateUser(new)).await? {
            Outcome::User(u) => {
                let token = self.app.keys.token_for(&u, now().as_secs());
                Ok(json_response(StatusCode::CREATED, &json!({"user": render::user(&u), "token": token})))
            }
            o => Err(unexpected(&o)),
        }
    }

    async fn create_coupon(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            code: String,
            #[serde(default)]
            percent_bps: Option<u32>,
            #[serde(default)]
            amount_minor: Option<i64>,
            #[serde(default)]
            max_discount_minor: Option<i64>,
            #[serde(default)]
            min_fare_minor: Option<i64>,
            #[serde(default)]
            valid_from: Option<String>,
            #[serde(default)]
            valid_until: Option<String>,
            #[serde(default)]
            max_uses: Option<u64>,
            #[serde(default)]
            max_uses_per_rider: Option<u64>,
            #[serde(default)]
            currency: Option<String>,
        }
        let b: In = self.json(false)?;
        let t = |s: &Option<String>, f: &str| s.as_deref().map(|s| http::parse_rfc3339(s, f)).transpose();
        let (from, until) = (t(&b.valid_from, "valid_from")?, t(&b.valid_until, "valid_until")?);
        // The engine's coupon type validates itself when built; its id is filled by the writer.
        let fields = json!({
            "id": "cpn_0000000000000001", "code": b.code, "percent_bps": b.percent_bps, "amount_minor": b.amount_minor,
            "max_discount_minor": b.max_discount_minor, "min_fare_minor": b.min_fare_minor,
            "valid_from": from.map(|t| t.as_millis()), "valid_until": until.map(|t| t.as_millis()),
            "max_uses": b.max_uses, "max_uses_per_rider": b.max_uses_per_rider, "currency": b.currency,
        });
        let coupon: dispatch_core::fare::Coupon =
            serde_json::from_value(fields).map_err(|e| ApiError::invalid(format!("invalid coupon: {e}")))?;
        match self.submit(Command::CreateCoupon { id: None, coupon: Box::new(coupon) }).await? {
            Outcome::Coupon(c) => {
                let mut v = serde_json::to_value(&c.coupon).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("id".into(), json!(c.coupon.id.to_string()));
                    for (k, ts) in [("valid_from", c.coupon.valid_from), ("valid_until", c.coupon.valid_until)] {
                        m.insert(k.into(), ts.map_or(Value::Null, |t| json!(http::rfc3339(t))));
                    }
                    m.insert("uses".into(), json!(c.uses));
                    m.insert("created_at".into(), json!(http::rfc3339(c.created_at)));
                }
                Ok(json_response(StatusCode::CREATED, &v))
            }
            o => Err(unexpected(&o)),
        }
    }

    async fn estimate(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            pickup: PlaceIn,
            dropoff: PlaceIn,
            #[serde(default)]
            category: Option<Category>,
            #[serde(default)]
            coupon: Option<String>,
        }
        let b: In = self.json(false)?;
        let rider = self.principal()?.user_id().ok_or_else(|| ApiError::new("forbidden", "riders only"))?;
        let (pickup, dropoff) = (b.pickup.get()?, b.dropoff.get()?);
        let route = self.app.route(pickup.point, dropoff.point).await;
        let t = now();
        let est = self.app.engine.read(|v| {
            v.price_book().estimate(pickup.point, &route, b.category.as_ref(), b.coupon.as_deref(), rider, t)
        })?;
        let estimates: Vec<Value> = est
            .quotes
            .iter()
            .map(|(c, q)| {
                json!({
                    "category": c.as_str(),
                    "fare": {"amount_minor": q.fare.amount_minor, "currency": q.fare.currency.code(),
                             "currency_exponent": q.fare.currency.exponent()},
                    "distance_m": q.distance_m,
                    "duration_s": q.duration_s,
                    "surge_bps": q.surge_bps,
                    "discount_minor": q.discount_minor,
                    "route_source": serde_json::to_value(q.route_source).unwrap_or(Value::Null),
                    "breakdown": serde_json::to_value(q.breakdown).unwrap_or(Value::Null),
                })
            })
            .collect();
        Ok(json_response(StatusCode::OK, &json!({"zone_id": est.zone.id.to_string(), "estimates": estimates})))
    }

    async fn create_trip(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ParcelIn {
            weight_kg: f64,
            description: String,
            recipient_phone: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct BidIn {
            amount_minor: i64,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            pickup: PlaceIn,
            dropoff: PlaceIn,
            category: Category,
            payment_method: PaymentMethod,
            #[serde(default)]
            coupon: Option<String>,
            #[serde(default)]
            kind: Option<TripKind>,
            #[serde(default)]
            parcel: Option<ParcelIn>,
            #[serde(default)]
            bid: Option<BidIn>,
        }
        let b: In = self.json(false)?;
        let (pickup, dropoff) = (b.pickup.get()?, b.dropoff.get()?);
        let parcel = b
            .parcel
            .map(|p| {
                if !(p.weight_kg.is_finite() && p.weight_kg > 0.0 && p.weight_kg <= 1_000.0) {
                    return Err(ApiError::invalid("parcel.weight_kg must be a positive number of kilograms"));
                }
                let weight_g = (p.weight_kg * 1000.0).round() as u32;
                Ok(Parcel { weight_g, description: p.description, recipient_phone: p.recipient_phone })
            })
            .transpose()?;
        let route = self.app.route(pickup.point, dropoff.point).await;
        let new = NewTrip {
            id: None,
            pickup_code: None,
            kind: b.kind.unwrap_or(if parcel.is_some() { TripKind::Parcel } else { TripKind::Ride }),
            pickup,
            dropoff,
            category: b.category,
            parcel,
            payment_method: b.payment_method,
            route,
            coupon: b.coupon,
            bid_minor: b.bid.map(|x| x.amount_minor),
        };
        let o = self.submit(Command::CreateTrip(new)).await?;
        if let Outcome::Trip(t) = &o {
            self.new_trip = Some(t.id);
        }
        self.trip_out(StatusCode::CREATED, o)
    }

    async fn trip_action(&mut self, id: &str, action: TripAction) -> Result<Resp, ApiError> {
        let trip_id: TripId = parse_id(id, "trip")?;
        let command = match action {
            TripAction::Accept => {
                self.json::<Empty>(true)?;
                Command::AcceptTrip { trip_id }
            }
            TripAction::Decline => {
                self.json::<Empty>(true)?;
                Command::DeclineTrip { trip_id }
            }
            TripAction::Arrived => {
                self.json::<Empty>(true)?;
                Command::DriverArrived { trip_id }
            }
            TripAction::Start => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct In {
                    pickup_code: String,
                }
                let b: In = self.json(false)?;
                Command::StartTrip { trip_id, pickup_code: b.pickup_code }
            }
            TripAction::Complete => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct In {
                    #[serde(default)]
                    distance_m: Option<u32>,
                    #[serde(default)]
                    dropoff: Option<PointIn>,
                }
                let b: In = self.json(true)?;
                let dropoff = b.dropoff.map(|p| p.get()).transpose()?;
                Command::CompleteTrip { trip_id, distance_m: b.distance_m, dropoff }
            }
            TripAction::Cancel => {
                let b: ReasonIn = self.json(true)?;
                Command::CancelTrip { trip_id, reason: b.reason }
            }
        };
        let result = self.submit(command).await;
        if action == TripAction::Accept {
            let m = &self.app.metrics;
            match &result {
                // A replayed accept won nothing new: it was counted the first time.
                Ok(_) if self.replayed => 0,
                Ok(_) => m.accepts_won.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                Err(e) if e.code == "trip_already_assigned" => {
                    m.accepts_lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                }
                Err(_) => 0,
            };
        }
        match result? {
            Outcome::Done if action == TripAction::Decline => Ok(no_content()),
            o @ Outcome::Trip(_) => self.trip_out(StatusCode::OK, o),
            Outcome::Done => Ok(no_content()),
            o => Err(unexpected(&o)),
        }
    }

    async fn list_trips(&self, of: TripsOf) -> Result<Resp, ApiError> {
        let limit = http::limit(&self.query)?;
        let cursor = Cursor::from_query(&self.query)?
            .map(|c| {
                TripId::from_raw(c.id)
                    .map(|trip| dispatch_core::TripCursor { created_ms: c.at_ms, trip })
                    .ok_or_else(|| ApiError::invalid("cursor is malformed"))
            })
            .transpose()?;
        let status: Option<TripStatus> = self
            .query
            .get("status")
            .map(|s| serde_json::from_value(json!(s)).map_err(|_| ApiError::invalid("unknown status")))
            .transpose()?;
        let zone: Option<ZoneId> = self.query.get("zone_id").map(|z| parse_id(z, "zone")).transpose()?;
        let finished = status.is_none_or(|s| s.is_terminal());
        let trips = self
            .app
            .blocking(move |e| {
                e.trips(of, cursor, limit, finished, |t| {
                    status.is_none_or(|s| t.status == s) && zone.is_none_or(|z| t.zone_id == z)
                })
            })
            .await?;
        let last = trips.last().map(|t| Cursor { at_ms: t.created_at.as_millis(), id: t.id.raw() });
        let items = trips.iter().map(|t| render::trip(t, self.for_rider(t))).collect();
        Ok(json_response(StatusCode::OK, &http::page(items, limit, last)))
    }

    fn list_drivers(&self) -> Result<Resp, ApiError> {
        let limit = http::limit(&self.query)?;
        let cursor = Cursor::from_query(&self.query)?;
        let availability: Option<Availability> = self
            .query
            .get("availability")
            .map(|s| serde_json::from_value(json!(s)).map_err(|_| ApiError::invalid("unknown availability")))
            .transpose()?;
        let t = now();
        let mut drivers: Vec<(i64, u64, Value)> = self.app.engine.read(|v| {
            v.drivers()
                .filter(|d| availability.is_none_or(|a| d.availability == a))
                .filter_map(|d| {
                    let created = v.user(d.id).map_or(0, |u| u.created_at.as_millis());
                    cursor
                        .is_none_or(|c| c.precedes(created, d.id.raw()))
                        .then(|| (created, d.id.raw(), render::driver(d, t)))
                })
                .collect()
        });
        drivers.sort_by_key(|(at, id, _)| std::cmp::Reverse((*at, *id)));
        drivers.truncate(limit);
        let last = drivers.last().map(|(at, id, _)| Cursor { at_ms: *at, id: *id });
        let items = drivers.into_iter().map(|(_, _, v)| v).collect();
        Ok(json_response(StatusCode::OK, &http::page(items, limit, last)))
    }
}

fn unexpected(o: &Outcome) -> ApiError {
    tracing::error!(outcome = ?std::mem::discriminant(o), "unexpected engine outcome");
    ApiError::new("internal", "internal error")
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
