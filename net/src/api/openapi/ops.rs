//! The table of operations the OpenAPI document describes ([`OPS`]): for each, its method
//! and path, its `operationId` (the route's spec name), who may call it, its query, its
//! body, its answers and the error codes particular to it (the ones every operation of
//! its kind may answer are added by `responses` in `mod.rs`).

use serde_json::Value;

use super::applications::*;
use super::audit::*;
use super::cluster::*;
use super::hooks::*;
use super::notify::*;
use super::payouts::*;
use super::profile::*;
use super::reports::*;
use super::requests::*;
use super::schemas::*;
use super::staff::*;
use super::users::*;

/// Who may call an operation, as the document states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Who {
    Anyone,
    Authenticated,
    Roles(&'static [&'static str]),
    /// Staff whose role grants this permission (`users.read`).
    Permission(&'static str),
}

pub(super) const RIDER: Who = Who::Roles(&["rider"]);
pub(super) const DRIVER: Who = Who::Roles(&["driver"]);
pub(super) const RIDER_OR_DRIVER: Who = Who::Roles(&["rider", "driver"]);
pub(super) const ADMIN: Who = Who::Roles(&["admin"]);
pub(super) const TRIP_VIEWERS: Who = Who::Roles(&["rider", "driver", "support", "admin"]);

/// A request body.
#[derive(Clone, Copy)]
pub(super) enum Body {
    /// None read.
    None,
    /// Strict JSON against a schema; `empty_ok`: an empty body stands for `{}`.
    Json { schema: fn() -> Value, example: fn() -> Value, empty_ok: bool },
    /// Verified and parsed by the handler (a gateway's webhook: its own format).
    Raw { content_type: &'static str, description: &'static str },
}

/// A success answer: status, description, schema of its JSON body (`None`: no JSON body).
pub(super) type Success = (u16, &'static str, Option<fn() -> Value>);

/// One operation of the document.
pub(super) struct Op {
    pub(super) method: &'static str,
    pub(super) path: &'static str,
    pub(super) name: &'static str,
    pub(super) tag: &'static str,
    pub(super) summary: &'static str,
    pub(super) who: Who,
    /// Query parameters.
    pub(super) query: fn() -> Vec<Value>,
    pub(super) body: Body,
    /// Success: status, description, schema (`None`: no content).
    pub(super) ok: &'static [Success],
    /// Error codes this operation may answer beyond the ones every operation of its kind
    /// may (added by `responses` in `mod.rs`).
    pub(super) errors: &'static [&'static str],
    /// Whether it reaches the engine (`503 overloaded`/`read_only`/`unavailable`).
    pub(super) engine: bool,
}

pub(super) const EMPTY: Body = Body::Json { schema: empty_object, example: empty_example, empty_ok: true };

// --- The operations -------------------------------------------------------------------

/// Codes of the engine's refusals on a trip step.
const TRIP_STEP: &[&str] = &[
    "forbidden",
    "not_found",
    "invalid_transition",
    "trip_already_assigned",
    "driver_not_available",
    "not_offered",
    "offer_expired",
];

macro_rules! op {
    ($method:literal $path:literal $name:literal, $tag:literal, $summary:literal, $who:expr, $query:expr, $body:expr,
     [$(($status:literal, $desc:literal, $schema:expr)),* $(,)?], $errors:expr, $engine:expr) => {
        Op {
            method: $method,
            path: $path,
            name: $name,
            tag: $tag,
            summary: $summary,
            who: $who,
            query: $query,
            body: $body,
            ok: &[$(($status, $desc, $schema)),*],
            errors: $errors,
            engine: $engine,
        }
    };
}

pub(super) const fn json_body(schema: fn() -> Value, example: fn() -> Value) -> Body {
    Body::Json { schema, example, empty_ok: false }
}

pub(super) const fn optional_body(schema: fn() -> Value, example: fn() -> Value) -> Body {
    Body::Json { schema, example, empty_ok: true }
}

