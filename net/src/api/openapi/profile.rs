//! The schemas of the caller's profile (`GET`/`PATCH /v1/me`), a driver's record with its
//! `dispatchable`,
//! and share links (`POST /v1/trips/{id}/share`, `GET /v1/share/{token}`), as `render`
//! writes them and the handlers read them (the request body strict, like every one).

use serde_json::{Value, json};

use super::schemas::*;

/// A user's language, a BCP 47 tag.
pub(super) fn language() -> Value {
    json!({"type": "string", "description": "A BCP 47 tag (`en` until the user chooses)."})
}

/// `dispatchable` and `not_dispatchable_because` of a driver.
pub(super) fn dispatchable_props() -> [(&'static str, Value); 2] {
    let reasons: Vec<&str> = dispatch_core::driver::NotDispatchable::ALL.iter().map(|r| r.as_str()).collect();
    let mut why = nullable(enumeration(&reasons));
    why["description"] = json!(
        "Why the dispatch round would not offer this driver a trip now; null when it would. The first that \
         holds of: suspended, offline, on_trip, socket_disconnected (a driver who uses the WebSocket is not \
         connected), stale_location. not_approved, document_expired and cash_debt_limit are reserved for driver \
         onboarding and cash debts, and not produced by this version."
    );
    [
        (
            "dispatchable",
            json!({"type": "boolean", "description": "Whether the round may offer this driver trips now."}),
        ),
        ("not_dispatchable_because", why),
    ]
}

/// `GET /v1/me`, `PATCH /v1/me`: the caller's profile; `vehicle` and `dispatchable` for
/// drivers only.
pub(super) fn me_out() -> Value {
    let vehicle = obj(
        &[
            ("category", category()),
            ("plate", string()),
            ("make", nullable(string())),
            ("model", nullable(string())),
            ("color", nullable(string())),
            ("year", nullable(int())),
        ],
        &["category", "plate", "make", "model", "color", "year"],
    );
    let [d, why] = dispatchable_props();
    obj(
        &[
            ("id", id("usr_")),
            ("role", role_name()),
            ("name", string()),
            ("phone", string()),
            ("email", nullable(string())),
            ("language", language()),
            ("default_payment_method", nullable(enumeration(&["cash", "wallet", "card"]))),
            ("rating", user_rating()),
            ("vehicle", vehicle),
            d,
            why,
        ],
        &["id", "role", "name", "phone", "email", "language", "default_payment_method", "rating"],
    )
}

/// `POST /v1/trips/{id}/share`.
pub(super) fn share_out() -> Value {
    let mut expires = nullable(time());
    expires["description"] = json!(
        "When the link stops working: 15 minutes after the trip ends. null while the trip is open (its end is \
         not known yet); the shared view's `expires_at` tells it once the trip has ended."
    );
    obj(
        &[
            (
                "token",
                json!({"type": "string", "pattern": "^[0-9a-f]{80}$", "description": "Shown once; it is the link's only credential."}),
            ),
            ("url", json!({"type": "string", "description": "`/v1/share/<token>`, relative to the API's origin."})),
            ("expires_at", expires),
        ],
        &["token", "url", "expires_at"],
    )
}

/// `GET /v1/share/{token}`: no phone, no rider, no pickup code, no user ids.
pub(super) fn shared_trip_out() -> Value {
    let vehicle = super::trip::vehicle_card();
    let driver = nullable(obj(
        &[
            ("name", json!({"type": "string", "description": "The driver's first name."})),
            ("vehicle", nullable(vehicle)),
        ],
        &["name", "vehicle"],
    ));
    let location = nullable(obj(&[("lat", number()), ("lng", number()), ("at", time())], &["lat", "lng", "at"]));
    obj(
        &[
            ("status", trip_status()),
            ("driver", driver),
            ("location", location),
            ("eta", super::trip::trip_eta()),
            ("expires_at", nullable(time())),
        ],
        &["status", "driver", "location", "eta", "expires_at"],
    )
}

/// `PATCH /v1/me`: each field optional; `email` and `default_payment_method` take `null`
/// to remove them. The shapes here are the domain's where a schema can say them exactly
/// (a name's length and characters, a language tag); an address's finer rules (its
/// domain's labels) are the handler's, `400 invalid_request` with `param` `email`.
pub(super) fn me_update_in() -> Value {
    let no_control = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";
    strict(
        &[
            ("name", json!({"type": "string", "minLength": 1, "maxLength": 100, "pattern": no_control})),
            (
                "email",
                json!({"type": ["string", "null"], "maxLength": 254,
                    "pattern": "^[^@\\s\\u0000-\\u001F\\u007F-\\u009F]{1,64}@[^@\\s\\u0000-\\u001F\\u007F-\\u009F]+$",
                    "description": "A plausible address (`name@example.com`); null removes it."}),
            ),
            (
                "language",
                json!({"type": "string", "maxLength": 35, "pattern": "^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$",
                    "description": "A BCP 47 tag (`en`, `ar`, `ar-EG`, `zh-Hant-TW`)."}),
            ),
            ("default_payment_method", nullable(enumeration(&["cash", "wallet", "card"]))),
        ],
        &[],
    )
}
pub(super) fn me_update_ex() -> Value {
    json!({"name": "Amal Hassan", "email": "amal@example.com", "language": "ar-EG", "default_payment_method": "card"})
}

/// A driver's live record (`GET /v1/admin/drivers`, `POST /v1/driver/status`).
pub(super) fn driver_schema() -> Value {
    obj(
        &[
            ("driver_id", id("usr_")),
            ("availability", enumeration(&["offline", "available", "on_trip"])),
            ("category", category()),
            ("trip_id", nullable(id("trp_"))),
            ("location", nullable(point_out())),
            ("location_age_s", nullable(int())),
            ("connected", nullable(boolean())),
            ("suspended", boolean()),
            ("distance_m", uint()),
            dispatchable_props()[0].clone(),
            dispatchable_props()[1].clone(),
        ],
        &[
            "driver_id",
            "availability",
            "category",
            "trip_id",
            "location",
            "location_age_s",
            "connected",
            "suspended",
            "dispatchable",
            "not_dispatchable_because",
        ],
    )
}
