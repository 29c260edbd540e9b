//! The HTTP API: the request pipeline every request goes through, and the one map from
//! an endpoint to its handler (`Ctx::dispatch`). The route table is [`routes`] (every
//! path, its method, rights and limits); the handlers live by resource: `auth` (sign-in,
//! users, tokens), `me` (the caller's profile, share links), `trips`, `chat` (a trip's messages), `drivers`, `money` (wallets, refunds, payments, coupons),
//! `admin` (zones, alerts), `webhooks`, `applications` (drivers' applications and
//! their documents), and the console's files (`console`). The OpenAPI
//! document of all of it, and the check of request bodies against it, is [`openapi`]. Each is an
//! `impl Ctx` over the helpers here (the caller, the body, submitting a command, the
//! trip the caller may see).
//!
//! Pipeline of every request ([`handle`]): request id and `traceparent` → `OPTIONS`
//! (answered from the route table, [`conventions`]) or route match (`HEAD` as `GET`) →
//! authentication (skipped on routes open to anyone, which ignore `Authorization`) → rate
//! limits → the route's permission ([`crate::auth::authorize`]) → `Idempotency-Key` →
//! body (limited, strict JSON) → handler → engine command (never blocking a runtime
//! thread: the engine answers through a oneshot) or a read of the engine's view →
//! response finished by [`conventions::Finish`] (`X-Request-Id`, `Cache-Control`,
//! `RateLimit-*`, CORS, gzip, `HEAD`'s empty body), one JSON log line and metrics.
//!
//! Guarantees: paths, status codes and error codes are API.md's; each route's rights are
//! declared once, in [`Endpoint::spec`]; a state-changing POST with `Idempotency-Key`
//! runs at most once per (principal, key), replays answer `Idempotent-Replayed: true`,
//! and a key already in flight is `409 idempotency_key_in_use`; a key that is empty,
//! over 255 characters, not printable ASCII or repeated is `400 invalid_request` before
//! anything runs; every answer but the console's static files carries
//! `Cache-Control: no-store` (tokens, personal data), errors everywhere; every error
//! body's `request_id` is the answer's `X-Request-Id`; a `405` lists the path's methods
//! in `Allow`.

mod admin;
mod applications;
mod audit;
mod auth;
mod chat;
mod console;
use console::console_csp;
pub mod conventions;
mod drivers;
mod hooks;
mod me;
mod money;
mod notify;
pub mod openapi;
mod payouts;
pub mod routes;
mod trips;
mod users;
mod webhooks;
// ----- issue 20: H -----
mod reports;
// ----- issue 20: S -----
mod staff;
// ----- issue 21 -----
mod cluster;

pub use routes::{Endpoint, Spec, TripAction};
pub use trips::TRAIL_MAX_POINTS;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use dispatch_core::clock::{Clock, SystemClock, Timestamp};
use dispatch_core::command::IdempotencyKey;
use dispatch_core::{Command, Outcome, Trip, TripId, TripsOf};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Allow, Principal};
use crate::http::{self, ApiError, Query, Resp, json_response, lat_lng, parse_json};
use crate::ratelimit::{Class, Quota, Subject};
use crate::render;
use crate::server::App;

