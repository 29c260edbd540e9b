//! Driver applications: what an applicant tells (name, vehicle, licence), the documents
//! it uploads (by content hash: the files themselves live outside the state), and the
//! staff's decision.
//!
//! ```text
//! draft ──submit──▶ submitted ──approve──▶ approved
//!   ▲                   │
//!   │                 reject
//!   │                   ▼
//!   └──edit/submit── rejected
//! ```
//!
//! Guarantees (the handlers are in `state/applications.rs`):
//! - an applicant edits its application (details, documents) while it is `draft` or
//!   `rejected`; while `submitted` it waits for staff (edits are `409 invalid_transition`),
//!   and once `approved` it is a driver whose application is closed (a later licence is
//!   staff's matter). A rejected applicant may edit and submit again;
//! - submitting needs every detail and every one of [`REQUIRED_DOCUMENTS`] (all five
//!   kinds): a refusal names each missing one;
//! - only a document's hash, kind, media type and size are state (and so in the log); its
//!   bytes are stored by the server under the data directory by hash;
//! - a licence's `expires_on` is a calendar date, checked against the engine's `now`: the
//!   licence is valid through that day (UTC) and expired from the next day's 00:00 UTC;
//! - the expiry reminder is made once per licence (its number and date), by a `Tick` at
//!   [`REMINDER_LEAD_DAYS`] before expiry: the queue of reminders is state, so a replay
//!   makes the same one.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::UserId;
use crate::user::Vehicle;

/// The largest document accepted, in bytes (5 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024 * 1024;

/// How many days before a licence expires its driver is reminded.
pub const REMINDER_LEAD_DAYS: i64 = 14;

/// Longest licence number accepted.
pub const MAX_LICENCE_NUMBER_LEN: usize = 32;

/// Longest rejection reason accepted.
pub const MAX_DECISION_REASON_LEN: usize = 500;

/// Which document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// The driving licence, front.
    LicenseFront,
    /// The driving licence, back.
    LicenseBack,
    /// A national id card.
    IdCard,
    /// The vehicle's registration.
    VehicleRegistration,
    /// A photo of the driver.
    Photo,
}

/// Every document an application needs before it is submitted: all five kinds.
pub const REQUIRED_DOCUMENTS: [DocumentKind; 5] = [
    DocumentKind::LicenseFront,
    DocumentKind::LicenseBack,
    DocumentKind::IdCard,
    DocumentKind::VehicleRegistration,
    DocumentKind::Photo,
];

impl DocumentKind {
    /// As the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::LicenseFront => "license_front",
            DocumentKind::LicenseBack => "license_back",
            DocumentKind::IdCard => "id_card",
            DocumentKind::VehicleRegistration => "vehicle_registration",
            DocumentKind::Photo => "photo",
        }
    }

    /// The kind the API names `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        REQUIRED_DOCUMENTS.into_iter().find(|k| k.as_str() == s)
    }
}

/// What a document's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MediaType {
    /// `image/jpeg`.
    Jpeg,
    /// `image/png`.
    Png,
    /// `application/pdf`.
    Pdf,
}

impl MediaType {
    /// The MIME type.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Jpeg => "image/jpeg",
            MediaType::Png => "image/png",
            MediaType::Pdf => "application/pdf",
        }
    }

    /// A file name extension for downloads.
    pub fn extension(self) -> &'static str {
        match self {
            MediaType::Jpeg => "jpg",
            MediaType::Png => "png",
            MediaType::Pdf => "pdf",
        }
    }

    /// What `bytes` are, from their first bytes (never from what the sender says): JPEG
    /// `FF D8 FF`, PNG `89 50 4E 47 0D 0A 1A 0A`, PDF `%PDF-`; anything else is `None`.
    pub fn sniff(bytes: &[u8]) -> Option<MediaType> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(MediaType::Jpeg)
        } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
            Some(MediaType::Png)
        } else if bytes.starts_with(b"%PDF-") {
            Some(MediaType::Pdf)
        } else {
            None
        }
    }
}

/// An uploaded document, as the state knows it: its bytes are stored by the server under
/// their SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
    /// What the bytes are (sniffed).
    pub media_type: MediaType,
    /// How many bytes (at most [`MAX_DOCUMENT_BYTES`]).
    pub size: u64,
    /// When it was uploaded.
    pub uploaded_at: Timestamp,
}

