//! The route table: every endpoint of the API, the one index of them. A reader finds
//! here every path and its method ([`ROUTES`], matched by [`Endpoint::route`]), who may
//! call it, its rate limits, its body limit and whether it takes an `Idempotency-Key`
//! ([`Endpoint::spec`]). The table is data so that the OpenAPI document (`api::openapi`)
//! can be checked against it: a route without its operation, or the reverse, fails a test.
//! The handlers are elsewhere (`dispatch` in `api/mod.rs` maps each endpoint to one).
//!
//! Guarantees: an unknown path is `404 not_found`, a known path with another method
//! `405 method_not_allowed`; path parameters are handed on unparsed (a malformed id is the
//! handler's `404`); each route's rights are declared once, in [`Endpoint::spec`], and the
//! pipeline checks them before any handler runs.

use std::sync::LazyLock;

use dispatch_core::Role;
use hyper::Method;

use crate::auth::{ADMIN, Allow, DRIVER, Permission as P, RIDER, RIDER_OR_DRIVER};
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
    /// `GET /v1/openapi.json`: the API's OpenAPI document.
    OpenApi,
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
    /// `POST /v1/trips/{id}/messages`: a chat message.
    PostMessage(String),
    /// `GET /v1/trips/{id}/messages`: the trip's chat, newest first.
    ListMessages(String),
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
    /// `GET /v1/me`: the caller's profile.
    Me,
    /// `PATCH /v1/me`
    UpdateMe,
    /// `POST /v1/trips/{id}/share`: its rider makes a share link.
    Share(String),
    /// `DELETE /v1/trips/{id}/share`: its rider revokes every link.
    Unshare(String),
    /// `GET /v1/share/{token}`: a shared trip, for anyone with the token.
    Shared(String),
    /// `POST /v1/me/devices`: the caller registers a push device.
    RegisterDevice,
    /// `GET /v1/me/devices`: the caller's devices (never their tokens).
    ListDevices,
    /// `DELETE /v1/me/devices/{id}`: its owner removes it.
    DeleteDevice(String),
    /// `GET /v1/admin/notifications`: the outbox, newest first.
    ListNotifications,
    /// `POST /v1/admin/webhook-endpoints`: an admin registers an endpoint (its secret shown once).
    CreateHookEndpoint,
    /// `GET /v1/admin/webhook-endpoints`: the endpoints (never their secrets).
    ListHookEndpoints,
    /// `DELETE /v1/admin/webhook-endpoints/{id}`: it and its deliveries go.
    DeleteHookEndpoint(String),
    /// `GET /v1/admin/webhook-endpoints/{id}/deliveries`: its delivery log, newest first.
    HookDeliveries(String),
    /// `POST /v1/admin/webhook-endpoints/{id}/deliveries/{event_id}/resend`: try again.
    ResendHook(String, String),
    /// `GET /console` and its assets.
    Console(String),
    // ----- driver applications -----
    /// `PUT /v1/driver/application`: the applicant's details.
    PutApplication,
    /// `PUT /v1/driver/application/documents/{kind}`: a document's raw bytes.
    UploadDocument(String),
    /// `POST /v1/driver/application/submit`
    SubmitApplication,
    /// `GET /v1/admin/applications`
    ListApplications,
    /// `GET /v1/admin/applications/{id}`
    GetApplication(String),
    /// `GET /v1/admin/applications/{id}/documents/{kind}`: the file, as an attachment.
    ApplicationDocument(String, String),
    /// `POST /v1/admin/applications/{id}/approve` (`true`) or `reject`.
    DecideApplication(String, bool),
    // ----- issue 19: parcels and coupon admin -----
    /// `GET /v1/admin/coupons`
    ListCoupons,
    /// `GET /v1/admin/coupons/{code}`
    GetCoupon(String),
    /// `POST /v1/admin/coupons/{code}/disable`
    DisableCoupon(String),
    /// `POST /v1/admin/trips/{id}/complete`: staff complete a parcel without its code.
    AdminComplete(String),
    /// `GET /v1/driver/earnings`
    DriverEarnings,
    /// `POST /v1/driver/payouts`
    RequestPayout,
    /// `GET /v1/driver/payouts`
    DriverPayouts,
    /// `GET /v1/admin/payouts`
    AdminPayouts,
    /// `POST /v1/admin/payouts/{id}/approve` (`true`) and `.../reject` (`false`)
    ReviewPayout(String, bool),
    /// `POST /v1/admin/drivers/{id}/cash-received`
    DriverCashReceived(String),
    /// `POST /v1/wallet/top-ups`
    TopUp,
    // ----- issue 20: H -----
    /// `GET /v1/admin/reports/revenue`
    ReportRevenue,
    /// `GET /v1/admin/reports/trips`
    ReportTrips,
    // ----- issue 20: A -----
    /// `GET /v1/admin/audit`: the audit trail, newest first.
    AdminAudit,
    /// `GET /v1/admin/settings`: the runtime settings in force.
    GetSettings,
    /// `PATCH /v1/admin/settings`: change some of them at once.
    PatchSettings,
    // ----- issue 20: S -----
    /// `POST /v1/auth/staff/setup`: a setup token and a new password → the TOTP URI.
    StaffSetup,
    /// `POST /v1/auth/staff/login`: e-mail, password and TOTP code → a 12-hour token.
    StaffLogin,
    /// `POST /v1/auth/logout`: every token of the caller stops working.
    Logout,
    /// `POST /v1/admin/users/{id}/staff-setup`: a new setup token for a staff user.
    IssueStaffSetup(String),
    // ----- issue 20: U -----
    /// `GET /v1/admin/users`: list and search.
    ListUsers,
    /// `GET /v1/admin/users/{id}`
    GetUser(String),
    /// `PATCH /v1/admin/users/{id}`
    PatchUser(String),
    /// `POST /v1/admin/users/{id}/block` (`true`) or `unblock`
    BlockUser(String, bool),
    /// `POST /v1/admin/users/{id}/erase`
    EraseUser(String),
    // ----- issue 21 -----
    /// `GET /v1/cluster`: this node's role, the leader, how far it applied the log.
    Cluster,
    /// `POST /v1/cluster/commands`: cluster-internal; a follower's socket commands, signed.
    ClusterCommands,
    /// `GET /v1/cluster/checkpoint`: cluster-internal; this node's store, for a peer that
    /// catches up (signed).
    ClusterCheckpoint,
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