/// Handles one request end to end (never fails: errors become error responses). Its one
/// log line names the user (the signed-in one for an OTP verify) and the trip (the new
/// one for a booking), never a token, a code or a phone number; and the caller's W3C
/// trace (`trace_id`, `parent_id`) when its `traceparent` is valid.
pub async fn handle(app: Arc<App>, peer: IpAddr, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let request_id = http::request_id(req.headers());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let trace = http::traceparent(req.headers());
    let cors_origins = &app.config.server.cors_origins;
    let finish = conventions::Finish::of(&method, req.headers(), cors_origins);
    let mut seen = Seen::default();
    // ----- issue 21 -----
    // A request another node of this cluster forwarded (its signature checked): its
    // limits were counted there, and it is never forwarded again.
    let forwarded = app.node.as_ref().and_then(|_| {
        let path_and_query = req.uri().path_and_query().map_or(path.as_str(), |p| p.as_str());
        let now_s = crate::cluster::forward::now_s();
        crate::cluster::forward::trusted(&app.keys, req.headers(), now_s, method.as_str(), path_and_query, &request_id)
    });
    let (name, result) = if method == Method::OPTIONS {
        ("options", conventions::options(cors_origins, &path, req.headers()))
    } else {
        match conventions::route(&method, &path) {
            Err(e) => ("unmatched", Err(e)),
            Ok(ep) => {
                let spec = ep.spec();
                // Only well-formed ids reach the log (a path segment is caller-controlled text).
                seen.trip_id = ep.trip_id().and_then(|t| t.parse::<TripId>().ok());
                seen.forwarded = forwarded.is_some();
                (spec.name, pipeline(&app, peer, ep, spec, req, &mut seen, &request_id).await)
            }
        }
    };
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            let not_allowed = e.status == StatusCode::METHOD_NOT_ALLOWED;
            let mut r = e.into_response(&request_id);
            if not_allowed && let Ok(v) = HeaderValue::from_str(&conventions::allowed_methods(&path).join(", ")) {
                r.headers_mut().insert(hyper::header::ALLOW, v);
            }
            r
        }
    };
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
        seen.refund(&app);
    }
    let Seen { who, trip_id, quota, .. } = seen;
    let console_csp = app.console_csp.get_or_init(|| console_csp(&app.config.console));
    let mut resp = finish.apply(resp, &request_id, &path, quota, cors_origins, console_csp).await;
    if let (Some(node), Some(_)) = (&app.node, &forwarded) {
        // Read-your-writes: the follower waits until it applied this far.
        resp.headers_mut().insert(crate::cluster::forward::LSN, HeaderValue::from(node.written_lsn()));
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
        trace_id = trace.as_ref().map_or("-", |t| t.trace_id.as_str()),
        parent_id = trace.as_ref().map_or("-", |t| t.parent_id.as_str()),
        forwarded_by = forwarded.as_deref().unwrap_or("-"),
        took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    resp
}

/// What a request's log line says about who called and which trip it was about, as
/// learnt along the pipeline (a sign-in learns its user, a booking its new trip), and
/// the tightest quota it was counted against (its `RateLimit-*` headers).
#[derive(Default)]
struct Seen {
    who: Option<Principal>,
    trip_id: Option<TripId>,
    quota: Option<Quota>,
    /// The buckets the request was counted in (at most two: the user's or the address's,
    /// and the route's class), given back if the server fails to serve it.
    charged: [Option<(Class, Subject)>; 2],
    /// Forwarded by another node of this cluster (its signature checked, issue 21): its
    /// limits were counted there, and it is never forwarded again.
    forwarded: bool,
}

impl Seen {
    /// Keeps the quota with the fewest requests left, and where it was counted.
    fn counted(&mut self, (q, class, subject): (Quota, Class, Subject)) {
        if self.quota.is_none_or(|old| q.remaining < old.remaining) {
            self.quota = Some(q);
        }
        let slot = self.charged.iter_mut().find(|c| c.is_none());
        debug_assert!(slot.is_some(), "a request is counted in at most two buckets");
        if let Some(slot) = slot {
            *slot = Some((class, subject));
        }
    }

    /// A request the server could not serve for now (a `503`: it leads no more, no
    /// leader answered, its disk is read-only, it is overloaded) is given back to the
    /// buckets it was counted in: a client told to retry is not charged for being told
    /// so, and an outage never turns into `429`s for the clients that wait it out. (A
    /// write whose forwarded answer was lost may have committed; its retry with the same
    /// `Idempotency-Key` replays it, which is what the key is for.) A `500` is not given
    /// back: a request that trips a bug every time must not escape the limits. The quota
    /// headers then say what is left after the refund.
    fn refund(&mut self, app: &App) {
        let mut quota: Option<Quota> = None;
        for (class, subject) in self.charged.iter_mut().filter_map(Option::take) {
            if let Some(q) = app.limiter.refund(class, subject)
                && quota.is_none_or(|old| q.remaining < old.remaining)
            {
                quota = Some(q);
            }
        }
        self.quota = quota;
    }
}

