//! Black-box tests of API.md v1.1 "Earnings and payouts" against the real `dispatchd`:
//! earnings from the ledger, cash debt and its limit at going online, cash received at an
//! office, payouts through the `sim` gateway and its signed webhooks (paid, failed,
//! rejected, duplicates), wallet top-ups, and all of it after a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use hyper::Method;
use serde_json::{Value, json};

const SECRET: &[u8] = b"test-webhook-secret-0123456789";

/// Posts `body` to `/v1/webhooks/sim`, signed now with the test secret.
async fn hook(s: &Server, body: &Value) -> Reply {
    let body = body.to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let sig = dispatch_core::payment::sign_timestamped(SECRET, now, body.as_bytes());
    s.call_with(Method::POST, "/v1/webhooks/sim", None, Some(&body), &[("dispatch-signature", &sig)]).await
}

fn applied(v: &Value) -> (String, bool) {
    (v["status"].as_str().unwrap().to_owned(), v["applied"].as_bool().unwrap())
}

/// `POST /v1/admin/reconcile?gateway=sim` with a settlement report.
async fn reconcile(s: &Server, csv: &str) -> Value {
    let path = "/v1/admin/reconcile?gateway=sim";
    s.call_with(Method::POST, path, Some(ADMIN), Some(csv), &[("content-type", "text/csv")]).await.expect(200)
}

async fn earnings(s: &Server, token: &str) -> Value {
    s.get("/v1/driver/earnings", token).await.expect(200)
}

async fn ledger_balances(s: &Server) {
    let l = s.get("/v1/admin/ledger/verify", ADMIN).await.expect(200);
    assert_eq!((l["balanced"].as_bool(), l["sum_minor"].as_i64()), (Some(true), Some(0)), "{l}");
}

