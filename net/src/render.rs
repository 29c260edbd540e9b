//! The JSON shapes of API.md: users, drivers, trips, offers, zones, alerts, bids, and
//! the staff views (timelines, trails).
//!
//! Guarantees: every shape here is the one API.md shows (fields may be added, never
//! renamed); a trip's `pickup_code` is rendered only for its rider, its `driver` card
//! only for its rider, its driver and staff, its `rider` card only for its driver and
//! staff ([`trip`]'s [`Viewer`]); a rating is shown only from
//! [`RatingTotals::SHOWN_FROM`] ratings; times are RFC 3339 UTC; money is integer minor units beside a currency,
//! and beside every currency its ISO 4217 exponent (`currency_exponent`: where the
//! decimal point goes when the amount is shown; amounts are never scaled).

pub mod typed;

use std::sync::Arc;

use dispatch_core::clock::Timestamp;
use dispatch_core::driver::{Driver, Fix};
use dispatch_core::trip::{Bid, Place};
use dispatch_core::user::RatingTotals;
use dispatch_core::{LatLng, Trip, TripStatus, User, UserId, View, Zone};
use serde_json::{Value, json};

use crate::eta::{Eta, Leg};
use crate::http::rfc3339;

/// A position.
pub fn point(p: LatLng) -> Value {
    json!({"lat": p.lat(), "lng": p.lng()})
}

/// A pickup, a stop or a drop-off.
pub fn place(p: &Place) -> Value {
    let mut v = point(p.point);
    if let Some(a) = &p.address {
        v["address"] = json!(a);
    }
    v
}

fn time(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| json!(rfc3339(t)))
}

// ----- issue 20: S -----
/// The role a user is shown with: its custom staff role's name when it has one
/// (`[roles.<name>]`), else its role.
pub fn role_name(u: &User) -> &str {
    u.staff_role.as_deref().unwrap_or(u.role.as_str())
}

/// A user.
pub fn user(u: &User) -> Value {
    json!({
        "id": u.id.to_string(),
        "role": role_name(u),
        "name": u.name,
        "phone": u.phone,
        "vehicle": u.vehicle.as_ref().map(|v| json!({"category": v.category.as_str(), "plate": v.plate,
            "make": v.make, "model": v.model, "color": v.color, "year": v.year})),
        "rating": rating(&u.rating),
        "suspended": u.suspended,
        "created_at": rfc3339(u.created_at),
        "email": u.email,
        "language": u.language,
        "default_payment_method": u.default_payment_method.as_ref().map(enum_str),
    })
}

/// The signed-in user's own profile (`GET /v1/me`, `PATCH /v1/me`): `vehicle` and
/// `dispatchable` (with its reason) for drivers only, with `driver`, their live record
/// (positions older than `stale_s` at `now` are stale).
pub fn me(u: &User, driver: Option<&Driver>, now: Timestamp, stale_s: u32) -> Value {
    let mut v = json!({
        "id": u.id.to_string(),
        "role": role_name(u),
        "name": u.name,
        "phone": u.phone,
        "email": u.email,
        "language": u.language,
        "default_payment_method": u.default_payment_method.as_ref().map(enum_str),
        "rating": rating(&u.rating),
    });
    if let Some(vehicle) = &u.vehicle {
        v["vehicle"] = json!({"category": vehicle.category.as_str(), "plate": vehicle.plate, "make": vehicle.make,
            "model": vehicle.model, "color": vehicle.color, "year": vehicle.year});
    }
    if let Some(d) = driver {
        dispatchable(&mut v, d, now, stale_s);
    } else if u.role == dispatch_core::Role::Driver {
        // An applicant: a driver user without a driver record until staff approve it.
        v["status"] = json!("applicant");
        v["dispatchable"] = json!(false);
        v["not_dispatchable_because"] = json!(dispatch_core::driver::NotDispatchable::NotApproved.as_str());
    }
    v
}

/// Adds `dispatchable` and `not_dispatchable_because` (API.md) to a driver's JSON: the
/// domain's reason, the one the dispatch round goes by.
fn dispatchable(v: &mut Value, d: &Driver, now: Timestamp, stale_s: u32) {
    let why = d.not_dispatchable(now, stale_s);
    v["dispatchable"] = json!(why.is_none());
    v["not_dispatchable_because"] = json!(why.map(|w| w.as_str()));
}

