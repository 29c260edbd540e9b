//! The request bodies of the OpenAPI document, one schema and one example per body:
//! strict (`additionalProperties: false`, only what the handlers read), so that the same
//! schemas, compiled at start-up, refuse a body of the wrong shape whole (`check_body`).
//! Each example must pass its schema (a test in `openapi/mod.rs` checks every one).

use serde_json::{Value, json};

use super::schemas::*;

pub(super) fn otp_issue_in() -> Value {
    strict(&[("phone", string()), ("role", enumeration(&["rider", "driver"]))], &["phone", "role"])
}
pub(super) fn otp_issue_ex() -> Value {
    json!({"phone": "+201001234567", "role": "rider"})
}
pub(super) fn otp_verify_in() -> Value {
    strict(&[("phone", string()), ("code", string())], &["phone", "code"])
}
pub(super) fn otp_verify_ex() -> Value {
    json!({"phone": "+201001234567", "code": "123456"})
}
pub(super) fn create_user_in() -> Value {
    // Make, model and colour: 1–40 characters without control characters (`char::is_control`:
    // C0, DEL and C1), as `validate_vehicle` checks them.
    let text = || {
        json!({"type": ["string", "null"], "minLength": 1, "maxLength": 40,
        "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"})
    };
    let vehicle = strict(
        &[
            ("category", category()),
            ("plate", string()),
            ("make", text()),
            ("model", text()),
            ("color", text()),
            ("year", json!({"type": ["integer", "null"], "minimum": 1950, "maximum": 2100})),
        ],
        &["category", "plate"],
    );
    strict(
        &[
            ("role", role_name()),
            ("name", string()),
            ("phone", string()),
            ("vehicle", nullable(vehicle)),
            // ----- issue 20: S -----
            (
                "email",
                json!({"type": ["string", "null"], "description": "Staff only: the e-mail the user signs in with (unique among staff, any case)."}),
            ),
        ],
        &["role", "name", "phone"],
    )
}
pub(super) fn create_user_ex() -> Value {
    json!({"role": "driver", "name": "Omar", "phone": "+201001234568", "vehicle": {"category": "economy", "plate": "ABC 123", "make": "Hyundai", "model": "Elantra", "color": "silver", "year": 2019}})
}
pub(super) fn zone_in() -> Value {
    let pricing = strict(
        &[
            ("base_minor", int()),
            ("per_km_minor", int()),
            ("per_min_minor", int()),
            ("minimum_minor", int()),
            ("booking_fee_minor", int()),
            ("cancel_fee_minor", int()),
            ("wait_per_min_minor", int()),
            ("free_wait_s", uint()),
            ("commission_bps", uint()),
            ("free_cancel_s", uint()),
            ("parcel", nullable(parcel_pricing())),
        ],
        &[
            "base_minor",
            "per_km_minor",
            "per_min_minor",
            "minimum_minor",
            "booking_fee_minor",
            "cancel_fee_minor",
            "wait_per_min_minor",
            "free_wait_s",
            "commission_bps",
        ],
    );
    let polygon = json!({
        "type": "object",
        "description": "A GeoJSON Polygon or MultiPolygon ([lng, lat] positions, closed rings).",
        "required": ["type", "coordinates"],
        "properties": {"type": {"enum": ["Polygon", "MultiPolygon"]}, "coordinates": {"type": "array"}},
    });
    strict(
        &[
            ("name", string()),
            ("currency", currency()),
            ("active", boolean()),
            ("polygon", polygon),
            (
                "pricing",
                json!({"type": "object", "propertyNames": {"pattern": "^[a-z0-9_]{1,32}$"}, "additionalProperties": pricing}),
            ),
            ("surge", strict(&[("enabled", boolean()), ("max_bps", uint())], &["enabled", "max_bps"])),
            ("extra_fee_minor", int()),
            // ----- issue 20: A -----
            ("bidding", boolean()),
        ],
        &["name", "currency", "polygon", "pricing"],
    )
}
pub(super) fn zone_ex() -> Value {
    json!({
        "name": "Cairo", "currency": "EGP", "active": true,
        "polygon": {"type": "Polygon", "coordinates": [[[31.0, 29.9], [31.5, 29.9], [31.5, 30.3], [31.0, 30.3], [31.0, 29.9]]]},
        "pricing": {"economy": {"base_minor": 1000, "per_km_minor": 350, "per_min_minor": 50, "minimum_minor": 2000,
            "booking_fee_minor": 200, "cancel_fee_minor": 1500, "wait_per_min_minor": 100, "free_wait_s": 180, "commission_bps": 2000}},
        "surge": {"enabled": true, "max_bps": 25000},
        "extra_fee_minor": 0,
    })
}
pub(super) fn coupon_in() -> Value {
    strict(
        &[
            ("code", string()),
            ("percent_bps", nullable(uint())),
            ("amount_minor", nullable(int())),
            ("max_discount_minor", nullable(int())),
            ("min_fare_minor", nullable(int())),
            ("valid_from", nullable(string())),
            ("valid_until", nullable(string())),
            ("max_uses", nullable(uint())),
            ("max_uses_per_rider", nullable(uint())),
            ("currency", nullable(string())),
        ],
        &["code"],
    )
}
pub(super) fn coupon_ex() -> Value {
    json!({"code": "WELCOME10", "percent_bps": 1000, "max_discount_minor": 2000, "valid_until": "2027-01-01T00:00:00Z", "max_uses_per_rider": 1})
}
pub(super) fn estimate_in() -> Value {
    strict(
        &[
            ("pickup", place_in()),
            ("dropoff", place_in()),
            ("stops", stops_in()),
            ("category", nullable(category())),
            ("coupon", nullable(string())),
            (
                "parcel",
                nullable(strict(
                    &[
                        ("weight_kg", weight_kg()),
                        ("description", nullable(string())),
                        ("recipient_phone", nullable(string())),
                    ],
                    &["weight_kg"],
                )),
            ),
        ],
        &["pickup", "dropoff"],
    )
}
pub(super) fn estimate_ex() -> Value {
    json!({"pickup": {"lat": 30.0444, "lng": 31.2357}, "dropoff": {"lat": 30.0626, "lng": 31.2497},
        "stops": [{"lat": 30.0512, "lng": 31.2401, "address": "Bakery"}], "category": "economy"})
}
pub(super) fn driver_status_in() -> Value {
    strict(&[("status", enumeration(&["online", "offline"])), ("location", nullable(point_in()))], &["status"])
}
pub(super) fn driver_status_ex() -> Value {
    json!({"status": "online", "location": {"lat": 30.0444, "lng": 31.2357}})
}
pub(super) fn location_in() -> Value {
    strict(
        &[
            ("lat", number()),
            ("lng", number()),
            ("heading_deg", nullable(number())),
            ("speed_mps", nullable(number())),
            ("accuracy_m", nullable(number())),
            ("recorded_at", nullable(string())),
        ],
        &["lat", "lng"],
    )
}
pub(super) fn location_ex() -> Value {
    json!({"lat": 30.0444, "lng": 31.2357, "heading_deg": 90.0, "speed_mps": 8.5})
}
pub(super) fn reason_in() -> Value {
    strict(&[("reason", string())], &[])
}
pub(super) fn reason_ex() -> Value {
    json!({"reason": "changed plans"})
}
pub(super) fn cancel_in() -> Value {
    strict(&[("reason_code", super::schemas::cancel_reason_code()), ("reason", string())], &[])
}
pub(super) fn cancel_ex() -> Value {
    json!({"reason_code": "changed_mind", "reason": "changed plans"})
}
pub(super) fn create_trip_in() -> Value {
    strict(
        &[
            ("pickup", place_in()),
            ("dropoff", place_in()),
            ("stops", stops_in()),
            ("category", category()),
            ("payment_method", enumeration(&["cash", "wallet", "card"])),
            ("coupon", nullable(string())),
            ("kind", nullable(enumeration(&["ride", "parcel"]))),
            (
                "parcel",
                nullable(strict(
                    &[("weight_kg", weight_kg()), ("description", string()), ("recipient_phone", string())],
                    &["weight_kg", "description", "recipient_phone"],
                )),
            ),
            ("bid", nullable(strict(&[("amount_minor", int())], &["amount_minor"]))),
            (
                "scheduled_at",
                json!({"type": ["string", "null"], "format": "date-time",
                       "description": "Book a ride ahead: 15 minutes to 7 days from now (inclusive); not with a parcel or a bid."}),
            ),
        ],
        &["pickup", "dropoff", "category", "payment_method"],
    )
}
pub(super) fn create_trip_ex() -> Value {
    json!({"pickup": {"lat": 30.0444, "lng": 31.2357, "address": "Tahrir Sq"}, "dropoff": {"lat": 30.0626, "lng": 31.2497},
        "category": "economy", "payment_method": "cash"})
}
pub(super) fn start_in() -> Value {
    strict(&[("pickup_code", string())], &["pickup_code"])
}
pub(super) fn start_ex() -> Value {
    json!({"pickup_code": "4821"})
}
pub(super) fn complete_in() -> Value {
    strict(
        &[
            ("distance_m", nullable(json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}))),
            ("dropoff", nullable(point_in())),
            (
                "delivery_code",
                json!({"type": ["string", "null"], "description": "A parcel's: the 4-digit code its recipient got by SMS \
                       (required for a parcel; a ride takes none). Five wrong codes lock the completion: staff complete it."}),
            ),
        ],
        &[],
    )
}
pub(super) fn complete_ex() -> Value {
    json!({"distance_m": 5200, "dropoff": {"lat": 30.0626, "lng": 31.2497}})
}
pub(super) fn bid_in() -> Value {
    strict(&[("amount_minor", int())], &["amount_minor"])
}
pub(super) fn bid_ex() -> Value {
    json!({"amount_minor": 4500})
}
pub(super) fn rating_in() -> Value {
    strict(
        &[("stars", json!({"type": "integer", "minimum": 1, "maximum": 5})), ("comment", nullable(string()))],
        &["stars"],
    )
}
pub(super) fn rating_ex() -> Value {
    json!({"stars": 5, "comment": "smooth ride"})
}
pub(super) fn sos_in() -> Value {
    strict(&[("location", nullable(point_in())), ("note", nullable(string()))], &[])
}
pub(super) fn sos_ex() -> Value {
    json!({"location": {"lat": 30.0444, "lng": 31.2357}, "note": "driver took a wrong turn"})
}
pub(super) fn message_in() -> Value {
    strict(
        &[(
            "text",
            json!({"type": "string", "description": "1-1000 characters after trimming, no control characters."}),
        )],
        &["text"],
    )
}
pub(super) fn message_ex() -> Value {
    json!({"text": "I'm at the main gate, blue jacket"})
}
pub(super) fn credit_in() -> Value {
    strict(
        &[("amount_minor", int()), ("currency", currency()), ("reason", string())],
        &["amount_minor", "currency", "reason"],
    )
}
pub(super) fn credit_ex() -> Value {
    json!({"amount_minor": 5000, "currency": "EGP", "reason": "goodwill"})
}
pub(super) fn refund_in() -> Value {
    strict(&[("amount_minor", int()), ("reason", string())], &["amount_minor", "reason"])
}
pub(super) fn refund_ex() -> Value {
    json!({"amount_minor": 1500, "reason": "long detour"})
}
pub(super) fn payment_method_in() -> Value {
    strict(&[("method", enumeration(&["cash", "wallet", "card"]))], &["method"])
}
pub(super) fn payment_method_ex() -> Value {
    json!({"method": "cash"})
}