/// Authentication, rate limits, the route's permission, the body and the idempotency key,
/// then the handler; what it learns for the log line goes into `seen`.
async fn pipeline(
    app: &Arc<App>,
    peer: IpAddr,
    ep: Endpoint,
    spec: Spec,
    req: Request<Incoming>,
    seen: &mut Seen,
    request_id: &str,
) -> Result<Resp, ApiError> {
    let forwarded = seen.forwarded;
    // A forwarded request was counted against its limits by the node that took it.
    let limit =
        |name: &'static str, class: Class, subject: Subject| -> Result<Option<(Quota, Class, Subject)>, ApiError> {
            if forwarded { Ok(None) } else { app.limit(name, class, subject).map(|q| Some((q, class, subject))) }
        };
    // ----- issue 21 -----
    // Cluster-internal: taken only signed by a node of this cluster (never forwarded on).
    if matches!(ep, Endpoint::ClusterCommands | Endpoint::ClusterCheckpoint) && !forwarded {
        return Err(ApiError::new("forbidden", "cluster-internal: only the cluster's nodes may call this"));
    }
    // Routes open to anyone ignore credentials: a stale or malformed token must not turn
    // a health check, a sign-in or a gateway's webhook into a 401.
    let token = (spec.allow != Allow::Anyone)
        .then(|| {
            req.headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::auth::bearer)
                .map(str::to_owned)
                .or_else(|| {
                    // Browsers cannot set headers on a WebSocket: there only, the token may
                    // come as a subprotocol (`bearer.<hex>`, what the console sends: in no
                    // URL) or, for clients of API.md v1, as `?token=`.
                    (ep == Endpoint::Ws)
                        .then(|| {
                            let offered = req.headers().get_all(hyper::header::SEC_WEBSOCKET_PROTOCOL);
                            crate::auth::ws_protocol_token(offered.iter().filter_map(|v| v.to_str().ok()))
                                .0
                                .or_else(|| Query::parse(req.uri().query()).get("token").map(str::to_owned))
                        })
                        .flatten()
                })
        })
        .flatten();
    // `DISPATCH_METRICS_TOKEN` opens `/metrics` and nothing else; anywhere else it is an
    // unknown token (401 below).
    if ep == Endpoint::Metrics && token.as_deref().is_some_and(|t| app.keys.is_metrics_token(t)) {
        return Ok(metrics_response(app));
    }
    let who = match token {
        None => None,
        Some(t) => match authenticate(app, &t).await {
            Ok(p) => Some(p),
            Err(mut e) => {
                // A bad token is an unauthenticated request: it pays the IP limit (token guessing).
                if let Some(q) = limit(spec.name, Class::Ip, Subject::Ip(peer))? {
                    seen.counted(q);
                }
                e.invalid_token = true;
                return Err(e);
            }
        },
    };
    seen.who = who;
    match who {
        None if spec.ip_limited => {
            if let Some(q) = limit(spec.name, Class::Ip, Subject::Ip(peer))? {
                seen.counted(q);
            }
        }
        Some(Principal::User { id, .. }) => {
            if let Some(q) = limit(spec.name, Class::User, Subject::User(id.raw()))? {
                seen.counted(q);
            }
        }
        _ => {}
    }
    crate::auth::authorize(spec.allow, who)?;
    if let (Some(class), Some(id)) = (spec.class, who.and_then(Principal::user_id))
        && let Some(q) = limit(spec.name, class, Subject::User(id.raw()))?
    {
        seen.counted(q);
    }
    if ep == Endpoint::Ws {
        let who = who.ok_or_else(|| ApiError::new("unauthorized", "a bearer token is required"))?;
        let offered = req.headers().get_all(hyper::header::SEC_WEBSOCKET_PROTOCOL);
        let (_, speaks) = crate::auth::ws_protocol_token(offered.iter().filter_map(|v| v.to_str().ok()));
        let mut resp = crate::ws::upgrade(Arc::clone(app), who, req)?;
        if speaks && resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The one protocol answered: never the `bearer.` value, which holds the token.
            let protocol = HeaderValue::from_static(crate::auth::WS_PROTOCOL);
            resp.headers_mut().insert(hyper::header::SEC_WEBSOCKET_PROTOCOL, protocol);
        }
        return Ok(resp);
    }
    // Checked before the body is read: a bad key refuses the request whole.
    let idem_key = if spec.idempotent { idempotency_key(req.headers())? } else { None };
    let query = Query::parse(req.uri().query());
    let limit = if spec.large_body {
        crate::config::ZONE_BODY_BYTES
    } else if matches!(ep, Endpoint::UploadDocument(_)) {
        // A document upload: its bytes, up to the documents' limit (read with the bound).
        dispatch_core::application::MAX_DOCUMENT_BYTES
    } else {
        app.config.server.max_body_bytes
    };
    let (parts, body) = req.into_parts();
    let body = http::read_body(&parts.headers, body, limit).await?;
    // ----- issue 21 -----
    // A follower applies no write: it forwards it to the leader (a forwarded one that
    // reached a node that no longer leads is refused, never bounced on).
    if let Some(node) = app.node.as_ref().filter(|n| !n.is_leader())
        && !matches!(parts.method, Method::GET | Method::HEAD)
    {
        if forwarded {
            return Err(crate::cluster::forward::not_leader("this node does not lead (any more); retry"));
        }
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        return crate::cluster::forward::forward(
            &app.keys,
            node,
            &parts.method,
            path_and_query,
            &parts.headers,
            body,
            request_id,
        )
        .await;
    }
    // Webhooks read their gateway's signature header (and event id headers); reports
    // their `Accept` (CSV or JSON).
    let headers = matches!(ep, Endpoint::Webhook(_) | Endpoint::ReportRevenue | Endpoint::ReportTrips)
        .then(|| parts.headers.clone())
        .unwrap_or_default();
    let mut ctx = Ctx {
        app,
        op: spec.name,
        who,
        peer,
        query,
        body,
        headers,
        keyed: None,
        replayed: false,
        new_trip: None,
        request_id,
        forwarded,
    };
    let _guard = match (spec.idempotent, idem_key, who) {
        (true, Some(key), Some(p)) => {
            let hash = request_hash(&parts.method, &path_of(&parts.uri), &ctx.body);
            let key = IdempotencyKey { principal: p.actor(), key, request_hash: hash };
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

/// The caller a token names. On a follower of a cluster (issue 21), a token that is
/// this cluster's and unexpired but names a user this node has not applied yet (made a
/// moment ago through another node) is checked again once the node applied the log's end
/// as last seen (at most `cluster::forward::READ_YOUR_WRITES`).
async fn authenticate(app: &App, token: &str) -> Result<Principal, ApiError> {
    let first = app.authenticate(token);
    let Some(node) = app.follower() else { return first };
    if first.is_ok() || app.keys.verify(token, app.now().as_secs()).is_none() {
        return first;
    }
    let end = node.membership.stream_last_lsn().max(node.leadership.log_end_lsn());
    if node.leadership.applied_lsn() >= end {
        return first;
    }
    crate::cluster::forward::wait_applied(&node.leadership, end, crate::cluster::forward::READ_YOUR_WRITES).await;
    app.authenticate(token)
}

/// The header of an idempotency key.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The request's `Idempotency-Key`, when it sent one: `400 invalid_request` (`param`
/// `Idempotency-Key`) when it is empty, over 255 characters, not printable ASCII or
/// sent twice — never silently ignored.
fn idempotency_key(headers: &hyper::HeaderMap) -> Result<Option<String>, ApiError> {
    let mut all = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(first) = all.next() else { return Ok(None) };
    let refused = |why: &str| ApiError::invalid(format!("{IDEMPOTENCY_KEY} {why}")).with_param(IDEMPOTENCY_KEY);
    if all.next().is_some() {
        return Err(refused("must be sent once"));
    }
    let key = first.to_str().map_err(|_| refused("must be printable ASCII"))?.to_owned();
    // The domain's rule (1-255 printable ASCII), told before anything is read or claimed.
    let probe = IdempotencyKey { principal: dispatch_core::Actor::System, key, request_hash: [0; 32] };
    match probe.validate() {
        Ok(()) => Ok(Some(probe.key)),
        Err(e) => Err(ApiError::from(e).with_param(IDEMPOTENCY_KEY)),
    }
}

/// `GET /metrics`: the Prometheus text exposition.
fn metrics_response(app: &App) -> Resp {
    let mut text = app.metrics.render(&app.engine);
    text.push_str(&crate::cluster::render_metrics(app.node.as_deref(), crate::cluster::now_ms()));
    http::text_response("text/plain; version=0.0.4", text)
}

/// The path an idempotency key's request hash covers (without the query).
fn path_of(uri: &hyper::Uri) -> String {
    uri.path().to_owned()
}

/// SHA-256 of method, path and raw body: the same key with another request is
/// `422 idempotency_key_reused`.
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
    /// The route's name: which request schema of the OpenAPI document a body must pass.
    op: &'static str,
    who: Option<Principal>,
    peer: IpAddr,
    query: Query,
    body: Bytes,
    /// The request's headers (webhooks and reports only; empty otherwise).
    headers: hyper::HeaderMap,
    keyed: Option<IdempotencyKey>,
    replayed: bool,
    /// The trip a booking created (for the request's log line).
    new_trip: Option<TripId>,
    // ----- issue 20: A -----
    /// The request's `X-Request-Id` (1-128 printable ASCII: `http::request_id`), which a
    /// staff command's audit entry keeps.
    request_id: &'a str,
    // ----- issue 21 -----
    /// Forwarded by another node of this cluster (its signature checked).
    forwarded: bool,
}

/// A path parameter as an id; a malformed one is `404`.
fn parse_id<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, ApiError> {
    // A malformed id names nothing that exists: 404, like an unknown one.
    s.parse().map_err(|_| ApiError::not_found(what))
}

/// The wall clock (the engine stamps commands with its own).
fn now() -> Timestamp {
    SystemClock.now()
}

/// `{"lat","lng"}`: a point in a body (a driver's status, a drop-off, an SOS).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointIn {
    lat: f64,
    lng: f64,
}