/// A user's rating: `{"average","count"}` (the average to 2 decimals), `null` until
/// [`RatingTotals::SHOWN_FROM`] ratings.
pub fn rating(r: &RatingTotals) -> Value {
    r.shown_average().map_or(Value::Null, |average| json!({"average": average, "count": r.count}))
}

/// Who looks at a trip: decides which of its private parts ([`trip`]) are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// Its rider: the pickup code and the driver's card.
    Rider,
    /// Its driver (the one assigned now): both cards, no pickup code.
    Driver,
    /// Support or admin: both cards.
    Staff,
    /// Anyone else (no card, no code).
    Other,
}

impl Viewer {
    /// `user` (staff or not) looking at `t`.
    pub fn of(t: &Trip, user: Option<UserId>, staff: bool) -> Self {
        match user {
            Some(u) if u == t.rider_id => Viewer::Rider,
            Some(u) if Some(u) == t.driver_id => Viewer::Driver,
            _ if staff => Viewer::Staff,
            _ => Viewer::Other,
        }
    }
}

/// The people of a trip as the view has them, read once per answer (one read of the view
/// for a page of trips, [`Cards::of`]): the rider, the assigned driver and the driver's
/// last known position.
#[derive(Debug, Clone, Default)]
pub struct Cards {
    /// The trip's rider.
    pub rider: Option<Arc<User>>,
    /// The trip's driver, once one accepted.
    pub driver: Option<Arc<User>>,
    /// The driver's last position.
    pub driver_fix: Option<Fix>,
    /// The ETA of the leg the trip is on ([`crate::eta::Etas`]), if one was computed.
    pub eta: Option<Eta>,
}

impl Cards {
    /// What `view` knows of `t`'s people.
    pub fn of(view: &View, t: &Trip) -> Self {
        Cards {
            rider: view.user(t.rider_id).cloned(),
            driver: t.driver_id.and_then(|d| view.user(d).cloned()),
            driver_fix: t.driver_id.and_then(|d| view.driver(d).and_then(|d| d.fix)),
            eta: None,
        }
    }
}

/// A driver's vehicle as the trip's card and the share view show it (no year), or `null`.
fn vehicle_card(d: &User) -> Value {
    d.vehicle.as_ref().map_or(Value::Null, |v| {
        json!({"category": v.category.as_str(), "make": v.make, "model": v.model, "color": v.color, "plate": v.plate})
    })
}

/// The first word of a name: what a card shows of a person.
fn first_name(name: &str) -> &str {
    name.split_whitespace().next().unwrap_or_default()
}

/// A driver's live record as staff and the driver see it (`GET /v1/admin/drivers`,
/// `POST /v1/driver/status`), with whether the round may offer it trips now (positions
/// older than `stale_s` are stale).
pub fn driver(d: &Driver, now: Timestamp, stale_s: u32) -> Value {
    let mut v = json!({
        "driver_id": d.id.to_string(),
        "availability": d.availability.as_str(),
        "category": d.category.as_str(),
        "trip_id": d.trip_id.map(|t| t.to_string()),
        "location": d.fix.map(|f| point(f.point)),
        "location_age_s": d.fix.map(|f| now.millis_since(f.at).max(0) / 1000),
        "connected": d.connected.map(|(c, _)| c),
        "suspended": d.suspended,
    });
    dispatchable(&mut v, d, now, stale_s);
    v
}

/// What a share link shows (`GET /v1/share/{token}`): the trip's status, the driver's
/// first name and vehicle (`null` before a driver accepts), the driver's last position
/// while accepted, arrived or in progress (else `null`), `eta` and when the link stops
/// working (`null` while the trip is open). Never a phone number, the rider, the pickup
/// code or any user's id.
pub fn shared_trip(t: &Trip, cards: &Cards) -> Value {
    let driver =
        cards.driver.as_ref().map_or(Value::Null, |d| json!({"name": first_name(&d.name), "vehicle": vehicle_card(d)}));
    let location = match (t.status.has_driver(), cards.driver_fix) {
        (true, Some(f)) => json!({"lat": f.point.lat(), "lng": f.point.lng(), "at": rfc3339(f.at)}),
        _ => Value::Null,
    };
    json!({
        "status": t.status.as_str(),
        "driver": driver,
        "location": location,
        "eta": cards.eta.map_or(Value::Null, |e| eta(&e)),
        "expires_at": time(dispatch_core::share::expires_at(t)),
    })
}

