//! Money: integer minor units beside an ISO 4217 currency. No floats, anywhere.
//!
//! Owns [`Currency`], [`Money`], the table of ISO 4217 currencies in force
//! ([`CURRENCIES`]) and how a rider pays ([`PaymentMethod`]). Guarantees:
//! - a [`Currency`] that exists is one of the table's codes, so it always knows its
//!   minor-unit exponent (JPY has 0, EGP 2, KWD 3); any other string — malformed, or
//!   three letters that name no currency in force (`XYZ`), or a code without minor units
//!   (the metals `XAU`, `XAG`, the testing code `XTS`, `XXX`) — is refused with an error
//!   naming it, wherever it comes from (JSON, a log record, the FFI);
//! - amounts are `i64` minor units everywhere; the exponent only says where the decimal
//!   point goes when an amount is shown ([`Money`]'s `Display`, `currency_exponent` in
//!   the API's shapes), never scales an amount;
//! - arithmetic on [`Money`] is checked: an overflow or a currency mismatch is an error,
//!   never a wrap.
//!
//! The table is ISO 4217's list one (the codes in force, funds included) as amended to
//! 2024. Recovery reads currencies through the same check, so a code that leaves the
//! table must stay readable from old records: withdraw it in a change that bumps the
//! engine's schema version.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a currency code or an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not three uppercase ASCII letters.
    #[error("`{0}` is not an ISO 4217 currency code (three uppercase letters)")]
    BadCurrency(String),
    /// Three uppercase letters that name no ISO 4217 currency in force (or one without
    /// minor units, such as gold).
    #[error("`{0}` is not an ISO 4217 currency in use")]
    UnknownCurrency(String),
    /// Two amounts in different currencies were combined.
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    /// The result does not fit in 64 bits.
    #[error("amount overflow")]
    Overflow,
}

