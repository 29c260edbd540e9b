//! Staff sign-in credentials (API.md v1.1 "Back office"): a staff user's e-mail, the
//! Argon2id hash of its password, its pending setup, the nonce its TOTP secret is derived
//! from, the last TOTP step accepted, and the failures that lock it.
//!
//! Guarantees:
//! - no secret is held here: the password only as its PHC hash (made by the server), the
//!   TOTP secret and the setup token not at all — the server derives both from a key of
//!   its own and the nonces kept here (`net/src/auth.rs`), so neither a copied log nor a
//!   checkpoint lets anyone sign in;
//! - an e-mail names at most one staff user, looked up case-insensitively ([`email_key`]);
//! - a setup is consumed once (setting up clears it) and only before its expiry;
//! - a TOTP step is accepted at most once per user, in increasing order (replay);
//! - [`MAX_FAILURES`] failures in a row lock the account for [`LOCK_S`]; a success resets
//!   the count.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::UserId;

/// How long a setup token is valid: 24 hours.
pub const SETUP_TTL_S: i64 = 24 * 60 * 60;
/// Failed sign-ins in a row that lock an account.
pub const MAX_FAILURES: u8 = 5;
/// How long a locked account stays locked: 15 minutes.
pub const LOCK_S: i64 = 15 * 60;
/// Longest PHC string accepted (Argon2id's with default parameters is about 97).
pub const MAX_PHC_LEN: usize = 256;
/// Longest custom staff role name.
pub const MAX_ROLE_NAME_LEN: usize = 32;

/// One staff user's sign-in credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The address the user signs in with, as given.
    pub email: String,
    /// The password's Argon2id PHC string; `None` until the first setup.
    pub password_hash: Option<String>,
    /// A setup not yet used: its nonce and when it stops working.
    pub setup: Option<(u64, Timestamp)>,
    /// What the TOTP secret is derived from (drawn at each setup); `None` until then.
    pub totp_nonce: Option<u64>,
    /// The last TOTP time step accepted: a code of this step or an earlier one is refused.
    pub last_step: Option<u64>,
    /// Failed sign-ins since the last success or lock.
    pub failures: u8,
    /// Locked until then (every attempt is refused, right or wrong).
    pub locked_until: Option<Timestamp>,
}

impl Credentials {
    /// Whether the account is locked at `now`, and for how many whole seconds more.
    pub fn locked_for_s(&self, now: Timestamp) -> Option<u64> {
        let until = self.locked_until?;
        let ms = until.as_millis() - now.as_millis();
        (ms > 0).then(|| u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1))
    }

    /// Whether the user can sign in at all (set up).
    pub fn is_set_up(&self) -> bool {
        self.password_hash.is_some() && self.totp_nonce.is_some()
    }
}

/// Every staff user's credentials, with the e-mail index. Persistent maps: a clone (the
/// view's, a checkpoint's) is O(1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Staff {
    creds: imbl::OrdMap<UserId, Arc<Credentials>>,
    by_email: imbl::OrdMap<String, UserId>,
}

impl Staff {
    /// A user's credentials.
    pub fn get(&self, id: UserId) -> Option<&Arc<Credentials>> {
        self.creds.get(&id)
    }

    /// The staff user signing in with `email` (any case).
    pub fn by_email(&self, email: &str) -> Option<UserId> {
        self.by_email.get(&email_key(email)).copied()
    }

    /// Every user with credentials, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&UserId, &Arc<Credentials>)> {
        self.creds.iter()
    }

    /// Whether `email` is free for `user` (no other user signs in with it).
    pub fn email_free_for(&self, email: &str, user: UserId) -> bool {
        self.by_email(email).is_none_or(|owner| owner == user)
    }

    /// Puts `creds` for `user`, moving the e-mail index with it.
    pub(crate) fn put(&mut self, user: UserId, creds: Credentials) {
        if let Some(old) = self.creds.get(&user)
            && email_key(&old.email) != email_key(&creds.email)
        {
            self.by_email.remove(&email_key(&old.email));
        }
        self.by_email.insert(email_key(&creds.email), user);
        self.creds.insert(user, Arc::new(creds));
    }

    /// Whether the index and the credentials agree (`check_invariants`).
    pub(crate) fn consistent(&self) -> bool {
        self.by_email.len() == self.creds.len()
            && self.by_email.iter().all(|(k, id)| self.creds.get(id).is_some_and(|c| email_key(&c.email) == *k))
    }
}

