//! The schemas of push devices (`/v1/me/devices`) and of the notification outbox as staff
//! list it (`GET /v1/admin/notifications`), as `api::notify` writes and reads them (the
//! request body strict, like every one).

use serde_json::{Value, json};

use super::schemas::*;

/// `POST /v1/me/devices`.
pub(super) fn device_in() -> Value {
    strict(
        &[
            ("platform", enumeration(&["fcm", "apns"])),
            (
                "token",
                json!({"type": "string", "minLength": 1, "maxLength": 4096, "pattern": "^[!-~]+$",
                    "description": "The push token: 1-4096 printable ASCII characters, no spaces."}),
            ),
        ],
        &["platform", "token"],
    )
}
pub(super) fn device_in_ex() -> Value {
    json!({"platform": "fcm", "token": "fcm-registration-token-1"})
}

/// A registered device, as its registration answers it.
pub(super) fn device_out() -> Value {
    obj(&[("id", id("dev_")), ("platform", enumeration(&["fcm", "apns"]))], &["id", "platform"])
}

/// `GET /v1/me/devices`: never a token.
pub(super) fn devices_out() -> Value {
    let item = obj(
        &[("id", id("dev_")), ("platform", enumeration(&["fcm", "apns"])), ("created_at", time())],
        &["id", "platform", "created_at"],
    );
    items_of(item)
}

pub(super) fn notifications_query() -> Vec<Value> {
    vec![
        limit_q(),
        cursor_q(),
        q("status", enumeration(&["pending", "sent", "failed"]), false, "Only items in this state."),
        q("user_id", id("usr_"), false, "Only items for this user."),
    ]
}

/// `GET /v1/admin/notifications`.
pub(super) fn notifications_page() -> Value {
    let kinds: Vec<&str> = [
        "trip_offer",
        "trip_accepted",
        "driver_arrived",
        "trip_cancelled",
        "no_drivers_nearby",
        "trip_expired",
        "receipt",
        "chat_message",
        "delivery_code",
        "sos",
        "licence_expiring",
    ]
    .to_vec();
    let item = obj(
        &[
            ("id", id("ntf_")),
            ("user_id", nullable(id("usr_"))),
            ("channel", enumeration(&["push", "sms", "email"])),
            ("kind", enumeration(&kinds)),
            ("status", enumeration(&["pending", "sent", "failed"])),
            ("attempts", uint()),
            ("last_error", nullable(string())),
            ("created_at", time()),
        ],
        &["id", "user_id", "channel", "kind", "status", "attempts", "last_error", "created_at"],
    );
    page_of(item)
}