/// Who may be shown a trip at all (which trip, `Trip::visible_to` decides): riders,
/// drivers and staff.
const TRIP_PEOPLE: Allow = Allow::Roles(&[Role::Rider, Role::Driver, Role::Support, Role::Admin]);

/// Staff whose role grants `p` (every staff route but the admin-only ones names one).
const fn perm(p: P) -> Allow {
    Allow::Permission(p)
}

const fn spec(name: &'static str, allow: Allow) -> Spec {
    Spec { name, allow, class: None, ip_limited: true, large_body: false, idempotent: false }
}

/// One row of the route table: a method, a path template whose `{name}` segments are
/// path parameters, the route's name (its [`Spec::name`], the OpenAPI `operationId`) and
/// how the endpoint is built from the parameters' values, in order.
#[derive(Clone, Copy)]
pub struct Route {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// `/v1/trips/{id}/accept`.
    pub template: &'static str,
    /// The spec name of the endpoint it builds.
    pub name: &'static str,
    /// The endpoint, from the path parameters (as many as the template has).
    pub build: fn(&[&str]) -> Endpoint,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.method, self.template, self.name)
    }
}

/// The i-th path parameter (the table's templates guarantee it is there).
fn p(params: &[&str], i: usize) -> String {
    params.get(i).map(|x| (*x).to_owned()).unwrap_or_default()
}

macro_rules! route {
    ($method:literal, $template:literal, $name:literal, $build:expr) => {
        Route { method: $method, template: $template, name: $name, build: $build }
    };
}

