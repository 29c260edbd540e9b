//! Drivers' earnings and payouts, cash received at an office, wallet top-ups (API.md
//! v1.1 "Earnings and payouts").
//!
//! Guarantees: earnings are read from the engine's earnings index, which is derived from
//! the ledger's transfers (`dispatch_core::payout::Book`), and the balance, cash debt and
//! withdrawable amount from the ledger's accounts (`Position`): there is no second source
//! of truth; dates in queries are RFC 3339 times or `YYYY-MM-DD` dates (00:00 UTC), `from`
//! inclusive, `to` exclusive, counted by whole UTC days; every change (a payout, a review,
//! cash received, a top-up) is an engine command, so the engine's rules (the minimum, what
//! is withdrawable, the state machine) decide it.

use dispatch_core::clock::Timestamp;
use dispatch_core::id::PayoutId;
use dispatch_core::payout::{DAY_MS, EarningsDay, Payout, PayoutStatus, TopUp, day_of};
use dispatch_core::{Command, Currency, Outcome, UserId};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Ctx, now, parse_id, unexpected};
use crate::http::{self, ApiError, Cursor, Resp, json_response};

/// The longest period one earnings read covers, days.
pub const MAX_EARNINGS_DAYS: i64 = 366;

/// How earnings are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Day,
    /// ISO weeks, from Monday 00:00 UTC.
    Week,
}

/// The day a period of `group` containing `day` starts (days since the epoch; 1970-01-01
/// was a Thursday, so Mondays are the days ≡ 4 (mod 7)).
fn period_start(group: Group, day: i64) -> i64 {
    match group {
        Group::Day => day,
        Group::Week => day - (day - 4).rem_euclid(7),
    }
}

/// `from`/`to` of a query: an RFC 3339 time, or a `YYYY-MM-DD` date meaning 00:00 UTC.
pub fn parse_date_or_time(s: &str, field: &str) -> Result<Timestamp, ApiError> {
    if s.len() == 10 {
        let bad = || ApiError::invalid(format!("{field} must be an RFC 3339 time or a YYYY-MM-DD date"));
        let part = |r: std::ops::Range<usize>| {
            s.get(r).filter(|p| p.bytes().all(|b| b.is_ascii_digit())).and_then(|p| p.parse::<u16>().ok())
        };
        let (Some(y), Some(m), Some(d)) = (part(0..4), part(5..7), part(8..10)) else { return Err(bad()) };
        if s.as_bytes().get(4) != Some(&b'-') || s.as_bytes().get(7) != Some(&b'-') {
            return Err(bad());
        }
        let month = u8::try_from(m).ok().and_then(|m| time::Month::try_from(m).ok()).ok_or_else(bad)?;
        let day = u8::try_from(d).map_err(|_| bad())?;
        let date = time::Date::from_calendar_date(i32::from(y), month, day).map_err(|_| bad())?;
        let secs = date.midnight().assume_utc().unix_timestamp();
        return Ok(Timestamp::from_millis(secs.saturating_mul(1000)));
    }
    http::parse_rfc3339(s, field)
}

fn render_top_up(t: &TopUp) -> Value {
    json!({
        "id": t.id.to_string(),
        "user_id": t.user_id.to_string(),
        "amount_minor": t.amount_minor,
        "currency": t.currency.code(),
        "status": t.status.as_str(),
        "gateway": t.gateway,
        "transfer_id": t.transfer.map(|x| x.to_string()),
        "created_at": http::rfc3339(t.created_at),
        "updated_at": http::rfc3339(t.updated_at),
    })
}