/// A trip as `viewer` may see it: `pickup_code` to its rider alone; `driver` (`null` until
/// one accepted) to its rider, its driver and staff; `rider` to its driver and staff
/// (`null` to the others); the cards from `cards` (read from the view for this trip).
/// Typed ([`typed::TripOut`]): serialised straight into the answer or the frame.
pub fn trip<'a>(t: &'a Trip, viewer: Viewer, cards: &'a Cards) -> typed::TripOut<'a> {
    typed::TripOut::new(t, viewer, cards)
}

/// `{"pickup_s","dropoff_s","source","at"}`: the seconds of the leg the ETA measured, the
/// other `null`.
pub fn eta(e: &Eta) -> Value {
    let (pickup_s, dropoff_s) = match e.leg {
        Leg::Pickup => (Some(e.seconds), None),
        Leg::Dropoff => (None, Some(e.seconds)),
    };
    json!({"pickup_s": pickup_s, "dropoff_s": dropoff_s, "source": enum_str(&e.source), "at": rfc3339(e.at)})
}

/// A live offer to a driver (`GET /v1/driver/offers`, WS `trip_offer`), typed.
pub fn offer(t: &Trip, expires_at: Timestamp, distance_to_pickup_m: u32) -> typed::OfferOut<'_> {
    typed::OfferOut::new(t, expires_at, distance_to_pickup_m)
}

/// A zone: its id, its spec as uploaded, its currency's exponent, and times.
pub fn zone(z: &Zone) -> Value {
    let mut v = serde_json::to_value(&z.spec).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), json!(z.id.to_string()));
        m.insert("currency_exponent".into(), json!(z.spec.currency.exponent()));
        m.insert("created_at".into(), json!(rfc3339(z.created_at)));
        m.insert("updated_at".into(), json!(rfc3339(z.updated_at)));
    }
    v
}

/// A coupon as `POST /v1/admin/coupons` takes it, with its id, `uses` (trips booked with
/// it, less those cancelled without a fee), `created_at` and `disabled_at` (`null` while
/// it applies).
pub fn coupon(c: &dispatch_core::zone::CouponRecord) -> Value {
    let mut v = serde_json::to_value(&c.coupon).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), json!(c.coupon.id.to_string()));
        for (k, ts) in [("valid_from", c.coupon.valid_from), ("valid_until", c.coupon.valid_until)] {
            m.insert(k.into(), json!(time(ts)));
        }
        m.insert("uses".into(), json!(c.uses));
        m.insert("created_at".into(), json!(rfc3339(c.created_at)));
        m.insert("disabled_at".into(), json!(time(c.disabled_at)));
    }
    v
}

/// A bid.
pub fn bid(trip_id: &str, b: &Bid) -> Value {
    json!({
        "id": b.id.to_string(),
        "trip_id": trip_id,
        "driver_id": b.driver_id.to_string(),
        "amount_minor": b.amount_minor,
        "distance_to_pickup_m": b.distance_to_pickup_m,
        "at": rfc3339(b.at),
    })
}

/// A safety alert.
pub fn alert(a: &dispatch_core::alert::Alert) -> Value {
    json!({
        "id": a.id.to_string(),
        "trip_id": a.trip_id.to_string(),
        "raised_by": a.raised_by.to_string(),
        "location": a.location.map(point),
        "note": a.note,
        "status": a.status.as_str(),
        "raised_at": rfc3339(a.raised_at),
        "count": a.count,
        "last_raised_at": rfc3339(a.last_raised_at),
        "acknowledged_by": a.acknowledged_by.map(|u| u.to_string()),
        "acknowledged_at": time(a.acknowledged_at),
    })
}

/// A chat message: `{"id","trip_id","from_user_id","from_role","text","at"}`
/// (`from_user_id` is `null` for the bootstrap admin token).
pub fn message(m: &dispatch_core::chat::Message) -> Value {
    json!({
        "id": m.id.to_string(),
        "trip_id": m.trip_id.to_string(),
        "from_user_id": m.from_user_id.map(|u| u.to_string()),
        "from_role": m.from_role.as_str(),
        "text": m.text,
        "at": rfc3339(m.at),
    })
}

