//! The status codes of the C ABI and the one error type behind them.
//!
//! Owns [`DispatchStatus`], the `int32_t` every exported function returns, and
//! [`FfiError`], the crate's only error type. Guarantees: every error maps to exactly one
//! status ([`FfiError::status`]); the numeric values of the statuses never change once
//! published (new ones are added at the end); an error's `Display` is the message that
//! `dispatch_last_error_message` hands to C, and for fare errors it is exactly
//! `dispatch_core::fare::FareError`'s, so a caller sees the same words as the server logs.

use dispatch_core::fare::FareError;

/// What an exported function reports. `DISPATCH_STATUS_OK` (0) is success; anything else
/// is a failure whose message `dispatch_last_error_message()` returns.
///
/// In C this is an `int32_t` (a `typedef`), so the values are stable across compilers.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DispatchStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 2,
    /// A JSON argument did not parse, or did not have the expected shape (unknown or
    /// missing fields, wrong types).
    InvalidJson = 3,
    /// A value was well-formed but refused: a coordinate out of range, a bad currency code,
    /// a bad route configuration, a coupon with both a percentage and an amount.
    InvalidArgument = 4,
    /// The fare engine refused the pricing, route or coupon (`FareError`).
    FareError = 5,
    /// The engine refused or failed a command or a query; the answer JSON carries
    /// `{"error":{"code","message"}}` with the engine's error code.
    EngineError = 6,
    /// A bug inside the library panicked; the panic was caught at the boundary.
    Panic = 7,
}

/// Why an exported call failed. Every variant maps to one [`DispatchStatus`].
#[derive(Debug, thiserror::Error)]
pub enum FfiError {
    /// A required pointer was NULL; names the argument.
    #[error("argument `{0}` is NULL")]
    NullArgument(&'static str),
    /// A C string was not UTF-8; names the argument.
    #[error("argument `{argument}` is not valid UTF-8: {source}")]
    InvalidUtf8 {
        /// Which argument.
        argument: &'static str,
        /// Where the bad byte is.
        source: std::str::Utf8Error,
    },
    /// A JSON argument did not parse into the expected shape.
    #[error("argument `{argument}` is not valid JSON for it: {source}")]
    InvalidJson {
        /// Which argument.
        argument: &'static str,
        /// serde_json's account (line, column, what was expected).
        source: serde_json::Error,
    },
    /// A well-formed value that is refused.
    #[error("{0}")]
    InvalidArgument(String),
    /// The fare engine's refusal, word for word.
    #[error(transparent)]
    Fare(#[from] FareError),
    /// The engine's refusal or failure, with its stable error code.
    #[error(transparent)]
    Engine(#[from] dispatch_core::Error),
    /// A panic caught at the boundary, with its message when it had one.
    #[error("internal error (panic): {0}")]
    Panic(String),
}

impl FfiError {
    /// The status this error is reported with.
    pub fn status(&self) -> DispatchStatus {
        match self {
            FfiError::NullArgument(_) => DispatchStatus::NullArgument,
            FfiError::InvalidUtf8 { .. } => DispatchStatus::InvalidUtf8,
            FfiError::InvalidJson { .. } => DispatchStatus::InvalidJson,
            FfiError::InvalidArgument(_) => DispatchStatus::InvalidArgument,
            FfiError::Fare(_) => DispatchStatus::FareError,
            FfiError::Engine(_) => DispatchStatus::EngineError,
            FfiError::Panic(_) => DispatchStatus::Panic,
        }
    }

    /// The error as the API's error object: `{"error":{"code","message"}}`. Engine errors
    /// carry the engine's code (`Error::code()`); the others a code of this crate.
    pub fn to_json(&self) -> serde_json::Value {
        let code = match self {
            FfiError::Engine(e) => e.code(),
            FfiError::NullArgument(_) | FfiError::InvalidUtf8 { .. } | FfiError::InvalidArgument(_) => {
                "invalid_request"
            }
            FfiError::InvalidJson { .. } => "invalid_json",
            FfiError::Fare(FareError::Coupon(_)) => "coupon_invalid",
            FfiError::Fare(_) => "invalid_request",
            FfiError::Panic(_) => "internal",
        };
        serde_json::json!({ "error": { "code": code, "message": self.to_string() } })
    }
}