/// Every route, as data: what [`Endpoint::route`] matches, and what the OpenAPI
/// document must describe (`api::openapi`'s tests compare the two).
pub const ROUTES: &[Route] = {
    use Endpoint as E;
    &[
        route!("GET", "/healthz", "healthz", |_| E::Healthz),
        route!("GET", "/readyz", "readyz", |_| E::Readyz),
        route!("GET", "/metrics", "metrics", |_| E::Metrics),
        route!("GET", "/v1/ws", "ws", |_| E::Ws),
        route!("GET", "/v1/openapi.json", "openapi", |_| E::OpenApi),
        route!("POST", "/v1/auth/otp", "otp_issue", |_| E::OtpIssue),
        route!("POST", "/v1/auth/otp/verify", "otp_verify", |_| E::OtpVerify),
        route!("POST", "/v1/admin/users", "admin_create_user", |_| E::CreateUser),
        route!("POST", "/v1/admin/users/{id}/revoke-tokens", "admin_revoke_tokens", |x| E::RevokeTokens(p(x, 0))),
        route!("POST", "/v1/admin/zones", "admin_create_zone", |_| E::CreateZone),
        route!("PUT", "/v1/admin/zones/{id}", "admin_replace_zone", |x| E::ReplaceZone(p(x, 0))),
        route!("GET", "/v1/zones", "zones", |_| E::ListZones),
        route!("GET", "/v1/zones/lookup", "zone_lookup", |_| E::LookupZone),
        route!("POST", "/v1/admin/coupons", "admin_create_coupon", |_| E::CreateCoupon),
        route!("POST", "/v1/fares/estimate", "fare_estimate", |_| E::Estimate),
        route!("POST", "/v1/driver/status", "driver_status", |_| E::DriverStatus),
        route!("POST", "/v1/driver/location", "driver_location", |_| E::DriverLocation),
        route!("GET", "/v1/driver/offers", "driver_offers", |_| E::DriverOffers),
        route!("GET", "/v1/admin/drivers/nearby", "admin_drivers_nearby", |_| E::DriversNearby),
        route!("GET", "/v1/admin/drivers", "admin_drivers", |_| E::ListDrivers),
        route!("GET", "/v1/admin/drivers/{id}", "admin_driver", |x| E::GetDriver(p(x, 0))),
        route!("POST", "/v1/admin/drivers/{id}/suspend", "admin_suspend", |x| E::Suspend(p(x, 0), true)),
        route!("POST", "/v1/admin/drivers/{id}/unsuspend", "admin_unsuspend", |x| E::Suspend(p(x, 0), false)),
        route!("POST", "/v1/trips", "trip_create", |_| E::CreateTrip),
        route!("GET", "/v1/trips", "trips", |_| E::ListTrips),
        route!("GET", "/v1/trips/{id}", "trip", |x| E::GetTrip(p(x, 0))),
        route!("POST", "/v1/trips/{id}/accept", "trip_accept", |x| E::TripAction(p(x, 0), TripAction::Accept)),
        route!("POST", "/v1/trips/{id}/decline", "trip_decline", |x| E::TripAction(p(x, 0), TripAction::Decline)),
        route!("POST", "/v1/trips/{id}/arrived", "trip_arrived", |x| E::TripAction(p(x, 0), TripAction::Arrived)),
        route!("POST", "/v1/trips/{id}/start", "trip_start", |x| E::TripAction(p(x, 0), TripAction::Start)),
        route!("POST", "/v1/trips/{id}/complete", "trip_complete", |x| E::TripAction(p(x, 0), TripAction::Complete)),
        route!("POST", "/v1/trips/{id}/cancel", "trip_cancel", |x| E::TripAction(p(x, 0), TripAction::Cancel)),
        route!("POST", "/v1/trips/{id}/bids", "trip_bid", |x| E::PlaceBid(p(x, 0))),
        route!("GET", "/v1/trips/{id}/bids", "trip_bids", |x| E::ListBids(p(x, 0))),
        route!("POST", "/v1/trips/{id}/bids/{bid_id}/accept", "trip_bid_accept", |x| E::AcceptBid(p(x, 0), p(x, 1))),
        route!("POST", "/v1/trips/{id}/rating", "trip_rating", |x| E::Rate(p(x, 0))),
        route!("POST", "/v1/trips/{id}/sos", "trip_sos", |x| E::Sos(p(x, 0))),
        route!("POST", "/v1/trips/{id}/messages", "trip_message", |x| E::PostMessage(p(x, 0))),
        route!("GET", "/v1/trips/{id}/messages", "trip_messages", |x| E::ListMessages(p(x, 0))),
        route!("POST", "/v1/trips/{id}/payment-method", "trip_payment_method", |x| E::PaymentMethod(p(x, 0))),
        route!("POST", "/v1/trips/{id}/cash-received", "trip_cash_received", |x| E::CashReceived(p(x, 0))),
        route!("GET", "/v1/admin/trips", "admin_trips", |_| E::AdminTrips),
        route!("POST", "/v1/admin/trips/{id}/cancel", "admin_trip_cancel", |x| E::AdminCancel(p(x, 0))),
        route!("POST", "/v1/admin/trips/{id}/unlock", "admin_trip_unlock", |x| E::UnlockCode(p(x, 0))),
        route!("GET", "/v1/admin/alerts", "admin_alerts", |_| E::ListAlerts),
        route!("POST", "/v1/admin/alerts/{id}/ack", "admin_alert_ack", |x| E::AckAlert(p(x, 0))),
        route!("GET", "/v1/admin/stats", "admin_stats", |_| E::Stats),
        route!("GET", "/v1/admin/trips/{id}/events", "admin_trip_events", |x| E::TripEvents(p(x, 0))),
        route!("GET", "/v1/admin/trips/{id}/trail", "admin_trip_trail", |x| E::TripTrail(p(x, 0))),
        route!("GET", "/v1/wallet", "wallet", |_| E::Wallet),
        route!("POST", "/v1/admin/wallets/{user_id}/credit", "admin_wallet_credit", |x| E::Credit(p(x, 0))),
        route!("POST", "/v1/admin/trips/{id}/refund", "admin_trip_refund", |x| E::Refund(p(x, 0))),
        route!("GET", "/v1/admin/ledger/verify", "admin_ledger_verify", |_| E::LedgerVerify),
        route!("POST", "/v1/webhooks/{gateway}", "webhook", |x| E::Webhook(p(x, 0))),
        route!("POST", "/v1/admin/reconcile", "admin_reconcile", |_| E::Reconcile),
        route!("GET", "/v1/admin/payments/dead-letters", "admin_dead_letters", |_| E::DeadLetters),
        route!("GET", "/v1/me", "me", |_| E::Me),
        route!("PATCH", "/v1/me", "me_update", |_| E::UpdateMe),
        route!("POST", "/v1/trips/{id}/share", "trip_share", |x| E::Share(p(x, 0))),
        route!("DELETE", "/v1/trips/{id}/share", "trip_unshare", |x| E::Unshare(p(x, 0))),
        route!("GET", "/v1/share/{token}", "share", |x| E::Shared(p(x, 0))),
        route!("POST", "/v1/me/devices", "me_device_register", |_| E::RegisterDevice),
        route!("GET", "/v1/me/devices", "me_devices", |_| E::ListDevices),
        route!("DELETE", "/v1/me/devices/{id}", "me_device_delete", |x| E::DeleteDevice(p(x, 0))),
        route!("GET", "/v1/admin/notifications", "admin_notifications", |_| E::ListNotifications),
        route!("POST", "/v1/admin/webhook-endpoints", "admin_webhook_endpoint_create", |_| E::CreateHookEndpoint),
        route!("GET", "/v1/admin/webhook-endpoints", "admin_webhook_endpoints", |_| E::ListHookEndpoints),
        route!("DELETE", "/v1/admin/webhook-endpoints/{id}", "admin_webhook_endpoint_delete", |x| {
            E::DeleteHookEndpoint(p(x, 0))
        }),
        route!("GET", "/v1/admin/webhook-endpoints/{id}/deliveries", "admin_webhook_deliveries", |x| {
            E::HookDeliveries(p(x, 0))
        }),
        route!("POST", "/v1/admin/webhook-endpoints/{id}/deliveries/{event_id}/resend", "admin_webhook_resend", |x| {
            E::ResendHook(p(x, 0), p(x, 1))
        }),
        // The console's files (`api::console::ASSETS`; a name not there is `404`).
        route!("GET", "/console", "console", |_| E::Console(String::new())),
        route!("GET", "/console/{file}", "console", |x| E::Console(p(x, 0))),
        route!("GET", "/console/{dir}/{file}", "console", |x| E::Console(format!("{}/{}", p(x, 0), p(x, 1)))),
        route!("GET", "/console/{dir}/{sub}/{file}", "console", |x| {
            E::Console(format!("{}/{}/{}", p(x, 0), p(x, 1), p(x, 2)))
        }),
        // Driver applications.
        route!("PUT", "/v1/driver/application", "driver_application", |_| E::PutApplication),
        route!("PUT", "/v1/driver/application/documents/{kind}", "driver_application_document", |x| E::UploadDocument(
            p(x, 0)
        )),
        route!("POST", "/v1/driver/application/submit", "driver_application_submit", |_| E::SubmitApplication),
        route!("GET", "/v1/admin/applications", "admin_applications", |_| E::ListApplications),
        route!("GET", "/v1/admin/applications/{id}", "admin_application", |x| E::GetApplication(p(x, 0))),
        route!("GET", "/v1/admin/applications/{id}/documents/{kind}", "admin_application_document", |x| {
            E::ApplicationDocument(p(x, 0), p(x, 1))
        }),
        route!("POST", "/v1/admin/applications/{id}/approve", "admin_application_approve", |x| E::DecideApplication(
            p(x, 0),
            true
        )),
        route!("POST", "/v1/admin/applications/{id}/reject", "admin_application_reject", |x| E::DecideApplication(
            p(x, 0),
            false
        )),
        route!("GET", "/v1/admin/coupons", "admin_coupons", |_| E::ListCoupons),
        route!("GET", "/v1/admin/coupons/{code}", "admin_coupon", |x| E::GetCoupon(p(x, 0))),
        route!("POST", "/v1/admin/coupons/{code}/disable", "admin_coupon_disable", |x| E::DisableCoupon(p(x, 0))),
        route!("POST", "/v1/admin/trips/{id}/complete", "admin_trip_complete", |x| E::AdminComplete(p(x, 0))),
        route!("GET", "/v1/driver/earnings", "driver_earnings", |_| E::DriverEarnings),
        route!("POST", "/v1/driver/payouts", "driver_payout_request", |_| E::RequestPayout),
        route!("GET", "/v1/driver/payouts", "driver_payouts", |_| E::DriverPayouts),
        route!("GET", "/v1/admin/payouts", "admin_payouts", |_| E::AdminPayouts),
        route!("POST", "/v1/admin/payouts/{id}/approve", "admin_payout_approve", |x| E::ReviewPayout(p(x, 0), true)),
        route!("POST", "/v1/admin/payouts/{id}/reject", "admin_payout_reject", |x| E::ReviewPayout(p(x, 0), false)),
        route!(
            "POST",
            "/v1/admin/drivers/{id}/cash-received",
            "admin_driver_cash_received",
            |x| E::DriverCashReceived(p(x, 0))
        ),
        route!("POST", "/v1/wallet/top-ups", "wallet_top_up", |_| E::TopUp),
        // ----- issue 20: H -----
        route!("GET", "/v1/admin/reports/revenue", "admin_report_revenue", |_| E::ReportRevenue),
        route!("GET", "/v1/admin/reports/trips", "admin_report_trips", |_| E::ReportTrips),
        // ----- issue 20: A -----
        route!("GET", "/v1/admin/audit", "admin_audit", |_| E::AdminAudit),
        route!("GET", "/v1/admin/settings", "admin_settings", |_| E::GetSettings),
        route!("PATCH", "/v1/admin/settings", "admin_settings_update", |_| E::PatchSettings),
        // ----- issue 20: S -----
        route!("POST", "/v1/auth/staff/setup", "staff_setup", |_| E::StaffSetup),
        route!("POST", "/v1/auth/staff/login", "staff_login", |_| E::StaffLogin),
        route!("POST", "/v1/auth/logout", "logout", |_| E::Logout),
        route!("POST", "/v1/admin/users/{id}/staff-setup", "admin_staff_setup", |x| E::IssueStaffSetup(p(x, 0))),
        // ----- issue 20: U -----
        route!("GET", "/v1/admin/users", "admin_users", |_| E::ListUsers),
        route!("GET", "/v1/admin/users/{id}", "admin_user", |x| E::GetUser(p(x, 0))),
        route!("PATCH", "/v1/admin/users/{id}", "admin_user_update", |x| E::PatchUser(p(x, 0))),
        route!("POST", "/v1/admin/users/{id}/block", "admin_user_block", |x| E::BlockUser(p(x, 0), true)),
        route!("POST", "/v1/admin/users/{id}/unblock", "admin_user_unblock", |x| E::BlockUser(p(x, 0), false)),
        route!("POST", "/v1/admin/users/{id}/erase", "admin_user_erase", |x| E::EraseUser(p(x, 0))),
        // ----- issue 21 -----
        route!("GET", "/v1/cluster", "cluster", |_| E::Cluster),
        route!("POST", "/v1/cluster/commands", "cluster_commands", |_| E::ClusterCommands),
        route!("GET", "/v1/cluster/checkpoint", "cluster_checkpoint", |_| E::ClusterCheckpoint),
    ]
};

