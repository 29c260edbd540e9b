//! The trip's schema in the OpenAPI document, with the parts only a trip has: the
//! driver's and rider's cards and the `eta`. As `render::trip` writes them: the
//! properties always present are `required`, more may be added.

use serde_json::{Value, json};

use super::schemas::*;

/// The vehicle as a trip's `driver` card (and a share view) shows it.
pub(super) fn vehicle_card() -> Value {
    obj(
        &[
            ("category", category()),
            ("make", nullable(string())),
            ("model", nullable(string())),
            ("color", nullable(string())),
            ("plate", string()),
        ],
        &["category", "make", "model", "color", "plate"],
    )
}

/// A trip's `driver` card: to its rider, its driver and staff; `null` until accepted.
pub(super) fn driver_card() -> Value {
    let vehicle = vehicle_card();
    let location = obj(&[("lat", number()), ("lng", number()), ("at", time())], &["lat", "lng", "at"]);
    let mut v = nullable(obj(
        &[
            ("id", id("usr_")),
            ("name", json!({"type": "string", "description": "The first name: what the driver is shown by."})),
            ("rating", user_rating()),
            ("vehicle", nullable(vehicle)),
            ("location", location),
        ],
        &["id", "name", "rating", "vehicle"],
    ));
    v["description"] = json!(
        "Who is coming: to the trip's rider, its driver and staff; null until a driver accepts (and to anyone else). \
         `location` (the driver's last known position) only while accepted, arrived or in progress."
    );
    v
}

/// A trip's `rider` card: to its driver (once accepted) and staff; `null` to the others.
pub(super) fn rider_card() -> Value {
    let mut v = nullable(obj(
        &[("id", id("usr_")), ("first_name", string()), ("rating", user_rating())],
        &["id", "first_name", "rating"],
    ));
    v["description"] = json!("Whom to pick up: to the trip's driver and staff; null to the others.");
    v
}

pub(super) fn trip_schema() -> Value {
    let fare = obj(
        &[
            ("estimate_minor", money()),
            ("final_minor", nullable(money())),
            ("currency", currency()),
            ("currency_exponent", uint()),
            ("surge_bps", uint()),
            ("discount_minor", money()),
            ("cancel_fee_minor", nullable(money())),
        ],
        &[
            "estimate_minor",
            "final_minor",
            "currency",
            "currency_exponent",
            "surge_bps",
            "discount_minor",
            "cancel_fee_minor",
        ],
    );
    let payment = obj(
        &[
            ("method", enumeration(&["cash", "wallet", "card"])),
            (
                "status",
                enumeration(&[
                    "pending",
                    "authorized",
                    "captured",
                    "voided",
                    "expired",
                    "partially_refunded",
                    "refunded",
                    "failed",
                ]),
            ),
            ("cash_offered", boolean()),
            ("captured_minor", money()),
            ("refunded_minor", money()),
            ("refunds_pending_minor", money()),
            ("cash_claimed_at", nullable(time())),
        ],
        &[
            "method",
            "status",
            "cash_offered",
            "captured_minor",
            "refunded_minor",
            "refunds_pending_minor",
            "cash_claimed_at",
        ],
    );
    obj(
        &[
            ("id", id("trp_")),
            (
                "ref",
                json!({"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{3}-[0-9A-HJKMNP-TV-Z]{3}$",
                    "description": "The trip's short reference (support reads it over the phone), unique among the trips of the last 30 days; `GET /v1/admin/trips?ref=` finds it."}),
            ),
            ("status", trip_status()),
            ("kind", enumeration(&["ride", "parcel"])),
            ("rider_id", id("usr_")),
            ("driver_id", nullable(id("usr_"))),
            ("zone_id", id("zon_")),
            ("category", category()),
            ("pickup", place_out()),
            ("dropoff", place_out()),
            ("stops", array(place_out())),
            ("fare", fare),
            ("payment", payment),
            ("pickup_code_locked", boolean()),
            ("pickup_code", json!({"type": "string", "description": "Only to the trip's rider."})),
            ("created_at", time()),
            ("updated_at", time()),
            ("accepted_at", nullable(time())),
            ("arrived_at", nullable(time())),
            ("started_at", nullable(time())),
            ("ended_at", nullable(time())),
            ("distance_m", nullable(uint())),
            ("driven_m", nullable(uint())),
            (
                "scheduled_at",
                json!({"type": ["string", "null"], "format": "date-time",
                       "description": "A ride booked ahead: when the rider wants it; null for a ride now."}),
            ),
            (
                "dispatch",
                obj(
                    &[
                        ("round", uint()),
                        ("drivers_offered", uint()),
                        (
                            "nearby_drivers",
                            json!({"type": ["integer", "null"], "minimum": 0,
                                   "description": "Eligible drivers within the search radius found by the last round (counted up to 100); null before the first."}),
                        ),
                    ],
                    &["round", "drivers_offered", "nearby_drivers"],
                ),
            ),
            (
                "parcel",
                obj(
                    &[
                        ("weight_kg", number()),
                        ("description", string()),
                        ("recipient_phone", string()),
                        (
                            "delivery_code_locked",
                            json!({"type": "boolean", "description": "Five wrong delivery codes were tried: only staff complete it (or unlock the code). The code itself is never shown."}),
                        ),
                    ],
                    &["weight_kg", "description", "recipient_phone", "delivery_code_locked"],
                ),
            ),
            ("bid", obj(&[("amount_minor", money())], &["amount_minor"])),
            (
                "cancellation",
                nullable(obj(
                    &[
                        ("by", enumeration(&["rider", "driver", "staff", "system"])),
                        ("reason_code", cancel_reason_code()),
                        ("reason", string()),
                        ("at", time()),
                    ],
                    &["by", "reason_code", "reason", "at"],
                )),
            ),
            ("rider_name", json!({"type": ["string", "null"], "description": "Staff only."})),
            ("driver_name", json!({"type": ["string", "null"], "description": "Staff only."})),
            ("driver", driver_card()),
            ("rider", rider_card()),
            ("eta", trip_eta()),
        ],
        &[
            "id",
            "ref",
            "status",
            "kind",
            "rider_id",
            "driver_id",
            "zone_id",
            "category",
            "pickup",
            "dropoff",
            "stops",
            "fare",
            "payment",
            "pickup_code_locked",
            "created_at",
            "updated_at",
            "accepted_at",
            "arrived_at",
            "started_at",
            "ended_at",
            "distance_m",
            "driven_m",
            "scheduled_at",
            "dispatch",
            "driver",
            "rider",
            "eta",
        ],
    )
}

/// The trip's `eta`: seconds to the pickup while `accepted`, to the drop-off while
/// `in_progress` (the other `null`), through the route provider; `null` otherwise.
pub(super) fn trip_eta() -> Value {
    let mut eta = nullable(obj(
        &[
            ("pickup_s", nullable(uint())),
            ("dropoff_s", nullable(uint())),
            ("source", enumeration(&["router", "straight_line"])),
            ("at", time()),
        ],
        &["pickup_s", "dropoff_s", "source", "at"],
    ));
    eta["description"] = json!(
        "From the driver's last position, through the route provider (`straight_line` when it is down); \
         refreshed at most every 10 s. `null` unless the trip is `accepted` or `in_progress` and its driver \
         has a position."
    );
    eta
}