/// A unit enum's snake_case name, as serde writes it.
fn enum_str<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A ledger transfer. With `account`, `amount_minor` is signed from that account's side
/// (positive: credited to it; negative: debited).
pub fn transfer(t: &dispatch_core::ledger::Transfer, account: Option<&dispatch_core::ledger::AccountKey>) -> Value {
    let amount = match account {
        Some(a) if t.debit == *a => -t.amount,
        _ => t.amount,
    };
    let side = |k: &dispatch_core::ledger::AccountKey| json!({"kind": k.kind.as_str(), "owner": k.owner.map(|u| u.to_string()), "currency": k.currency.code()});
    json!({
        "id": t.id.to_string(),
        "amount_minor": amount,
        "currency": t.debit.currency.code(),
        "currency_exponent": t.debit.currency.exponent(),
        "code": enum_str(&t.code),
        "state": match t.state {
            dispatch_core::ledger::TransferState::Posted => "posted",
            dispatch_core::ledger::TransferState::Pending => "pending",
            dispatch_core::ledger::TransferState::PostedFrom(_) => "posted_from_hold",
            dispatch_core::ledger::TransferState::VoidedFrom(_) => "voided",
        },
        "debit": side(&t.debit),
        "credit": side(&t.credit),
        "trip_id": t.trip_id.map(|x| x.to_string()),
        "at": rfc3339(t.at),
    })
}

/// One position of a driver's trail (`GET /v1/admin/trips/{id}/trail`).
pub fn trail_point(p: &dispatch_core::history::LocationPoint) -> Value {
    json!({"at": rfc3339(p.at), "lat": p.point.lat(), "lng": p.point.lng(), "heading_deg": p.heading_deg})
}

/// A trip's timeline for operators, oldest first: creation, each offer and how it
/// ended, the steps of the ride, the end. Built from the trip record.
pub fn timeline(t: &Trip) -> Vec<Value> {
    let mut items: Vec<(Timestamp, Value)> = vec![(t.created_at, json!({"type": "created"}))];
    for o in &t.offers {
        let state = match o.state {
            dispatch_core::OfferState::Pending => "pending",
            dispatch_core::OfferState::Accepted => "accepted",
            dispatch_core::OfferState::Declined => "declined",
            dispatch_core::OfferState::Lapsed => "lapsed",
            dispatch_core::OfferState::Withdrawn(_) => "withdrawn",
            dispatch_core::OfferState::Released => "released",
        };
        items.push((
            o.offered_at,
            json!({"type": "offered", "driver_id": o.driver_id.to_string(), "round": o.round,
                "distance_to_pickup_m": o.distance_to_pickup_m, "expires_at": rfc3339(o.expires_at), "outcome": state}),
        ));
    }
    for (at, ty) in [(t.accepted_at, "accepted"), (t.arrived_at, "arrived"), (t.started_at, "started")] {
        if let Some(at) = at {
            items.push((at, json!({"type": ty, "driver_id": t.driver_id.map(|d| d.to_string())})));
        }
    }
    if let (Some(c), TripStatus::Cancelled) = (&t.cancellation, t.status) {
        items.push((
            c.at,
            json!({"type": "cancelled", "by": enum_str(&c.by), "reason_code": c.code.as_str(), "reason": c.reason}),
        ));
    } else if let (Some(at), true) = (t.ended_at, t.status.is_terminal()) {
        items.push((at, json!({"type": t.status.as_str(), "final_minor": t.fare.final_minor})));
    }
    items.push((
        t.updated_at,
        json!({"type": "payment", "method": enum_str(&t.payment.method), "status": enum_str(&t.payment.status)}),
    ));
    if let Some(d) = &t.payment.dead_letter {
        items.push((d.at, json!({"type": "payment_dead_letter", "action": d.action.name(), "error": d.error})));
    }
    if let Some(m) = &t.payment.mismatch {
        items.push((
            m.at,
            json!({"type": "payment_mismatch", "gateway": m.gateway, "event_id": m.event_id, "kind": m.kind,
                "reported_minor": m.reported_minor, "due_minor": m.due_minor}),
        ));
    }
    items.sort_by_key(|(at, _)| *at);
    items
        .into_iter()
        .map(|(at, mut v)| {
            v["at"] = json!(rfc3339(at));
            v
        })
        .collect()
}

