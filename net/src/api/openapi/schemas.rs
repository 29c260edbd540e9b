//! The JSON Schemas of the OpenAPI document: small helpers over `json!` for the repeated
//! parts (ids, money, points, nullable fields, pages), the shapes of answers (as `render`
//! writes them: the properties always present are `required`, more may be added) and of
//! request bodies (strict: `additionalProperties: false`, what the handlers read), with
//! an example of each body.

use serde_json::{Map, Value, json};

// --- Schema helpers -------------------------------------------------------------------

pub(super) fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// `schema` or `null`.
pub(super) fn nullable(schema: Value) -> Value {
    match schema.get("type") {
        Some(Value::String(t)) if schema.as_object().is_some_and(|o| !o.contains_key("enum")) => {
            let mut s = schema.clone();
            s["type"] = json!([t, "null"]);
            s
        }
        _ => json!({"anyOf": [schema, {"type": "null"}]}),
    }
}

pub(super) fn string() -> Value {
    json!({"type": "string"})
}

pub(super) fn int() -> Value {
    json!({"type": "integer"})
}

pub(super) fn uint() -> Value {
    json!({"type": "integer", "minimum": 0})
}

pub(super) fn number() -> Value {
    json!({"type": "number"})
}

pub(super) fn boolean() -> Value {
    json!({"type": "boolean"})
}

pub(super) fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

/// An amount in minor units (integer: never a float).
pub(super) fn money() -> Value {
    json!({"type": "integer", "description": "Integer amount in the currency's minor units."})
}

pub(super) fn currency() -> Value {
    json!({"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code."})
}

pub(super) fn category() -> Value {
    json!({"type": "string", "pattern": "^[a-z0-9_]{1,32}$", "description": "A vehicle category (`economy`, `comfort`, `moto`…)."})
}

pub(super) fn id(prefix: &str) -> Value {
    json!({"type": "string", "pattern": format!("^{prefix}[0-9a-f]{{16}}$")})
}

