//! The one error type of dispatch-core: a domain refusal, or what the runtime adds.
//!
//! A command is refused by the domain ([`DomainError`], which says what rule and carries
//! the API's error code) or by the runtime around it: the writer's queue is full, the
//! log cannot be written, the engine has shut down, the data directory cannot be read.
//! Every variant has the stable error code of the HTTP contract (`../shared/API.md`), so
//! the server maps errors to responses in one place.

pub use dispatch_domain::error::Error as DomainError;

/// Everything the engine can refuse or fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The domain refused the command: a rule of the state machine, the input, money.
    /// Nothing changed.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The writer's queue is full: try again shortly (`overloaded`, HTTP 503).
    #[error("the engine is overloaded; try again shortly")]
    Overloaded,
    /// The log cannot be written (disk full or failing): reads work, changes do not (`read_only`).
    #[error("the engine is read-only: {0}")]
    ReadOnly(String),
    /// The data directory or its log cannot be opened or read (at start-up).
    #[error("storage: {0}")]
    Storage(String),
    /// This node is not the cluster's leader (or stopped being it before the command
    /// became durable): nothing of the command is in the log. The caller retries, on the
    /// leader or after an election, with the same idempotency key (`not_leader`, HTTP 503).
    #[error("this node is not the leader: {0}")]
    NotLeader(String),
    /// The engine has shut down and takes no more commands (`unavailable`).
    #[error("the engine has shut down")]
    ShutDown,
}

impl Error {
    /// The stable error code of the HTTP contract.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Domain(e) => e.code(),
            Error::Overloaded => "overloaded",
            Error::ReadOnly(_) => "read_only",
            Error::ShutDown => "unavailable",
            Error::NotLeader(_) => "not_leader",
            Error::Storage(_) => "storage",
        }
    }

    /// Whether a cluster node could not start because the shared log no longer holds
    /// the records after its local checkpoint: it needs a newer checkpoint (from a peer)
    /// before it can open (issue 21; [`crate::journal::NEEDS_NEWER_CHECKPOINT`]).
    pub fn is_released(&self) -> bool {
        matches!(self, Error::Storage(why) if why.starts_with(crate::journal::NEEDS_NEWER_CHECKPOINT))
    }

    /// The domain's refusal, if this is one.
    pub fn domain(&self) -> Option<&DomainError> {
        match self {
            Error::Domain(e) => Some(e),
            _ => None,
        }
    }

    /// A bug or a broken invariant of the runtime (`internal`). Never caused by input alone.
    pub fn internal(why: impl Into<String>) -> Self {
        Error::Domain(DomainError::Internal(why.into()))
    }

    /// An invalid request or argument (`invalid_request`).
    pub fn invalid(why: impl Into<String>) -> Self {
        Error::Domain(DomainError::Invalid(why.into()))
    }

    /// `not_found`, for the entity `what` with the id `id`.
    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        Error::Domain(DomainError::not_found(what, id))
    }
}

impl From<crate::geo::CoordinateError> for Error {
    fn from(e: crate::geo::CoordinateError) -> Self {
        Error::Domain(e.into())
    }
}

impl From<crate::money::MoneyError> for Error {
    fn from(e: crate::money::MoneyError) -> Self {
        Error::Domain(e.into())
    }
}

/// dispatch-core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_domain_s_or_the_runtime_s() {
        assert_eq!(
            Error::from(DomainError::TripAlreadyAssigned(crate::TripId::from_raw(1).unwrap())).code(),
            "trip_already_assigned"
        );
        assert_eq!(Error::Overloaded.code(), "overloaded");
        assert_eq!(Error::ReadOnly("disk full".into()).code(), "read_only");
        assert_eq!(Error::ShutDown.code(), "unavailable");
        assert_eq!(Error::internal("bug").code(), "internal");
    }
}