/// The most segments a template may have (the longest,
/// `/v1/admin/webhook-endpoints/{id}/deliveries/{event_id}/resend`, has seven): a longer
/// path matches no route, and a longer template fails the table's test.
const MAX_SEGMENTS: usize = 8;

/// A template split at `/` once, at first use: each segment a literal, or `None` for a
/// parameter.
struct Compiled {
    route: &'static Route,
    segments: Vec<Option<&'static str>>,
}

impl Compiled {
    /// Whether `segs` (as many as the template's) matches, the parameters' values written
    /// to `params` in order; a parameter matches any non-empty segment.
    fn matches<'a>(&self, segs: &[&'a str], params: &mut [&'a str; MAX_SEGMENTS]) -> Option<usize> {
        let mut n = 0;
        for (t, seg) in self.segments.iter().zip(segs) {
            match t {
                None if seg.is_empty() => return None,
                None => {
                    params[n] = seg;
                    n += 1;
                }
                Some(lit) if lit != seg => return None,
                Some(_) => {}
            }
        }
        Some(n)
    }
}

/// [`ROUTES`] compiled, grouped by their number of segments: a request compares its path
/// only with the templates as long as it, segment by segment, and splits nothing but its
/// own path. (Splitting every template at every request was a tenth of the server's time
/// per request in `examples/http_accept`.)
static BY_LENGTH: LazyLock<[Vec<Compiled>; MAX_SEGMENTS + 1]> = LazyLock::new(|| {
    let mut table: [Vec<Compiled>; MAX_SEGMENTS + 1] = Default::default();
    for route in ROUTES {
        let segments: Vec<Option<&'static str>> =
            route.template.split('/').skip(1).map(|t| (!t.starts_with('{')).then_some(t)).collect();
        // A template longer than MAX_SEGMENTS would never match: the table's test fails.
        if let Some(bucket) = table.get_mut(segments.len()) {
            bucket.push(Compiled { route, segments });
        }
    }
    table
});