impl PointIn {
    /// The point (`invalid_coordinates` when out of range or not finite).
    fn get(&self) -> Result<dispatch_core::LatLng, ApiError> {
        lat_lng(self.lat, self.lng)
    }
}

/// The body of an action that takes no fields: empty or `{}`, anything else refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `{"reason"}`, optional: why a driver was suspended or unsuspended.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonIn {
    #[serde(default)]
    reason: String,
}

/// `{"reason_code"?, "reason"?}`: why a trip is cancelled. No code (only a `reason`, or
/// an empty body) is `other`, as API.md says of a body with only `reason`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelIn {
    #[serde(default)]
    reason_code: Option<String>,
    #[serde(default)]
    reason: String,
}

impl CancelIn {
    /// The code named, `other` when none; an unknown one is `400 invalid_request` about
    /// `reason_code` (the OpenAPI check refuses it first; this keeps the handler honest).
    fn code(&self) -> Result<dispatch_core::trip::CancelReason, ApiError> {
        match self.reason_code.as_deref() {
            None => Ok(dispatch_core::trip::CancelReason::Other),
            Some(s) => dispatch_core::trip::CancelReason::parse(s).ok_or_else(|| {
                ApiError::invalid(format!("reason_code `{s}` is not one of the codes API.md lists"))
                    .with_param("reason_code")
            }),
        }
    }
}

