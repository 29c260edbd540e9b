//! The rules of dispatch ([`DispatchRules`]): offers, timeouts, radii, limits, the
//! payment windows, booking ahead, the chat's retention.
//!
//! Guarantees: the rules are part of the state, set by a logged command (`SetRules`), so a
//! replay applies the rules that were in force, not today's configuration; and
//! [`DispatchRules::validate`] refuses any set that would make dispatch meaningless or
//! unbounded before it is applied. `crate::command` re-exports the type.

use serde::{Deserialize, Serialize};

/// The rules of dispatch. Part of the state (set by a logged command) so that a
/// replay applies the rules that were in force, not today's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchRules {
    /// Drivers offered a trip at once, nearest first.
    pub offers_per_round: u16,
    /// An offer lapses after this.
    pub offer_ttl_s: u32,
    /// No driver by then: the trip expires.
    pub timeout_s: u32,
    /// Drivers further than this from the pickup are not offered the trip.
    pub search_radius_m: u32,
    /// Positions older than this are never offered trips.
    pub stale_location_s: u32,
    /// A driver on a trip whose socket dropped keeps the trip this long.
    pub disconnect_grace_s: u32,
    /// Open trips one rider may have at once.
    pub open_trips_per_rider: u16,
    /// When a round finds nobody, look again after this.
    pub redispatch_retry_s: u32,
    /// Zone surges are recomputed this often.
    pub surge_interval_s: u32,
    /// A driver's position is published (moved in the index, pushed, logged to the
    /// history) at most once per this interval: a report sooner after the last published
    /// one is coalesced — held back, the newest winning — and published when the
    /// interval is up unless a newer report comes first.
    pub location_min_interval_ms: u32,
    /// A position implying a speed above this since the last one is refused as
    /// suspected spoofing (and counted).
    pub max_speed_kmh: u32,
    /// Idempotency keys are kept at least this long.
    pub idempotency_ttl_s: u32,
    /// A wallet hold placed at booking is released (voided) this long after it was
    /// placed if nothing settled it (the trip then pays from the balance it finds).
    pub wallet_hold_ttl_s: u32,
    /// A card authorisation not captured this long after the gateway granted it
    /// lapses: its hold is released and the payment is `expired` (Stripe keeps card
    /// authorisations 7 days).
    pub card_auth_ttl_s: u32,
    /// The gateway card trips are paid through (the payment worker's): a card trip
    /// records it at booking, and only that gateway's events move its money.
    pub card_gateway: String,
    /// A finished card trip its rider switched to cash waits this long for its driver to
    /// confirm the cash; unconfirmed, the fare becomes the rider's debt.
    pub cash_confirm_ttl_s: u32,
    /// A ride booked ahead starts searching this long before its `scheduled_at` (the lead
    /// in force at booking: the moment is fixed then, as a deadline).
    pub schedule_lead_s: u32,
    /// Rides booked ahead and not yet dispatched one rider may have at once. They do not
    /// count against `open_trips_per_rider` until dispatch starts, so a week of booked
    /// rides never stops the rider from riding now.
    pub scheduled_trips_per_rider: u16,
    /// A trip's chat messages are kept this long after they were posted (`[retention]
    /// chat_days`): never served later, and dropped from the state (see `crate::chat`).
    pub chat_retention_s: u32,
    /// On-call staff's phones (E.164, at most [`crate::outbox::MAX_SOS_PHONES`]): each SOS
    /// is sent to each by SMS (`[notify] sos_phones`). In the rules so that a replay sends
    /// to the phones in force when the SOS was raised.
    pub sos_phones: Vec<String>,
    /// The smallest payout a driver may ask for, minor units (`[payouts] min_minor`).
    pub payout_min_minor: i64,
    /// A driver who owes more cash debt than this cannot go online (`[payouts]
    /// max_cash_debt_minor`; `403 cash_debt_limit`).
    pub max_cash_debt_minor: i64,
    /// How a new trip finds its first drivers (`[dispatch] mode`, issue 22).
    pub matching: MatchingMode,
    /// In batched mode, how long trips are collected before the window is solved
    /// (`[dispatch] batch_window_ms`).
    pub batch_window_ms: u32,
    /// In batched mode, how long the window's assigned offer is its trip's only one
    /// (`[dispatch] batch_exclusive_s`): unanswered by then, a greedy round joins it (the
    /// assigned offer stays open until its `offer_ttl_s`), so a driver who ignores the
    /// offer delays the trip this long, not `offer_ttl_s`. At `offer_ttl_s` or more, no
    /// round joins: the rounds start when the offer lapses or is declined.
    pub batch_exclusive_s: u32,
    /// In batched mode, a round (after a window's offer, or beside it) offers only the
    /// drivers whose pickup cost is within this many seconds of the round's best
    /// (`[dispatch] batch_round_slack_s`; 0: no bound): a lapsed or declined trip is not
    /// sent to drivers much further than the nearest, who would win it by answering first.
    pub batch_round_slack_s: u32,
    /// How offers rank drivers beyond pickup cost (`[dispatch] learning`); all zero:
    /// pickup cost alone.
    pub learning: LearningWeights,
}