impl Endpoint {
    /// Matches a method and path against [`ROUTES`]; `Err` tells 404 (no template matches
    /// the path) from 405 (one does, with another method). A literal segment wins over a
    /// parameter (`/v1/admin/drivers/nearby` is not the driver `nearby`).
    pub fn route(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
        let not_found = || ApiError::new("not_found", "no such endpoint");
        let mut segs = [""; MAX_SEGMENTS];
        let mut len = 0;
        for seg in path.trim_end_matches('/').split('/').skip(1) {
            *segs.get_mut(len).ok_or_else(not_found)? = seg;
            len += 1;
        }
        let segs = &segs[..len];
        let mut path_known = false;
        let mut params = [""; MAX_SEGMENTS];
        let mut best: Option<(usize, &Route, [&str; MAX_SEGMENTS])> = None;
        for c in BY_LENGTH.get(len).map_or(&[][..], Vec::as_slice) {
            let same_method = c.route.method == method.as_str();
            if !same_method && path_known {
                continue;
            }
            let Some(n) = c.matches(segs, &mut params) else { continue };
            path_known = true;
            if same_method && best.as_ref().is_none_or(|(fewest, _, _)| n < *fewest) {
                best = Some((n, c.route, params));
            }
        }
        match best {
            Some((n, r, params)) => Ok((r.build)(&params[..n])),
            None if path_known => Err(ApiError::new("method_not_allowed", format!("{method} is not allowed here"))),
            None => Err(not_found()),
        }
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
            | E::PostMessage(t)
            | E::ListMessages(t)
            | E::AdminCancel(t)
            | E::TripEvents(t)
            | E::PaymentMethod(t)
            | E::CashReceived(t)
            | E::UnlockCode(t)
            | E::AdminComplete(t)
            | E::TripTrail(t)
            | E::Share(t)
            | E::Unshare(t)
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
            E::OpenApi => spec("openapi", Allow::Anyone),
            E::OtpIssue => spec("otp_issue", Allow::Anyone),
            E::OtpVerify => spec("otp_verify", Allow::Anyone),
            E::CreateUser => idem(spec("admin_create_user", ADMIN)),
            E::RevokeTokens(_) => idem(spec("admin_revoke_tokens", ADMIN)),
            E::CreateZone => Spec { large_body: true, ..idem(spec("admin_create_zone", perm(P::ZonesWrite))) },
            E::ReplaceZone(_) => Spec { large_body: true, ..spec("admin_replace_zone", perm(P::ZonesWrite)) },
            E::ListZones => spec("zones", Allow::Authenticated),
            E::LookupZone => spec("zone_lookup", Allow::Authenticated),
            E::CreateCoupon => idem(spec("admin_create_coupon", perm(P::CouponsWrite))),
            E::Estimate => spec("fare_estimate", RIDER),
            E::DriverStatus => idem(spec("driver_status", DRIVER)),
            E::DriverLocation => spec("driver_location", DRIVER),
            E::DriverOffers => spec("driver_offers", DRIVER),
            E::DriversNearby => spec("admin_drivers_nearby", perm(P::UsersRead)),
            E::ListDrivers => spec("admin_drivers", perm(P::UsersRead)),
            E::GetDriver(_) => spec("admin_driver", perm(P::UsersRead)),
            E::Suspend(_, true) => idem(spec("admin_suspend", perm(P::DriversSuspend))),
            E::Suspend(_, false) => idem(spec("admin_unsuspend", perm(P::DriversSuspend))),
            E::CreateTrip => Spec { class: Some(Class::TripCreate), ..idem(spec("trip_create", RIDER)) },
            E::ListTrips => spec("trips", RIDER_OR_DRIVER),
            E::GetTrip(_) => spec("trip", TRIP_PEOPLE),
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
            // Who may post when is the engine's rule (the window, staff at any time).
            E::PostMessage(_) => Spec { class: Some(Class::Chat), ..idem(spec("trip_message", TRIP_PEOPLE)) },
            E::ListMessages(_) => spec("trip_messages", TRIP_PEOPLE),
            E::AdminTrips => spec("admin_trips", perm(P::TripsRead)),
            E::AdminCancel(_) => idem(spec("admin_trip_cancel", perm(P::TripsCancel))),
            E::ListAlerts => spec("admin_alerts", perm(P::TripsRead)),
            E::AckAlert(_) => idem(spec("admin_alert_ack", perm(P::TripsCancel))),
            E::Stats => spec("admin_stats", perm(P::TripsRead)),
            E::TripEvents(_) => spec("admin_trip_events", perm(P::TripsRead)),
            E::TripTrail(_) => spec("admin_trip_trail", perm(P::TripsRead)),
            E::Wallet => spec("wallet", RIDER_OR_DRIVER),
            E::Credit(_) => idem(spec("admin_wallet_credit", ADMIN)),
            E::Refund(_) => idem(spec("admin_trip_refund", perm(P::RefundsCreate))),
            E::LedgerVerify => spec("admin_ledger_verify", ADMIN),
            // Signed webhooks are not counted against `ip_per_min`; a bad signature is (handler).
            E::Webhook(_) => Spec { ip_limited: false, ..spec("webhook", Allow::Anyone) },
            // A settlement report can be long: the 1 MiB limit of zone uploads.
            E::Reconcile => Spec { large_body: true, ..spec("admin_reconcile", ADMIN) },
            E::DeadLetters => spec("admin_dead_letters", perm(P::TripsRead)),
            E::PaymentMethod(_) => idem(spec("trip_payment_method", RIDER)),
            E::CashReceived(_) => idem(spec("trip_cash_received", DRIVER)),
            E::UnlockCode(_) => idem(spec("admin_trip_unlock", perm(P::TripsCancel))),
            E::Me => spec("me", Allow::Authenticated),
            E::UpdateMe => spec("me_update", Allow::Authenticated),
            E::Share(_) => idem(spec("trip_share", RIDER)),
            E::Unshare(_) => spec("trip_unshare", RIDER),
            // Public: counted against `ip_per_min` like every unauthenticated request.
            E::Shared(_) => spec("share", Allow::Anyone),
            E::RegisterDevice => idem(spec("me_device_register", Allow::Authenticated)),
            E::ListDevices => spec("me_devices", Allow::Authenticated),
            E::DeleteDevice(_) => spec("me_device_delete", Allow::Authenticated),
            E::ListNotifications => spec("admin_notifications", perm(P::NotificationsRead)),
            E::CreateHookEndpoint => idem(spec("admin_webhook_endpoint_create", ADMIN)),
            E::ListHookEndpoints => spec("admin_webhook_endpoints", ADMIN),
            E::DeleteHookEndpoint(_) => spec("admin_webhook_endpoint_delete", ADMIN),
            E::HookDeliveries(_) => spec("admin_webhook_deliveries", ADMIN),
            E::ResendHook(..) => idem(spec("admin_webhook_resend", ADMIN)),
            // Static files carry no data: the console signs in with a staff token in the page.
            E::Console(_) => Spec { ip_limited: false, ..spec("console", Allow::Anyone) },
            // An applicant is a driver user (its role is `driver` from its first sign-in).
            E::PutApplication => spec("driver_application", DRIVER),
            // The body limit of uploads is `application::MAX_DOCUMENT_BYTES` (the pipeline).
            E::UploadDocument(_) => spec("driver_application_document", DRIVER),
            E::SubmitApplication => idem(spec("driver_application_submit", DRIVER)),
            E::ListApplications => spec("admin_applications", perm(P::UsersRead)),
            E::GetApplication(_) => spec("admin_application", perm(P::UsersRead)),
            E::ApplicationDocument(..) => spec("admin_application_document", perm(P::UsersRead)),
            E::DecideApplication(_, true) => idem(spec("admin_application_approve", perm(P::ApplicationsReview))),
            E::DecideApplication(_, false) => idem(spec("admin_application_reject", perm(P::ApplicationsReview))),
            E::ListCoupons => spec("admin_coupons", perm(P::CouponsWrite)),
            E::GetCoupon(_) => spec("admin_coupon", perm(P::CouponsWrite)),
            E::DisableCoupon(_) => idem(spec("admin_coupon_disable", perm(P::CouponsWrite))),
            E::AdminComplete(_) => idem(spec("admin_trip_complete", perm(P::TripsCancel))),
            E::DriverEarnings => spec("driver_earnings", DRIVER),
            E::RequestPayout => idem(spec("driver_payout_request", DRIVER)),
            E::DriverPayouts => spec("driver_payouts", DRIVER),
            E::AdminPayouts => spec("admin_payouts", perm(P::UsersRead)),
            E::ReviewPayout(_, true) => idem(spec("admin_payout_approve", perm(P::PayoutsApprove))),
            E::ReviewPayout(_, false) => idem(spec("admin_payout_reject", perm(P::PayoutsApprove))),
            E::DriverCashReceived(_) => idem(spec("admin_driver_cash_received", perm(P::PayoutsApprove))),
            E::TopUp => idem(spec("wallet_top_up", RIDER_OR_DRIVER)),
            // ----- issue 20: H -----
            E::ReportRevenue => spec("admin_report_revenue", perm(P::ReportsRead)),
            E::ReportTrips => spec("admin_report_trips", perm(P::ReportsRead)),
            // ----- issue 20: A -----
            E::AdminAudit => spec("admin_audit", perm(P::AuditRead)),
            E::GetSettings => spec("admin_settings", ADMIN),
            E::PatchSettings => idem(spec("admin_settings_update", perm(P::SettingsWrite))),
            // ----- issue 20: S -----
            // Open to anyone and counted against `ip_per_min`, like an OTP verify; a
            // password or code is never guessed faster than the account's lock allows.
            E::StaffSetup => spec("staff_setup", Allow::Anyone),
            E::StaffLogin => spec("staff_login", Allow::Anyone),
            E::Logout => spec("logout", Allow::Authenticated),
            E::IssueStaffSetup(_) => idem(spec("admin_staff_setup", ADMIN)),
            // ----- issue 20: U -----
            E::ListUsers => spec("admin_users", perm(P::UsersRead)),
            E::GetUser(_) => spec("admin_user", perm(P::UsersRead)),
            E::PatchUser(_) => spec("admin_user_update", perm(P::UsersWrite)),
            E::BlockUser(_, true) => idem(spec("admin_user_block", perm(P::UsersBlock))),
            E::BlockUser(_, false) => idem(spec("admin_user_unblock", perm(P::UsersBlock))),
            E::EraseUser(_) => idem(spec("admin_user_erase", ADMIN)),
            // ----- issue 21 -----
            E::Cluster => spec("cluster", ADMIN),
            // Open to the cluster's nodes only: the handler takes a signed forward, nothing else.
            E::ClusterCommands => spec("cluster_commands", Allow::Anyone),
            E::ClusterCheckpoint => spec("cluster_checkpoint", Allow::Anyone),
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
        assert_eq!(r(Method::POST, "/v1/trips/t").unwrap_err().code, "method_not_allowed");
        assert_eq!(r(Method::GET, "/v1/trips//bids").unwrap_err().code, "not_found");
        // A literal segment wins over a parameter, whatever the table's order.
        assert_eq!(r(Method::GET, "/v1/admin/drivers/nearby"), Ok(Endpoint::DriversNearby));
        assert_eq!(r(Method::GET, "/v1/admin/drivers/usr_1"), Ok(Endpoint::GetDriver("usr_1".into())));
        assert_eq!(r(Method::POST, "/v1/admin/drivers/nearby").unwrap_err().code, "method_not_allowed");
        assert_eq!(r(Method::GET, "/v1/openapi.json").map(|e| e.spec().allow), Ok(Allow::Anyone));
        // Every row builds the endpoint its name says.
        for route in ROUTES {
            let params: Vec<&str> = route.template.split('/').filter(|s| s.starts_with('{')).map(|_| "x").collect();
            assert_eq!((route.build)(&params).spec().name, route.name, "{route:?}");
        }
        assert_eq!(r(Method::GET, "/healthz").map(|e| e.spec().ip_limited), Ok(false));
        assert_eq!(r(Method::POST, "/v1/webhooks/sim").map(|e| e.spec().ip_limited), Ok(false));
        // Every state-changing route of an authenticated caller takes an idempotency key.
        for (m, p) in
            [(Method::POST, "/v1/trips"), (Method::POST, "/v1/trips/t/accept"), (Method::POST, "/v1/admin/users")]
        {
            assert!(r(m, p).unwrap().spec().idempotent, "{p}");
        }
    }