// ----- issue 19: parcels and coupon admin -----

/// A category's parcel prices (`pricing.<category>.parcel`).
pub(super) fn parcel_pricing() -> Value {
    strict(
        &[
            (
                "per_kg_minor",
                json!({"type": "integer", "minimum": 0, "description": "Added per kilogram, rounded half up on grams."}),
            ),
            (
                "max_weight_kg",
                json!({"type": "integer", "minimum": 1, "maximum": dispatch_core::fare::MAX_PARCEL_WEIGHT_KG,
                       "description": "The heaviest parcel the category carries; heavier is 422 parcel_too_heavy."}),
            ),
        ],
        &["per_kg_minor", "max_weight_kg"],
    )
}
/// A parcel's weight: kilograms, kept in whole grams (rounded half up).
pub(super) fn weight_kg() -> Value {
    json!({"type": "number", "exclusiveMinimum": 0,
           "description": "Kilograms (kept as whole grams, rounded half up). The limit is the category's `parcel.max_weight_kg` (50 kg without parcel prices): heavier is 422 parcel_too_heavy."})
}
pub(super) fn admin_complete_in() -> Value {
    strict(&[("distance_m", nullable(json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})))], &[])
}
pub(super) fn admin_complete_ex() -> Value {
    json!({"distance_m": 5200})
}
