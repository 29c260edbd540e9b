//! Money: the wallet statement, credits, refunds, a trip's switch to cash, coupons, the
//! ledger check, dead-lettered payments and reconciliation against a gateway's
//! settlement report.
//!
//! Guarantees: amounts are integer minor units with their currency and its exponent; the
//! wallet read is the account the domain assigns the caller's role
//! (`AccountKind::wallet_of`), in the currency asked for or the domain's default
//! (`Catalog::default_currency`); a reconciliation runs off the runtime threads and
//! names the line of a malformed report.

use std::sync::Arc;

use dispatch_core::clock::Timestamp;
use dispatch_core::{Command, Outcome, PaymentMethod, TripId, UserId};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Ctx, Empty, parse_id, unexpected};
use crate::http::{self, ApiError, Cursor, Resp, json_response};
use crate::render;

impl Ctx<'_> {
    /// `GET /v1/wallet`: the caller's balance and a page of its statement (hot and archived).
    pub(super) async fn wallet(&self) -> Result<Resp, ApiError> {
        use dispatch_core::ledger::{AccountKey, AccountKind};
        let p = self.principal()?;
        let me = p.user_id().ok_or_else(|| ApiError::new("forbidden", "riders and drivers only"))?;
        // Which account is "my wallet" is the domain's rule (a rider's wallet, a driver's earnings).
        let kind =
            AccountKind::wallet_of(p.role()).ok_or_else(|| ApiError::new("forbidden", "riders and drivers only"))?;
        let currency = match self.query.get("currency") {
            Some(c) => c.parse::<dispatch_core::Currency>().map_err(|e| ApiError::invalid(e.to_string()))?,
            None => self.app.default_currency()?,
        };
        let key = AccountKey::of(kind, me, currency);
        let limit = http::limit(&self.query)?;
        let after = Cursor::from_query(&self.query)?
            .map(|c| {
                dispatch_core::id::TransferId::from_raw(c.id)
                    .map(|id| (Timestamp::from_millis(c.at_ms), id))
                    .ok_or_else(|| ApiError::invalid("cursor is malformed"))
            })
            .transpose()?;
        let account = self.app.engine.read(|v| v.account(&key));
        // Hot and archived entries alike (settled transfers leave the hot state).
        let entries = self.app.blocking(move |e| e.statement(&key, after, limit)).await?;
        let last = entries.last().map(|t| Cursor { at_ms: t.at.as_millis(), id: t.id.raw() });
        let items = entries.iter().map(|t| render::transfer(t, Some(&key))).collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "balance": {"amount_minor": account.balance(), "currency": currency.code(),
                            "currency_exponent": currency.exponent()},
                "available_minor": account.available(),
                "entries": http::page(items, limit, last),
            }),
        ))
    }

    /// `POST /v1/admin/wallets/{user_id}/credit`: from promotions to the user's wallet.
    pub(super) async fn credit(&mut self, id: &str) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            amount_minor: i64,
            currency: dispatch_core::Currency,
            reason: String,
        }
        let b: In = self.json(false)?;
        let user_id: UserId = parse_id(id, "user")?;
        let c = Command::CreditWallet {
            id: None,
            user_id,
            amount_minor: b.amount_minor,
            currency: b.currency,
            reason: b.reason,
        };
        match self.submit(c).await? {
            Outcome::Transfer(t) => Ok(json_response(StatusCode::CREATED, &render::transfer(&t, None))),
            o => Err(unexpected(&o)),
        }
    }

    /// `POST /v1/admin/trips/{id}/refund`.
    pub(super) async fn refund(&mut self, id: &str) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            amount_minor: i64,
            reason: String,
        }
        let b: In = self.json(false)?;
        let trip_id: TripId = parse_id(id, "trip")?;
        let c = Command::Refund { id: None, trip_id, amount_minor: b.amount_minor, reason: b.reason };
        match self.submit(c).await? {
            Outcome::Transfer(t) => Ok(json_response(StatusCode::CREATED, &render::transfer(&t, None))),
            o => Err(unexpected(&o)),
        }
    }

    /// `POST /v1/trips/{id}/payment-method`: a failed card payment switched to cash.
    pub(super) async fn payment_method(&mut self, id: &str) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            method: PaymentMethod,
        }
        let b: In = self.json(false)?;
        let trip_id: TripId = parse_id(id, "trip")?;
        let o = self.submit(Command::SetPaymentMethod { trip_id, method: b.method }).await?;
        self.trip_out(StatusCode::OK, o)
    }

    /// `POST /v1/trips/{id}/cash-received`: the trip's driver confirms the cash its rider
    /// said it paid after the ride (a card trip switched to cash); only then is the
    /// driver's cash in hand charged with it.
    pub(super) async fn cash_received(&mut self, id: &str) -> Result<Resp, ApiError> {
        self.json::<Empty>(true)?;
        let trip_id: TripId = parse_id(id, "trip")?;
        let o = self.submit(Command::ConfirmCashReceived { trip_id }).await?;
        self.trip_out(StatusCode::OK, o)
    }

    /// `POST /v1/admin/coupons`: the engine's coupon type validates the fields.
    pub(super) async fn create_coupon(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            code: String,
            #[serde(default)]
            percent_bps: Option<u32>,
            #[serde(default)]
            amount_minor: Option<i64>,
            #[serde(default)]
            max_discount_minor: Option<i64>,
            #[serde(default)]
            min_fare_minor: Option<i64>,
            #[serde(default)]
            valid_from: Option<String>,
            #[serde(default)]
            valid_until: Option<String>,
            #[serde(default)]
            max_uses: Option<u64>,
            #[serde(default)]
            max_uses_per_rider: Option<u64>,
            #[serde(default)]
            currency: Option<String>,
        }
        let b: In = self.json(false)?;
        let t = |s: &Option<String>, f: &str| s.as_deref().map(|s| http::parse_rfc3339(s, f)).transpose();
        let (from, until) = (t(&b.valid_from, "valid_from")?, t(&b.valid_until, "valid_until")?);
        // The engine's coupon type validates itself when built; its id is filled by the writer.
        let fields = json!({
            "id": "cpn_0000000000000001", "code": b.code, "percent_bps": b.percent_bps, "amount_minor": b.amount_minor,
            "max_discount_minor": b.max_discount_minor, "min_fare_minor": b.min_fare_minor,
            "valid_from": from.map(|t| t.as_millis()), "valid_until": until.map(|t| t.as_millis()),
            "max_uses": b.max_uses, "max_uses_per_rider": b.max_uses_per_rider, "currency": b.currency,
        });
        let coupon: dispatch_core::fare::Coupon =
            serde_json::from_value(fields).map_err(|e| ApiError::invalid(format!("invalid coupon: {e}")))?;
        match self.submit(Command::CreateCoupon { id: None, coupon: Box::new(coupon) }).await? {
            Outcome::Coupon(c) => Ok(json_response(StatusCode::CREATED, &render::coupon(&c))),
            o => Err(unexpected(&o)),
        }
    }

    /// `GET /v1/admin/coupons?limit=&cursor=`: every coupon in code order, with its
    /// `uses`; `next_cursor` is the last code of a full page.
    pub(super) fn list_coupons(&self) -> Result<Resp, ApiError> {
        let limit = http::limit(&self.query)?;
        let after = self.query.get("cursor").map(str::to_owned);
        let items: Vec<Value> = self.app.engine.read_snapshot(|v| {
            v.coupons()
                .filter(|c| after.as_deref().is_none_or(|a| c.coupon.code.as_str() > a))
                .take(limit)
                .map(|c| render::coupon(c))
                .collect()
        });
        let next = (items.len() >= limit).then(|| items.last().map(|c| c["code"].clone())).flatten();
        Ok(json_response(StatusCode::OK, &json!({"items": items, "next_cursor": next})))
    }

    /// `GET /v1/admin/coupons/{code}`.
    pub(super) fn get_coupon(&self, code: &str) -> Result<Resp, ApiError> {
        let found = self.app.engine.read_snapshot(|v| v.price_book().coupons.get(code).cloned());
        let c = found.ok_or_else(|| ApiError::not_found("coupon"))?;
        Ok(json_response(StatusCode::OK, &render::coupon(&c)))
    }

    /// `POST /v1/admin/coupons/{code}/disable`: later estimates and bookings with it are
    /// `422 coupon_invalid`; trips booked before keep their discount.
    pub(super) async fn disable_coupon(&mut self, code: &str) -> Result<Resp, ApiError> {
        self.json::<Empty>(true)?;
        match self.submit(Command::DisableCoupon { code: code.to_owned() }).await? {
            Outcome::Coupon(c) => Ok(json_response(StatusCode::OK, &render::coupon(&c))),
            o => Err(unexpected(&o)),
        }
    }

    /// `GET /v1/admin/ledger/verify`: whether every currency sums to zero.
    pub(super) fn ledger_verify(&self) -> Result<Resp, ApiError> {
        let r = self.app.engine.read_snapshot(|v| v.ledger_verify());
        Ok(json_response(
            StatusCode::OK,
            &json!({"balanced": r.balanced, "accounts": r.accounts, "transfers": r.transfers,
                "sum_minor": i64::try_from(r.sum_minor).unwrap_or(i64::MAX)}),
        ))
    }

    /// `GET /v1/admin/payments/dead-letters`: the payments still given up on, newest first.
    pub(super) fn dead_letters(&self) -> Result<Resp, ApiError> {
        let items: Vec<Value> = self
            .app
            .engine
            .read_snapshot(dispatch_core::payment::dead_letters)
            .iter()
            .map(|(trip_id, d)| render::dead_letter(*trip_id, d))
            .collect();
        Ok(json_response(StatusCode::OK, &json!({"items": items, "next_cursor": null})))
    }

    /// `POST /v1/admin/reconcile?gateway=`: the settlement CSV of the body against the
    /// ledger (`dispatch_core::payment::reconcile_report`, as `dispatchd reconcile`).
    pub(super) async fn reconcile(&mut self) -> Result<Resp, ApiError> {
        use dispatch_core::payment::{ReconcileError, Side};
        let gateway = self.query.get("gateway").ok_or_else(|| ApiError::invalid("?gateway= is required"))?;
        if self.app.gateways.get(gateway).is_none() {
            return Err(ApiError::not_found("gateway"));
        }
        let csv = std::str::from_utf8(&self.body)
            .map_err(|_| ApiError::invalid("the settlement report must be UTF-8 text"))?
            .to_owned();
        let engine = Arc::clone(&self.app.engine);
        let report = tokio::task::spawn_blocking(move || dispatch_core::payment::reconcile_report(&engine, &csv))
            .await
            .map_err(|_| ApiError::new("internal", "internal error"))?;
        let report = match report {
            Ok(r) => r,
            Err(ReconcileError::Settlement(line)) => return Err(ApiError::invalid(line)),
            Err(ReconcileError::Engine(e)) => return Err(ApiError::from(e)),
        };
        let side = |s: Option<Side>| {
            s.map_or(Value::Null, |s| {
                json!({"amount_minor": s.amount_minor, "currency": s.currency.code(),
                    "status": s.status.map(|p| p.as_str())})
            })
        };
        let mismatches: Vec<Value> = report
            .mismatches
            .iter()
            .map(|m| {
                json!({"kind": m.kind.as_str(), "trip_id": m.trip_id.to_string(),
                    "ledger": side(m.ledger), "gateway": side(m.gateway)})
            })
            .collect();
        let money = |s: Option<(i64, dispatch_core::Currency)>| {
            s.map_or(Value::Null, |(a, c)| json!({"amount_minor": a, "currency": c.code(), "status": null}))
        };
        // Payouts' and top-ups' differences, named by their own ids.
        let mismatches: Vec<Value> = mismatches
            .into_iter()
            .chain(report.money_mismatches.iter().map(|m| {
                let (key, id) = match m.subject {
                    dispatch_core::payment::Settled::Payout(p) => ("payout_id", p.to_string()),
                    dispatch_core::payment::Settled::TopUp(t) => ("top_up_id", t.to_string()),
                };
                json!({"kind": m.kind.as_str(), key: id, "ledger": money(m.ledger), "gateway": money(m.gateway)})
            }))
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({"matched": report.matched, "mismatches": mismatches, "trips": report.trips, "rows": report.rows,
                "payouts_and_top_ups": report.money}),
        ))
    }
}
