//! The API's OpenAPI 3.1 document, built here from one table of operations (`ops::OPS`), and
//! the strict check of every JSON request body against its operation's schema.
//!
//! The document is committed as `net/openapi.json` (what integrators read and generate
//! clients from) and served at `GET /v1/openapi.json`.
//!
//! Guarantees:
//! - the document describes exactly the routes the server matches: its (method, path)
//!   pairs are `api::routes::ROUTES`' (but [`UNDOCUMENTED`]), each `operationId` is the
//!   route's spec name, and each operation's `x-dispatch-allow` and `security` are the
//!   route's `Spec::allow` (tests below: a route added without its operation, or the
//!   reverse, fails them);
//! - `net/openapi.json` is this module's output, byte for byte (a test regenerates it;
//!   `UPDATE_OPENAPI=1 cargo test -p dispatch-server --lib openapi` rewrites it);
//! - a JSON body is valid against its operation's request schema before any handler
//!   deserializes it ([`check_body`]): objects where objects are expected, no unknown
//!   fields, and every violation reported in one `400 invalid_request` (`param` the first
//!   one's dotted path, `details` all of them). Ranges of coordinates stay the handlers'
//!   (`invalid_coordinates`, API.md): the schemas' `lat`/`lng` are plain numbers.

mod applications;
mod audit;
mod hooks;
mod notify;
mod ops;
mod payouts;
mod profile;
mod requests;
// ----- issue 20: H -----
mod reports;
// ----- issue 21 -----
mod cluster;
mod schemas;
// ----- issue 20: S -----
mod staff;
mod trip;
mod users;

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use ops::{Body, OPS, Op, Who, links};
use profile::driver_schema;
use schemas::*;
use trip::trip_schema;

use super::routes::{Endpoint, ROUTES, Spec};
use crate::auth::Allow;
use crate::http::{ApiError, FieldError, status_of};

/// Routes the document leaves out: the WebSocket upgrade (not a request/response
/// operation: its messages are API.md's), the console's static files (not API), and the
/// cluster's internal `POST /v1/cluster/commands` and `GET /v1/cluster/checkpoint` (nodes
/// call them, signed, never clients: net/API-NOTES.md).
pub const UNDOCUMENTED: &[&str] = &["ws", "console", "cluster_commands", "cluster_checkpoint"];

/// Where the committed document lives, relative to the crate.
pub const COMMITTED_PATH: &str = "openapi.json";

/// Where the server serves it.
pub const PATH: &str = "/v1/openapi.json";

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

/// The document as served and committed: pretty-printed, with a final newline.
pub fn document_bytes() -> Bytes {
    static BYTES: OnceLock<Bytes> = OnceLock::new();
    BYTES.get_or_init(|| Bytes::from(render(document()))).clone()
}

/// Pretty JSON with a final newline.
pub fn render(doc: &Value) -> String {
    let mut s = serde_json::to_string_pretty(doc).unwrap_or_default();
    s.push('\n');
    s
}

// --- Building the document ------------------------------------------------------------

fn who_json(w: Who) -> Value {
    match w {
        Who::Anyone => json!("anyone"),
        Who::Authenticated => json!("authenticated"),
        Who::Roles(r) => json!(r),
        Who::Permission(p) => json!({"permission": p}),
    }
}

/// What the route table's `Allow` looks like in the document (the tests compare).
pub fn allow_json(a: Allow) -> Value {
    match a {
        Allow::Anyone => json!("anyone"),
        Allow::Authenticated => json!("authenticated"),
        Allow::Roles(r) => json!(r.iter().map(|r| r.as_str()).collect::<Vec<_>>()),
        Allow::Permission(p) => json!({"permission": p.as_str()}),
    }
}

fn retry_after() -> Value {
    json!({"Retry-After": {"description": "Whole seconds to wait, at least 1.", "schema": {"type": "integer", "minimum": 1}}})
}

