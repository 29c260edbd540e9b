//! Users, roles and vehicles.
//!
//! A user's role never changes after creation; what a role may do is decided in
//! one place, [`crate::state`]'s authorisation of each command. Staff are users
//! with the `support` or `admin` role, or the bootstrap admin ([`crate::Actor::Admin`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::UserId;
use crate::money::PaymentMethod;

/// What a user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Asks for trips.
    Rider,
    /// Drives them.
    Driver,
    /// Operator staff: reads everything, cancels trips, answers alerts, refunds.
    Support,
    /// Operator staff with every right.
    Admin,
}

impl Role {
    /// Support or admin.
    pub fn is_staff(self) -> bool {
        matches!(self, Role::Support | Role::Admin)
    }

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Rider => "rider",
            Role::Driver => "driver",
            Role::Support => "support",
            Role::Admin => "admin",
        }
    }
}

/// A vehicle category (`economy`, `comfort`, `moto`…): 1–32 characters of `[a-z0-9_]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Category(String);

impl Category {
    /// Longest category name.
    pub const MAX_LEN: usize = 32;

    /// The category, if the name is well formed.
    pub fn new(name: &str) -> Result<Self> {
        let ok = (1..=Self::MAX_LEN).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(Error::Invalid(format!(
                "category `{}` must be 1-32 characters of a-z, 0-9 and _",
                name.chars().take(40).collect::<String>()
            )))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Category {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for Category {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Category::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A driver's vehicle: what dispatch needs (category, plate) and what a rider looks for
/// at the kerb (make, model, colour, year; optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vehicle {
    /// The category it is dispatched in.
    pub category: Category,
    /// Its registration plate, as written on it.
    pub plate: String,
    /// The maker (`Hyundai`): 1–40 characters, no control characters.
    #[serde(default)]
    pub make: Option<String>,
    /// The model (`Elantra`): the same rules.
    #[serde(default)]
    pub model: Option<String>,
    /// The colour as a rider would say it (`silver`): the same rules.
    #[serde(default)]
    pub color: Option<String>,
    /// The model year, [`MIN_YEAR`]..=[`MAX_YEAR`].
    #[serde(default)]
    pub year: Option<u16>,
}

impl Vehicle {
    /// A vehicle with only what dispatch needs (no make, model, colour or year).
    pub fn new(category: Category, plate: impl Into<String>) -> Self {
        Vehicle { category, plate: plate.into(), make: None, model: None, color: None, year: None }
    }
}

/// A user's ratings so far, kept as integers (the sum of the stars and their count): only
/// a renderer divides. Updated by the domain each time a trip rating about the user is
/// applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatingTotals {
    /// Sum of the stars received.
    pub stars: u64,
    /// Ratings received.
    pub count: u32,
}

impl RatingTotals {
    /// Ratings a user needs before their average is shown (API.md: `null` until 3).
    pub const SHOWN_FROM: u32 = 3;

    /// Adds one rating of `stars`.
    pub fn add(&mut self, stars: u8) {
        self.stars = self.stars.saturating_add(u64::from(stars));
        self.count = self.count.saturating_add(1);
    }

    /// The average rounded to 2 decimals, once there are [`Self::SHOWN_FROM`] ratings.
    pub fn shown_average(&self) -> Option<f64> {
        if self.count < Self::SHOWN_FROM {
            return None;
        }
        // Rounded in integers (hundredths, half up) so the same totals always show the same figure.
        let hundredths = (self.stars * 200 + u64::from(self.count)) / (2 * u64::from(self.count));
        Some(hundredths as f64 / 100.0)
    }
}

/// A person known to dispatch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Unguessable id.
    pub id: UserId,
    /// Rider, driver or staff; fixed at creation.
    pub role: Role,
    /// Display name (plain text; renderers must escape it).
    pub name: String,
    /// Phone number in E.164 form (`+201001234567`).
    pub phone: String,
    /// Drivers only: the vehicle they drive.
    pub vehicle: Option<Vehicle>,
    /// Bumped to revoke every token issued before.
    pub token_generation: u32,
    /// A suspended driver is offline and cannot go online.
    pub suspended: bool,
    /// When the user was created.
    pub created_at: Timestamp,
    /// The ratings other users gave this one (riders rate drivers, drivers rate riders).
    #[serde(default)]
    pub rating: RatingTotals,
    /// An e-mail address the user gave (`PATCH /v1/me`; [`validate_email`]).
    pub email: Option<String>,
    /// The language the apps speak to the user, a BCP 47 tag ([`validate_language`]);
    /// [`DEFAULT_LANGUAGE`] until the user says otherwise.
    pub language: String,
    /// How the user pays unless a booking says otherwise.
    pub default_payment_method: Option<PaymentMethod>,
    // ----- issue 20: S -----
    /// A staff user of a custom role (`[roles.<name>]` in the server's config): its name.
    /// Its engine role is then `support`. `None` for everyone else.
    pub staff_role: Option<String>,
    // ----- issue 20: U -----
    /// Blocked by staff (`POST /v1/admin/users/{id}/block`): a rider cannot book, a
    /// driver is suspended (apart from a suspension an admin made: [`User::suspended`]).
    pub blocked: Option<Block>,
    /// When the user's personal data was erased (`POST /v1/admin/users/{id}/erase`): the
    /// record stays, so ledger entries keep a valid owner, with the personal fields
    /// replaced ([`ERASED_NAME`], no phone, no e-mail).
    pub erased_at: Option<Timestamp>,
}

// ----- issue 20: U -----

/// Why and when staff blocked a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The reason staff gave (bounded like every reason).
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// An erased user's data outside the state, not yet gone (the eraser's queue,
/// `State::erasures`): the documents' files, the position track, the chat of archived
/// trips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// When the user was erased.
    pub at: Timestamp,
    /// The user's role (a driver has positions and documents).
    pub role: Role,
    /// The SHA-256 of each document the user's application held (their files go, unless
    /// another application holds the same bytes).
    pub documents: Vec<[u8; 32]>,
}

