//! Staff passwords: Argon2id (RustCrypto's `argon2`, its default parameters — OWASP's
//! m=19 MiB, t=2, p=1), stored as PHC strings, with a fresh 16-byte salt from the system's
//! random source; and the rules a password must follow.
//!
//! Guarantees:
//! - only the PHC string leaves this module (it goes into a command and the log); the
//!   password never does;
//! - hashing and verifying are CPU-bound (tens of ms): callers run them on the blocking
//!   pool ([`hash_blocking`], [`verify_blocking`]), never on a runtime thread;
//! - a sign-in with an unknown e-mail still verifies once, against [`dummy_hash`] (a hash
//!   with the same parameters), so the answer's timing does not tell whether the address
//!   exists.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use ring::rand::SecureRandom;

use crate::http::ApiError;

/// Fewest characters in a password.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most bytes in a password (a bound on the work one request can ask for).
pub const MAX_PASSWORD_BYTES: usize = 256;

/// Checks a new password: 12 or more characters, at most 256 bytes (`400
/// invalid_request`, param `password`).
pub fn validate_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters and at most {MAX_PASSWORD_BYTES} bytes"
        ))
        .with_param("password"));
    }
    Ok(())
}

/// The Argon2id PHC string of `password` under a fresh random salt.
pub fn hash(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut salt).map_err(|_| internal("the system random source failed"))?;
    hash_with_salt(password, &salt)
}

fn hash_with_salt(password: &str, salt: &[u8]) -> Result<String, ApiError> {
    let salt = SaltString::encode_b64(salt).map_err(|_| internal("salt encoding failed"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| internal("password hashing failed"))
}

/// Whether `password` is the one `phc` was made of (a malformed PHC string: no).
pub fn verify(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash no password is known to match, with the parameters of [`hash`]: what a sign-in
/// with an unknown e-mail is verified against.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_with_salt("no staff user has this password", b"dispatch-dummy-s").unwrap_or_default())
}

/// [`hash`] on the blocking pool.
pub async fn hash_blocking(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash(&password)).await.map_err(|_| internal("password hashing failed"))?
}

/// [`verify`] on the blocking pool; `phc` `None`: against [`dummy_hash`] (always `false`).
pub async fn verify_blocking(phc: Option<String>, password: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify(&phc, &password),
        None => {
            verify(dummy_hash(), &password);
            false
        }
    })
    .await
    .map_err(|_| internal("password verification failed"))
}

fn internal(what: &str) -> ApiError {
    tracing::error!(what, "staff password");
    ApiError::new("internal", "internal error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_hashes_to_an_argon2id_phc_string_that_verifies_it_only() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        dispatch_core::staff::validate_phc(&phc).unwrap();
        assert!(!phc.contains("correct horse"));
        assert!(verify(&phc, "correct horse battery"));
        assert!(!verify(&phc, "correct horse batterx"));
        assert!(!verify("not a phc", "correct horse battery"));
        assert_ne!(hash("correct horse battery").unwrap(), phc, "a fresh salt each time");
        assert!(dummy_hash().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(!verify(dummy_hash(), ""));
    }

    #[test]
    fn passwords_are_12_characters_to_256_bytes() {
        assert!(validate_password("abcdefghijkl").is_ok());
        assert!(validate_password("ééééééééééé").is_err(), "11 characters");
        assert!(validate_password("éééééééééééé").is_ok(), "12 characters, 24 bytes");
        assert!(validate_password(&"a".repeat(256)).is_ok());
        let e = validate_password(&"a".repeat(257)).unwrap_err();
        assert_eq!((e.code, e.param.as_deref()), ("invalid_request", Some("password")));
    }
}