    /// The router as it was before the compiled table: every template split at every
    /// request. The table must answer exactly as it did.
    fn reference(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let mut path_known = false;
        let mut best: Option<(usize, &Route, Vec<&str>)> = None;
        for r in ROUTES {
            let mut params = Vec::new();
            let mut tpl = r.template.split('/').skip(1);
            let matched = segs.iter().all(|seg| match tpl.next() {
                Some(t) if t.starts_with('{') && !seg.is_empty() => {
                    params.push(*seg);
                    true
                }
                Some(t) => t == *seg,
                None => false,
            }) && tpl.next().is_none();
            if !matched {
                continue;
            }
            path_known = true;
            if r.method == method.as_str() && best.as_ref().is_none_or(|(n, _, _)| params.len() < *n) {
                best = Some((params.len(), r, params));
            }
        }
        match best {
            Some((_, r, params)) => Ok((r.build)(&params)),
            None if path_known => Err(ApiError::new("method_not_allowed", format!("{method} is not allowed here"))),
            None => Err(ApiError::new("not_found", "no such endpoint")),
        }
    }

    #[test]
    fn the_compiled_table_answers_as_every_template_split_at_every_request() {
        let longest = ROUTES.iter().map(|r| r.template.split('/').count() - 1).max().unwrap_or(0);
        assert!(longest <= MAX_SEGMENTS, "a template of {longest} segments would never match");
        // Every literal of the table, so that a parameter is also tried with a word some
        // other template has in its place.
        let mut words: Vec<&str> = ROUTES
            .iter()
            .flat_map(|r| r.template.split('/').filter(|s| !s.is_empty() && !s.starts_with('{')))
            .collect();
        words.sort_unstable();
        words.dedup();
        let mut paths = vec![String::new(), "/".to_owned(), "//".to_owned(), "/v1/a/b/c/d/e/f/g/h/i".to_owned()];
        for route in ROUTES {
            let fill = |value: &str| -> String {
                route
                    .template
                    .split('/')
                    .map(|s| if s.starts_with('{') { value } else { s })
                    .collect::<Vec<_>>()
                    .join("/")
            };
            let path = fill("x1");
            paths.push(format!("{path}/"));
            paths.push(format!("{path}/more"));
            paths.push(path.rsplit_once('/').map(|(head, _)| head.to_owned()).unwrap_or_default());
            paths.push(fill(""));
            paths.extend(words.iter().map(|w| fill(w)));
            paths.push(path);
        }
        let methods = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];
        for path in &paths {
            for m in &methods {
                let (got, want) = (Endpoint::route(m, path), reference(m, path));
                assert_eq!(got.as_ref().ok(), want.as_ref().ok(), "{m} {path}");
                assert_eq!(got.err().map(|e| e.code), want.err().map(|e| e.code), "{m} {path}");
            }
        }
    }
}
