//! An engine behind an opaque handle: open, submit a command, query, close.
//!
//! Owns [`DispatchEngine`] (a boxed `dispatch_core::Engine`) and the JSON shapes of its
//! calls: commands and actors are the core's own serde types (`Command`, `Actor`);
//! answers are the core's serde renderings of trips, users and drivers.
//!
//! Guarantees:
//! - a handle is either NULL or a live engine until `dispatch_engine_close`, which shuts
//!   the engine down cleanly (queued commands are finished, the log flushed) and frees it;
//! - submit and query may be called from any number of threads on the same handle at once
//!   (the engine serialises changes on its writer thread; queries read its published
//!   view); close must be the last call on a handle, made once;
//! - an engine's refusal (`dispatch_core::Error`) is `DISPATCH_STATUS_ENGINE_ERROR` and
//!   its answer is `{"error":{"code","message"}}` with the core's `Error::code()`, the
//!   code the HTTP API would answer.
//!
//! # Shapes
//!
//! - config (`dispatch_engine_open`, optional): `{"rules": DispatchRules}`, `rules`
//!   optional (the `[dispatch]` defaults otherwise).
//! - actor: `"System"`, `"Admin"` or `{"User": "usr_…"}`.
//! - command: `dispatch_core::Command` as serde renders it, e.g. `"Tick"`,
//!   `{"AcceptTrip": {"trip_id": "trp_…"}}`.
//! - outcome: `{"outcome": "done"}`, `{"outcome": "user", "user": {…}}`,
//!   `{"outcome": "driver", "driver": {…}}` or `{"outcome": "trip", "trip": {…}}`.
//! - query: `{"trip": "trp_…"}`, `{"user": "usr_…"}`, `{"driver": "usr_…"}` (each answered
//!   with the entity, or `not_found`), `{"offers_for": "usr_…"}` (an array of the trips
//!   currently offered to that driver).

use std::ffi::c_char;

use dispatch_core::{Actor, Command, DispatchRules, Engine, EngineConfig, Error, Outcome, TripId, UserId};
use serde::Deserialize;
use serde_json::json;

use crate::boundary::{OutString, call, optional_str_arg, parse_json, str_arg};
use crate::error::{DispatchStatus, FfiError};

/// An open engine. Opaque to C: only ever handled through a pointer.
pub struct DispatchEngine {
    engine: Engine,
}

// The handle is shared across the caller's threads: the engine must allow it.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Engine>();
};

/// The options of `dispatch_engine_open`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineOptions {
    #[serde(default)]
    rules: Option<DispatchRules>,
}

/// What `dispatch_engine_query` can ask.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Query {
    Trip(TripId),
    User(UserId),
    Driver(UserId),
    OffersFor(UserId),
}

fn outcome_json(outcome: Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Done => json!({ "outcome": "done" }),
        Outcome::User(user) => json!({ "outcome": "user", "user": user }),
        Outcome::Driver(driver) => json!({ "outcome": "driver", "driver": driver }),
        Outcome::Trip(trip) => json!({ "outcome": "trip", "trip": trip }),
        Outcome::Zone(zone) => json!({ "outcome": "zone", "zone": zone }),
        Outcome::Coupon(coupon) => json!({ "outcome": "coupon", "coupon": coupon }),
        Outcome::Bid { bid, trip } => json!({ "outcome": "bid", "bid": bid, "trip": trip }),
        Outcome::Share { id, trip } => json!({ "outcome": "share", "share_id": id, "trip": trip }),
        Outcome::Alert(alert) => json!({ "outcome": "alert", "alert": alert }),
        Outcome::Message(message) => json!({ "outcome": "message", "message": message }),
        Outcome::OtpIssued { expires_in_s } => json!({ "outcome": "otp_issued", "expires_in_s": expires_in_s }),
        Outcome::OtpRefused { locked } => json!({ "outcome": "otp_refused", "locked": locked }),
        Outcome::PickupCodeRefused { attempts_left } => {
            json!({ "outcome": "pickup_code_refused", "attempts_left": attempts_left })
        }
        Outcome::Transfer(transfer) => json!({ "outcome": "transfer", "transfer": transfer }),
        Outcome::PaymentEvent { duplicate, ignored } => {
            json!({ "outcome": "payment_event", "duplicate": duplicate, "ignored": ignored })
        }
        // Never the token (as over HTTP).
        Outcome::Device { device, created } => json!({
            "outcome": "device", "created": created,
            "device": { "id": device.id, "platform": device.platform, "created_at": device.created_at },
        }),
        Outcome::Replayed(first) => json!({ "outcome": "replayed", "first": outcome_json(*first) }),
        Outcome::Coalesced { publish_at } => json!({ "outcome": "coalesced", "publish_at": publish_at }),
        Outcome::Application(a) => json!({ "outcome": "application", "driver_id": a.driver_id, "status": a.status }),
        Outcome::DeliveryCodeRefused { attempts_left } => {
            json!({ "outcome": "delivery_code_refused", "attempts_left": attempts_left })
        }
        // The secret is shown to its creator, as over HTTP (its one showing).
        Outcome::WebhookEndpoint(e) => json!({
            "outcome": "webhook_endpoint",
            "endpoint": { "id": e.id, "url": e.url, "events": e.events, "description": e.description,
                "secret": e.secret, "created_at": e.created_at },
        }),
        Outcome::WebhookDelivery(d) => json!({
            "outcome": "webhook_delivery",
            "delivery": { "endpoint_id": d.endpoint_id, "event_id": d.event.id, "type": d.event.kind.as_str(),
                "status": d.status.as_str(), "attempts": d.attempts },
        }),
        Outcome::Payout(payout) => json!({ "outcome": "payout", "payout": payout }),
        Outcome::TopUp(top_up) => json!({ "outcome": "top_up", "top_up": top_up }),
        // ----- issue 20: S -----
        // Never a setup's or a TOTP secret's nonce: with the server's token secret they make
        // the setup token and the TOTP secret, which only the server hands out.
        Outcome::StaffCreated { user, setup } => json!({
            "outcome": "staff_created", "user": user, "setup_expires_at": setup.map(|(_, at)| at),
        }),
        Outcome::StaffSetupIssued { expires_at, .. } => {
            json!({ "outcome": "staff_setup_issued", "expires_at": expires_at })
        }
        Outcome::StaffSetUp { email, .. } => json!({ "outcome": "staff_set_up", "email": email }),
        Outcome::StaffLoginCounted { locked } => json!({ "outcome": "staff_login_counted", "locked": locked }),
    }
}