/// The key an e-mail is looked up by: lower case (the whole address: providers treat the
/// local part case-insensitively in practice, and two staff accounts differing only by case
/// would be a trap).
pub fn email_key(email: &str) -> String {
    email.to_lowercase()
}

/// Checks a custom staff role's name: 1-32 characters of `[a-z0-9_]`, and not a built-in
/// role's name (`rider`, `driver`, `support`, `admin`).
pub fn validate_role_name(name: &str) -> Result<()> {
    let shape = (1..=MAX_ROLE_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !shape {
        return Err(Error::InvalidParam {
            param: "role",
            message: "a staff role name is 1-32 characters of a-z, 0-9 and _".into(),
        });
    }
    if matches!(name, "rider" | "driver" | "support" | "admin") {
        return Err(Error::InvalidParam { param: "role", message: format!("`{name}` is a built-in role") });
    }
    Ok(())
}

/// Checks a PHC string's shape: an Argon2id hash (`$argon2id$`), at most [`MAX_PHC_LEN`]
/// printable ASCII characters. The server made it; this keeps anything else (a password in
/// clear, by mistake) out of the log.
pub fn validate_phc(phc: &str) -> Result<()> {
    if phc.starts_with("$argon2id$") && phc.len() <= MAX_PHC_LEN && phc.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Error::Invalid("password_hash must be an Argon2id PHC string".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_and_hashes_are_checked() {
        for good in ["dispatcher", "finance_2", "a", &"x".repeat(32)] {
            assert!(validate_role_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Finance", "fin-ance", "fin ance", &"x".repeat(33), "admin", "support", "rider", "driver"] {
            assert!(validate_role_name(bad).is_err(), "{bad}");
        }
        assert!(validate_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA").is_ok());
        for bad in ["hunter2hunter2", "$argon2i$v=19$m=1,t=1,p=1$a$b", "$argon2id$ has space"] {
            assert!(validate_phc(bad).is_err(), "{bad}");
        }
        assert!(validate_phc(&format!("$argon2id${}", "a".repeat(MAX_PHC_LEN))).is_err());
    }

    #[test]
    fn a_lock_counts_whole_seconds_up() {
        let c = Credentials {
            email: "a@example.com".into(),
            password_hash: None,
            setup: None,
            totp_nonce: None,
            last_step: None,
            failures: 0,
            locked_until: Some(Timestamp::from_millis(10_500)),
        };
        assert_eq!(c.locked_for_s(Timestamp::from_millis(10_000)), Some(1));
        assert_eq!(c.locked_for_s(Timestamp::from_millis(9_000)), Some(2));
        assert_eq!(c.locked_for_s(Timestamp::from_millis(10_500)), None);
        assert!(!c.is_set_up());
    }

    #[test]
    fn emails_are_one_per_user_in_any_case() {
        let mut s = Staff::default();
        let (a, b) = (UserId::from_raw(1).unwrap(), UserId::from_raw(2).unwrap());
        let creds = |email: &str| Credentials {
            email: email.into(),
            password_hash: None,
            setup: None,
            totp_nonce: None,
            last_step: None,
            failures: 0,
            locked_until: None,
        };
        s.put(a, creds("Amal@Example.com"));
        assert_eq!(s.by_email("amal@example.COM"), Some(a));
        assert!(!s.email_free_for("AMAL@example.com", b));
        assert!(s.email_free_for("amal@example.com", a));
        s.put(a, creds("amal2@example.com"));
        assert_eq!(s.by_email("amal@example.com"), None, "the old address is released");
        assert!(s.consistent());
    }
}