/// Every documented operation, in the route table's order.
pub(super) const OPS: &[Op] = &[
    op!("GET" "/healthz" "healthz", "ops", "Liveness: the process answers.", Who::Anyone, no_query, Body::None,
        [(200, "Alive.", Some(health_out))], &[], false),
    op!("GET" "/readyz" "readyz", "ops", "Readiness: the engine is writable, its queue below 90 %, not shutting down; with `?role=leader`, also that this node leads its cluster (a follower answers 503, `checks.role`: `follower`; a node without a cluster always leads).", Who::Anyone, readyz_query, Body::None,
        [(200, "Ready.", Some(ready_out))], &[], false),
    op!("GET" "/metrics" "metrics", "ops", "Prometheus metrics. Also readable with the metrics-only token (`DISPATCH_METRICS_TOKEN`), which opens nothing else.", ADMIN, no_query, Body::None,
        [(200, "The metrics, Prometheus text format.", None)], &[], false),
    op!("GET" "/v1/openapi.json" "openapi", "meta", "This document.", Who::Anyone, no_query, Body::None,
        [(200, "The OpenAPI 3.1 document of the API.", Some(openapi_out))], &[], false),
    op!("POST" "/v1/auth/otp" "otp_issue", "auth", "Send a sign-in code by SMS.", Who::Anyone, no_query, json_body(otp_issue_in, otp_issue_ex),
        [(202, "The code is on its way.", Some(otp_issue_out))], &["invalid_otp"], true),
    op!("POST" "/v1/auth/otp/verify" "otp_verify", "auth", "Exchange a sign-in code for a token.", Who::Anyone, no_query, json_body(otp_verify_in, otp_verify_ex),
        [(200, "Signed in: the token and the user (created on first sign-in).", Some(token_user_out))], &["invalid_otp"], true),
    op!("POST" "/v1/admin/users" "admin_create_user", "admin", "Create a user and a token for it (a staff user's lasts 12 h). `role` may name a custom staff role (`[roles.<name>]`; unknown: `400`, param `role`). A staff user with an `email` (unique among staff, any case) also gets a one-time `setup_token` (24 h) for `POST /v1/auth/staff/setup`.", ADMIN, no_query, json_body(create_user_in, create_user_ex),
        [(201, "Created.", Some(create_user_out))], &[], true),
    op!("POST" "/v1/admin/users/{id}/revoke-tokens" "admin_revoke_tokens", "admin", "Revoke every token issued to a user so far.", ADMIN, no_query, EMPTY,
        [(204, "Revoked.", None)], &[], true),
    op!("POST" "/v1/admin/zones" "admin_create_zone", "zones", "Create a zone (1 MiB body limit).", Who::Permission("zones.write"), no_query, json_body(zone_in, zone_ex),
        [(201, "Created.", Some(zone_ref))], &[], true),
    op!("PUT" "/v1/admin/zones/{id}" "admin_replace_zone", "zones", "Replace a zone's spec whole.", Who::Permission("zones.write"), no_query, json_body(zone_in, zone_ex),
        [(200, "Replaced.", Some(zone_ref))], &[], true),
    op!("GET" "/v1/zones" "zones", "zones", "Every zone.", Who::Authenticated, no_query, Body::None,
        [(200, "The zones.", Some(zones_page))], &[], true),
    op!("GET" "/v1/zones/lookup" "zone_lookup", "zones", "The active zone a point is in.", Who::Authenticated, lat_lng_query, Body::None,
        [(200, "The zone.", Some(zone_ref))], &["invalid_coordinates", "outside_service_area"], true),
    op!("POST" "/v1/admin/coupons" "admin_create_coupon", "money", "Create a coupon.", Who::Permission("coupons.write"), no_query, json_body(coupon_in, coupon_ex),
        [(201, "Created.", Some(coupon_out))], &["coupon_invalid"], true),
    op!("POST" "/v1/fares/estimate" "fare_estimate", "trips", "Quote a ride, priced as a booking now would be.", RIDER, no_query, json_body(estimate_in, estimate_ex),
        [(200, "One quote per category (or the one asked for).", Some(estimate_out))],
        &["invalid_coordinates", "outside_service_area", "no_pricing", "coupon_invalid", "parcel_too_heavy"], true),
    op!("POST" "/v1/driver/status" "driver_status", "drivers", "Go online or offline.", DRIVER, no_query, json_body(driver_status_in, driver_status_ex),
        [(200, "The driver's record.", Some(driver_ref))], &["invalid_coordinates", "invalid_transition", "forbidden", "not_found", "not_approved", "document_expired", "cash_debt_limit"], true),
    op!("POST" "/v1/driver/location" "driver_location", "drivers", "Report a position (answered before it is durable).", DRIVER, no_query, json_body(location_in, location_ex),
        [(204, "Taken.", None)], &["invalid_coordinates", "invalid_transition", "not_found", "not_approved"], true),
    op!("GET" "/v1/driver/offers" "driver_offers", "drivers", "The caller's pending offers.", DRIVER, no_query, Body::None,
        [(200, "The offers.", Some(offers_items))], &[], false),
    op!("GET" "/v1/admin/drivers/nearby" "admin_drivers_nearby", "drivers", "Drivers at work near a point, nearest first.", Who::Permission("users.read"), nearby_query, Body::None,
        [(200, "The drivers, with `distance_m`.", Some(drivers_items))], &["invalid_coordinates"], true),
    op!("GET" "/v1/admin/drivers" "admin_drivers", "drivers", "Drivers, newest first.", Who::Permission("users.read"), drivers_query, Body::None,
        [(200, "A page of drivers.", Some(drivers_page))], &[], false),
    op!("GET" "/v1/admin/drivers/{id}" "admin_driver", "drivers", "One driver.", Who::Permission("users.read"), no_query, Body::None,
        [(200, "The driver.", Some(driver_ref))], &[], false),
    op!("POST" "/v1/admin/drivers/{id}/suspend" "admin_suspend", "drivers", "Suspend a driver.", Who::Permission("drivers.suspend"), no_query, optional_body(reason_in, reason_ex),
        [(200, "The driver.", Some(driver_ref))], &["invalid_transition"], true),
    op!("POST" "/v1/admin/drivers/{id}/unsuspend" "admin_unsuspend", "drivers", "Lift a driver's suspension.", Who::Permission("drivers.suspend"), no_query, optional_body(reason_in, reason_ex),
        [(200, "The driver.", Some(driver_ref))], &["invalid_transition"], true),
    op!("POST" "/v1/trips" "trip_create", "trips", "Book a trip (priced and locked now), or a ride ahead with scheduled_at (status scheduled, dispatched schedule_lead_s before).", RIDER, no_query, json_body(create_trip_in, create_trip_ex),
        [(201, "Booked: the trip, with its pickup code.", Some(trip_ref))],
        &["invalid_coordinates", "outside_service_area", "no_pricing", "coupon_invalid", "insufficient_funds", "too_many_open_trips", "forbidden", "parcel_too_heavy", "blocked"], true),
    op!("GET" "/v1/trips" "trips", "trips", "The caller's own trips, newest first.", RIDER_OR_DRIVER, trips_query, Body::None,
        [(200, "A page of trips.", Some(trips_page))], &["not_found"], true),
    op!("GET" "/v1/trips/{id}" "trip", "trips", "A trip (its rider, its driver, staff; anyone else 404).", TRIP_VIEWERS, no_query, Body::None,
        [(200, "The trip; staff also see `rider_name`, `driver_name`.", Some(trip_ref))], &[], true),
    op!("POST" "/v1/trips/{id}/accept" "trip_accept", "trips", "A driver takes an offered trip (first accept wins).", DRIVER, no_query, EMPTY,
        [(200, "Accepted.", Some(trip_ref))], TRIP_STEP, true),
    op!("POST" "/v1/trips/{id}/decline" "trip_decline", "trips", "A driver declines an offer.", DRIVER, no_query, EMPTY,
        [(204, "Declined.", None)], TRIP_STEP, true),
    op!("POST" "/v1/trips/{id}/arrived" "trip_arrived", "trips", "The driver is at the pickup.", DRIVER, no_query, EMPTY,
        [(200, "The trip.", Some(trip_ref))], TRIP_STEP, true),
    op!("POST" "/v1/trips/{id}/start" "trip_start", "trips", "Start the ride with the rider's pickup code.", DRIVER, no_query, json_body(start_in, start_ex),
        [(200, "Started.", Some(trip_ref))], TRIP_STEP, true),
    op!("POST" "/v1/trips/{id}/complete" "trip_complete", "trips", "End the ride; a parcel with its `delivery_code` (missing: 400; wrong: 403; the 5th wrong code locks it for staff).", DRIVER, no_query, optional_body(complete_in, complete_ex),
        [(200, "Completed, with the final fare.", Some(trip_ref))], &["forbidden", "not_found", "invalid_transition", "invalid_coordinates", "insufficient_funds"], true),
    op!("POST" "/v1/trips/{id}/cancel" "trip_cancel", "trips", "Cancel (rider or driver; fees per API.md).", RIDER_OR_DRIVER, no_query, optional_body(cancel_in, cancel_ex),
        [(200, "Cancelled.", Some(trip_ref))], &["forbidden", "not_found", "invalid_transition"], true),
    op!("POST" "/v1/trips/{id}/bids" "trip_bid", "trips", "An offered driver's price.", DRIVER, no_query, json_body(bid_in, bid_ex),
        [(201, "The bid.", Some(bid_ref))], TRIP_STEP, true),
    op!("GET" "/v1/trips/{id}/bids" "trip_bids", "trips", "The bids on a trip (its rider only).", RIDER, no_query, Body::None,
        [(200, "The bids.", Some(bids_items))], &[], true),
    op!("POST" "/v1/trips/{id}/bids/{bid_id}/accept" "trip_bid_accept", "trips", "The rider takes a bid.", RIDER, no_query, EMPTY,
        [(200, "The trip, assigned.", Some(trip_ref))], TRIP_STEP, true),
    op!("POST" "/v1/trips/{id}/rating" "trip_rating", "trips", "Rate a finished trip, 1 to 5 stars.", RIDER_OR_DRIVER, no_query, json_body(rating_in, rating_ex),
        [(201, "Rated.", Some(rating_out))], &["forbidden", "not_found", "invalid_transition"], true),
    op!("POST" "/v1/trips/{id}/sos" "trip_sos", "trips", "Raise a safety alert (every staff socket hears it).", RIDER_OR_DRIVER, no_query, optional_body(sos_in, sos_ex),
        [(201, "The alert.", Some(alert_ref))], &["forbidden", "not_found", "invalid_transition", "invalid_coordinates"], true),
    op!("POST" "/v1/trips/{id}/messages" "trip_message", "trips", "Post a chat message: the trip's rider or current driver from accept until 30 min after the trip ends, staff at any time (anyone else 404). Text: 1-1000 characters after trimming, no control characters. Counts against `[limits] chat_per_min` (HTTP and WebSocket together). The message reaches the parties' sockets as `chat_message`.", TRIP_VIEWERS, no_query, json_body(message_in, message_ex),
        [(201, "The message.", Some(message_ref))], &["forbidden", "not_found", "invalid_transition"], true),
    op!("GET" "/v1/trips/{id}/messages" "trip_messages", "trips", "A trip's chat, newest first, to who may see the trip, for as long as messages are kept (`[retention] chat_days`).", TRIP_VIEWERS, page_query, Body::None,
        [(200, "A page of messages.", Some(messages_page))], &[], true),
    op!("POST" "/v1/trips/{id}/payment-method" "trip_payment_method", "money", "Switch a failed card payment to cash.", RIDER, no_query, json_body(payment_method_in, payment_method_ex),
        [(200, "The trip.", Some(trip_ref))], &["forbidden", "not_found", "invalid_transition"], true),
    op!("POST" "/v1/trips/{id}/cash-received" "trip_cash_received", "money", "The driver confirms the cash a rider said it paid.", DRIVER, no_query, EMPTY,
        [(200, "The trip.", Some(trip_ref))], &["forbidden", "not_found", "invalid_transition"], true),
    op!("GET" "/v1/admin/trips" "admin_trips", "admin", "Every trip, newest first; `?ref=` finds one by its reference. Every filter is answered from an index: a page costs the same whatever the history holds.", Who::Permission("trips.read"), staff_trips_query, Body::None,
        [(200, "A page of trips.", Some(trips_page))], &["not_found"], true),
    op!("POST" "/v1/admin/trips/{id}/cancel" "admin_trip_cancel", "admin", "Staff cancel a trip.", Who::Permission("trips.cancel"), no_query, optional_body(cancel_in, cancel_ex),
        [(200, "Cancelled.", Some(trip_ref))], &["invalid_transition"], true),
    op!("POST" "/v1/admin/trips/{id}/unlock" "admin_trip_unlock", "admin", "Unlock a pickup code (or a parcel's delivery code) locked by wrong codes.", Who::Permission("trips.cancel"), no_query, EMPTY,
        [(200, "The trip.", Some(trip_ref))], &["invalid_transition"], true),
    op!("GET" "/v1/admin/alerts" "admin_alerts", "admin", "Safety alerts, oldest first.", Who::Permission("trips.read"), alerts_query, Body::None,
        [(200, "A page of alerts.", Some(alerts_page))], &[], true),
    op!("POST" "/v1/admin/alerts/{id}/ack" "admin_alert_ack", "admin", "Acknowledge an alert.", Who::Permission("trips.cancel"), no_query, EMPTY,
        [(200, "The alert.", Some(alert_ref))], &["invalid_transition"], true),
    op!("GET" "/v1/admin/stats" "admin_stats", "admin", "The live figures of the console.", Who::Permission("trips.read"), no_query, Body::None,
        [(200, "The figures.", Some(stats_out))], &[], false),
    op!("GET" "/v1/admin/trips/{id}/events" "admin_trip_events", "admin", "A trip's timeline, oldest first.", Who::Permission("trips.read"), no_query, Body::None,
        [(200, "The timeline.", Some(events_out))], &[], true),
    op!("GET" "/v1/admin/trips/{id}/trail" "admin_trip_trail", "admin", "Where the trip's driver went, oldest first (sampled beyond 5000 points).", Who::Permission("trips.read"), no_query, Body::None,
        [(200, "The trail.", Some(trail_out))], &[], true),
    op!("GET" "/v1/wallet" "wallet", "money", "The caller's balance and a page of its statement.", RIDER_OR_DRIVER, wallet_query, Body::None,
        [(200, "The wallet.", Some(wallet_out))], &[], true),
    op!("POST" "/v1/admin/wallets/{user_id}/credit" "admin_wallet_credit", "money", "Credit a user's wallet from promotions.", ADMIN, no_query, json_body(credit_in, credit_ex),
        [(201, "The transfer.", Some(transfer_ref))], &["insufficient_funds"], true),
    op!("POST" "/v1/admin/trips/{id}/refund" "admin_trip_refund", "money", "Refund part or all of a captured payment.", Who::Permission("refunds.create"), no_query, json_body(refund_in, refund_ex),
        [(201, "The refund's transfer.", Some(transfer_ref))], &["invalid_transition", "refund_exceeds_captured", "insufficient_funds"], true),
    op!("GET" "/v1/admin/ledger/verify" "admin_ledger_verify", "money", "Whether every currency of the ledger sums to zero.", ADMIN, no_query, Body::None,
        [(200, "The check.", Some(ledger_out))], &[], false),
    op!("POST" "/v1/webhooks/{gateway}" "webhook", "money", "A payment gateway's signed event.", Who::Anyone, no_query,
        Body::Raw { content_type: "application/json", description: "The gateway's event, signed (its own format and signature header)." },
        [(200, "Acknowledged (`applied` says whether it changed anything, `reason` why not).", Some(webhook_out))], &["invalid_signature"], true),
    op!("POST" "/v1/admin/reconcile" "admin_reconcile", "money", "Reconcile a gateway's settlement report (CSV) against the ledger.", ADMIN, reconcile_query,
        Body::Raw { content_type: "text/csv", description: "The settlement report (1 MiB limit)." },
        [(200, "The report.", Some(reconcile_out))], &["not_found"], true),
    op!("GET" "/v1/admin/payments/dead-letters" "admin_dead_letters", "money", "Payments the worker gave up on, newest first.", Who::Permission("trips.read"), no_query, Body::None,
        [(200, "The dead letters.", Some(dead_letters_out))], &[], false),
    op!("GET" "/v1/me" "me", "users", "The caller's profile (`vehicle` and `dispatchable` for drivers). The bootstrap admin token has no user record: `404`.", Who::Authenticated, no_query, Body::None,
        [(200, "The profile.", Some(me_out))], &["not_found"], false),
    op!("PATCH" "/v1/me" "me_update", "users", "Change the caller's name, email, language or default payment method (absent fields stay; null removes email or the method).", Who::Authenticated, no_query, json_body(me_update_in, me_update_ex),
        [(200, "The profile after the change.", Some(me_out))], &["not_found", "forbidden"], true),
    op!("POST" "/v1/trips/{id}/share" "trip_share", "trips", "Its rider makes a read-only link to the trip, while it is open (at most 5 at once). The link works until 15 minutes after the trip ends.", RIDER, no_query, EMPTY,
        [(201, "The link: its token is shown once.", Some(share_out))], &["not_found", "invalid_transition"], true),
    op!("DELETE" "/v1/trips/{id}/share" "trip_unshare", "trips", "Its rider revokes every link of the trip.", RIDER, no_query, Body::None,
        [(204, "Revoked.", None)], &["not_found"], true),
    op!("GET" "/v1/share/{token}" "share", "trips", "A shared trip, for anyone with the link: its status, the driver's first name and vehicle, the driver's position while coming or driving. No phone, rider, pickup code or ids. Unknown, revoked or expired: `404`.", Who::Anyone, no_query, Body::None,
        [(200, "The shared trip.", Some(shared_trip_out))], &["not_found"], true),
    op!("POST" "/v1/me/devices" "me_device_register", "users", "Register a push device (at most 5 per user: a sixth drops the oldest). The same token again answers the same device with `200`.", Who::Authenticated, no_query, json_body(device_in, device_in_ex),
        [(201, "Registered.", Some(device_out)), (200, "Already registered: the same device.", Some(device_out))], &["not_found"], true),
    op!("GET" "/v1/me/devices" "me_devices", "users", "The caller's push devices, oldest first (never their tokens).", Who::Authenticated, no_query, Body::None,
        [(200, "The devices.", Some(devices_out))], &["not_found"], false),
    op!("DELETE" "/v1/me/devices/{id}" "me_device_delete", "users", "Its owner removes a push device (anyone else's: `404`).", Who::Authenticated, no_query, Body::None,
        [(204, "Removed.", None)], &["not_found"], true),
    op!("GET" "/v1/admin/notifications" "admin_notifications", "admin", "The notification outbox, newest first.", Who::Permission("notifications.read"), notifications_query, Body::None,
        [(200, "A page of notifications.", Some(notifications_page))], &[], false),
    op!("POST" "/v1/admin/webhook-endpoints" "admin_webhook_endpoint_create", "admin", "Register an outbound webhook endpoint. Deliveries are `POST <url>` with `{\"id\",\"type\",\"created_at\",\"data\"}` and `Dispatch-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>`; a 2xx is delivered, a timeout, 408, 429 or 5xx retried (backoff from 1 s to 10 min) for 3 days; the events of one trip reach an endpoint in order. The secret is in this answer only.", ADMIN, no_query, json_body(hook_endpoint_in, hook_endpoint_in_ex),
        [(201, "Registered; the secret is shown this once.", Some(hook_endpoint_created))], &[], true),
    op!("GET" "/v1/admin/webhook-endpoints" "admin_webhook_endpoints", "admin", "The webhook endpoints, oldest first (never their secrets).", ADMIN, no_query, Body::None,
        [(200, "The endpoints.", Some(hook_endpoints_out))], &[], false),
    op!("DELETE" "/v1/admin/webhook-endpoints/{id}" "admin_webhook_endpoint_delete", "admin", "Remove an endpoint, with its pending deliveries and its log.", ADMIN, no_query, Body::None,
        [(204, "Removed.", None)], &["not_found"], true),
    op!("GET" "/v1/admin/webhook-endpoints/{id}/deliveries" "admin_webhook_deliveries", "admin", "An endpoint's delivery log, newest event first (finished deliveries are kept 7 days).", ADMIN, hook_deliveries_query, Body::None,
        [(200, "A page of deliveries.", Some(hook_deliveries_page))], &["not_found"], false),
    op!("POST" "/v1/admin/webhook-endpoints/{id}/deliveries/{event_id}/resend" "admin_webhook_resend", "admin", "Send a finished delivery again: pending at once, a new 3-day window; `409` while it is pending.", ADMIN, no_query, Body::None,
        [(200, "Pending again.", Some(hook_delivery))], &["not_found", "invalid_transition"], true),
    // Driver applications.
    op!("PUT" "/v1/driver/application" "driver_application", "drivers", "An applicant gives or replaces its application's details (while it is draft or rejected; submitted or approved: `409 invalid_transition`).", DRIVER, no_query, json_body(application_in, application_ex),
        [(200, "The application.", Some(application_out))], &["invalid_transition", "forbidden"], true),
    op!("PUT" "/v1/driver/application/documents/{kind}" "driver_application_document", "drivers", "Upload a document (kind `license_front`, `license_back`, `id_card`, `vehicle_registration` or `photo`): the raw file, at most 5 MiB. Its type is read from its bytes (JPEG, PNG or PDF), never from `Content-Type`; anything else is `422 unsupported_media_type` and nothing is stored. A new upload of a kind replaces the old one.", DRIVER, no_query,
        Body::Raw { content_type: "application/octet-stream", description: "The file's bytes (5 MiB limit)." },
        [(201, "Stored.", Some(document_upload_out))], &["unsupported_media_type", "invalid_transition", "forbidden"], true),
    op!("POST" "/v1/driver/application/submit" "driver_application_submit", "drivers", "Submit the application for review: every detail and all five documents are needed (`400 invalid_request` lists each missing one in `details`).", DRIVER, no_query, EMPTY,
        [(200, "Submitted (`status`: `submitted`).", Some(application_out))], &["invalid_transition", "forbidden"], true),
    op!("GET" "/v1/admin/applications" "admin_applications", "admin", "Drivers' applications, most recently changed first.", Who::Permission("users.read"), applications_query, Body::None,
        [(200, "A page of applications.", Some(applications_page))], &[], false),
    op!("GET" "/v1/admin/applications/{id}" "admin_application", "admin", "One application (its id is its applicant's user id).", Who::Permission("users.read"), no_query, Body::None,
        [(200, "The application.", Some(application_out))], &[], false),
    op!("GET" "/v1/admin/applications/{id}/documents/{kind}" "admin_application_document", "admin", "A document's file, as an attachment (`Content-Disposition: attachment`, `X-Content-Type-Options: nosniff`), in its sniffed media type. A file missing or damaged on the server: `500 internal`.", Who::Permission("users.read"), no_query, Body::None,
        [(200, "The file.", None)], &["internal"], false),
    op!("POST" "/v1/admin/applications/{id}/approve" "admin_application_approve", "admin", "Approve a submitted application: its applicant becomes a driver with the application's name and vehicle.", Who::Permission("applications.review"), no_query, optional_body(reason_in, reason_ex),
        [(200, "The application, approved.", Some(application_out))], &["invalid_transition"], true),
    op!("POST" "/v1/admin/applications/{id}/reject" "admin_application_reject", "admin", "Reject a submitted application (the applicant may edit it and submit again).", Who::Permission("applications.review"), no_query, optional_body(reason_in, reason_ex),
        [(200, "The application, rejected.", Some(application_out))], &["invalid_transition"], true),
    // ----- issue 19: parcels and coupon admin -----
    op!("GET" "/v1/admin/coupons" "admin_coupons", "money", "Every coupon in code order, with its uses; `next_cursor` (the last code of a full page) goes in `cursor`.", Who::Permission("coupons.write"), page_query, Body::None,
        [(200, "A page of coupons.", Some(coupons_page))], &[], false),
    op!("GET" "/v1/admin/coupons/{code}" "admin_coupon", "money", "One coupon, with `uses`: trips booked with it, less those cancelled without a fee.", Who::Permission("coupons.write"), no_query, Body::None,
        [(200, "The coupon.", Some(coupon_out))], &["not_found"], false),
    op!("POST" "/v1/admin/coupons/{code}/disable" "admin_coupon_disable", "money", "Disable a coupon: later estimates and bookings with it are 422 coupon_invalid; trips booked before keep it. Disabling again answers the coupon as it is.", Who::Permission("coupons.write"), no_query, EMPTY,
        [(200, "The coupon, with `disabled_at`.", Some(coupon_out))], &["not_found"], true),
    op!("POST" "/v1/admin/trips/{id}/complete" "admin_trip_complete", "admin", "Staff complete an in-progress parcel without its delivery code (after checking the delivery; e.g. once wrong codes locked it).", Who::Permission("trips.cancel"), no_query, optional_body(admin_complete_in, admin_complete_ex),
        [(200, "Completed, with the final fare.", Some(trip_ref))], &["forbidden", "not_found", "invalid_transition", "insufficient_funds"], true),
    op!("GET" "/v1/driver/earnings" "driver_earnings", "money", "The caller's earnings per day or week (from the ledger), its balance, cash debt and what it may withdraw.", DRIVER, earnings_query, Body::None,
        [(200, "The earnings.", Some(earnings_out))], &[], false),
    op!("POST" "/v1/driver/payouts" "driver_payout_request", "money", "Ask for a payout: the amount is held at once, `requested` until staff review it. Above `withdrawable_minor`: `422 insufficient_funds`; below `[payouts] min_minor`: `400`.", DRIVER, no_query, json_body(payout_in, payout_ex),
        [(201, "The payout.", Some(payout_out))], &["insufficient_funds"], true),
    op!("GET" "/v1/driver/payouts" "driver_payouts", "money", "The caller's payouts, newest first.", DRIVER, page_query, Body::None,
        [(200, "A page of payouts.", Some(payouts_page))], &[], false),
    op!("GET" "/v1/admin/payouts" "admin_payouts", "money", "Every payout, newest first.", Who::Permission("users.read"), admin_payouts_query, Body::None,
        [(200, "A page of payouts.", Some(payouts_page))], &[], false),
    op!("POST" "/v1/admin/payouts/{id}/approve" "admin_payout_approve", "money", "Approve a requested payout: `processing`, sent through the payment gateway; `paid` on its `payout.paid`, `failed` (the hold returned) on `payout.failed`.", Who::Permission("payouts.approve"), no_query, optional_body(payout_review_in, payout_review_ex),
        [(200, "The payout.", Some(payout_out))], &["invalid_transition"], true),
    op!("POST" "/v1/admin/payouts/{id}/reject" "admin_payout_reject", "money", "Reject a requested payout: `rejected`, the hold returned.", Who::Permission("payouts.approve"), no_query, optional_body(payout_review_in, payout_review_ex),
        [(200, "The payout.", Some(payout_out))], &["invalid_transition"], true),
    op!("POST" "/v1/admin/drivers/{id}/cash-received" "admin_driver_cash_received", "money", "A driver paid cash debt in at an office (at most what it owes).", Who::Permission("payouts.approve"), no_query, json_body(cash_received_in, cash_received_ex),
        [(201, "The transfer.", Some(transfer_ref))], &[], true),
    op!("POST" "/v1/wallet/top-ups" "wallet_top_up", "money", "Top up the caller's wallet through the card gateway: `pending` until the gateway's `payment.captured` names it (`data.top_up_id`).", RIDER_OR_DRIVER, no_query, json_body(top_up_in, top_up_ex),
        [(201, "The top-up.", Some(top_up_out))], &[], true),
    // ----- issue 20: H -----
    op!("GET" "/v1/admin/reports/revenue" "admin_report_revenue", "admin", "Revenue per period and currency, from the daily rollups kept as trips are archived (the hot trips added): a completed trip counts on the day it ended. `Accept: text/csv` answers CSV.", Who::Permission("reports.read"), report_query, Body::None,
        [(200, "The report.", Some(revenue_report_out))], &[], true),
    op!("GET" "/v1/admin/reports/trips" "admin_report_trips", "admin", "Trips requested per period and what became of them, and the time to match, from the daily rollups: a trip counts on the day it was requested. `Accept: text/csv` answers CSV.", Who::Permission("reports.read"), report_query, Body::None,
        [(200, "The report.", Some(trips_report_out))], &[], true),
    // ----- issue 20: A -----
    op!("GET" "/v1/admin/audit" "admin_audit", "admin", "The audit trail: every staff action and settings change, from the log, newest first. One filter is answered from its index; with more, the most selective (target, then actor, then action) is walked and the others checked.", Who::Permission("audit.read"), audit_query, Body::None,
        [(200, "A page of audit entries.", Some(audit_page))], &[], false),
    op!("GET" "/v1/admin/settings" "admin_settings", "admin", "The runtime settings in force: dispatch rules and each zone's bidding and surge.", ADMIN, no_query, Body::None,
        [(200, "The settings.", Some(settings_out))], &[], false),
    op!("PATCH" "/v1/admin/settings" "admin_settings_update", "admin", "Change any subset of the runtime settings, all at once through one logged command: the next dispatch round uses them, no restart; a change survives restarts (it wins over the configuration until changed again).", Who::Permission("settings.write"), no_query, json_body(settings_in, settings_ex),
        [(200, "The settings now in force.", Some(settings_out))], &[], true),
    // ----- issue 20: S -----
    op!("POST" "/v1/auth/staff/setup" "staff_setup", "auth", "A staff user sets its password (12+ characters) with its one-time setup token; the answer is its TOTP secret as an `otpauth://` URI (shown once). Setting up again (a new token from `POST /v1/admin/users/{id}/staff-setup`) replaces password and TOTP. A used, expired or forged token: `401`.", Who::Anyone, no_query, json_body(staff_setup_in, staff_setup_ex),
        [(200, "Set up.", Some(staff_setup_out))], &["unauthorized"], true),
    op!("POST" "/v1/auth/staff/login" "staff_login", "auth", "A staff user signs in with e-mail, password and TOTP code (RFC 6238: SHA-1, 6 digits, 30 s, one step of drift; a code is accepted once). Anything wrong: `401`, the same answer whichever part. 5 failures lock the account for 15 minutes: `429` with `Retry-After`, even with the right credentials.", Who::Anyone, no_query, json_body(staff_login_in, staff_login_ex),
        [(200, "Signed in: a token valid 12 hours, the user, and when the token ends.", Some(staff_login_out))], &["unauthorized"], true),
    op!("POST" "/v1/auth/logout" "logout", "auth", "Sign out: every token of the caller issued so far stops working (every session of the user ends). The bootstrap admin token cannot: `400`.", Who::Authenticated, no_query, EMPTY,
        [(204, "Signed out.", None)], &[], true),
    op!("POST" "/v1/admin/users/{id}/staff-setup" "admin_staff_setup", "admin", "A new one-time setup token (24 h) for a staff user; `email` gives or changes its sign-in address (required when it has none). Using it replaces password and TOTP; until then the old ones work.", ADMIN, no_query, optional_body(staff_setup_issue_in, staff_setup_issue_ex),
        [(200, "The setup token.", Some(staff_setup_issue_out))], &["not_found"], true),
    // ----- issue 20: U -----
    op!("GET" "/v1/admin/users" "admin_users", "users", "Users, newest first; or a search (`q`): a name prefix or a phone's last 4+ digits, answered from an index. A page of a search with `role` or `status` may come back short with a `next_cursor` (it reads at most 10,000 candidates).", Who::Permission("users.read"), users_query, Body::None,
        [(200, "A page of users.", Some(admin_users_page))], &[], false),
    op!("GET" "/v1/admin/users/{id}" "admin_user", "users", "One user, erased ones too (personal fields replaced, `status: erased`); a driver with its `stats`.", Who::Permission("users.read"), no_query, Body::None,
        [(200, "The user.", Some(admin_user_out))], &["not_found"], false),
    op!("PATCH" "/v1/admin/users/{id}" "admin_user_update", "users", "Change a user's name, email or (a driver's) vehicle, by the rules of creation.", Who::Permission("users.write"), no_query, json_body(user_patch_in, user_patch_ex),
        [(200, "The user.", Some(admin_user_out))], &["not_found", "invalid_transition"], true),
    op!("POST" "/v1/admin/users/{id}/block" "admin_user_block", "users", "Block a user: a rider cannot book (`403 blocked`), a driver is suspended (offline at once, cannot go online).", Who::Permission("users.block"), no_query, optional_body(block_in, block_ex),
        [(200, "The user.", Some(admin_user_out))], &["not_found"], true),
    op!("POST" "/v1/admin/users/{id}/unblock" "admin_user_unblock", "users", "Lift a block (not a suspension an admin made apart from it).", Who::Permission("users.block"), no_query, optional_body(block_in, block_ex),
        [(200, "The user.", Some(admin_user_out))], &["not_found"], true),
    op!("POST" "/v1/admin/users/{id}/erase" "admin_user_erase", "users", "Erase a user's personal data: name, phone, email, tokens, application data and documents, chat and positions (the files, positions and archived chat in the background, crash-safely). Ledger entries keep the id. `409 invalid_transition` while a trip is open.", ADMIN, no_query, EMPTY,
        [(200, "The user, erased.", Some(admin_user_out))], &["not_found", "invalid_transition"], true),
    // ----- issue 21 -----
    op!("GET" "/v1/cluster" "cluster", "ops", "This node's place in its cluster: its role, the leader (`null` while none holds the lease), how far it applied the shared log and how far the stream goes, and its lag (0 on the leader). `404 not_found` on a node without a cluster.", ADMIN, no_query, Body::None,
        [(200, "The node's cluster status.", Some(cluster_out))], &["not_found"], false),
];