fn not_found(what: &'static str, id: impl ToString) -> FfiError {
    FfiError::Engine(Error::not_found(what, id))
}

/// Writes `answer` to `out`; an engine error is written as its error object too, so C
/// gets the code without parsing the message.
fn answer(out: &OutString, answer: Result<serde_json::Value, FfiError>) -> Result<(), FfiError> {
    match answer {
        Ok(value) => out.set_json(&value),
        Err(error @ FfiError::Engine(_)) => {
            out.set(error.to_json().to_string());
            Err(error)
        }
        Err(error) => Err(error),
    }
}

/// Reads the handle argument.
///
/// # Safety
/// `handle` is NULL or a live handle from `dispatch_engine_open`, not closed during the call.
unsafe fn engine_arg<'a>(handle: *const DispatchEngine) -> Result<&'a Engine, FfiError> {
    // SAFETY: by this function's contract a non-NULL handle points to a live
    // `DispatchEngine` (made by `Box::into_raw` in `dispatch_engine_open`) for the call;
    // only shared references are taken, and `Engine` is `Sync`.
    unsafe { handle.as_ref() }.map(|h| &h.engine).ok_or(FfiError::NullArgument("handle"))
}

/// Opens an engine and writes its handle to `*out_handle`.
///
/// - `data_dir`: the data directory (created if missing; a previous state there is
///   recovered), or NULL for an engine in memory that is gone when closed.
/// - `config_json`: `{"rules": {...}}` (the core's `DispatchRules`), or NULL for defaults.
/// - `out_handle`: receives the handle, or NULL on failure. Close it with
///   `dispatch_engine_close`.
///
/// Returns `OK`, `NULL_ARGUMENT`, `INVALID_UTF8`, `INVALID_JSON`, `INVALID_ARGUMENT`
/// (rules refused), `ENGINE_ERROR` (the data directory cannot be opened, or is locked by
/// another engine), `PANIC`.
///
/// # Safety
/// `data_dir` and `config_json` are NULL or NUL-terminated strings; `out_handle` is NULL or
/// points to a writable `DispatchEngine *`. All stay valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dispatch_engine_open(
    data_dir: *const c_char,
    config_json: *const c_char,
    out_handle: *mut *mut DispatchEngine,
) -> DispatchStatus {
    call(|| {
        if out_handle.is_null() {
            return Err(FfiError::NullArgument("out_handle"));
        }
        // SAFETY: `out_handle` is not NULL and writable by this function's contract.
        unsafe { out_handle.write(std::ptr::null_mut()) };
        // SAFETY: both are NULL or valid strings for the call, by this function's contract.
        let (data_dir, config_json) =
            unsafe { (optional_str_arg(data_dir, "data_dir")?, optional_str_arg(config_json, "config_json")?) };
        let options: EngineOptions = match config_json {
            Some(text) => parse_json(text, "config_json")?,
            None => EngineOptions::default(),
        };
        let mut config = EngineConfig::default();
        if let Some(dir) = data_dir {
            if dir.is_empty() {
                return Err(FfiError::InvalidArgument("data_dir is empty (pass NULL for an engine in memory)".into()));
            }
            config = config.with_data_dir(dir);
        }
        if let Some(rules) = options.rules {
            rules.validate().map_err(|e| FfiError::InvalidArgument(e.to_string()))?;
            config = config.with_rules(rules);
        }
        let engine = Engine::open(config)?;
        let handle = Box::into_raw(Box::new(DispatchEngine { engine }));
        // SAFETY: checked non-NULL and writable above.
        unsafe { out_handle.write(handle) };
        Ok(())
    })
}

