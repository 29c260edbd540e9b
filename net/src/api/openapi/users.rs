//! The OpenAPI shapes of staff's users (issue 20: U): the list's query, the user as staff
//! see it (with `status`, the block, `erased_at`, a driver's `stats`), the edit and the
//! block bodies.

use serde_json::{Value, json};

use super::requests::create_user_in;
use super::schemas::*;

pub(super) fn users_query() -> Vec<Value> {
    vec![
        limit_q(),
        cursor_q(),
        q("role", enumeration(&["rider", "driver", "support", "admin"]), false, "Only users of this role."),
        q(
            "q",
            json!({"type": "string", "minLength": 1, "maxLength": 100}),
            false,
            "All digits (a leading `+` allowed), 4 or more: the last digits of a phone, in the order of the \
             reversed digits. Otherwise a name prefix, compared in Unicode lower case with white space \
             collapsed, in name order. Answered from an index; erased users are never found by `q`.",
        ),
        q("status", enumeration(&["active", "blocked", "erased"]), false, "Only users in this standing."),
    ]
}

pub(super) fn driver_stats() -> Value {
    let bps = || json!({"type": "integer", "minimum": 0, "maximum": 10000});
    obj(
        &[
            ("offers", uint()),
            ("accepted", uint()),
            ("declined", uint()),
            ("lapsed", uint()),
            ("cancelled_after_accept", uint()),
            ("acceptance_rate_bps", bps()),
            ("cancel_rate_bps", bps()),
            ("online_s_7d", uint()),
            ("rating", nullable(number())),
        ],
        &[
            "offers",
            "accepted",
            "declined",
            "lapsed",
            "cancelled_after_accept",
            "acceptance_rate_bps",
            "cancel_rate_bps",
            "online_s_7d",
            "rating",
        ],
    )
}

pub(super) fn admin_user_out() -> Value {
    let mut v = user_schema();
    let extra = [
        ("status", enumeration(&["active", "blocked", "erased"])),
        ("blocked", nullable(obj(&[("reason", string()), ("at", time())], &["reason", "at"]))),
        ("erased_at", nullable(time())),
        ("stats", driver_stats()),
    ];
    for (k, s) in extra {
        v["properties"][k] = s;
    }
    v
}

pub(super) fn admin_users_page() -> Value {
    page_of(admin_user_out())
}

pub(super) fn user_patch_in() -> Value {
    // The vehicle as at creation (null: no change).
    let vehicle = create_user_in()["properties"]["vehicle"].clone();
    strict(&[("name", string()), ("email", string()), ("vehicle", vehicle)], &[])
}

pub(super) fn user_patch_ex() -> Value {
    json!({"name": "Amal Hassan", "email": "amal@example.com"})
}

pub(super) fn block_in() -> Value {
    strict(&[("reason", string())], &[])
}

pub(super) fn block_ex() -> Value {
    json!({"reason": "abusive messages to drivers"})
}