/// An ISO 4217 currency in force, e.g. `EGP`, with its minor-unit exponent.
///
/// Only [`Currency::new`] (and what calls it: `FromStr`, `Deserialize`) makes one, so
/// the code is always in [`CURRENCIES`] and the exponent is the table's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// ISO 4217 currencies in force with their minor-unit exponent (digits after the decimal
/// point), sorted by code for binary search. List one of the standard as amended to 2024:
/// every code with a numeric minor unit; the codes whose minor unit is "N.A." (precious
/// metals, SDR, bond units, `XTS`, `XXX`) are left out, since nothing is priced in them.
pub const CURRENCIES: &[([u8; 3], u8)] = &[
    (*b"AED", 2), // UAE Dirham
    (*b"AFN", 2), // Afghani
    (*b"ALL", 2), // Lek
    (*b"AMD", 2), // Armenian Dram
    (*b"ANG", 2), // Netherlands Antillean Guilder
    (*b"AOA", 2), // Kwanza
    (*b"ARS", 2), // Argentine Peso
    (*b"AUD", 2), // Australian Dollar
    (*b"AWG", 2), // Aruban Florin
    (*b"AZN", 2), // Azerbaijan Manat
    (*b"BAM", 2), // Convertible Mark
    (*b"BBD", 2), // Barbados Dollar
    (*b"BDT", 2), // Taka
    (*b"BGN", 2), // Bulgarian Lev
    (*b"BHD", 3), // Bahraini Dinar
    (*b"BIF", 0), // Burundi Franc
    (*b"BMD", 2), // Bermudian Dollar
    (*b"BND", 2), // Brunei Dollar
    (*b"BOB", 2), // Boliviano
    (*b"BOV", 2), // Mvdol
    (*b"BRL", 2), // Brazilian Real
    (*b"BSD", 2), // Bahamian Dollar
    (*b"BTN", 2), // Ngultrum
    (*b"BWP", 2), // Pula
    (*b"BYN", 2), // Belarusian Ruble
    (*b"BZD", 2), // Belize Dollar
    (*b"CAD", 2), // Canadian Dollar
    (*b"CDF", 2), // Congolese Franc
    (*b"CHE", 2), // WIR Euro
    (*b"CHF", 2), // Swiss Franc
    (*b"CHW", 2), // WIR Franc
    (*b"CLF", 4), // Unidad de Fomento
    (*b"CLP", 0), // Chilean Peso
    (*b"CNY", 2), // Yuan Renminbi
    (*b"COP", 2), // Colombian Peso
    (*b"COU", 2), // Unidad de Valor Real
    (*b"CRC", 2), // Costa Rican Colon
    (*b"CUC", 2), // Peso Convertible
    (*b"CUP", 2), // Cuban Peso
    (*b"CVE", 2), // Cabo Verde Escudo
    (*b"CZK", 2), // Czech Koruna
    (*b"DJF", 0), // Djibouti Franc
    (*b"DKK", 2), // Danish Krone
    (*b"DOP", 2), // Dominican Peso
    (*b"DZD", 2), // Algerian Dinar
    (*b"EGP", 2), // Egyptian Pound
    (*b"ERN", 2), // Nakfa
    (*b"ETB", 2), // Ethiopian Birr
    (*b"EUR", 2), // Euro
    (*b"FJD", 2), // Fiji Dollar
    (*b"FKP", 2), // Falkland Islands Pound
    (*b"GBP", 2), // Pound Sterling
    (*b"GEL", 2), // Lari
    (*b"GHS", 2), // Ghana Cedi
    (*b"GIP", 2), // Gibraltar Pound
    (*b"GMD", 2), // Dalasi
    (*b"GNF", 0), // Guinean Franc
    (*b"GTQ", 2), // Quetzal
    (*b"GYD", 2), // Guyana Dollar
    (*b"HKD", 2), // Hong Kong Dollar
    (*b"HNL", 2), // Lempira
    (*b"HTG", 2), // Gourde
    (*b"HUF", 2), // Forint
    (*b"IDR", 2), // Rupiah
    (*b"ILS", 2), // New Israeli Sheqel
    (*b"INR", 2), // Indian Rupee
    (*b"IQD", 3), // Iraqi Dinar
    (*b"IRR", 2), // Iranian Rial
    (*b"ISK", 0), // Iceland Krona
    (*b"JMD", 2), // Jamaican Dollar
    (*b"JOD", 3), // Jordanian Dinar
    (*b"JPY", 0), // Yen
    (*b"KES", 2), // Kenyan Shilling
    (*b"KGS", 2), // Som
    (*b"KHR", 2), // Riel
    (*b"KMF", 0), // Comorian Franc
    (*b"KPW", 2), // North Korean Won
    (*b"KRW", 0), // Won
    (*b"KWD", 3), // Kuwaiti Dinar
    (*b"KYD", 2), // Cayman Islands Dollar
    (*b"KZT", 2), // Tenge
    (*b"LAK", 2), // Lao Kip
    (*b"LBP", 2), // Lebanese Pound
    (*b"LKR", 2), // Sri Lanka Rupee
    (*b"LRD", 2), // Liberian Dollar
    (*b"LSL", 2), // Loti
    (*b"LYD", 3), // Libyan Dinar
    (*b"MAD", 2), // Moroccan Dirham
    (*b"MDL", 2), // Moldovan Leu
    (*b"MGA", 2), // Malagasy Ariary
    (*b"MKD", 2), // Denar
    (*b"MMK", 2), // Kyat
    (*b"MNT", 2), // Tugrik
    (*b"MOP", 2), // Pataca
    (*b"MRU", 2), // Ouguiya
    (*b"MUR", 2), // Mauritius Rupee
    (*b"MVR", 2), // Rufiyaa
    (*b"MWK", 2), // Malawi Kwacha
    (*b"MXN", 2), // Mexican Peso
    (*b"MXV", 2), // Mexican Unidad de Inversion (UDI)
    (*b"MYR", 2), // Malaysian Ringgit
    (*b"MZN", 2), // Mozambique Metical
    (*b"NAD", 2), // Namibia Dollar
    (*b"NGN", 2), // Naira
    (*b"NIO", 2), // Cordoba Oro
    (*b"NOK", 2), // Norwegian Krone
    (*b"NPR", 2), // Nepalese Rupee
    (*b"NZD", 2), // New Zealand Dollar
    (*b"OMR", 3), // Rial Omani
    (*b"PAB", 2), // Balboa
    (*b"PEN", 2), // Sol
    (*b"PGK", 2), // Kina
    (*b"PHP", 2), // Philippine Peso
    (*b"PKR", 2), // Pakistan Rupee
    (*b"PLN", 2), // Zloty
    (*b"PYG", 0), // Guarani
    (*b"QAR", 2), // Qatari Rial
    (*b"RON", 2), // Romanian Leu
    (*b"RSD", 2), // Serbian Dinar
    (*b"RUB", 2), // Russian Ruble
    (*b"RWF", 0), // Rwanda Franc
    (*b"SAR", 2), // Saudi Riyal
    (*b"SBD", 2), // Solomon Islands Dollar
    (*b"SCR", 2), // Seychelles Rupee
    (*b"SDG", 2), // Sudanese Pound
    (*b"SEK", 2), // Swedish Krona
    (*b"SGD", 2), // Singapore Dollar
    (*b"SHP", 2), // Saint Helena Pound
    (*b"SLE", 2), // Leone
    (*b"SLL", 2), // Leone
    (*b"SOS", 2), // Somali Shilling
    (*b"SRD", 2), // Surinam Dollar
    (*b"SSP", 2), // South Sudanese Pound
    (*b"STN", 2), // Dobra
    (*b"SVC", 2), // El Salvador Colon
    (*b"SYP", 2), // Syrian Pound
    (*b"SZL", 2), // Lilangeni
    (*b"THB", 2), // Baht
    (*b"TJS", 2), // Somoni
    (*b"TMT", 2), // Turkmenistan New Manat
    (*b"TND", 3), // Tunisian Dinar
    (*b"TOP", 2), // Pa’anga
    (*b"TRY", 2), // Turkish Lira
    (*b"TTD", 2), // Trinidad and Tobago Dollar
    (*b"TWD", 2), // New Taiwan Dollar
    (*b"TZS", 2), // Tanzanian Shilling
    (*b"UAH", 2), // Hryvnia
    (*b"UGX", 0), // Uganda Shilling
    (*b"USD", 2), // US Dollar
    (*b"USN", 2), // US Dollar (Next day)
    (*b"UYI", 0), // Uruguay Peso en Unidades Indexadas (UI)
    (*b"UYU", 2), // Peso Uruguayo
    (*b"UYW", 4), // Unidad Previsional
    (*b"UZS", 2), // Uzbekistan Sum
    (*b"VED", 2), // Bolívar Soberano
    (*b"VES", 2), // Bolívar Soberano
    (*b"VND", 0), // Dong
    (*b"VUV", 0), // Vatu
    (*b"WST", 2), // Tala
    (*b"XAF", 0), // CFA Franc BEAC
    (*b"XCD", 2), // East Caribbean Dollar
    (*b"XCG", 2), // Caribbean Guilder
    (*b"XOF", 0), // CFA Franc BCEAO
    (*b"XPF", 0), // CFP Franc
    (*b"YER", 2), // Yemeni Rial
    (*b"ZAR", 2), // Rand
    (*b"ZMW", 2), // Zambian Kwacha
    (*b"ZWG", 2), // Zimbabwe Gold
    (*b"ZWL", 2), // Zimbabwe Dollar
];