impl Document {
    /// The hash in lowercase hex (the file's name).
    pub fn hash_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A calendar date (proleptic Gregorian, UTC), as `YYYY-MM-DD` in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date {
    /// Year, 1970..=9999.
    pub year: u16,
    /// Month, 1..=12.
    pub month: u8,
    /// Day, 1..=31 (valid for the month).
    pub day: u8,
}

impl Date {
    /// Parses `YYYY-MM-DD` (a real date from 1970).
    pub fn parse(s: &str) -> Result<Date> {
        let bad = || Error::Invalid(format!("`{}` is not a date YYYY-MM-DD", s.chars().take(20).collect::<String>()));
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u16> {
            let part = s.get(r).ok_or_else(bad)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse().map_err(|_| bad())
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let month = u8::try_from(month).map_err(|_| bad())?;
        let day = u8::try_from(day).map_err(|_| bad())?;
        if year < 1970 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(bad());
        }
        Ok(Date { year, month, day })
    }

    /// Days since 1970-01-01.
    pub fn days_since_epoch(self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// 00:00 UTC of this day.
    pub fn start(self) -> Timestamp {
        Timestamp::from_millis(self.days_since_epoch() * 86_400_000)
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        _ => 31,
    }
}

/// A driving licence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licence {
    /// As printed on it: 1-32 letters, digits, spaces, `-` or `/`.
    pub number: String,
    /// The last day it is valid.
    pub expires_on: Date,
}

impl Licence {
    /// Whether it has expired at `now`: from 00:00 UTC of the day after `expires_on`.
    pub fn expired_at(&self, now: Timestamp) -> bool {
        now >= self.expires_at()
    }

    /// When it expires: 00:00 UTC of the day after `expires_on`.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_on.start().plus_millis(86_400_000)
    }

    /// When its driver is reminded: [`REMINDER_LEAD_DAYS`] before `expires_on`, 00:00 UTC.
    pub fn reminder_at(&self) -> Timestamp {
        self.expires_on.start().plus_millis(-REMINDER_LEAD_DAYS * 86_400_000)
    }

    /// Checks the number.
    pub fn validate(&self) -> Result<()> {
        let n = self.number.chars().count();
        let ok = (1..=MAX_LICENCE_NUMBER_LEN).contains(&n)
            && self.number.chars().all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '/'))
            && self.number.trim() == self.number;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidParam {
                param: "license.number",
                message: format!(
                    "licence number must be 1-{MAX_LICENCE_NUMBER_LEN} letters, digits, spaces, - or /, not starting or ending with a space"
                ),
            })
        }
    }
}

/// Where an application is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationStatus {
    /// Being filled in.
    Draft,
    /// Waiting for staff.
    Submitted,
    /// Approved: its applicant is a driver.
    Approved,
    /// Rejected: its applicant may edit it and submit again.
    Rejected,
}

impl ApplicationStatus {
    /// As the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationStatus::Draft => "draft",
            ApplicationStatus::Submitted => "submitted",
            ApplicationStatus::Approved => "approved",
            ApplicationStatus::Rejected => "rejected",
        }
    }

    /// The status the API names `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Draft, Self::Submitted, Self::Approved, Self::Rejected].into_iter().find(|x| x.as_str() == s)
    }

    /// Whether the applicant may change it now.
    pub fn editable(self) -> bool {
        matches!(self, ApplicationStatus::Draft | ApplicationStatus::Rejected)
    }
}

/// The details an applicant gives (`PUT /v1/driver/application`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationDetails {
    /// The name the driver is shown by.
    pub name: String,
    /// The vehicle.
    pub vehicle: Vehicle,
    /// The driving licence.
    pub license: Licence,
}

/// One applicant's application (the applicant's user id is its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    /// The applicant.
    pub driver_id: UserId,
    /// Where it is.
    pub status: ApplicationStatus,
    /// What the applicant said, once it did.
    pub details: Option<ApplicationDetails>,
    /// The documents uploaded, by kind (a new upload of a kind replaces the old one).
    pub documents: BTreeMap<DocumentKind, Document>,
    /// When it was opened (the applicant's first sign-in).
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When it was last submitted.
    pub submitted_at: Option<Timestamp>,
    /// When staff last decided.
    pub decided_at: Option<Timestamp>,
    /// Why staff decided so (optional).
    pub reason: Option<String>,
    /// The licence a reminder was made for (so each licence gets one).
    pub reminded: Option<Licence>,
}