impl Ctx<'_> {
    fn driver_me(&self) -> Result<UserId, ApiError> {
        self.principal()?.user_id().ok_or_else(|| ApiError::new("forbidden", "drivers only"))
    }

    /// A driver's currency: the one asked for, else the first the driver has money in,
    /// else the deployment's default.
    fn driver_currency(&self, driver: UserId, asked: Option<Currency>) -> Result<Currency, ApiError> {
        if let Some(c) = asked {
            return Ok(c);
        }
        let held = self.app.engine.read_snapshot(|v| v.driver_currencies(driver).first().copied());
        match held {
            Some(c) => Ok(c),
            None => self.app.default_currency(),
        }
    }

    /// `GET /v1/driver/earnings?from=&to=&group=day|week&currency=`.
    pub(super) fn driver_earnings(&self) -> Result<Resp, ApiError> {
        let me = self.driver_me()?;
        let asked = self
            .query
            .get("currency")
            .map(|c| c.parse::<Currency>().map_err(|e| ApiError::invalid(e.to_string())))
            .transpose()?;
        let currency = self.driver_currency(me, asked)?;
        let group = match self.query.get("group") {
            None | Some("day") => Group::Day,
            Some("week") => Group::Week,
            Some(_) => return Err(ApiError::invalid("group must be day or week").with_param("group")),
        };
        // By default, the 30 UTC days up to the end of today.
        let to = match self.query.get("to") {
            Some(s) => parse_date_or_time(s, "to")?,
            None => Timestamp::from_millis((day_of(now()) + 1).saturating_mul(DAY_MS)),
        };
        let from = match self.query.get("from") {
            Some(s) => parse_date_or_time(s, "from")?,
            None => Timestamp::from_millis(to.as_millis().saturating_sub(30 * DAY_MS)),
        };
        // Whole UTC days: the day `from` is in, up to the day `to` ends in (exclusive).
        let from_day = day_of(from);
        let to_day = day_of(Timestamp::from_millis(to.as_millis().saturating_add(DAY_MS - 1)));
        if to_day <= from_day {
            return Err(ApiError::invalid("from must be before to").with_param("from"));
        }
        if to_day - from_day > MAX_EARNINGS_DAYS {
            return Err(ApiError::invalid(format!("at most {MAX_EARNINGS_DAYS} days at once")).with_param("from"));
        }
        let (days, position) = self.app.engine.read_snapshot(|v| {
            let days: Vec<(i64, EarningsDay)> =
                v.book().days(me, currency, from_day, to_day).map(|(d, e)| (d, *e)).collect();
            (days, v.driver_position(me, currency))
        });
        // Every period of the range, in order (zeros included).
        let mut periods: Vec<(i64, EarningsDay)> = Vec::new();
        let mut day = from_day;
        while day < to_day {
            let start = period_start(group, day);
            if periods.last().is_none_or(|(s, _)| *s != start) {
                periods.push((start, EarningsDay::default()));
            }
            day += 1;
        }
        for (d, e) in &days {
            let start = period_start(group, *d);
            if let Some((_, sum)) = periods.iter_mut().find(|(s, _)| *s == start) {
                sum.add(e);
            }
        }
        let items: Vec<Value> = periods
            .iter()
            .map(|(start, e)| {
                json!({
                    "period_start": http::rfc3339(Timestamp::from_millis(start.saturating_mul(DAY_MS))),
                    "trips": e.trips,
                    "gross_minor": e.gross_minor,
                    "commission_minor": e.commission_minor,
                    "net_minor": e.gross_minor.saturating_sub(e.commission_minor),
                    "cash_collected_minor": e.cash_collected_minor,
                    "currency": currency.code(),
                })
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "items": items,
                "balance_minor": position.balance_minor,
                "cash_debt_minor": position.cash_debt_minor,
                "withdrawable_minor": position.withdrawable_minor,
                "held_minor": position.held_minor,
                "currency": currency.code(),
            }),
        ))
    }

    /// `POST /v1/driver/payouts {"amount_minor","currency"?}`: held at once.
    pub(super) async fn request_payout(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            amount_minor: i64,
            #[serde(default)]
            currency: Option<Currency>,
        }
        let b: In = self.json(false)?;
        let me = self.driver_me()?;
        let currency = self.driver_currency(me, b.currency)?;
        match self.submit(Command::RequestPayout { id: None, amount_minor: b.amount_minor, currency }).await? {
            Outcome::Payout(p) => Ok(json_response(StatusCode::CREATED, &crate::render::payout(&p))),
            o => Err(unexpected(&o)),
        }
    }

    /// A page of payouts, newest first, of `driver` (all drivers' when `None`), in
    /// `status` (any when `None`).
    fn payouts_page(&self, driver: Option<UserId>, status: Option<PayoutStatus>) -> Result<Resp, ApiError> {
        let limit = http::limit(&self.query)?;
        let after = Cursor::from_query(&self.query)?;
        let mut items: Vec<std::sync::Arc<Payout>> = self.app.engine.read_snapshot(|v| {
            v.book()
                .payouts
                .values()
                .filter(|p| driver.is_none_or(|d| p.driver_id == d) && status.is_none_or(|s| p.status == s))
                .cloned()
                .collect()
        });
        items.sort_by_key(|p| std::cmp::Reverse((p.created_at, p.id)));
        let items: Vec<std::sync::Arc<Payout>> = items
            .into_iter()
            .filter(|p| after.as_ref().is_none_or(|c| (p.created_at.as_millis(), p.id.raw()) < (c.at_ms, c.id)))
            .take(limit)
            .collect();
        let last = items.last().map(|p| Cursor { at_ms: p.created_at.as_millis(), id: p.id.raw() });
        let rendered = items.iter().map(|p| crate::render::payout(p)).collect();
        Ok(json_response(StatusCode::OK, &http::page(rendered, limit, last)))
    }

    /// `GET /v1/driver/payouts`: the caller's own, newest first.
    pub(super) fn my_payouts(&self) -> Result<Resp, ApiError> {
        let me = self.driver_me()?;
        self.payouts_page(Some(me), None)
    }

    /// `GET /v1/admin/payouts?status=`: every payout, newest first.
    pub(super) fn admin_payouts(&self) -> Result<Resp, ApiError> {
        let status = match self.query.get("status") {
            Some(s) => Some(
                PayoutStatus::parse(s)
                    .ok_or_else(|| ApiError::invalid("status is not a payout status").with_param("status"))?,
            ),
            None => None,
        };
        self.payouts_page(None, status)
    }

    /// `POST /v1/admin/payouts/{id}/approve` and `.../reject` `{"reason"?}`.
    pub(super) async fn review_payout(&mut self, id: &str, approve: bool) -> Result<Resp, ApiError> {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct In {
            #[serde(default)]
            reason: Option<String>,
        }
        let b: In = self.json(true)?;
        let payout_id: PayoutId = parse_id(id, "payout")?;
        let c = Command::ReviewPayout { payout_id, approve, reason: b.reason.unwrap_or_default() };
        match self.submit(c).await? {
            Outcome::Payout(p) => Ok(json_response(StatusCode::OK, &crate::render::payout(&p))),
            o => Err(unexpected(&o)),
        }
    }

    /// `POST /v1/admin/drivers/{id}/cash-received {"amount_minor","reason","currency"?}`.
    pub(super) async fn driver_cash_received(&mut self, id: &str) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            amount_minor: i64,
            reason: String,
            #[serde(default)]
            currency: Option<Currency>,
        }
        let b: In = self.json(false)?;
        let driver_id: UserId = parse_id(id, "driver")?;
        let currency = self.driver_currency(driver_id, b.currency)?;
        let c = Command::CashReceived { id: None, driver_id, amount_minor: b.amount_minor, currency, reason: b.reason };
        match self.submit(c).await? {
            Outcome::Transfer(t) => Ok(json_response(StatusCode::CREATED, &crate::render::transfer(&t, None))),
            o => Err(unexpected(&o)),
        }
    }

    /// `POST /v1/wallet/top-ups {"amount_minor","currency"}`: pending until the gateway's
    /// capture names it (`data.top_up_id`).
    pub(super) async fn create_top_up(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            amount_minor: i64,
            currency: Currency,
        }
        let b: In = self.json(false)?;
        match self.submit(Command::CreateTopUp { id: None, amount_minor: b.amount_minor, currency: b.currency }).await?
        {
            Outcome::TopUp(t) => Ok(json_response(StatusCode::CREATED, &render_top_up(&t))),
            o => Err(unexpected(&o)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday_and_dates_mean_midnight_utc() {
        // 2026-12-07 is a Monday.
        let monday = day_of(parse_date_or_time("2026-12-07", "from").unwrap());
        assert_eq!(period_start(Group::Week, monday), monday);
        assert_eq!(period_start(Group::Week, monday + 6), monday);
        assert_eq!(period_start(Group::Week, monday + 7), monday + 7);
        assert_eq!(period_start(Group::Week, monday - 1), monday - 7);
        assert_eq!(period_start(Group::Day, monday + 3), monday + 3);
        let t = parse_date_or_time("2026-12-07T10:00:00Z", "from").unwrap();
        assert_eq!(day_of(t), monday);
        assert_eq!(parse_date_or_time("2026-12-07", "from").unwrap().as_millis() % DAY_MS, 0);
        assert!(parse_date_or_time("2026-13-07", "from").is_err());
        assert!(parse_date_or_time("yesterday", "from").is_err());
    }
}