/// How a new trip finds its first drivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchingMode {
    /// Offered, the moment it is created, to the nearest eligible drivers.
    #[default]
    Greedy,
    /// Collected over `batch_window_ms` with the other trips of the window, and assigned
    /// together by minimum total pickup cost; each assignment is the trip's first offer,
    /// and the rounds of greedy mode take over after a decline or a lapse, or join it when
    /// it is unanswered after `batch_exclusive_s`.
    Batched,
}

/// The weights of the ranking that learns from drivers (per cent of the pickup cost).
/// Zero turns a term off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LearningWeights {
    /// How much a driver's low acceptance rate adds to its cost.
    pub acceptance_pct: u16,
    /// How much a driver's idle time takes off its cost (the fairness term: nobody starves).
    pub idle_pct: u16,
}

impl LearningWeights {
    /// Pickup cost alone.
    pub const OFF: Self = Self { acceptance_pct: 0, idle_pct: 0 };

    /// The weights `--mode learning` runs with: the best pair of the city simulator's sweep
    /// (`scripts/matching-sweep.sh`, 10 pairs of `acceptance_pct` 0-400 × `idle_pct` 0-50,
    /// seeds 1-5, BENCHMARKS.md): a driver who accepts none of its recent offers costs 1.5
    /// times its pickup ETA, and one available for `matching::IDLE_CAP_S` (20 minutes) or
    /// more has a quarter of its cost taken off, so nobody starves. No pair lowered the
    /// busy hours' mean pickup ETA below batching without learning; this one kept the best
    /// match rate (0.970 vs 0.964) at +6 % pickup ETA. The formula is `matching::offer_cost`.
    pub const TUNED: Self = Self { acceptance_pct: 50, idle_pct: 25 };

    /// The most per cent of the cost a driver who accepts nothing may add.
    pub const MAX_ACCEPTANCE_PCT: u16 = 1_000;

    /// The most per cent of the cost idle time may take off (below 100: every cost stays
    /// positive).
    pub const MAX_IDLE_PCT: u16 = 90;

    /// Whether any term is on.
    pub fn is_on(&self) -> bool {
        *self != Self::OFF
    }
}

impl Default for DispatchRules {
    fn default() -> Self {
        Self {
            offers_per_round: 5,
            offer_ttl_s: 20,
            timeout_s: 120,
            search_radius_m: 5_000,
            stale_location_s: 30,
            disconnect_grace_s: 300,
            open_trips_per_rider: 3,
            redispatch_retry_s: 2,
            surge_interval_s: 60,
            location_min_interval_ms: 1_000,
            max_speed_kmh: 250,
            idempotency_ttl_s: 24 * 60 * 60,
            wallet_hold_ttl_s: 24 * 60 * 60,
            card_auth_ttl_s: 7 * 24 * 60 * 60,
            card_gateway: "sim".into(),
            cash_confirm_ttl_s: 24 * 60 * 60,
            schedule_lead_s: 600,
            scheduled_trips_per_rider: 5,
            chat_retention_s: crate::chat::DEFAULT_RETENTION_S,
            sos_phones: Vec::new(),
            payout_min_minor: 1_000,
            max_cash_debt_minor: 50_000,
            matching: MatchingMode::Greedy,
            batch_window_ms: Self::DEFAULT_BATCH_WINDOW_MS,
            batch_exclusive_s: Self::DEFAULT_BATCH_EXCLUSIVE_S,
            batch_round_slack_s: Self::DEFAULT_BATCH_ROUND_SLACK_S,
            learning: LearningWeights::OFF,
        }
    }
}

impl DispatchRules {
    /// Most drivers one round may offer a trip to.
    pub const MAX_OFFERS_PER_ROUND: u16 = 100;

    /// The batch windows accepted, in milliseconds: shorter is greedy with extra steps,
    /// longer keeps riders waiting with nothing to show.
    pub const BATCH_WINDOW_MS: std::ops::RangeInclusive<u32> = 100..=10_000;