/// The name an erased user's record carries instead of its own.
pub const ERASED_NAME: &str = "Erased user";

/// A user's standing, as `GET /v1/admin/users` filters it (`status=`): erased wins over
/// blocked (an erased user stays blocked if it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Neither blocked nor erased.
    Active,
    /// Blocked by staff.
    Blocked,
    /// Personal data erased.
    Erased,
}

impl UserStatus {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Blocked => "blocked",
            UserStatus::Erased => "erased",
        }
    }

    /// The status named `s` in the API.
    pub fn parse(s: &str) -> Option<Self> {
        [UserStatus::Active, UserStatus::Blocked, UserStatus::Erased].into_iter().find(|st| st.as_str() == s)
    }
}

impl User {
    /// Erased, blocked or active.
    pub fn status(&self) -> UserStatus {
        if self.erased_at.is_some() {
            UserStatus::Erased
        } else if self.blocked.is_some() {
            UserStatus::Blocked
        } else {
            UserStatus::Active
        }
    }
}

/// The language of a user who never chose one.
pub const DEFAULT_LANGUAGE: &str = "en";
/// Longest e-mail address accepted (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest language tag accepted (the length RFC 5646 says every tag fits in).
pub const MAX_LANGUAGE_LEN: usize = 35;

/// Checks an e-mail address for plausibility (delivery is the only real test): at most
/// 254 characters, no whitespace or control characters, one `@` with 1-64 characters
/// before it and a domain after it of dot-separated labels (at least two), each 1-63
/// letters, digits or hyphens (or any non-ASCII letter: internationalised domains),
/// neither starting nor ending with a hyphen.
pub fn validate_email(email: &str) -> Result<()> {
    let refused =
        || Err(Error::Invalid("email must be a plausible address (name@example.com), at most 254 characters".into()));
    if email.chars().count() > MAX_EMAIL_LEN || email.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return refused();
    }
    let Some((local, domain)) = email.split_once('@') else { return refused() };
    if !(1..=64).contains(&local.chars().count())
        || domain.contains('@')
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return refused();
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.chars().count())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric()))
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return refused();
    }
    Ok(())
}

