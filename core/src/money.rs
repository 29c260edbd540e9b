//! Money: integer minor units beside an ISO 4217 currency. No floats, anywhere.
//!
//! A [`Currency`] is three uppercase ASCII letters and knows its minor-unit
//! exponent (JPY has 0, EGP 2, KWD 3). Arithmetic on [`Money`] is checked: an
//! overflow or a currency mismatch is an error, never a wrap.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a currency code or an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not three uppercase ASCII letters.
    #[error("`{0}` is not an ISO 4217 currency code (three uppercase letters)")]
    BadCurrency(String),
    /// Two amounts in different currencies were combined.
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    /// The result does not fit in 64 bits.
    #[error("amount overflow")]
    Overflow,
}

/// An ISO 4217 currency code, e.g. `EGP`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

/// ISO 4217 currencies whose minor unit is not 2 decimal places.
/// (List 1 of the standard, 2024 edition; every other code has 2.)
const EXPONENTS: &[(&[u8; 3], u8)] = &[
    (b"BIF", 0),
    (b"CLP", 0),
    (b"DJF", 0),
    (b"GNF", 0),
    (b"ISK", 0),
    (b"JPY", 0),
    (b"KMF", 0),
    (b"KRW", 0),
    (b"PYG", 0),
    (b"RWF", 0),
    (b"UGX", 0),
    (b"UYI", 0),
    (b"VND", 0),
    (b"VUV", 0),
    (b"XAF", 0),
    (b"XOF", 0),
    (b"XPF", 0),
    (b"BHD", 3),
    (b"IQD", 3),
    (b"JOD", 3),
    (b"KWD", 3),
    (b"LYD", 3),
    (b"OMR", 3),
    (b"TND", 3),
    (b"CLF", 4),
    (b"UYW", 4),
];

impl Currency {
    /// The currency with this code, if it is three uppercase ASCII letters.
    pub fn new(code: &str) -> Result<Self, MoneyError> {
        match code.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(MoneyError::BadCurrency(code.chars().take(16).collect())),
        }
    }

    /// The three-letter code.
    pub fn code(&self) -> &str {
        // Only ever built from three ASCII uppercase letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Digits after the decimal point of one major unit (2 for EGP: 100 piastres).
    pub fn exponent(&self) -> u8 {
        EXPONENTS.iter().find(|(code, _)| **code == self.0).map_or(2, |&(_, e)| e)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, MoneyError> {
        Self::new(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Currency::new(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount in minor units (piastres, cents) of a currency.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Minor units; negative for debits where a signed amount makes sense.
    pub amount_minor: i64,
    /// The currency.
    pub currency: Currency,
}

impl Money {
    /// `amount_minor` of `currency`.
    pub const fn new(amount_minor: i64, currency: Currency) -> Self {
        Self { amount_minor, currency }
    }

    /// Zero of `currency`.
    pub const fn zero(currency: Currency) -> Self {
        Self { amount_minor: 0, currency }
    }

    /// `self + other`, refusing mixed currencies and overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount_minor = self.amount_minor.checked_add(other.amount_minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { amount_minor, ..self })
    }

    /// `self - other`, refusing mixed currencies and overflow.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount_minor = self.amount_minor.checked_sub(other.amount_minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { amount_minor, ..self })
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_minor, self.currency)
    }
}

impl fmt::Display for Money {
    /// Renders in major units with the currency's exponent: `45.50 EGP`, `1200 JPY`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = u32::from(self.currency.exponent());
        if e == 0 {
            return write!(f, "{} {}", self.amount_minor, self.currency);
        }
        let scale = 10u64.pow(e);
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        write!(f, "{sign}{}.{:0width$} {}", abs / scale, abs % scale, self.currency, width = e as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(code: &str) -> Currency {
        Currency::new(code).unwrap()
    }

    #[test]
    fn currency_codes_are_validated_and_know_their_exponent() {
        assert_eq!(c("EGP").exponent(), 2);
        assert_eq!(c("JPY").exponent(), 0);
        assert_eq!(c("KWD").exponent(), 3);
        assert_eq!(c("CLF").exponent(), 4);
        for bad in ["egp", "EG", "EGPP", "E1P", "", "ÉGP"] {
            assert!(Currency::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_uses_the_exponent() {
        assert_eq!(Money::new(4550, c("EGP")).to_string(), "45.50 EGP");
        assert_eq!(Money::new(-5, c("EGP")).to_string(), "-0.05 EGP");
        assert_eq!(Money::new(1200, c("JPY")).to_string(), "1200 JPY");
        assert_eq!(Money::new(1, c("KWD")).to_string(), "0.001 KWD");
        assert_eq!(Money::new(i64::MIN, c("EGP")).to_string(), "-92233720368547758.08 EGP");
    }

    #[test]
    fn arithmetic_is_checked() {
        let a = Money::new(i64::MAX, c("EGP"));
        assert_eq!(a.checked_add(Money::new(1, c("EGP"))), Err(MoneyError::Overflow));
        assert!(matches!(
            Money::new(1, c("EGP")).checked_add(Money::new(1, c("USD"))),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        assert_eq!(Money::new(5, c("EGP")).checked_sub(Money::new(7, c("EGP"))), Ok(Money::new(-2, c("EGP"))));
    }

    #[test]
    fn json_shape_matches_the_api() {
        let m = Money::new(4550, c("EGP"));
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"amount_minor":4550,"currency":"EGP"}"#);
        assert!(serde_json::from_str::<Money>(r#"{"amount_minor":1,"currency":"eg"}"#).is_err());
    }
}
