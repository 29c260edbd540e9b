//! The one error type of dispatch-domain: why a command was refused.
//!
//! Every refusal is a typed variant, and every variant has the stable error code of
//! the HTTP contract (`../shared/API.md`), so the server maps errors to responses
//! in one place and a refused command is known to have changed nothing. What the
//! runtime adds (a full queue, a failing disk, a shut-down engine) is
//! `dispatch_core::Error`, which wraps this one.

use crate::geo::CoordinateError;
use crate::id::{TripId, UserId};
use crate::money::MoneyError;

/// Everything `apply` and the domain's validation can refuse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The request is malformed or breaks a rule of the input (`invalid_request`).
    #[error("{0}")]
    Invalid(String),
    /// One field of the request breaks a rule (`invalid_request`, with that field as `param`).
    #[error("{param}: {message}")]
    InvalidParam {
        /// The field, as the API names it.
        param: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A coordinate is not finite or out of range (`invalid_coordinates`).
    #[error(transparent)]
    InvalidCoordinates(#[from] CoordinateError),
    /// No such entity, or the caller may not know it exists (`not_found`).
    #[error("{what} {id} not found")]
    NotFound {
        /// The kind of entity.
        what: &'static str,
        /// Its id, rendered.
        id: String,
    },
    /// The caller's role or relation to the entity does not allow this (`forbidden`).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The pickup code given at start is not the trip's (`forbidden`).
    #[error("wrong pickup code for trip {0}")]
    WrongPickupCode(TripId),
    /// The driver was never offered this trip (`not_offered`).
    #[error("trip {0} was not offered to this driver")]
    NotOffered(TripId),
    /// Another driver already has the trip (`trip_already_assigned`).
    #[error("trip {0} was accepted by another driver")]
    TripAlreadyAssigned(TripId),
    /// The driver is offline, suspended or on another trip (`driver_not_available`).
    #[error("driver {0} is not available")]
    DriverNotAvailable(UserId),
    /// The offer lapsed or was declined (`offer_expired`).
    #[error("the offer of trip {0} has expired")]
    OfferExpired(TripId),
    /// The state machine does not allow this step from the current state (`invalid_transition`).
    #[error("cannot {action} {entity} while it is {from}")]
    InvalidTransition {
        /// What the caller tried.
        action: &'static str,
        /// The entity, rendered (`trip trp_…`, `driver usr_…`).
        entity: String,
        /// Its current state.
        from: &'static str,
    },
    /// The rider already has the maximum number of open trips (`too_many_open_trips`).
    #[error("a rider may have at most {0} open trips")]
    TooManyOpenTrips(u16),
    /// The rider already has the maximum number of rides booked ahead and not yet
    /// dispatched (`too_many_open_trips`).
    #[error("a rider may have at most {0} rides booked ahead")]
    TooManyScheduledTrips(u16),
    /// The point is outside every active zone (`outside_service_area`).
    #[error("no active service zone covers this point")]
    OutsideServiceArea,
    /// The zone has no prices for the category (`no_pricing`).
    #[error("no pricing for category {0} in this zone")]
    NoPricing(String),
    /// The coupon does not exist or does not apply (`coupon_invalid`).
    #[error("coupon not applicable: {0}")]
    CouponInvalid(String),
    /// The idempotency key was used before with a different request (`idempotency_key_reused`).
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    /// A wrong or expired one-time code (`invalid_otp`). The engine itself answers a
    /// wrong code with [`Outcome::OtpRefused`](crate::command::Outcome::OtpRefused), a
    /// counted (logged) attempt; this is for callers that refuse one before it.
    #[error("wrong or expired code")]
    InvalidOtp,
    /// Too many attempts; try again after `retry_after_s` (`rate_limited`).
    #[error("too many attempts: {what}; try again in {retry_after_s} s")]
    RateLimited {
        /// What was limited.
        what: &'static str,
        /// Whole seconds until an attempt can succeed (at least 1).
        retry_after_s: u64,
    },
    /// A position implies an impossible speed since the driver's last one: suspected
    /// spoofing, refused and counted (`invalid_coordinates`).
    #[error("implausible position: implies {speed_kmh} km/h since the last one")]
    ImplausibleLocation {
        /// The implied speed.
        speed_kmh: u64,
    },
    /// A wallet cannot cover the amount (`insufficient_funds`).
    #[error("insufficient funds: {available} available, {needed} needed")]
    InsufficientFunds {
        /// What the wallet could pay.
        available: i64,
        /// What was needed.
        needed: i64,
    },
    /// A refund above what was captured minus refunded (`refund_exceeds_captured`).
    #[error("refund exceeds what was captured ({captured}) minus what was refunded ({refunded})")]
    RefundExceedsCaptured {
        /// Captured so far.
        captured: i64,
        /// Refunded so far.
        refunded: i64,
    },
    /// Money arithmetic failed (`invalid_request`).
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// A bug or a broken invariant. Never caused by input alone.
    #[error("internal error: {0}")]
    Internal(String),
    /// A driver whose application staff have not approved tries to work (`not_approved`).
    #[error("driver {0} is not approved yet")]
    NotApproved(UserId),
    /// A driver whose licence has expired tries to go online (`document_expired`).
    #[error("the driving licence of driver {driver} expired on {expires_on}")]
    DocumentExpired {
        /// Whose.
        driver: UserId,
        /// Its last valid day, `YYYY-MM-DD`.
        expires_on: String,
    },
    /// A parcel heavier than its category carries (`parcel_too_heavy`).
    #[error("the parcel is too heavy: this category carries at most {max_weight_kg} kg")]
    ParcelTooHeavy {
        /// The category's limit.
        max_weight_kg: u32,
    },
    /// The driver owes more cash debt than `max_cash_debt_minor` and cannot go online
    /// until it is paid back (`cash_debt_limit`).
    #[error("cash debt of {owed} is above the limit of {limit}: pay it back first")]
    CashDebtLimit {
        /// What the driver owes.
        owed: i64,
        /// The limit in force.
        limit: i64,
    },
    // ----- issue 20: U -----
    /// A user staff blocked tries to book (`blocked`).
    #[error("user {0} is blocked")]
    Blocked(UserId),
}

impl Error {
    /// The stable error code of the HTTP contract.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid(_) | Error::InvalidParam { .. } | Error::Money(_) => "invalid_request",
            Error::InvalidCoordinates(_) | Error::ImplausibleLocation { .. } => "invalid_coordinates",
            Error::NotFound { .. } => "not_found",
            Error::Forbidden(_) | Error::WrongPickupCode(_) => "forbidden",
            Error::NotOffered(_) => "not_offered",
            Error::TripAlreadyAssigned(_) => "trip_already_assigned",
            Error::DriverNotAvailable(_) => "driver_not_available",
            Error::OfferExpired(_) => "offer_expired",
            Error::InvalidTransition { .. } => "invalid_transition",
            Error::TooManyOpenTrips(_) | Error::TooManyScheduledTrips(_) => "too_many_open_trips",
            Error::OutsideServiceArea => "outside_service_area",
            Error::NoPricing(_) => "no_pricing",
            Error::CouponInvalid(_) => "coupon_invalid",
            Error::IdempotencyKeyReused => "idempotency_key_reused",
            Error::InsufficientFunds { .. } => "insufficient_funds",
            Error::RefundExceedsCaptured { .. } => "refund_exceeds_captured",
            Error::InvalidOtp => "invalid_otp",
            Error::RateLimited { .. } => "rate_limited",
            Error::Internal(_) => "internal",
            Error::NotApproved(_) => "not_approved",
            Error::DocumentExpired { .. } => "document_expired",
            Error::ParcelTooHeavy { .. } => "parcel_too_heavy",
            Error::CashDebtLimit { .. } => "cash_debt_limit",
            // ----- issue 20: U -----
            Error::Blocked(_) => "blocked",
        }
    }

    /// `NotFound` of the entity `what` with the id `id`.
    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        Error::NotFound { what, id: id.to_string() }
    }
}

/// dispatch-domain's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