/// Checks the shape of a BCP 47 language tag: at most 35 characters; a primary subtag of
/// 2-3 ASCII letters, then optional subtags of 1-8 ASCII letters or digits, separated by
/// `-` (`en`, `ar-EG`, `zh-Hant-TW`, `de-CH-1996`). The registry is not consulted.
pub fn validate_language(tag: &str) -> Result<()> {
    let mut parts = tag.split('-');
    let primary_ok =
        parts.next().is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    let rest_ok = parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if tag.len() <= MAX_LANGUAGE_LEN && primary_ok && rest_ok {
        Ok(())
    } else {
        Err(Error::Invalid(
            "language must be a BCP 47 tag: 2-3 letters, then optional subtags of 1-8 letters or digits joined by -, at most 35 characters".into(),
        ))
    }
}

/// Longest display name accepted.
pub const MAX_NAME_LEN: usize = 100;
/// Longest plate accepted.
pub const MAX_PLATE_LEN: usize = 20;
/// Longest make, model or colour accepted.
pub const MAX_VEHICLE_TEXT_LEN: usize = 40;
/// Oldest model year accepted.
pub const MIN_YEAR: u16 = 1950;
/// Newest model year accepted (a fixed bound: the domain reads no wall clock here).
pub const MAX_YEAR: u16 = 2100;

/// Checks an E.164 phone number: `+` then 8 to 15 digits.
pub fn validate_phone(phone: &str) -> Result<()> {
    let digits = phone.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0') {
        Ok(())
    } else {
        Err(Error::Invalid("phone must be in E.164 form: + and 8 to 15 digits".into()))
    }
}

/// Checks a display name: 1–100 characters, no control characters.
pub fn validate_name(name: &str) -> Result<()> {
    let len = name.chars().count();
    if (1..=MAX_NAME_LEN).contains(&len) && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(Error::Invalid(format!("name must be 1-{MAX_NAME_LEN} characters without control characters")))
    }
}

