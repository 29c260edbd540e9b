//! The schemas of outbound webhook endpoints and their delivery log
//! (`/v1/admin/webhook-endpoints`), as `api::hooks` writes and reads them (the request
//! body strict, like every one).

use dispatch_core::hooks::{EventType, MAX_DESCRIPTION_LEN, MAX_PATTERNS, MAX_URL_LEN};
use serde_json::{Value, json};

use super::schemas::*;

fn types() -> Vec<&'static str> {
    EventType::ALL.iter().map(|t| t.as_str()).collect()
}

/// `POST /v1/admin/webhook-endpoints`.
pub(super) fn hook_endpoint_in() -> Value {
    strict(
        &[
            (
                "url",
                json!({"type": "string", "minLength": 9, "maxLength": MAX_URL_LEN, "pattern": "^https?://[!-~]+$",
                    "description": "Where deliveries are POSTed: `https://` (or `http://` to a loopback address when the server runs with `--dev`); no query, user info or fragment."}),
            ),
            (
                "events",
                json!({"type": "array", "minItems": 1, "maxItems": MAX_PATTERNS, "uniqueItems": true,
                    "items": {"type": "string", "minLength": 1, "maxLength": 40},
                    "description": format!("Event types (`{}`), a group (`trip.*`, `payment.*`, `payout.*`, `sos.*`, `driver.*`, `application.*`) or `*`.", types().join("`, `"))}),
            ),
            ("description", json!({"type": "string", "maxLength": MAX_DESCRIPTION_LEN})),
        ],
        &["url", "events"],
    )
}
pub(super) fn hook_endpoint_in_ex() -> Value {
    json!({"url": "https://hooks.example.com/dispatch", "events": ["trip.completed", "payment.*"], "description": "CRM"})
}

fn endpoint_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("id", id("whe_")),
        ("url", string()),
        ("events", json!({"type": "array", "items": string()})),
        ("description", nullable(string())),
        ("created_at", time()),
    ]
}

/// The creation's answer: the only one with the secret.
pub(super) fn hook_endpoint_created() -> Value {
    let mut fields = endpoint_fields();
    fields.push((
        "secret",
        json!({"type": "string", "pattern": "^whsec_[0-9a-f]{64}$",
            "description": "The HMAC-SHA256 key of the deliveries' `Dispatch-Signature`: shown this once."}),
    ));
    obj(&fields, &["id", "url", "events", "description", "created_at", "secret"])
}

/// `GET /v1/admin/webhook-endpoints`: never a secret.
pub(super) fn hook_endpoints_out() -> Value {
    items_of(obj(&endpoint_fields(), &["id", "url", "events", "description", "created_at"]))
}

/// One delivery of the log.
pub(super) fn hook_delivery() -> Value {
    obj(
        &[
            ("event_id", id("evt_")),
            ("type", enumeration(&types())),
            ("status", enumeration(&["pending", "delivered", "failed"])),
            ("attempts", uint()),
            ("last_status_code", nullable(uint())),
            ("last_error", nullable(string())),
            ("next_attempt_at", nullable(time())),
            ("created_at", time()),
        ],
        &["event_id", "type", "status", "attempts", "last_status_code", "last_error", "next_attempt_at", "created_at"],
    )
}

pub(super) fn hook_deliveries_page() -> Value {
    page_of(hook_delivery())
}

pub(super) fn hook_deliveries_query() -> Vec<Value> {
    vec![limit_q(), cursor_q()]
}