impl Ctx<'_> {
    /// The caller, or `401` (routes open to anyone have none).
    fn principal(&self) -> Result<Principal, ApiError> {
        self.who.ok_or_else(|| ApiError::new("unauthorized", "a bearer token is required"))
    }

    /// The body as strict JSON of `T` (`empty_ok`: an empty body stands for `{}`): bytes
    /// that are not JSON are `invalid_json`; JSON that breaks the operation's schema in the
    /// OpenAPI document is one `invalid_request` listing every violation
    /// ([`openapi::check_body`]), before `T` is built.
    fn json<T: serde::de::DeserializeOwned>(&self, empty_ok: bool) -> Result<T, ApiError> {
        let value: serde_json::Value = parse_json(&self.body, empty_ok)?;
        openapi::check_body(self.op, &value)?;
        serde_json::from_value(value).map_err(|e| http::json_error(&e))
    }

    /// Sends a command as the caller, under the request's idempotency key if any. A staff
    /// caller's command goes into the audit trail (`Command::Audited`, with the request's
    /// id), inside the key: a replayed key answers as before and records nothing again.
    async fn submit(&mut self, command: Command) -> Result<Outcome, ApiError> {
        let who = self.principal()?;
        let actor = who.actor();
        let command = if (who.is_staff() || who.permissions() != crate::auth::Permissions::NONE)
            && command.audit_action().is_some()
        {
            // The pipeline's id is bounded already; cut it anyway so no log record can be
            // bloated by it, and keep it printable (`audit::validate_request_id`).
            let id: String = self
                .request_id
                .chars()
                .filter(char::is_ascii_graphic)
                .take(dispatch_core::audit::MAX_REQUEST_ID_LEN)
                .collect();
            let request_id = if id.is_empty() { "-".to_owned() } else { id };
            Command::Audited { request_id, command: Box::new(command) }
        } else {
            command
        };
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

    /// Positions older than this many seconds are stale to the dispatch round (the rules
    /// in force: the configuration's, with what `PATCH /v1/admin/settings` changed).
    fn stale_s(&self) -> u32 {
        self.app.engine.read(|v| v.rules().stale_location_s)
    }

    /// Whether the caller is the trip's rider (who alone sees its pickup code).
    fn for_rider(&self, t: &Trip) -> bool {
        self.who.and_then(Principal::user_id) == Some(t.rider_id)
    }

    /// Who the caller is to `t` (what of it they may see).
    fn viewer(&self, t: &Trip) -> render::Viewer {
        render::Viewer::of(t, self.who.and_then(Principal::user_id), self.who.is_some_and(|p| p.reads_trips()))
    }

    /// `trips` rendered for the caller, their people read from the view in one read.
    fn trips_json(&self, trips: &[Arc<Trip>]) -> Vec<serde_json::Value> {
        let cards = self.cards_of(trips);
        trips
            .iter()
            .zip(&cards)
            .map(|(t, c)| serde_json::to_value(render::trip(t, self.viewer(t), c)).unwrap_or_default())
            .collect()
    }

    /// The people of `trips` (one read of the view) and their cached ETAs.
    fn cards_of(&self, trips: &[Arc<Trip>]) -> Vec<render::Cards> {
        let mut cards: Vec<render::Cards> =
            self.app.engine.read(|v| trips.iter().map(|t| render::Cards::of(v, t)).collect());
        for (c, t) in cards.iter_mut().zip(trips) {
            c.eta = self.app.etas.cached(t);
        }
        cards
    }

    /// Brings `t`'s ETA up to date (the route provider is asked at most every 10 s per
    /// trip: [`crate::eta::Etas`]), for the next render of it.
    async fn refresh_eta(&self, t: &Trip) {
        if crate::eta::Leg::of(t).is_none() {
            return;
        }
        let fix = t.driver_id.and_then(|d| self.app.engine.read(|v| v.driver(d).and_then(|d| d.fix)));
        self.app.etas.get(t, fix, now(), |from, to| self.app.route(from, to)).await;
    }

    /// One trip rendered for the caller.
    fn trip_json(&self, t: &Arc<Trip>) -> serde_json::Value {
        self.trips_json(std::slice::from_ref(t)).pop().unwrap_or_default()
    }

    /// A command's trip, rendered for the caller, with `status`.
    fn trip_out(&self, status: StatusCode, o: Outcome) -> Result<Resp, ApiError> {
        match o {
            // The hot answer (a booking, an accept, every step): typed, serialised once,
            // straight into the body.
            Outcome::Trip(t) => {
                let cards = self.cards_of(std::slice::from_ref(&t));
                let cards = cards.first().cloned().unwrap_or_default();
                Ok(json_response(status, &render::trip(&t, self.viewer(&t), &cards)))
            }
            other => Err(unexpected(&other)),
        }
    }

    /// A trip the caller may see (`Trip::visible_to`: its rider, its driver, staff). Anyone
    /// else: 404, never 403, so trip ids cannot be probed.
    async fn visible_trip(&self, id: &str) -> Result<Arc<Trip>, ApiError> {
        let id: TripId = parse_id(id, "trip")?;
        let t = self.app.blocking(move |e| e.find_trip(id)).await?.ok_or_else(|| ApiError::not_found("trip"))?;
        let p = self.principal()?;
        if t.visible_to(p.user_id(), p.reads_trips()) { Ok(t) } else { Err(ApiError::not_found("trip")) }
    }

    /// The one map from an endpoint to its handler.
    async fn dispatch(&mut self, ep: Endpoint) -> Result<Resp, ApiError> {
        use Endpoint as E;
        let app = Arc::clone(self.app);
        match ep {
            E::Healthz => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
            E::Readyz => Ok(app.readiness(self.query.get("role") == Some("leader"))),
            E::Metrics => Ok(metrics_response(&app)),
            // Upgrades are answered by the pipeline before a handler would run.
            E::Ws => Err(ApiError::new("not_found", "no such endpoint")),
            E::OpenApi => Ok(http::bytes_response("application/json", openapi::document_bytes())),
            E::OtpIssue => self.otp_issue().await,
            E::OtpVerify => self.otp_verify().await,
            E::CreateUser => self.create_user().await,
            E::RevokeTokens(id) => self.revoke_tokens(&id).await,
            E::CreateZone => self.create_zone().await,
            E::ReplaceZone(id) => self.replace_zone(&id).await,
            E::ListZones => self.list_zones(),
            E::LookupZone => self.lookup_zone(),
            E::CreateCoupon => self.create_coupon().await,
            E::Estimate => self.estimate().await,
            E::DriverStatus => self.driver_status().await,
            E::DriverLocation => self.driver_location().await,
            E::DriverOffers => self.driver_offers(),
            E::DriversNearby => self.drivers_nearby().await,
            E::ListDrivers => self.list_drivers(),
            E::GetDriver(id) => self.get_driver(&id),
            E::Suspend(id, suspended) => self.suspend(&id, suspended).await,
            E::CreateTrip => self.create_trip().await,
            E::ListTrips => self.my_trips().await,
            E::GetTrip(id) => self.get_trip(&id).await,
            E::TripAction(id, action) => self.trip_action(&id, action).await,
            E::PlaceBid(id) => self.place_bid(&id).await,
            E::ListBids(id) => self.list_bids(&id).await,
            E::AcceptBid(id, bid) => self.accept_bid(&id, &bid).await,
            E::Rate(id) => self.rate(&id).await,
            E::Sos(id) => self.sos(&id).await,
            E::PostMessage(id) => self.post_message(&id).await,
            E::ListMessages(id) => self.list_messages(&id).await,
            E::AdminTrips => self.list_trips(TripsOf::All).await,
            E::AdminCancel(id) => self.admin_cancel(&id).await,
            E::ListAlerts => self.list_alerts().await,
            E::AckAlert(id) => self.ack_alert(&id).await,
            E::Stats => Ok(json_response(StatusCode::OK, &app.stats())),
            E::TripEvents(id) => self.trip_events(&id).await,
            E::TripTrail(id) => self.trip_trail(&id).await,
            E::Wallet => self.wallet().await,
            E::Credit(id) => self.credit(&id).await,
            E::Refund(id) => self.refund(&id).await,
            E::LedgerVerify => self.ledger_verify(),
            E::Webhook(gateway) => self.webhook(&gateway).await,
            E::Reconcile => self.reconcile().await,
            E::DeadLetters => self.dead_letters(),
            E::PaymentMethod(id) => self.payment_method(&id).await,
            E::CashReceived(id) => self.cash_received(&id).await,
            E::UnlockCode(id) => self.unlock_code(&id).await,
            E::Me => self.me(),
            E::UpdateMe => self.update_me().await,
            E::Share(id) => self.share_trip(&id).await,
            E::Unshare(id) => self.unshare_trip(&id).await,
            E::Shared(token) => self.shared(&token).await,
            E::RegisterDevice => self.register_device().await,
            E::ListDevices => self.list_devices(),
            E::DeleteDevice(id) => self.delete_device(&id).await,
            E::ListNotifications => self.list_notifications(),
            E::CreateHookEndpoint => self.create_webhook_endpoint().await,
            E::ListHookEndpoints => self.list_webhook_endpoints(),
            E::DeleteHookEndpoint(id) => self.delete_webhook_endpoint(&id).await,
            E::HookDeliveries(id) => self.list_webhook_deliveries(&id),
            E::ResendHook(id, event) => self.resend_webhook(&id, &event).await,
            E::Console(path) => console::response(&path, &self.app.config.console),
            E::PutApplication => self.put_application().await,
            E::UploadDocument(kind) => self.upload_document(&kind).await,
            E::SubmitApplication => self.submit_application().await,
            E::ListApplications => self.list_applications(),
            E::GetApplication(id) => self.get_application(&id),
            E::ApplicationDocument(id, kind) => self.application_document(&id, &kind).await,
            E::DecideApplication(id, approve) => self.decide_application(&id, approve).await,
            E::ListCoupons => self.list_coupons(),
            E::GetCoupon(code) => self.get_coupon(&code),
            E::DisableCoupon(code) => self.disable_coupon(&code).await,
            E::AdminComplete(id) => self.admin_complete(&id).await,
            E::DriverEarnings => self.driver_earnings(),
            E::RequestPayout => self.request_payout().await,
            E::DriverPayouts => self.my_payouts(),
            E::AdminPayouts => self.admin_payouts(),
            E::ReviewPayout(id, approve) => self.review_payout(&id, approve).await,
            E::DriverCashReceived(id) => self.driver_cash_received(&id).await,
            E::TopUp => self.create_top_up().await,
            // ----- issue 20: H -----
            E::ReportRevenue => self.report(reports::Report::Revenue).await,
            E::ReportTrips => self.report(reports::Report::Trips).await,
            // ----- issue 20: A -----
            E::AdminAudit => self.list_audit().await,
            E::GetSettings => self.get_settings(),
            E::PatchSettings => self.patch_settings().await,
            // ----- issue 20: S -----
            E::StaffSetup => self.staff_setup().await,
            E::StaffLogin => self.staff_login().await,
            E::Logout => self.logout().await,
            E::IssueStaffSetup(id) => self.issue_staff_setup(&id).await,
            // ----- issue 20: U -----
            E::ListUsers => self.list_users(),
            E::GetUser(id) => self.get_user(&id),
            E::PatchUser(id) => self.patch_user(&id).await,
            E::BlockUser(id, blocked) => self.block_user(&id, blocked).await,
            E::EraseUser(id) => self.erase_user(&id).await,
            // ----- issue 21 -----
            E::Cluster => self.cluster_status(),
            E::ClusterCommands => self.cluster_commands().await,
            E::ClusterCheckpoint => self.cluster_checkpoint().await,
        }
    }
}

/// An outcome the command cannot have: logged, and `500` to the caller (a bug, not the
/// caller's fault).
fn unexpected(o: &Outcome) -> ApiError {
    tracing::error!(outcome = ?std::mem::discriminant(o), "unexpected engine outcome");
    ApiError::new("internal", "internal error")
}