/// A cash ride from booking to completion with a driver online at `HERE`: the trip.
async fn cash_ride(s: &Server, rider: &str, driver: &str) -> Value {
    let booked = create_trip(s, rider).await;
    let id = booked["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/trips/{id}/accept"), driver, json!({})).await.expect(200);
    s.post(&format!("/v1/trips/{id}/arrived"), driver, json!({})).await.expect(200);
    let code = booked["pickup_code"].as_str().unwrap();
    s.post(&format!("/v1/trips/{id}/start"), driver, json!({"pickup_code": code})).await.expect(200);
    s.post(&format!("/v1/trips/{id}/complete"), driver, json!({})).await.expect(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cash_trip_is_a_debt_that_blocks_going_online_until_paid_in_and_earnings_show_it() {
    let s = Server::start(&[], Some("[payouts]\nmax_cash_debt_minor = 100\n"));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (driver_user, driver) = online_driver(&s, 1, HERE).await;
    let driver_id = driver_user["id"].as_str().unwrap().to_owned();
    let (_, rider) = user(&s, "rider", 2).await;

    let done = cash_ride(&s, &rider, &driver).await;
    let fare = done["fare"]["final_minor"].as_i64().unwrap();
    let commission = (fare * 1500 + 5000) / 10_000;
    assert!(commission > 100, "the test needs a debt above the limit: {fare}");

    // Earnings from the ledger: one trip today, the cash collected, the commission owed.
    let e = earnings(&s, &driver).await;
    let today = e["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        today,
        json!({"period_start": today["period_start"], "trips": 1, "gross_minor": fare, "commission_minor": commission,
            "net_minor": fare - commission, "cash_collected_minor": fare, "currency": "EGP"})
    );
    assert_eq!(
        (e["balance_minor"].as_i64(), e["cash_debt_minor"].as_i64(), e["withdrawable_minor"].as_i64()),
        (Some(-commission), Some(commission), Some(0))
    );
    assert_eq!(e["items"].as_array().unwrap().len(), 30, "the last 30 days, one item a day: {e}");
    // By week, with dates: from inclusive, to exclusive.
    let week = s.get("/v1/driver/earnings?group=week&from=2026-11-30&to=2026-12-14", &driver).await.expect(200);
    let starts: Vec<&str> =
        week["items"].as_array().unwrap().iter().map(|i| i["period_start"].as_str().unwrap()).collect();
    assert_eq!(starts, ["2026-11-30T00:00:00.000Z", "2026-12-07T00:00:00.000Z"], "{week}");
    s.get("/v1/driver/earnings?group=month", &driver).await.expect_error(400, "invalid_request");
    s.get("/v1/driver/earnings?from=2026-12-10&to=2026-12-01", &driver).await.expect_error(400, "invalid_request");
    s.get("/v1/driver/earnings?from=yesterday", &driver).await.expect_error(400, "invalid_request");
    s.get("/v1/driver/earnings", &rider).await.expect_error(403, "forbidden");

    // Above the limit: the driver cannot come back online.
    s.post("/v1/driver/status", &driver, json!({"status": "offline"})).await.expect(200);
    let online = json!({"status": "online", "location": {"lat": HERE.0, "lng": HERE.1}});
    s.post("/v1/driver/status", &driver, online.clone()).await.expect_error(403, "cash_debt_limit");

    // Cash paid in at an office: never more than owed, staff (admin) only.
    let path = format!("/v1/admin/drivers/{driver_id}/cash-received");
    let too_much = json!({"amount_minor": commission + 1, "reason": "receipt 7"});
    s.post(&path, ADMIN, too_much).await.expect_error(400, "invalid_request");
    let (_, support) = user(&s, "support", 3).await;
    s.post(&path, &support, json!({"amount_minor": 50, "reason": "receipt 7"})).await.expect_error(403, "forbidden");
    let paid = s.post(&path, ADMIN, json!({"amount_minor": commission, "reason": "receipt 7"})).await.expect(201);
    assert_eq!((paid["code"].as_str(), paid["amount_minor"].as_i64()), (Some("cash_received"), Some(commission)));
    let e = earnings(&s, &driver).await;
    assert_eq!((e["balance_minor"].as_i64(), e["cash_debt_minor"].as_i64()), (Some(0), Some(0)));
    assert_eq!(e["items"].as_array().unwrap().last().unwrap()["trips"], 1, "paying in is not an earning");
    s.post("/v1/driver/status", &driver, online).await.expect(200);
    ledger_balances(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payouts_are_held_at_once_and_paid_or_returned_through_the_sim_gateways_webhooks() {
    let config = "[payouts]\nmin_minor = 1000\n";
    let s = Server::start(&[], Some(config));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (driver_user, driver) = user(&s, "driver", 1).await;
    let driver_id = driver_user["id"].as_str().unwrap().to_owned();
    let credit = json!({"amount_minor": 10_000, "currency": "EGP", "reason": "bonus"});
    s.post(&format!("/v1/admin/wallets/{driver_id}/credit"), ADMIN, credit).await.expect(201);
    let (_, rider) = user(&s, "rider", 2).await;
    let (_, support) = user(&s, "support", 3).await;

    // Below the minimum, above what is withdrawable, not a driver.
    s.post("/v1/driver/payouts", &driver, json!({"amount_minor": 999})).await.expect_error(400, "invalid_request");
    s.post("/v1/driver/payouts", &driver, json!({"amount_minor": 10_001}))
        .await
        .expect_error(422, "insufficient_funds");
    s.post("/v1/driver/payouts", &rider, json!({"amount_minor": 1000})).await.expect_error(403, "forbidden");

    // Held at once: what is withdrawable drops by the amount asked.
    let first = s.post("/v1/driver/payouts", &driver, json!({"amount_minor": 4000})).await.expect(201);
    assert!(first["id"].as_str().unwrap().starts_with("pyo_"), "{first}");
    assert_eq!((first["status"].as_str(), first["amount_minor"].as_i64()), (Some("requested"), Some(4000)));
    let second = s.post("/v1/driver/payouts", &driver, json!({"amount_minor": 3000})).await.expect(201);
    let e = earnings(&s, &driver).await;
    assert_eq!((e["balance_minor"].as_i64(), e["withdrawable_minor"].as_i64()), (Some(10_000), Some(3000)));
    s.post("/v1/driver/payouts", &driver, json!({"amount_minor": 3001})).await.expect_error(422, "insufficient_funds");
    ledger_balances(&s).await;

    // Lists: the driver's own, and staff's by status.
    let mine = s.get("/v1/driver/payouts", &driver).await.expect(200);
    let mut ids: Vec<&Value> = mine["items"].as_array().unwrap().iter().map(|p| &p["id"]).collect();
    ids.sort_by_key(|v| v.as_str().unwrap().to_owned());
    let mut made = vec![&first["id"], &second["id"]];
    made.sort_by_key(|v| v.as_str().unwrap().to_owned());
    assert_eq!(ids, made);
    let requested = s.get("/v1/admin/payouts?status=requested", &support).await.expect(200);
    assert_eq!(requested["items"].as_array().unwrap().len(), 2);
    s.get("/v1/admin/payouts?status=nope", ADMIN).await.expect_error(400, "invalid_request");
    s.get("/v1/admin/payouts", &rider).await.expect_error(403, "forbidden");

    // Rejected: the hold returned; a second review is a transition the machine refuses.
    let id2 = second["id"].as_str().unwrap();
    s.post(&format!("/v1/admin/payouts/{id2}/approve"), &support, json!({})).await.expect_error(403, "forbidden");
    let rejected =
        s.post(&format!("/v1/admin/payouts/{id2}/reject"), ADMIN, json!({"reason": "wrong bank"})).await.expect(200);
    assert_eq!((rejected["status"].as_str(), rejected["reason"].as_str()), (Some("rejected"), Some("wrong bank")));
    s.post(&format!("/v1/admin/payouts/{id2}/approve"), ADMIN, json!({})).await.expect_error(409, "invalid_transition");
    assert_eq!(earnings(&s, &driver).await["withdrawable_minor"], 6000);

    // A webhook before approval moves nothing.
    let id1 = first["id"].as_str().unwrap();
    let early =
        hook(&s, &json!({"id": "evt_early", "type": "payout.paid", "data": {"payout_id": id1}})).await.expect(200);
    assert_eq!(applied(&early), ("processed".to_owned(), false), "{early}");

    // Approved: processing, sent through the gateway; paid on its signed payout.paid, once.
    let approved = s.post(&format!("/v1/admin/payouts/{id1}/approve"), ADMIN, json!({})).await.expect(200);
    assert_eq!(approved["status"], "processing");
    let paid_hook = json!({"id": "evt_paid", "type": "payout.paid", "data": {"payout_id": id1}});
    // Forged: refused, nothing changes.
    let forged = paid_hook.to_string();
    let sig = dispatch_core::payment::sign_timestamped(b"not-the-secret-at-all-0123", 0, forged.as_bytes());
    s.call_with(Method::POST, "/v1/webhooks/sim", None, Some(&forged), &[("dispatch-signature", &sig)])
        .await
        .expect_error(400, "invalid_signature");
    assert_eq!(applied(&hook(&s, &paid_hook).await.expect(200)), ("processed".to_owned(), true));
    assert_eq!(applied(&hook(&s, &paid_hook).await.expect(200)), ("duplicate".to_owned(), false));
    let again = json!({"id": "evt_paid_again", "type": "payout.paid", "data": {"payout_id": id1}});
    assert_eq!(applied(&hook(&s, &again).await.expect(200)), ("processed".to_owned(), false), "never paid twice");
    let late_fail = json!({"id": "evt_fail_late", "type": "payout.failed", "data": {"payout_id": id1}});
    assert_eq!(applied(&hook(&s, &late_fail).await.expect(200)), ("processed".to_owned(), false));
    let e = earnings(&s, &driver).await;
    assert_eq!((e["balance_minor"].as_i64(), e["withdrawable_minor"].as_i64()), (Some(6000), Some(6000)));

    // Failed at the gateway: the held amount comes back, exactly.
    let third = s.post("/v1/driver/payouts", &driver, json!({"amount_minor": 2500})).await.expect(201);
    let id3 = third["id"].as_str().unwrap();
    assert_eq!(earnings(&s, &driver).await["withdrawable_minor"], 3500);
    s.post(&format!("/v1/admin/payouts/{id3}/approve"), ADMIN, json!({})).await.expect(200);
    let failed = json!({"id": "evt_failed", "type": "payout.failed", "data": {"payout_id": id3}});
    assert_eq!(applied(&hook(&s, &failed).await.expect(200)), ("processed".to_owned(), true));
    let e = earnings(&s, &driver).await;
    assert_eq!((e["balance_minor"].as_i64(), e["withdrawable_minor"].as_i64()), (Some(6000), Some(6000)));
    let unknown = json!({"id": "evt_x", "type": "payout.paid", "data": {"payout_id": "pyo_00000000000000ff"}});
    hook(&s, &unknown).await.expect_error(404, "not_found");
    let statuses = |v: &Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|p| p["status"].as_str().unwrap().to_owned()).collect()
    };
    let all = s.get("/v1/admin/payouts", ADMIN).await.expect(200);
    let mut seen = statuses(&all);
    assert_eq!(seen[0], "failed", "newest first");
    seen.sort();
    assert_eq!(seen, ["failed", "paid", "rejected"]);
    ledger_balances(&s).await;

    // Reconciliation covers payouts: what was paid out against the gateway's lines.
    let agree = reconcile(&s, &format!("trip_id,amount_minor,currency\n{id1},4000,EGP\n")).await;
    assert_eq!((agree["matched"].as_u64(), agree["mismatches"].as_array().unwrap().len()), (Some(1), 0), "{agree}");
    assert_eq!(agree["payouts_and_top_ups"], 3);
    let csv = format!("trip_id,amount_minor,currency\n{id1},4100,EGP\n{id3},2500,EGP\n");
    let found = reconcile(&s, &csv).await;
    let mut items = found["mismatches"].as_array().unwrap().clone();
    items.sort_by_key(|m| if m["payout_id"] == id1 { 0 } else { 1 });
    let side = |a: i64| json!({"amount_minor": a, "currency": "EGP", "status": null});
    assert_eq!(
        items,
        [
            json!({"kind": "amount_differs", "payout_id": id1, "ledger": side(4000), "gateway": side(4100)}),
            // Failed: nothing was paid out, yet the gateway says it paid.
            json!({"kind": "amount_differs", "payout_id": id3, "ledger": side(0), "gateway": side(2500)}),
        ],
        "{found}"
    );
    let unknown = reconcile(&s, "trip_id,amount_minor,currency\npyo_00000000000000ff,10,EGP\n").await;
    assert!(unknown["mismatches"].as_array().unwrap().iter().any(|m| m["kind"] == "missing_in_ledger"), "{unknown}");
    let missing = reconcile(&s, "trip_id,amount_minor,currency\n").await;
    assert_eq!(missing["mismatches"][0]["kind"], "missing_at_gateway", "{missing}");

    // Durable: a restart reads the same payouts and balances back.
    let mut s = s;
    s.sigterm();
    assert!(s.wait_exit().success());
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(s.data_dir(), dir.path().join("data")).unwrap();
    let s2 = Server::start_in(dir, &[], Some(config));
    assert_eq!(s2.get("/v1/admin/payouts", ADMIN).await.expect(200), all);
    let e = earnings(&s2, &driver).await;
    assert_eq!((e["balance_minor"].as_i64(), e["withdrawable_minor"].as_i64()), (Some(6000), Some(6000)));
    // And a replayed webhook is still a duplicate.
    assert_eq!(applied(&hook(&s2, &paid_hook).await.expect(200)), ("duplicate".to_owned(), false));
    // A retried request (the same Idempotency-Key) is one payout, held once.
    let body = json!({"amount_minor": 1000}).to_string();
    let key = [("idempotency-key", "payout-retry-1")];
    let once = s2.call_with(Method::POST, "/v1/driver/payouts", Some(&driver), Some(&body), &key).await.expect(201);
    let twice = s2.call_with(Method::POST, "/v1/driver/payouts", Some(&driver), Some(&body), &key).await.expect(201);
    assert_eq!(once["id"], twice["id"]);
    assert_eq!(earnings(&s2, &driver).await["withdrawable_minor"], 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_up_credits_the_wallet_once_on_the_gateways_capture() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (_, driver) = user(&s, "driver", 2).await;

    let top = s.post("/v1/wallet/top-ups", &rider, json!({"amount_minor": 5000, "currency": "EGP"})).await.expect(201);
    let id = top["id"].as_str().unwrap();
    assert!(id.starts_with("top_"), "{top}");
    assert_eq!((top["status"].as_str(), top["gateway"].as_str()), (Some("pending"), Some("sim")));
    s.post("/v1/wallet/top-ups", &rider, json!({"amount_minor": 0, "currency": "EGP"}))
        .await
        .expect_error(400, "invalid_request");
    s.post("/v1/wallet/top-ups", ADMIN, json!({"amount_minor": 100, "currency": "EGP"}))
        .await
        .expect_error(403, "forbidden");

    let capture = |event: &str, amount: i64| {
        json!({"id": event, "type": "payment.captured",
            "data": {"top_up_id": id, "amount_minor": amount, "currency": "EGP"}})
    };
    // Another amount than asked for: acknowledged, nothing credited.
    let off = hook(&s, &capture("evt_off", 4999)).await.expect(200);
    assert_eq!(applied(&off), ("processed".to_owned(), false), "{off}");
    assert_eq!(s.get("/v1/wallet", &rider).await.expect(200)["balance"]["amount_minor"], 0);
    // The capture credits the wallet; a replay and a second capture do not.
    assert_eq!(applied(&hook(&s, &capture("evt_cap", 5000)).await.expect(200)), ("processed".to_owned(), true));
    assert_eq!(applied(&hook(&s, &capture("evt_cap", 5000)).await.expect(200)), ("duplicate".to_owned(), false));
    assert_eq!(applied(&hook(&s, &capture("evt_cap_2", 5000)).await.expect(200)), ("processed".to_owned(), false));
    assert_eq!(s.get("/v1/wallet", &rider).await.expect(200)["balance"]["amount_minor"], 5000);

    // A driver's top-up goes to its earnings (paying cash debt down first); a failed one
    // credits nothing.
    let top = s.post("/v1/wallet/top-ups", &driver, json!({"amount_minor": 700, "currency": "EGP"})).await.expect(201);
    let failed = json!({"id": "evt_fail", "type": "payment.failed",
        "data": {"top_up_id": top["id"], "amount_minor": 700, "currency": "EGP"}});
    assert_eq!(applied(&hook(&s, &failed).await.expect(200)), ("processed".to_owned(), true));
    let captured = json!({"id": "evt_late", "type": "payment.captured",
        "data": {"top_up_id": top["id"], "amount_minor": 700, "currency": "EGP"}});
    assert_eq!(applied(&hook(&s, &captured).await.expect(200)), ("processed".to_owned(), false));
    assert_eq!(earnings(&s, &driver).await["balance_minor"], 0);
    // Reconciliation covers top-ups: what was credited against the gateway's captures.
    let csv = format!("trip_id,amount_minor,currency\n{id},5000,EGP\n");
    let r = reconcile(&s, &csv).await;
    assert_eq!((r["matched"].as_u64(), r["mismatches"].as_array().unwrap().len()), (Some(1), 0), "{r}");
    let r = reconcile(&s, &format!("trip_id,amount_minor,currency\n{},700,EGP\n", top["id"].as_str().unwrap())).await;
    assert_eq!(r["mismatches"].as_array().unwrap().len(), 2, "{r}");
    // A body naming no subject, or two, is refused.
    let neither = json!({"id": "evt_n", "type": "payment.captured", "data": {"amount_minor": 1, "currency": "EGP"}});
    hook(&s, &neither).await.expect_error(400, "invalid_request");
    ledger_balances(&s).await;
}
