//! The schemas of drivers' earnings and payouts, cash received at an office and wallet
//! top-ups (API.md v1.1 "Earnings and payouts"), as `api::payouts` writes and reads them
//! (the request bodies strict, like every one).

use serde_json::{Value, json};

use super::schemas::*;

const PAYOUT_STATUSES: &[&str] = &["requested", "processing", "paid", "failed", "rejected"];

pub(super) fn earnings_query() -> Vec<Value> {
    let date = json!({"type": "string", "description": "An RFC 3339 time or a YYYY-MM-DD date (00:00 UTC)."});
    vec![
        q("from", date.clone(), false, "Inclusive; counted by whole UTC days. Default: 30 days before `to`."),
        q(
            "to",
            date,
            false,
            "Exclusive; counted by whole UTC days. Default: the end of today (UTC). At most 366 days after `from`.",
        ),
        q("group", enumeration(&["day", "week"]), false, "Periods: UTC days, or ISO weeks from Monday (default day)."),
        q("currency", currency(), false, "Default: the first the driver has money in."),
    ]
}

/// `GET /v1/driver/earnings`.
pub(super) fn earnings_out() -> Value {
    let item = obj(
        &[
            ("period_start", time()),
            ("trips", uint()),
            ("gross_minor", int()),
            ("commission_minor", int()),
            ("net_minor", int()),
            ("cash_collected_minor", int()),
            ("currency", currency()),
        ],
        &["period_start", "trips", "gross_minor", "commission_minor", "net_minor", "cash_collected_minor", "currency"],
    );
    obj(
        &[
            ("items", array(item)),
            (
                "balance_minor",
                json!({"type": "integer", "description": "Earnings netted with the cash the driver holds (negative: owed)."}),
            ),
            (
                "cash_debt_minor",
                json!({"type": "integer", "description": "What is still owed after netting with earnings."}),
            ),
            ("withdrawable_minor", json!({"type": "integer", "description": "What a payout may take now."})),
            ("held_minor", json!({"type": "integer", "description": "Held by payouts not yet settled."})),
            ("currency", currency()),
        ],
        &["items", "balance_minor", "cash_debt_minor", "withdrawable_minor", "currency"],
    )
}

/// `POST /v1/driver/payouts`.
pub(super) fn payout_in() -> Value {
    strict(&[("amount_minor", int()), ("currency", currency())], &["amount_minor"])
}
pub(super) fn payout_ex() -> Value {
    json!({"amount_minor": 5000})
}

/// A payout.
pub(super) fn payout_out() -> Value {
    obj(
        &[
            ("id", id("pyo_")),
            ("driver_id", id("usr_")),
            ("amount_minor", int()),
            ("currency", currency()),
            ("status", enumeration(PAYOUT_STATUSES)),
            ("gateway", string()),
            ("reason", nullable(string())),
            ("created_at", time()),
            ("updated_at", time()),
        ],
        &["id", "driver_id", "amount_minor", "currency", "status", "gateway", "created_at", "updated_at"],
    )
}

pub(super) fn payouts_page() -> Value {
    page_of(payout_out())
}

pub(super) fn admin_payouts_query() -> Vec<Value> {
    vec![limit_q(), cursor_q(), q("status", enumeration(PAYOUT_STATUSES), false, "Only payouts in this state.")]
}

/// `POST /v1/admin/payouts/{id}/approve` and `.../reject`.
pub(super) fn payout_review_in() -> Value {
    strict(&[("reason", string())], &[])
}
pub(super) fn payout_review_ex() -> Value {
    json!({"reason": "bank details checked"})
}

/// `POST /v1/admin/drivers/{id}/cash-received`.
pub(super) fn cash_received_in() -> Value {
    strict(&[("amount_minor", int()), ("reason", string()), ("currency", currency())], &["amount_minor", "reason"])
}
pub(super) fn cash_received_ex() -> Value {
    json!({"amount_minor": 2000, "reason": "receipt 1042, Nasr City office"})
}

/// `POST /v1/wallet/top-ups`.
pub(super) fn top_up_in() -> Value {
    strict(&[("amount_minor", int()), ("currency", currency())], &["amount_minor", "currency"])
}
pub(super) fn top_up_ex() -> Value {
    json!({"amount_minor": 10000, "currency": "EGP"})
}

/// A top-up.
pub(super) fn top_up_out() -> Value {
    obj(
        &[
            ("id", id("top_")),
            ("user_id", id("usr_")),
            ("amount_minor", int()),
            ("currency", currency()),
            ("status", enumeration(&["pending", "succeeded", "failed", "expired"])),
            ("gateway", string()),
            ("transfer_id", nullable(id("txf_"))),
            ("created_at", time()),
            ("updated_at", time()),
        ],
        &["id", "user_id", "amount_minor", "currency", "status", "gateway", "created_at", "updated_at"],
    )
}