    /// `batch_window_ms`'s default, chosen by the city simulator with the two below
    /// (BENCHMARKS.md "Matching modes compared"): a window of 4 s holds more trips to
    /// choose among in busy hours than one of 2 or 3 s, and keeps quiet hours' time to
    /// match within the window plus 1 s of greedy's.
    pub const DEFAULT_BATCH_WINDOW_MS: u32 = 4_000;

    /// `batch_exclusive_s`'s default, chosen by the city simulator
    /// (`scripts/matching-sweep.sh`, BENCHMARKS.md "Matching modes compared").
    pub const DEFAULT_BATCH_EXCLUSIVE_S: u32 = 2;

    /// `batch_round_slack_s`'s default, chosen by the city simulator like
    /// [`Self::DEFAULT_BATCH_EXCLUSIVE_S`].
    pub const DEFAULT_BATCH_ROUND_SLACK_S: u32 = 60;

    /// Whether a window closes before a search that starts with it times out.
    pub fn window_fits_search(&self) -> bool {
        u64::from(self.batch_window_ms) < u64::from(self.timeout_s) * 1000
    }

    /// Refuses rules that would make dispatch meaningless or unbounded.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |what: &str| Err(crate::Error::Invalid(format!("dispatch rules: {what}")));
        if !(1..=Self::MAX_OFFERS_PER_ROUND).contains(&self.offers_per_round) {
            return bad("offers_per_round must be 1-100");
        }
        if self.offer_ttl_s == 0 || self.timeout_s == 0 || self.redispatch_retry_s == 0 {
            return bad("offer_ttl_s, timeout_s and redispatch_retry_s must be positive");
        }
        if self.search_radius_m == 0 || self.search_radius_m > 100_000 {
            return bad("search_radius_m must be 1-100000");
        }
        if self.open_trips_per_rider == 0 {
            return bad("open_trips_per_rider must be positive");
        }
        if self.surge_interval_s == 0 || self.max_speed_kmh == 0 {
            return bad("surge_interval_s and max_speed_kmh must be positive");
        }
        if self.wallet_hold_ttl_s == 0 || self.card_auth_ttl_s == 0 {
            return bad("wallet_hold_ttl_s and card_auth_ttl_s must be positive");
        }
        if self.idempotency_ttl_s < 24 * 60 * 60 {
            return bad("idempotency_ttl_s must be at least 86400 (API.md keeps keys 24 hours)");
        }
        if self.cash_confirm_ttl_s == 0 {
            return bad("cash_confirm_ttl_s must be positive");
        }
        // Below the shortest booking ahead, so dispatch always starts after the booking.
        if self.schedule_lead_s >= crate::trip::MIN_SCHEDULE_AHEAD_S {
            return bad("schedule_lead_s must be below 900 (the shortest booking ahead, 15 minutes)");
        }
        if self.scheduled_trips_per_rider == 0 {
            return bad("scheduled_trips_per_rider must be positive");
        }
        if self.sos_phones.len() > crate::outbox::MAX_SOS_PHONES {
            return bad("sos_phones may name at most 10 phones");
        }
        if self.sos_phones.iter().any(|p| crate::user::validate_phone(p).is_err()) {
            return bad("sos_phones must be E.164 phone numbers (+ and 8 to 15 digits)");
        }
        if self.chat_retention_s < 24 * 60 * 60 {
            return bad("chat_retention_s must be at least 86400 (a day)");
        }
        // A gateway's name is a path segment of its webhook and a key of the history.
        let name_ok = (1..=32).contains(&self.card_gateway.len())
            && self
                .card_gateway
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return bad("card_gateway must be 1-32 of a-z, 0-9, _ and -");
        }
        if !(1..=crate::ledger::MAX_AMOUNT).contains(&self.payout_min_minor)
            || !(0..=crate::ledger::MAX_AMOUNT).contains(&self.max_cash_debt_minor)
        {
            return bad("payout_min_minor must be positive and max_cash_debt_minor not negative");
        }
        if !(Self::BATCH_WINDOW_MS).contains(&self.batch_window_ms) {
            return bad("batch_window_ms must be 100-10000");
        }
        // A trip waits for its window inside its search: in batched mode the window must
        // close before the search times out. (A zone batching on its own in a greedy city
        // with a window this long offers its trips at once instead: `start_search`.)
        if self.matching == MatchingMode::Batched && !self.window_fits_search() {
            return bad("batch_window_ms must be below timeout_s");
        }
        if self.learning.acceptance_pct > LearningWeights::MAX_ACCEPTANCE_PCT
            || self.learning.idle_pct > LearningWeights::MAX_IDLE_PCT
        {
            return bad("learning acceptance_pct must be 0-1000 and idle_pct 0-90");
        }
        Ok(())
    }
}