/// The route of an operation (its spec: idempotency, rate limits, body limit).
fn spec_of(op: &Op) -> Option<Spec> {
    ROUTES.iter().find(|r| r.method == op.method && r.template == op.path).map(|r| {
        let params: Vec<&str> = r.template.split('/').filter(|s| s.starts_with('{')).map(|_| "x").collect();
        Endpoint::spec(&(r.build)(&params))
    })
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let schema = match (path, name) {
                (_, "bid_id") => id("bid_"),
                (p, "id") if p.starts_with("/v1/trips/") || p.starts_with("/v1/admin/trips/") => id("trp_"),
                (p, "id") if p.starts_with("/v1/admin/zones/") => id("zon_"),
                (p, "id") if p.starts_with("/v1/admin/alerts/") => id("alr_"),
                (p, "id") if p.starts_with("/v1/admin/webhook-endpoints/") => id("whe_"),
                (p, "id") if p.starts_with("/v1/me/devices/") => id("dev_"),
                (_, "event_id") => id("evt_"),
                (_, "id" | "user_id") => id("usr_"),
                _ => json!({"type": "string", "minLength": 1}),
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect()
}

/// Every response of an operation: its successes, then its errors grouped by status, each
/// naming its codes. Beyond `op.errors`: any body may be malformed or too large (`400`,
/// `413`: the body is read on every route), a keyed request may reuse or race a key,
/// an authenticated route may lack a token or the role, a path id may name nothing, any
/// route but the health checks is rate limited, and a route that reaches the engine may
/// find it overloaded, read-only or shutting down.
fn responses(op: &Op, spec: Option<Spec>) -> Value {
    let mut out = Map::new();
    for (i, (status, desc, schema)) in op.ok.iter().enumerate() {
        let mut resp = json!({"description": desc});
        let next = links(op.name);
        if i == 0 && !next.is_empty() {
            let l: Map<String, Value> = next
                .iter()
                .map(|(name, target, param, from)| {
                    ((*name).to_owned(), json!({"operationId": target, "parameters": {*param: from}}))
                })
                .collect();
            resp["links"] = Value::Object(l);
        }
        if let Some(schema) = schema {
            resp["content"] = json!({"application/json": {"schema": schema()}});
            // ----- issue 20: H -----
            if op.name.starts_with("admin_report_") {
                // `Accept: text/csv`: the items as CSV, a header row first.
                resp["content"]["text/csv"] = json!({"schema": {"type": "string"}});
            }
        } else if op.name == "metrics" {
            resp["content"] = json!({"text/plain": {"schema": metrics_out()}});
        } else if op.name == "admin_application_document" {
            // The stored file as it was uploaded, in its sniffed media type.
            let file = json!({"schema": {"type": "string", "contentEncoding": "binary"}});
            resp["content"] = json!({"image/jpeg": file, "image/png": file, "application/pdf": file});
        }
        out.insert(status.to_string(), resp);
    }
    let mut codes: Vec<&str> = vec!["invalid_request", "payload_too_large"];
    if matches!(op.body, Body::Json { .. }) {
        codes.push("invalid_json");
    }
    if op.who != Who::Anyone {
        codes.push("unauthorized");
    }
    if matches!(op.who, Who::Roles(_) | Who::Permission(_)) {
        codes.push("forbidden");
    }
    if op.path.contains('{') {
        codes.push("not_found");
    }
    if spec.is_some_and(|s| s.idempotent) {
        codes.extend(["idempotency_key_in_use", "idempotency_key_reused"]);
    }
    if !matches!(op.name, "healthz" | "readyz") {
        codes.push("rate_limited");
    }
    if op.engine {
        codes.extend(["overloaded", "read_only", "unavailable", "not_leader"]);
    }
    // ----- issue 21 -----
    // A follower forwards every write to the leader: no leader, or none reachable, is
    // `503 not_leader` (with Retry-After) on any of them.
    if op.method != "GET" {
        codes.push("not_leader");
    }
    codes.extend(op.errors);
    let mut by_status: std::collections::BTreeMap<u16, Vec<&str>> = std::collections::BTreeMap::new();
    for c in codes {
        let list = by_status.entry(status_of(c).as_u16()).or_default();
        if !list.contains(&c) {
            list.push(c);
        }
    }
    for (status, list) in by_status {
        let names: Vec<String> = list.iter().map(|c| format!("`{c}`")).collect();
        let mut resp = json!({
            "description": format!("Error codes: {}.", names.join(", ")),
            "content": {"application/json": {"schema": r("Error")}},
        });
        if status == 429 || status == 503 {
            resp["headers"] = retry_after();
        }
        out.insert(status.to_string(), resp);
    }
    if op.name == "readyz" {
        out.insert(
            "503".into(),
            json!({"description": "Not ready (`status`: `not_ready`, the failing `checks`).", "headers": retry_after(),
                "content": {"application/json": {"schema": ready_out()}}}),
        );
    }
    Value::Object(out)
}

fn operation(op: &Op) -> Value {
    let spec = spec_of(op);
    let mut params = path_params(op.path);
    params.extend((op.query)());
    if spec.is_some_and(|s| s.idempotent) {
        params.push(json!({"name": "Idempotency-Key", "in": "header", "required": false,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            "description": "1-255 printable ASCII characters: the request runs at most once per (caller, key)."}));
    }
    let mut v = json!({
        "operationId": op.name,
        "summary": op.summary,
        "tags": [op.tag],
        "security": if op.who == Who::Anyone { json!([]) } else { json!([{"bearerAuth": []}]) },
        "x-dispatch-allow": who_json(op.who),
        "responses": responses(op, spec),
    });
    if let Who::Permission(p) = op.who {
        v["x-dispatch-permission"] = json!(p);
        v["description"] = json!(format!("Needs the `{p}` permission (`[roles.<name>]`; `admin` has every one)."));
    }
    if !params.is_empty() {
        v["parameters"] = json!(params);
    }
    match op.body {
        Body::None => {}
        Body::Json { schema, example, empty_ok } => {
            v["requestBody"] = json!({
                "required": !empty_ok,
                "description": if empty_ok { "May be empty (stands for `{}`)." } else { "Strict JSON: unknown fields are refused." },
                "content": {"application/json": {"schema": schema(), "example": example()}},
            });
        }
        Body::Raw { content_type, description } => {
            let mut content = json!({content_type: {"schema": {"type": "string"}}});
            if content_type == "application/octet-stream" {
                // A document upload: any of these, told apart by its bytes, not this header.
                let file = json!({"schema": {"type": "string", "contentEncoding": "binary"}});
                content = json!({"image/jpeg": file, "image/png": file, "application/pdf": file,
                    "application/octet-stream": file});
            }
            if content_type == "text/csv" {
                // Read as text whatever its declared type; plain text is what most clients send.
                content["text/plain"] = json!({"schema": {"type": "string"}});
            }
            v["requestBody"] = json!({"required": true, "description": description, "content": content});
        }
    }
    v
}

/// Builds the document.
pub fn build() -> Value {
    let mut paths = Map::new();
    for op in OPS {
        let item = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        item[op.method.to_ascii_lowercase()] = operation(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "dispatch",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP API of dispatchd, the ride-hailing dispatch engine. Money is integer minor units beside an ISO 4217 currency; times are RFC 3339 UTC; ids are a type prefix and 16 hex digits. Errors are `{\"error\":{\"code\",\"message\",…}}` with the stable codes of each response's description. `x-dispatch-allow` names the roles that may call an operation, or the staff permission it needs (also `x-dispatch-permission`). The WebSocket (`GET /v1/ws`) is described in API.md.",
            "license": {"name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": components(),
    })
}

// --- Strict bodies --------------------------------------------------------------------

/// The compiled request schema of every operation with a JSON body, by operation name.
fn validators() -> &'static HashMap<&'static str, jsonschema::Validator> {
    static V: OnceLock<HashMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    V.get_or_init(|| {
        OPS.iter()
            .filter_map(|op| match op.body {
                Body::Json { schema, .. } => {
                    // The schemas are this module's constants (a test compiles every one).
                    let v = jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(&schema()).ok()?;
                    Some((op.name, v))
                }
                _ => None,
            })
            .collect()
    })
}

/// Compiles every request schema now (at start-up), not on the first request.
pub fn init() {
    let _ = validators();
    let _ = document_bytes();
}

/// A JSON pointer (`/stops/1/lat`) as a dotted path (`stops.1.lat`).
fn dotted(pointer: &str) -> String {
    pointer.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect::<Vec<_>>().join(".")
}

fn join(base: &str, field: &str) -> String {
    if base.is_empty() { field.to_owned() } else { format!("{base}.{field}") }
}

/// The most violations one answer lists (`details`).
pub const MAX_FIELD_ERRORS: usize = 20;

/// Checks a parsed body against operation `op`'s request schema: every violation in one
/// `400 invalid_request` (`param`: the first one's path; `details`: all). An operation
/// without a JSON schema passes.
pub fn check_body(op: &str, body: &Value) -> Result<(), ApiError> {
    let Some(v) = validators().get(op) else { return Ok(()) };
    let mut fields = Vec::new();
    // A body of thousands of wrong items is told about its first ones: the answer (and
    // the work of building it) stays small whatever the caller sent.
    for e in v.iter_errors(body).take(MAX_FIELD_ERRORS) {
        let at = dotted(e.instance_path().as_str());
        match e.kind() {
            jsonschema::error::ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                fields.push(field(join(&at, name), format!("`{name}` is required")));
            }
            jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    fields.push(field(join(&at, name), format!("unknown field `{name}`")));
                }
            }
            _ => {
                let mut msg = e.to_string();
                if msg.len() > 200 {
                    let cut = (0..=200).rev().find(|i| msg.is_char_boundary(*i)).unwrap_or(0);
                    msg.truncate(cut);
                    msg.push('…');
                }
                let name = if at.is_empty() { "the body".to_owned() } else { format!("`{at}`") };
                fields.push(field(at, format!("{name}: {msg}")));
            }
        }
    }
    if fields.is_empty() {
        return Ok(());
    }
    fields.truncate(MAX_FIELD_ERRORS);
    let summary = fields.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join("; ");
    Err(ApiError::invalid(format!("invalid request: {summary}")).with_fields(fields))
}