pub(super) fn enumeration(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

pub(super) fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

/// An object of the server's answers: these properties (more may be added), these always present.
pub(super) fn obj(props: &[(&str, Value)], required: &[&str]) -> Value {
    let p: Map<String, Value> = props.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    json!({"type": "object", "properties": p, "required": required})
}

/// An object a client sends: exactly these properties, these required.
pub(super) fn strict(props: &[(&str, Value)], required: &[&str]) -> Value {
    let mut v = obj(props, required);
    v["additionalProperties"] = json!(false);
    v
}

/// `{"lat","lng"}` in a request (ranges checked by the handler: `invalid_coordinates`).
pub(super) fn point_in() -> Value {
    strict(&[("lat", number()), ("lng", number())], &["lat", "lng"])
}

pub(super) fn place_in() -> Value {
    strict(&[("lat", number()), ("lng", number()), ("address", nullable(string()))], &["lat", "lng"])
}

/// `stops` in a request: up to `MAX_STOPS` places, in the order the ride visits them.
pub(super) fn stops_in() -> Value {
    json!({"type": "array", "items": place_in(), "maxItems": dispatch_core::trip::MAX_STOPS,
           "description": "Stops on the way, in order: the route, and so the fare, is pickup → stops → dropoff."})
}

/// `{"items", "next_cursor"}` of `item`.
pub(super) fn page_of(item: Value) -> Value {
    obj(&[("items", array(item)), ("next_cursor", nullable(string()))], &["items", "next_cursor"])
}

pub(super) fn items_of(item: Value) -> Value {
    obj(&[("items", array(item))], &["items"])
}

// --- Query parameters -----------------------------------------------------------------

pub(super) fn q(name: &str, schema: Value, required: bool, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": required, "schema": schema, "description": description})
}

pub(super) fn limit_q() -> Value {
    q("limit", json!({"type": "integer", "minimum": 1, "maximum": 200, "default": 50}), false, "Page size.")
}

pub(super) fn cursor_q() -> Value {
    q("cursor", string(), false, "The `next_cursor` of the previous page (opaque).")
}

pub(super) fn page_query() -> Vec<Value> {
    vec![limit_q(), cursor_q()]
}

pub(super) fn trips_query() -> Vec<Value> {
    vec![
        limit_q(),
        cursor_q(),
        q("status", trip_status(), false, "Only trips in this status."),
        q("zone_id", id("zon_"), false, "Only trips of this zone (a malformed id is `400 invalid_request`)."),
    ]
}

/// `GET /v1/admin/trips`: the riders' and drivers' filters, and `ref`.
pub(super) fn admin_trips_query() -> Vec<Value> {
    let mut v = trips_query();
    v.push(q(
        "ref",
        json!({"type": "string", "minLength": 1, "maxLength": 16}),
        false,
        "The trip with this reference (any case, the dash optional; `O` reads as `0`, `I` and `L` as `1`), hot or \
         archived, among the last 30 days' trips: a page of one or none. A malformed one is `400 invalid_request`.",
    ));
    v
}

pub(super) fn lat_lng_query() -> Vec<Value> {
    vec![q("lat", number(), true, "Latitude, -90 to 90."), q("lng", number(), true, "Longitude, -180 to 180.")]
}

pub(super) fn nearby_query() -> Vec<Value> {
    let mut v = lat_lng_query();
    v.push(q(
        "radius_m",
        json!({"type": "number", "minimum": 1, "maximum": 100000, "default": 5000}),
        false,
        "Radius, metres.",
    ));
    v.push(limit_q());
    v
}

pub(super) fn drivers_query() -> Vec<Value> {
    vec![
        limit_q(),
        cursor_q(),
        q("availability", enumeration(&["offline", "available", "on_trip"]), false, "Only drivers in this state."),
    ]
}

pub(super) fn alerts_query() -> Vec<Value> {
    vec![
        limit_q(),
        cursor_q(),
        q("status", enumeration(&["open", "acknowledged"]), false, "Only alerts in this state."),
    ]
}

pub(super) fn wallet_query() -> Vec<Value> {
    vec![limit_q(), cursor_q(), q("currency", currency(), false, "The wallet's currency (default: the service's).")]
}

pub(super) fn reconcile_query() -> Vec<Value> {
    vec![q("gateway", string(), true, "The gateway whose settlement report the body is.")]
}

// --- Shapes of answers ----------------------------------------------------------------

pub(super) fn trip_status() -> Value {
    enumeration(&["scheduled", "searching", "accepted", "arrived", "in_progress", "completed", "cancelled", "expired"])
}

pub(super) fn point_out() -> Value {
    obj(&[("lat", number()), ("lng", number())], &["lat", "lng"])
}

pub(super) fn place_out() -> Value {
    obj(&[("lat", number()), ("lng", number()), ("address", string())], &["lat", "lng"])
}

pub(super) fn fare_quote() -> Value {
    obj(
        &[("amount_minor", money()), ("currency", currency()), ("currency_exponent", uint())],
        &["amount_minor", "currency", "currency_exponent"],
    )
}

pub(super) fn user_schema() -> Value {
    obj(
        &[
            ("id", id("usr_")),
            ("role", role_name()),
            ("name", string()),
            ("phone", string()),
            (
                "vehicle",
                nullable(obj(
                    &[
                        ("category", category()),
                        ("plate", string()),
                        ("make", nullable(string())),
                        ("model", nullable(string())),
                        ("color", nullable(string())),
                        ("year", nullable(int())),
                    ],
                    &["category", "plate", "make", "model", "color", "year"],
                )),
            ),
            ("rating", user_rating()),
            ("suspended", boolean()),
            ("created_at", time()),
            ("email", nullable(string())),
            ("language", json!({"type": "string", "description": "A BCP 47 tag (`en` until the user chooses)."})),
            ("default_payment_method", nullable(enumeration(&["cash", "wallet", "card"]))),
        ],
        &[
            "id",
            "role",
            "name",
            "phone",
            "vehicle",
            "rating",
            "suspended",
            "created_at",
            "email",
            "language",
            "default_payment_method",
        ],
    )
}

/// A user's rating: `null` until 3 ratings.
pub(super) fn user_rating() -> Value {
    let mut v = nullable(obj(&[("average", number()), ("count", uint())], &["average", "count"]));
    v["description"] = json!("The average of the user's ratings (2 decimals) and their count; null until 3 ratings.");
    v
}

pub(super) fn offer_schema() -> Value {
    obj(
        &[
            ("trip_id", id("trp_")),
            ("pickup", place_out()),
            ("dropoff", place_out()),
            ("stops", array(place_out())),
            ("category", category()),
            ("fare", fare_quote()),
            ("distance_to_pickup_m", uint()),
            ("expires_at", time()),
        ],
        &["trip_id", "pickup", "dropoff", "stops", "category", "fare", "distance_to_pickup_m", "expires_at"],
    )
}

pub(super) fn zone_schema() -> Value {
    obj(
        &[
            ("id", id("zon_")),
            ("name", string()),
            ("currency", currency()),
            ("currency_exponent", uint()),
            ("active", boolean()),
            ("polygon", json!({"type": "object"})),
            ("pricing", json!({"type": "object", "additionalProperties": {"type": "object"}})),
            ("surge", json!({"type": "object"})),
            ("extra_fee_minor", money()),
            ("created_at", time()),
            ("updated_at", time()),
            // ----- issue 20: A -----
            ("bidding", boolean()),
        ],
        &["id", "name", "currency", "currency_exponent", "active", "polygon", "pricing", "created_at", "updated_at"],
    )
}

pub(super) fn bid_schema() -> Value {
    obj(
        &[
            ("id", id("bid_")),
            ("trip_id", id("trp_")),
            ("driver_id", id("usr_")),
            ("amount_minor", money()),
            ("distance_to_pickup_m", uint()),
            ("at", time()),
        ],
        &["id", "trip_id", "driver_id", "amount_minor", "distance_to_pickup_m", "at"],
    )
}

pub(super) fn message_schema() -> Value {
    obj(
        &[
            ("id", id("msg_")),
            ("trip_id", id("trp_")),
            ("from_user_id", nullable(id("usr_"))),
            ("from_role", enumeration(&["rider", "driver", "support", "admin"])),
            ("text", string()),
            ("at", time()),
        ],
        &["id", "trip_id", "from_user_id", "from_role", "text", "at"],
    )
}

pub(super) fn alert_schema() -> Value {
    obj(
        &[
            ("id", id("alr_")),
            ("trip_id", id("trp_")),
            ("raised_by", id("usr_")),
            ("location", nullable(point_out())),
            ("note", nullable(string())),
            ("status", enumeration(&["open", "acknowledged"])),
            ("raised_at", time()),
            ("count", uint()),
            ("last_raised_at", time()),
            ("acknowledged_by", nullable(id("usr_"))),
            ("acknowledged_at", nullable(time())),
        ],
        &[
            "id",
            "trip_id",
            "raised_by",
            "location",
            "note",
            "status",
            "raised_at",
            "count",
            "last_raised_at",
            "acknowledged_by",
            "acknowledged_at",
        ],
    )
}

pub(super) fn transfer_schema() -> Value {
    let side = obj(
        &[("kind", string()), ("owner", nullable(id("usr_"))), ("currency", currency())],
        &["kind", "owner", "currency"],
    );
    obj(
        &[
            ("id", id("txf_")),
            (
                "amount_minor",
                json!({"type": "integer", "description": "Signed from the wallet's side in a statement: positive credited, negative debited."}),
            ),
            ("currency", currency()),
            ("currency_exponent", uint()),
            ("code", string()),
            ("state", enumeration(&["posted", "pending", "posted_from_hold", "voided"])),
            ("debit", side.clone()),
            ("credit", side),
            ("trip_id", nullable(id("trp_"))),
            ("at", time()),
        ],
        &["id", "amount_minor", "currency", "currency_exponent", "code", "state", "debit", "credit", "trip_id", "at"],
    )
}

pub(super) fn error_schema() -> Value {
    let detail = obj(&[("param", string()), ("code", string()), ("message", string())], &["param", "code", "message"]);
    obj(
        &[(
            "error",
            obj(
                &[
                    (
                        "type",
                        enumeration(&[
                            "invalid_request_error",
                            "authentication_error",
                            "rate_limit_error",
                            "api_error",
                        ]),
                    ),
                    ("code", json!({"type": "string", "description": "Stable code of API.md's table."})),
                    ("message", json!({"type": "string", "description": "For people; may change."})),
                    (
                        "request_id",
                        json!({"type": "string", "description": "The answer's `X-Request-Id`: quote it to support."}),
                    ),
                    (
                        "param",
                        json!({"type": "string", "description": "The first invalid field, dotted (`pickup.lat`, `stops.1.lat`), or a header (`Idempotency-Key`)."}),
                    ),
                    ("details", array(detail)),
                ],
                &["type", "code", "message", "request_id"],
            ),
        )],
        &["error"],
    )
}

// --- Answers of single operations -----------------------------------------------------

pub(super) fn health_out() -> Value {
    obj(&[("status", enumeration(&["ok"]))], &["status"])
}
pub(super) fn ready_out() -> Value {
    obj(
        &[("status", enumeration(&["ready", "not_ready"])), ("checks", json!({"type": "object"}))],
        &["status", "checks"],
    )
}
pub(super) fn metrics_out() -> Value {
    json!({"type": "string", "description": "Prometheus text exposition format."})
}
pub(super) fn openapi_out() -> Value {
    obj(
        &[("openapi", string()), ("info", json!({"type": "object"})), ("paths", json!({"type": "object"}))],
        &["openapi", "info", "paths"],
    )
}
pub(super) fn otp_issue_out() -> Value {
    obj(&[("expires_in_s", uint())], &["expires_in_s"])
}
pub(super) fn token_user_out() -> Value {
    obj(&[("token", string()), ("user", r("User"))], &["token", "user"])
}
pub(super) fn coupon_out() -> Value {
    obj(
        &[
            ("id", id("cpn_")),
            ("code", string()),
            (
                "uses",
                json!({"type": "integer", "minimum": 0, "description": "Trips booked with it, less those cancelled without a fee."}),
            ),
            ("created_at", time()),
            (
                "disabled_at",
                json!({"type": ["string", "null"], "format": "date-time", "description": "When an admin disabled it; null while it applies."}),
            ),
        ],
        &["id", "code", "uses", "created_at", "disabled_at"],
    )
}
pub(super) fn coupons_page() -> Value {
    page_of(coupon_out())
}
pub(super) fn estimate_out() -> Value {
    let quote = obj(
        &[
            ("category", category()),
            ("fare", fare_quote()),
            ("distance_m", uint()),
            ("duration_s", uint()),
            ("surge_bps", uint()),
            ("discount_minor", money()),
            ("route_source", string()),
            ("breakdown", json!({"type": "object"})),
            (
                "route",
                obj(
                    &[(
                        "polyline",
                        json!({"type": "string", "description": "The route through pickup, stops and dropoff: \
                               a Google encoded polyline, precision 5 (the router's geometry, or straight segments)."}),
                    )],
                    &["polyline"],
                ),
            ),
            (
                "pickup_eta_s",
                json!({"type": ["integer", "null"], "minimum": 0,
                       "description": "Seconds for the nearest eligible driver to reach the pickup (straight line of [route]); null when none."}),
            ),
            (
                "nearby_drivers",
                json!({"type": "integer", "minimum": 0,
                       "description": "Eligible drivers of the category within the search radius (counted up to 100)."}),
            ),
        ],
        &[
            "category",
            "fare",
            "distance_m",
            "duration_s",
            "surge_bps",
            "discount_minor",
            "route",
            "pickup_eta_s",
            "nearby_drivers",
        ],
    );
    obj(&[("zone_id", id("zon_")), ("estimates", array(quote))], &["zone_id", "estimates"])
}
pub(super) fn trip_ref() -> Value {
    r("Trip")
}
pub(super) fn trips_page() -> Value {
    page_of(r("Trip"))
}
pub(super) fn driver_ref() -> Value {
    r("Driver")
}
pub(super) fn drivers_page() -> Value {
    page_of(r("Driver"))
}
pub(super) fn drivers_items() -> Value {
    items_of(r("Driver"))
}
pub(super) fn offers_items() -> Value {
    items_of(r("Offer"))
}
pub(super) fn zone_ref() -> Value {
    r("Zone")
}
pub(super) fn zones_page() -> Value {
    page_of(r("Zone"))
}
pub(super) fn bid_ref() -> Value {
    r("Bid")
}
pub(super) fn bids_items() -> Value {
    items_of(r("Bid"))
}
pub(super) fn alert_ref() -> Value {
    r("Alert")
}
pub(super) fn message_ref() -> Value {
    r("Message")
}
pub(super) fn messages_page() -> Value {
    page_of(r("Message"))
}
pub(super) fn alerts_page() -> Value {
    page_of(r("Alert"))
}
pub(super) fn rating_out() -> Value {
    obj(
        &[("trip_id", id("trp_")), ("stars", uint()), ("comment", nullable(string()))],
        &["trip_id", "stars", "comment"],
    )
}
pub(super) fn stats_out() -> Value {
    obj(
        &[
            ("drivers", json!({"type": "object"})),
            ("trips", json!({"type": "object", "additionalProperties": {"type": "integer"}})),
            ("queue_depth", uint()),
            ("queue_capacity", uint()),
            ("read_only", boolean()),
        ],
        &["drivers", "trips", "queue_depth", "queue_capacity", "read_only"],
    )
}
pub(super) fn events_out() -> Value {
    page_of(obj(&[("type", string()), ("at", time())], &["type", "at"]))
}
pub(super) fn trail_out() -> Value {
    let point = obj(
        &[("at", time()), ("lat", number()), ("lng", number()), ("heading_deg", nullable(number()))],
        &["at", "lat", "lng", "heading_deg"],
    );
    obj(
        &[
            ("items", array(point)),
            ("recorded", uint()),
            ("sampled", boolean()),
            ("truncated", boolean()),
            ("next_cursor", json!({"type": "null"})),
        ],
        &["items", "recorded", "sampled", "truncated", "next_cursor"],
    )
}
pub(super) fn wallet_out() -> Value {
    obj(
        &[("balance", fare_quote()), ("available_minor", money()), ("entries", page_of(r("Transfer")))],
        &["balance", "available_minor", "entries"],
    )
}
pub(super) fn transfer_ref() -> Value {
    r("Transfer")
}
pub(super) fn ledger_out() -> Value {
    obj(
        &[("balanced", boolean()), ("accounts", uint()), ("transfers", uint()), ("sum_minor", int())],
        &["balanced", "accounts", "transfers", "sum_minor"],
    )
}
pub(super) fn webhook_out() -> Value {
    obj(
        &[("status", enumeration(&["processed", "duplicate"])), ("applied", boolean()), ("reason", string())],
        &["status", "applied"],
    )
}
pub(super) fn reconcile_out() -> Value {
    obj(
        &[
            ("matched", uint()),
            ("mismatches", array(json!({"type": "object"}))),
            ("trips", uint()),
            ("rows", uint()),
            ("payouts_and_top_ups", uint()),
        ],
        &["matched", "mismatches", "trips", "rows"],
    )
}
pub(super) fn dead_letters_out() -> Value {
    let item = obj(
        &[
            ("trip_id", id("trp_")),
            ("action", string()),
            ("amount_minor", money()),
            ("error", string()),
            ("attempts", uint()),
            ("at", time()),
        ],
        &["trip_id", "action", "amount_minor", "error", "attempts", "at"],
    );
    page_of(item)
}

pub(super) fn no_query() -> Vec<Value> {
    Vec::new()
}

pub(super) fn empty_object() -> Value {
    json!({"type": "object", "additionalProperties": false, "properties": {}})
}

pub(super) fn empty_example() -> Value {
    json!({})
}

/// A cancellation's `reason_code`: the codes of API.md ("Cancel"), from the domain's list.
pub(super) fn cancel_reason_code() -> Value {
    let codes: Vec<&str> = dispatch_core::trip::CancelReason::ALL.iter().map(|c| c.as_str()).collect();
    enumeration(&codes)
}

// ----- issue 20: S -----
/// A user's role as shown: `rider`, `driver`, `support`, `admin`, or the name of a custom
/// staff role from `[roles.<name>]`.
pub(super) fn role_name() -> Value {
    json!({"type": "string", "pattern": "^[a-z0-9_]{1,32}$",
        "description": "`rider`, `driver`, `support`, `admin`, or a custom staff role's name (`[roles.<name>]`)."})
}