impl Application {
    /// A new, empty draft.
    pub fn new(driver_id: UserId, now: Timestamp) -> Self {
        Application {
            driver_id,
            status: ApplicationStatus::Draft,
            details: None,
            documents: BTreeMap::new(),
            created_at: now,
            updated_at: now,
            submitted_at: None,
            decided_at: None,
            reason: None,
            reminded: None,
        }
    }

    /// What is missing before it can be submitted: `name`, `vehicle`, `license` and each
    /// document kind not uploaded, by their API names.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.details.is_none() {
            out.extend(["name", "vehicle", "license"]);
        }
        for k in REQUIRED_DOCUMENTS {
            if !self.documents.contains_key(&k) {
                out.push(k.as_str());
            }
        }
        out
    }

    /// The licence, once given.
    pub fn licence(&self) -> Option<&Licence> {
        self.details.as_ref().map(|d| &d.license)
    }
}

/// Every application, and the queue of licence reminders, as the state keeps them and
/// the view shares them (persistent maps: a clone is O(1)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Applications {
    /// By applicant.
    pub(crate) items: imbl::OrdMap<UserId, Arc<Application>>,
    /// Approved drivers' licences to remind of, by when.
    pub(crate) reminders: imbl::OrdSet<(Timestamp, UserId)>,
    /// Approved drivers' licences by when they expire: a driver at work then stops.
    pub(crate) expiries: imbl::OrdSet<(Timestamp, UserId)>,
}

impl Applications {
    /// One applicant's application.
    pub fn get(&self, id: UserId) -> Option<&Arc<Application>> {
        self.items.get(&id)
    }

    /// Every application, by applicant id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Application>> {
        self.items.values()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// None at all.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// When the next reminder is due.
    pub fn next_reminder(&self) -> Option<Timestamp> {
        self.reminders.get_min().map(|(t, _)| *t)
    }

    /// When the next approved driver's licence expires.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.expiries.get_min().map(|(t, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_sniffed_from_bytes() {
        assert_eq!(MediaType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0]), Some(MediaType::Jpeg));
        assert_eq!(MediaType::sniff(b"\x89PNG\r\n\x1a\nrest"), Some(MediaType::Png));
        assert_eq!(MediaType::sniff(b"%PDF-1.7\n"), Some(MediaType::Pdf));
        for bad in [&b""[..], b"hello", b"\x89PNG\r\n", b"%PDF", b"<html>", &[0xFF, 0xD8]] {
            assert_eq!(MediaType::sniff(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dates_parse_and_count_days() {
        assert_eq!(Date::parse("1970-01-01").unwrap().days_since_epoch(), 0);
        assert_eq!(Date::parse("2000-03-01").unwrap().days_since_epoch(), 11_017);
        assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-1-01",
            "24-01-01",
            "1969-12-31",
            "2024-01-32",
            "+024-01-01",
        ] {
            assert!(Date::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_licence_is_valid_through_its_last_day() {
        let l = Licence { number: "AB 12/3".into(), expires_on: Date::parse("2026-12-31").unwrap() };
        assert!(l.validate().is_ok());
        let last_day = Date::parse("2026-12-31").unwrap().start();
        assert!(!l.expired_at(last_day.plus_millis(86_399_999)));
        assert!(l.expired_at(last_day.plus_millis(86_400_000)));
        assert_eq!(l.reminder_at(), Date::parse("2026-12-17").unwrap().start());
        for bad in ["", " A1", "A1 ", "A\u{7}1", &"1".repeat(33)] {
            assert!(Licence { number: bad.into(), ..l.clone() }.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_names_every_field_and_document() {
        let a = Application::new(UserId::from_raw(1).unwrap(), Timestamp::from_millis(0));
        assert_eq!(a.missing().len(), 8);
        assert!(a.missing().contains(&"vehicle_registration"));
        assert_eq!(DocumentKind::parse("id_card"), Some(DocumentKind::IdCard));
        assert_eq!(DocumentKind::parse("selfie"), None);
    }
}