/// Checks a vehicle: a plate of 1–20 printable characters; make, model and colour, when
/// given, of 1–40; a year, when given, in 1950..=2100.
pub fn validate_vehicle(vehicle: &Vehicle) -> Result<()> {
    let text_ok = |s: &str, max: usize| (1..=max).contains(&s.chars().count()) && !s.chars().any(char::is_control);
    if !text_ok(&vehicle.plate, MAX_PLATE_LEN) {
        return Err(Error::Invalid(format!("plate must be 1-{MAX_PLATE_LEN} characters without control characters")));
    }
    for (name, value) in [("make", &vehicle.make), ("model", &vehicle.model), ("color", &vehicle.color)] {
        if let Some(v) = value
            && !text_ok(v, MAX_VEHICLE_TEXT_LEN)
        {
            return Err(Error::Invalid(format!(
                "vehicle {name} must be 1-{MAX_VEHICLE_TEXT_LEN} characters without control characters"
            )));
        }
    }
    if let Some(y) = vehicle.year
        && !(MIN_YEAR..=MAX_YEAR).contains(&y)
    {
        return Err(Error::Invalid(format!("vehicle year must be {MIN_YEAR} to {MAX_YEAR}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn categories_are_validated() {
        assert!(Category::new("economy").is_ok());
        assert!(Category::new("moto_2").is_ok());
        for bad in ["", "Economy", "eco nomy", "a".repeat(33).as_str(), "<b>"] {
            assert!(Category::new(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Category>("\"X\"").is_err());
    }

    #[test]
    fn phones_and_names_are_validated() {
        assert!(validate_phone("+201001234567").is_ok());
        for bad in ["201001234567", "+20 100", "+0123456789", "+12", "+1234567890123456"] {
            assert!(validate_phone(bad).is_err(), "{bad}");
        }
        assert!(
            validate_name("<img src=x onerror=alert(1)>").is_ok(),
            "names are text; escaping is the renderer's job"
        );
        assert!(validate_name("").is_err());
        assert!(validate_name("a\u{0}b").is_err());
    }

    #[test]
    fn vehicle_details_are_validated() {
        let economy = Category::new("economy").unwrap();
        let good = Vehicle {
            make: Some("Hyundai".into()),
            model: Some("Elantra".into()),
            color: Some("silver".into()),
            year: Some(2019),
            ..Vehicle::new(economy.clone(), "ABC 123")
        };
        assert!(validate_vehicle(&good).is_ok());
        assert!(validate_vehicle(&Vehicle::new(economy.clone(), "ABC 123")).is_ok(), "details are optional");
        let bad = [
            Vehicle { make: Some("x".repeat(41)), ..good.clone() },
            Vehicle { model: Some(String::new()), ..good.clone() },
            Vehicle { color: Some("sil\u{7}ver".into()), ..good.clone() },
            Vehicle { year: Some(1949), ..good.clone() },
            Vehicle { year: Some(2101), ..good.clone() },
        ];
        for v in bad {
            assert!(validate_vehicle(&v).is_err(), "{v:?}");
        }
        assert!(validate_vehicle(&Vehicle { make: Some("é".repeat(40)), ..good }).is_ok(), "characters, not bytes");
    }

    #[test]
    fn emails_and_languages_are_validated() {
        for good in ["amal@example.com", "a.b+tag@mail.example.co.uk", "x@xn--80ak6aa92e.com", "أمل@مثال.مصر"]
        {
            assert!(validate_email(good).is_ok(), "{good}");
        }
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(63));
        assert!(validate_email(&long).is_ok());
        for bad in [
            "",
            "amal",
            "amal@",
            "@example.com",
            "amal@example",
            "a@b@example.com",
            "amal @example.com",
            "amal@exa_mple.com",
            "amal@-example.com",
            "amal@example..com",
            ".amal@example.com",
            "amal\u{0}@example.com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
        assert!(validate_email(&format!("{}@example.com", "a".repeat(65))).is_err(), "local part over 64");
        assert!(validate_email(&format!("a@{}.com", "b.".repeat(130))).is_err(), "over 254 characters");
        for good in ["en", "ar", "ar-EG", "zh-Hant-TW", "de-CH-1996", "fil", "sr-Latn-RS", "en-aaaaaaaa"] {
            assert!(validate_language(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "e",
            "engl",
            "en-",
            "-en",
            "en--US",
            "en_US",
            "en-abcdefghi",
            "e1",
            "en-US\n",
            "ar-مصر",
            &format!("en{}", "-abcdefgh".repeat(4)),
        ] {
            assert!(validate_language(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn well_formed_tags_pass_and_control_characters_never_do(
            primary in "[a-zA-Z]{2,3}",
            subtags in proptest::collection::vec("[a-zA-Z0-9]{1,8}", 0..3),
            junk in "\\PC*",
            control in proptest::char::range('\u{0}', '\u{1f}'),
            at in 0usize..40,
        ) {
            let tag = std::iter::once(primary).chain(subtags).collect::<Vec<_>>().join("-");
            prop_assert!(validate_language(&tag).is_ok(), "{}", tag);
            let mut broken = tag.clone();
            broken.insert(at.min(broken.len()), control);
            prop_assert!(validate_language(&broken).is_err());
            let _ = validate_language(&junk);
            let _ = validate_email(&junk);
        }

        #[test]
        fn plausible_addresses_pass_and_control_characters_never_do(
            local in "[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]",
            labels in proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", 2..4),
            control in proptest::char::range('\u{0}', '\u{1f}').prop_union(proptest::char::range('\u{7f}', '\u{9f}')),
            at in 0usize..60,
        ) {
            prop_assume!(!local.contains(".."));
            let email = format!("{local}@{}", labels.join("."));
            prop_assert!(validate_email(&email).is_ok(), "{}", email);
            let mut broken: Vec<char> = email.chars().collect();
            broken.insert(at.min(broken.len()), control);
            prop_assert!(validate_email(&broken.into_iter().collect::<String>()).is_err());
        }
    }

    #[test]
    fn averages_show_from_three_ratings_rounded_to_hundredths() {
        let mut r = RatingTotals::default();
        assert_eq!(r.shown_average(), None);
        r.add(5);
        r.add(4);
        assert_eq!(r.shown_average(), None, "two ratings are not shown");
        r.add(4);
        assert_eq!((r.stars, r.count), (13, 3));
        assert_eq!(r.shown_average(), Some(4.33));
        r.add(5);
        r.add(5);
        r.add(5);
        assert_eq!(r.shown_average(), Some(4.67), "28/6 = 4.666… rounds up");
        let r = RatingTotals { stars: 4 * 8 + 5, count: 8 };
        assert_eq!(r.shown_average(), Some(4.63), "37/8 = 4.625 rounds half up");
    }
}
