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

/// A driver's vehicle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vehicle {
    /// The category it is dispatched in.
    pub category: Category,
    /// Its registration plate, as written on it.
    pub plate: String,
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
}

/// Longest display name accepted.
pub const MAX_NAME_LEN: usize = 100;
/// Longest plate accepted.
pub const MAX_PLATE_LEN: usize = 20;

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

/// Checks a vehicle: a plate of 1–20 printable characters.
pub fn validate_vehicle(vehicle: &Vehicle) -> Result<()> {
    let len = vehicle.plate.chars().count();
    if (1..=MAX_PLATE_LEN).contains(&len) && !vehicle.plate.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(Error::Invalid(format!("plate must be 1-{MAX_PLATE_LEN} characters without control characters")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