/// OpenAPI links from an operation's success to the operations that take what it made
/// (`(link name, operationId, path parameter, where its value is in the answer)`): what a
/// client does next, and what Schemathesis's stateful phase follows (the trip's life).
pub(super) fn links(op: &str) -> &'static [(&'static str, &'static str, &'static str, &'static str)] {
    const TRIP: &str = "$response.body#/id";
    match op {
        "trip_create" => &[
            ("GetTrip", "trip", "id", TRIP),
            ("ListBids", "trip_bids", "id", TRIP),
            ("CancelTrip", "trip_cancel", "id", TRIP),
            ("RaiseSos", "trip_sos", "id", TRIP),
            ("SwitchToCash", "trip_payment_method", "id", TRIP),
            ("RateTrip", "trip_rating", "id", TRIP),
            ("PostMessage", "trip_message", "id", TRIP),
            ("ListMessages", "trip_messages", "id", TRIP),
            ("TripEvents", "admin_trip_events", "id", TRIP),
            ("CancelAsStaff", "admin_trip_cancel", "id", TRIP),
            ("ShareTrip", "trip_share", "id", TRIP),
            ("UnshareTrip", "trip_unshare", "id", TRIP),
        ],
        "trip_cancel" | "admin_trip_cancel" => {
            &[("GetTrip", "trip", "id", TRIP), ("RateTrip", "trip_rating", "id", TRIP)]
        }
        "trip_sos" => &[("AckAlert", "admin_alert_ack", "id", "$response.body#/id")],
        "admin_create_user" => &[
            ("RevokeTokens", "admin_revoke_tokens", "id", "$response.body#/user/id"),
            ("CreditWallet", "admin_wallet_credit", "user_id", "$response.body#/user/id"),
            ("GetDriver", "admin_driver", "id", "$response.body#/user/id"),
        ],
        "admin_create_zone" => &[("ReplaceZone", "admin_replace_zone", "id", "$response.body#/id")],
        _ => &[],
    }
}
