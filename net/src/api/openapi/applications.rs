//! The schemas of drivers' applications (`/v1/driver/application*`,
//! `/v1/admin/applications*`), as `api::applications` reads and writes them.

use serde_json::{Value, json};

use super::schemas::*;

const KINDS: [&str; 5] = ["license_front", "license_back", "id_card", "vehicle_registration", "photo"];
const MEDIA_TYPES: [&str; 3] = ["image/jpeg", "image/png", "application/pdf"];
const STATUSES: [&str; 4] = ["draft", "submitted", "approved", "rejected"];

/// `PUT /v1/driver/application`: every field required.
pub(super) fn application_in() -> Value {
    let text = || {
        json!({"type": "string", "minLength": 1, "maxLength": 40,
        "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"})
    };
    let vehicle = strict(
        &[
            ("category", category()),
            ("plate", json!({"type": "string", "minLength": 1, "maxLength": 20})),
            ("make", text()),
            ("model", text()),
            ("color", text()),
            ("year", json!({"type": "integer", "minimum": 1950, "maximum": 2100})),
        ],
        &["category", "plate", "make", "model", "color", "year"],
    );
    let license = strict(
        &[
            ("number", json!({"type": "string", "minLength": 1, "maxLength": 32})),
            (
                "expires_on",
                json!({"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                    "description": "The licence's last valid day, YYYY-MM-DD (UTC); expired from the next day."}),
            ),
        ],
        &["number", "expires_on"],
    );
    strict(
        &[
            ("name", json!({"type": "string", "minLength": 1, "maxLength": 100})),
            ("vehicle", vehicle),
            ("license", license),
        ],
        &["name", "vehicle", "license"],
    )
}
pub(super) fn application_ex() -> Value {
    json!({"name": "Karim", "vehicle": {"category": "economy", "plate": "ABC 123", "make": "Hyundai", "model": "Elantra",
        "color": "silver", "year": 2019}, "license": {"number": "L-123456", "expires_on": "2030-06-30"}})
}

fn document_out() -> Value {
    obj(
        &[
            ("media_type", enumeration(&MEDIA_TYPES)),
            ("size", uint()),
            ("sha256", json!({"type": "string", "pattern": "^[0-9a-f]{64}$"})),
            ("uploaded_at", time()),
        ],
        &["media_type", "size", "sha256", "uploaded_at"],
    )
}

/// An application, as its applicant and staff see it.
pub(super) fn application_out() -> Value {
    let docs: Vec<(&str, Value)> = KINDS.iter().map(|k| (*k, document_out())).collect();
    obj(
        &[
            ("id", id("usr_")),
            ("driver_id", id("usr_")),
            ("status", enumeration(&STATUSES)),
            ("name", nullable(string())),
            ("vehicle", json!({"type": ["object", "null"]})),
            ("license", json!({"type": ["object", "null"]})),
            ("documents", obj(&docs, &[])),
            ("missing", array(string())),
            ("reason", nullable(string())),
            ("created_at", time()),
            ("updated_at", time()),
            ("submitted_at", nullable(time())),
            ("decided_at", nullable(time())),
        ],
        &["id", "driver_id", "status", "documents", "missing", "created_at", "updated_at"],
    )
}

/// `PUT /v1/driver/application/documents/{kind}`: the document stored, and the application.
pub(super) fn document_upload_out() -> Value {
    let mut v = document_out();
    v["properties"]["kind"] = enumeration(&KINDS);
    v["properties"]["application"] = application_out();
    v["required"] = json!(["kind", "media_type", "size", "sha256", "uploaded_at", "application"]);
    v
}

pub(super) fn applications_page() -> Value {
    page_of(application_out())
}

pub(super) fn applications_query() -> Vec<Value> {
    vec![limit_q(), cursor_q(), q("status", enumeration(&STATUSES), false, "Only applications in this state.")]
}