/// A payment the worker gave up on (`GET /v1/admin/payments/dead-letters`).
pub fn dead_letter(trip_id: dispatch_core::TripId, d: &dispatch_core::trip::DeadLetter) -> Value {
    json!({
        "trip_id": trip_id.to_string(),
        "action": d.action.name(),
        "amount_minor": d.action.amount_minor(),
        "error": d.error,
        "attempts": d.attempts,
        "at": rfc3339(d.at),
    })
}

/// An application as the API shows it (to staff and its applicant): its documents by kind
/// with their media type, size and upload time (never a path).
pub fn application(a: &dispatch_core::application::Application) -> Value {
    let documents: serde_json::Map<String, Value> = a
        .documents
        .iter()
        .map(|(k, d)| {
            (
                k.as_str().to_owned(),
                json!({"media_type": d.media_type.as_str(), "size": d.size, "sha256": d.hash_hex(),
                    "uploaded_at": rfc3339(d.uploaded_at)}),
            )
        })
        .collect();
    let details = a.details.as_ref();
    json!({
        "id": a.driver_id.to_string(),
        "driver_id": a.driver_id.to_string(),
        "status": a.status.as_str(),
        "name": details.map(|d| d.name.clone()),
        "vehicle": details.map(|d| {
            let v = &d.vehicle;
            json!({"category": v.category.as_str(), "plate": v.plate, "make": v.make, "model": v.model,
                "color": v.color, "year": v.year})
        }),
        "license": details.map(|d| json!({"number": d.license.number, "expires_on": d.license.expires_on.to_string()})),
        "documents": documents,
        "missing": a.missing(),
        "reason": a.reason,
        "created_at": rfc3339(a.created_at),
        "updated_at": rfc3339(a.updated_at),
        "submitted_at": a.submitted_at.map(rfc3339),
        "decided_at": a.decided_at.map(rfc3339),
    })
}

/// A driver's payout.
pub fn payout(p: &dispatch_core::payout::Payout) -> Value {
    json!({
        "id": p.id.to_string(),
        "driver_id": p.driver_id.to_string(),
        "amount_minor": p.amount_minor,
        "currency": p.currency.code(),
        "status": p.status.as_str(),
        "gateway": p.gateway,
        "reason": p.reason,
        "created_at": rfc3339(p.created_at),
        "updated_at": rfc3339(p.updated_at),
    })
}

// ----- issue 20: U -----

/// A driver's statistics (`stats` in `GET /v1/admin/drivers/{id}` and
/// `GET /v1/admin/users/{id}`): the counters `apply` keeps (`DriverStats`, where the rates
/// are defined), `online_s_7d` with the stretch running now, and the shown `rating`.
pub fn driver_stats(d: &Driver, rating: &dispatch_core::user::RatingTotals, now: Timestamp) -> Value {
    let s = &d.stats;
    json!({
        "offers": s.offers,
        "accepted": s.accepted,
        "declined": s.declined,
        "lapsed": s.lapsed,
        "cancelled_after_accept": s.cancelled_after_accept,
        "acceptance_rate_bps": s.acceptance_rate_bps(),
        "cancel_rate_bps": s.cancel_rate_bps(),
        "online_s_7d": s.online_s_7d(d.online_since, now),
        "rating": rating.shown_average(),
    })
}

/// A user as staff see it (`/v1/admin/users`): [`user`] with its `status` (`active`,
/// `blocked`, `erased`; an erased user's `phone` is empty), the block (`{"reason","at"}` or `null`), `erased_at`, and a
/// driver's `stats` (its live record `d`, when it has one).
pub fn admin_user(u: &User, d: Option<&Driver>, now: Timestamp) -> Value {
    let mut v = user(u);
    v["status"] = json!(u.status().as_str());
    v["blocked"] = u.blocked.as_ref().map_or(Value::Null, |b| json!({"reason": b.reason, "at": rfc3339(b.at)}));
    v["erased_at"] = time(u.erased_at);
    if let Some(d) = d {
        v["stats"] = driver_stats(d, &u.rating, now);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rating_is_null_until_three_then_rounded_to_hundredths() {
        assert_eq!(rating(&RatingTotals::default()), Value::Null);
        assert_eq!(rating(&RatingTotals { stars: 10, count: 2 }), Value::Null, "two ratings are not shown");
        assert_eq!(rating(&RatingTotals { stars: 14, count: 3 }), json!({"average": 4.67, "count": 3}));
        assert_eq!(rating(&RatingTotals { stars: 5 * 132, count: 132 }), json!({"average": 5.0, "count": 132}));
    }
}