// The table is sorted and free of duplicates (binary search relies on it), checked when
// the crate compiles.
const _: () = {
    let mut i = 1;
    while i < CURRENCIES.len() {
        let (a, b) = (CURRENCIES[i - 1].0, CURRENCIES[i].0);
        let ordered = a[0] < b[0] || (a[0] == b[0] && (a[1] < b[1] || (a[1] == b[1] && a[2] < b[2])));
        assert!(ordered, "CURRENCIES must be sorted by code, without duplicates");
        i += 1;
    }
};

impl Currency {
    /// The currency with this code: three uppercase ASCII letters naming an ISO 4217
    /// currency in force ([`CURRENCIES`]).
    pub fn new(code: &str) -> Result<Self, MoneyError> {
        let &[a, b, c] = code.as_bytes() else {
            return Err(MoneyError::BadCurrency(code.chars().take(16).collect()));
        };
        let code = [a, b, c];
        if !code.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::BadCurrency(String::from_utf8_lossy(&code).into_owned()));
        }
        match CURRENCIES.binary_search_by(|(known, _)| known.cmp(&code)) {
            Ok(i) => Ok(Self { code, exponent: CURRENCIES[i].1 }),
            // Uppercase ASCII, so the code is valid UTF-8 as it stands.
            Err(_) => Err(MoneyError::UnknownCurrency(String::from_utf8_lossy(&code).into_owned())),
        }
    }

    /// The three-letter code.
    pub fn code(&self) -> &str {
        // Only ever built from three ASCII uppercase letters.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Digits after the decimal point of one major unit (2 for EGP: 100 piastres; 0 for
    /// JPY; 3 for KWD: 1000 fils).
    pub fn exponent(&self) -> u8 {
        self.exponent
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

/// How the rider pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// The driver collects cash.
    Cash,
    /// The rider's wallet balance.
    Wallet,
    /// A card through the payment gateway.
    Card,
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
        assert_eq!(c("USD").exponent(), 2);
        assert_eq!(c("JPY").exponent(), 0);
        assert_eq!(c("KWD").exponent(), 3);
        assert_eq!(c("CLF").exponent(), 4);
        for bad in ["egp", "EG", "EGPP", "E1P", "", "ÉGP"] {
            assert!(matches!(Currency::new(bad), Err(MoneyError::BadCurrency(_))), "{bad}");
        }
    }

    #[test]
    fn the_table_knows_every_exponent_that_is_not_two() {
        // ISO 4217 list one: the zero- and three-decimal currencies, and the two with four.
        let zero = ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV"];
        let zero_cfa = ["XAF", "XOF", "XPF"];
        let three = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
        let four = ["CLF", "UYW"];
        for (codes, exponent) in [(&zero[..], 0), (&zero_cfa[..], 0), (&three[..], 3), (&four[..], 4)] {
            for code in codes {
                assert_eq!(c(code).exponent(), exponent, "{code}");
            }
        }
        let not_two = zero.len() + zero_cfa.len() + three.len() + four.len();
        assert_eq!(CURRENCIES.iter().filter(|(_, e)| *e != 2).count(), not_two, "no other code is off two");
        for code in ["EGP", "USD", "EUR", "GBP", "INR", "NGN", "KES", "SAR", "AED", "BRL", "MXN", "IDR", "HUF"] {
            assert_eq!(c(code).exponent(), 2, "{code}");
        }
        // Every code of the table is accepted with the table's exponent, and round-trips.
        for &(code, exponent) in CURRENCIES {
            let text = std::str::from_utf8(&code).unwrap();
            let currency = c(text);
            assert_eq!((currency.code(), currency.exponent()), (text, exponent));
        }
        assert!(CURRENCIES.len() > 150, "the full list, not a sample: {}", CURRENCIES.len());
    }

    #[test]
    fn three_letters_that_name_no_currency_in_force_are_refused_by_name() {
        // Made up, withdrawn (Croatian kuna, old ouguiya), or without minor units (gold,
        // the testing code, "no currency").
        for code in ["XYZ", "ABC", "HRK", "MRO", "XAU", "XTS", "XXX"] {
            let err = Currency::new(code).unwrap_err();
            assert_eq!(err, MoneyError::UnknownCurrency(code.into()));
            assert_eq!(err.to_string(), format!("`{code}` is not an ISO 4217 currency in use"));
        }
        let from_json = serde_json::from_str::<Money>(r#"{"amount_minor":1,"currency":"XYZ"}"#).unwrap_err();
        assert!(from_json.to_string().contains("`XYZ` is not an ISO 4217 currency"), "{from_json}");
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