fn field(param: String, message: String) -> FieldError {
    FieldError { param, code: "invalid_request", message }
}

/// The document's shared parts: the bearer scheme and the schemas answers refer to.
fn components() -> Value {
    json!({
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "description": "A user token (`POST /v1/auth/otp/verify`, `POST /v1/admin/users`) or the admin token."}},
        "schemas": {
            "Error": error_schema(),
            "Trip": trip_schema(),
            "User": user_schema(),
            "Driver": driver_schema(),
            "Offer": offer_schema(),
            "Zone": zone_schema(),
            "Bid": bid_schema(),
            "Alert": alert_schema(),
            "Message": message_schema(),
            "Transfer": transfer_schema(),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::requests::create_trip_ex;
    use super::*;

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((method.to_ascii_uppercase(), path.clone(), op));
            }
        }
        out
    }

    /// The (method, path) pairs of a document.
    fn documented_pairs(doc: &Value) -> BTreeSet<(String, String)> {
        operations(doc).into_iter().map(|(m, p, _)| (m, p)).collect()
    }

    /// The (method, path) pairs the router serves that the document must describe.
    fn routed_pairs() -> BTreeSet<(String, String)> {
        ROUTES
            .iter()
            .filter(|r| !UNDOCUMENTED.contains(&r.name))
            .map(|r| (r.method.to_owned(), r.template.to_owned()))
            .collect()
    }

    #[test]
    fn the_document_is_the_router() {
        let doc = build();
        let (documented, routed) = (documented_pairs(&doc), routed_pairs());
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(missing.is_empty(), "routes without an operation in the document: {missing:?}");
        assert!(extra.is_empty(), "operations without a route: {extra:?}");
        for route in ROUTES.iter().filter(|r| !UNDOCUMENTED.contains(&r.name)) {
            let op = &doc["paths"][route.template][route.method.to_ascii_lowercase()];
            let params: Vec<&str> = route.template.split('/').filter(|s| s.starts_with('{')).map(|_| "x").collect();
            let spec = (route.build)(&params).spec();
            assert_eq!(spec.name, route.name, "{route:?}: the table's name is the endpoint's spec name");
            assert_eq!(op["operationId"], json!(route.name), "{route:?}");
            assert_eq!(op["x-dispatch-allow"], allow_json(spec.allow), "{route:?}: x-dispatch-allow");
            let public = spec.allow == Allow::Anyone;
            assert_eq!(op["security"], if public { json!([]) } else { json!([{"bearerAuth": []}]) }, "{route:?}");
            // 429 is documented wherever a limit applies, with Retry-After.
            if route.name != "healthz" && route.name != "readyz" {
                assert!(op["responses"]["429"]["headers"]["Retry-After"].is_object(), "{route:?}: 429");
            }
            assert!(op["responses"]["413"].is_object(), "{route:?}: 413");
            if !public {
                assert!(op["responses"]["401"].is_object(), "{route:?}: 401");
            }
        }
        // Every link names an operation of the document and one of its path parameters.
        for op in OPS {
            for (name, target, param, _) in links(op.name) {
                let found = operations(&doc).into_iter().find(|(_, _, o)| o["operationId"] == json!(target));
                let (_, path, _) = found.unwrap_or_else(|| panic!("{}: link {name} to unknown {target}", op.name));
                assert!(path.contains(&format!("{{{param}}}")), "{}: link {name}: {path} has no {param}", op.name);
            }
        }
        // Operation ids are unique.
        let ids: BTreeSet<&str> =
            operations(&doc).iter().map(|(_, _, op)| op["operationId"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), operations(&doc).len());
    }

    #[test]
    fn a_route_or_an_operation_alone_is_caught() {
        // The comparison above, on a document with one operation removed and one added.
        let mut doc = build();
        doc["paths"].as_object_mut().unwrap().remove("/v1/wallet");
        doc["paths"]["/v1/nowhere"] = json!({"get": {"operationId": "nowhere"}});
        let (documented, routed) = (documented_pairs(&doc), routed_pairs());
        assert!(routed.difference(&documented).any(|(_, p)| p == "/v1/wallet"));
        assert!(documented.difference(&routed).any(|(_, p)| p == "/v1/nowhere"));
    }

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED_PATH);
        let fresh = render(&build());
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == fresh,
            "net/openapi.json is not what net/src/openapi.rs generates; run \
             `UPDATE_OPENAPI=1 cargo test -p dispatch-server --lib openapi` and commit net/openapi.json"
        );
        let doc: Value = serde_json::from_str(&committed).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    }

    #[test]
    fn every_request_schema_compiles_and_takes_its_example() {
        for op in OPS {
            if let Body::Json { schema, example, empty_ok } = op.body {
                let v = jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(&schema());
                let v = v.unwrap_or_else(|e| panic!("{}: {e}", op.name));
                assert!(v.is_valid(&example()), "{}: its example is invalid", op.name);
                if empty_ok {
                    assert!(v.is_valid(&json!({})), "{}: an empty body must be valid", op.name);
                }
                assert!(validators().contains_key(op.name), "{}", op.name);
            }
        }
    }

    #[test]
    fn a_body_of_thousands_of_wrong_items_gets_a_short_answer() {
        let mut body = create_trip_ex();
        let extra: serde_json::Map<String, Value> = (0..5000).map(|i| (format!("x{i}"), json!(i))).collect();
        body.as_object_mut().unwrap().extend(extra);
        let e = check_body("trip_create", &body).unwrap_err();
        assert_eq!((e.code, e.details.len()), ("invalid_request", MAX_FIELD_ERRORS));
        assert!(e.message.len() < 4096, "{}", e.message.len());
    }

    #[test]
    fn every_violation_is_reported_with_its_path() {
        let e =
            check_body("trip_create", &json!({"pickup": [30.0, 31.2], "dropoff": {"lat": 30.0, "lng": 31.0, "x": 1}}))
                .unwrap_err();
        assert_eq!(e.code, "invalid_request");
        let params: BTreeSet<&str> = e.details.iter().map(|d| d.param.as_str()).collect();
        for p in ["pickup", "dropoff.x", "category", "payment_method"] {
            assert!(params.contains(p), "{p} in {params:?}");
        }
        assert_eq!(e.details.len(), 4, "{:?}", e.details);
        assert!(e.param.is_some());
        let e = check_body("trip_create", &json!([1, 2])).unwrap_err();
        assert_eq!(e.details.len(), 1);
        assert!(check_body("trip_create", &create_trip_ex()).is_ok());
        assert!(check_body("trip_accept", &json!({})).is_ok());
        assert_eq!(check_body("trip_accept", &json!({"a": 1})).unwrap_err().param.as_deref(), Some("a"));
        assert_eq!(dotted("/stops/1/lat"), "stops.1.lat");
        assert_eq!(dotted("/a~1b/c~0d"), "a/b.c~d");
    }
}