/// Submits `command_json` (a core `Command`) on behalf of `actor_json` (a core `Actor`)
/// and waits for its outcome (after it is durable, but for location updates: see the
/// core's `Engine::update_location`).
///
/// `*out_json` receives the outcome, or on `ENGINE_ERROR` the error object
/// `{"error":{"code","message"}}`; free it with `dispatch_string_free`. On other failures
/// it is NULL.
///
/// Returns `OK`, `NULL_ARGUMENT`, `INVALID_UTF8`, `INVALID_JSON`, `ENGINE_ERROR`, `PANIC`.
///
/// # Safety
/// `handle` is NULL or a handle from `dispatch_engine_open` not yet closed (and not closed
/// during the call); the strings are NULL or NUL-terminated; `out_json` is NULL or points
/// to a writable `char *`. All stay valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dispatch_engine_submit(
    handle: *const DispatchEngine,
    actor_json: *const c_char,
    command_json: *const c_char,
    out_json: *mut *mut c_char,
) -> DispatchStatus {
    call(|| {
        // SAFETY: every pointer is valid for the call by this function's contract.
        let (out, engine, actor, command) = unsafe {
            (
                OutString::new(out_json, "out_json")?,
                engine_arg(handle)?,
                str_arg(actor_json, "actor_json")?,
                str_arg(command_json, "command_json")?,
            )
        };
        let actor: Actor = parse_json(actor, "actor_json")?;
        let command: Command = parse_json(command, "command_json")?;
        answer(&out, engine.submit(actor, command).map(outcome_json).map_err(FfiError::from))
    })
}

/// Answers `query_json` from the engine's last durable state (see the module docs for
/// the queries). Never waits for the writer.
///
/// `*out_json` receives the answer, or on `ENGINE_ERROR` (`not_found`) the error object;
/// free it with `dispatch_string_free`. On other failures it is NULL.
///
/// Returns `OK`, `NULL_ARGUMENT`, `INVALID_UTF8`, `INVALID_JSON`, `ENGINE_ERROR`, `PANIC`.
///
/// # Safety
/// As `dispatch_engine_submit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dispatch_engine_query(
    handle: *const DispatchEngine,
    query_json: *const c_char,
    out_json: *mut *mut c_char,
) -> DispatchStatus {
    call(|| {
        // SAFETY: every pointer is valid for the call by this function's contract.
        let (out, engine, query) =
            unsafe { (OutString::new(out_json, "out_json")?, engine_arg(handle)?, str_arg(query_json, "query_json")?) };
        let query: Query = parse_json(query, "query_json")?;
        let result = match query {
            Query::Trip(id) => engine.trip(id).ok_or_else(|| not_found("trip", id)).map(|t| json!(t)),
            Query::User(id) => engine.user(id).ok_or_else(|| not_found("user", id)).map(|u| json!(u)),
            Query::Driver(id) => engine.driver(id).ok_or_else(|| not_found("driver", id)).map(|d| json!(d)),
            Query::OffersFor(id) => Ok(json!(engine.offers_for(id))),
        };
        answer(&out, result)
    })
}

/// Shuts the engine down cleanly (queued commands finish, the log is flushed, the writer
/// thread stops) and frees the handle. NULL is a no-op that returns `OK`.
///
/// The handle is freed whatever the status; do not use it again. Returns `OK`,
/// `ENGINE_ERROR` (the shutdown reported a failure, e.g. the writer thread had died),
/// `PANIC`.
///
/// # Safety
/// `handle` is NULL or a handle from `dispatch_engine_open` that is not closed yet and
/// that no other thread is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dispatch_engine_close(handle: *mut DispatchEngine) -> DispatchStatus {
    call(|| {
        if handle.is_null() {
            return Ok(());
        }
        // SAFETY: by this function's contract `handle` came from `Box::into_raw` in
        // `dispatch_engine_open`, is not closed yet and is not in use elsewhere: taking
        // the box back is its inverse and happens once.
        let boxed = unsafe { Box::from_raw(handle) };
        boxed.engine.shutdown()?;
        Ok(())
    })
}
