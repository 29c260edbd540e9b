//! The secrets of `dispatchd serve`: read from the environment only (never from the file
//! or a default outside `--dev`), and refused when too short or guessable.
//!
//! Guarantees: a secret under [`MIN_SECRET_BYTES`] (webhook secrets: under
//! [`MIN_WEBHOOK_SECRET_BYTES`]) or with too little variety ([`secret_weakness`]) stops
//! start-up naming its variable; `--dev` generates what is missing and says so; secrets
//! never reach a log (`Secrets`' `Debug` prints none).

use std::collections::BTreeMap;

use super::webhook_secret_var;
use crate::error::Error;

/// The secrets, from the environment.
#[derive(Clone)]
pub struct Secrets {
    /// `DISPATCH_ADMIN_TOKEN`: the bootstrap admin's bearer token.
    pub admin_token: String,
    /// `DISPATCH_TOKEN_SECRET`: signs user tokens and keys OTP hashes.
    pub token_secret: Vec<u8>,
    /// `DISPATCH_WEBHOOK_SECRET_<NAME>` of every gateway (`sim` and each configured one),
    /// by gateway name. During a rotation a variable holds the new and the old secret,
    /// comma-separated; a signature made with any of them is accepted.
    pub webhook_secrets: BTreeMap<String, Vec<Vec<u8>>>,
    /// `DISPATCH_METRICS_TOKEN` (optional, never made up): a bearer token that opens
    /// `GET /metrics` and nothing else, for the scraper (instead of the admin token).
    pub metrics_token: Option<String>,
    /// Some secret was made up by `--dev`.
    pub generated: bool,
    /// The admin token itself was made up by `--dev` (it is printed once at start; one
    /// taken from the environment never is).
    pub admin_token_generated: bool,
    /// The server runs with `--dev`: besides made-up secrets, webhook endpoints may be
    /// `http://` to a loopback address.
    pub dev: bool,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(redacted)")
    }
}

/// The environment variable of the metrics-only token.
pub const METRICS_TOKEN_VAR: &str = "DISPATCH_METRICS_TOKEN";

/// Least length of the admin token and the token secret, bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Least length of each webhook secret, bytes.
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 16;

/// Least strength of every secret, bits: its length times the bits a character of its
/// alphabet carries (see [`secret_weakness`]).
pub const MIN_SECRET_BITS: u32 = 128;

/// Least number of different characters in a secret.
pub const MIN_SECRET_DISTINCT_CHARS: usize = 8;

/// Why `value` cannot be a secret, if it cannot (the reason never quotes the value). The
/// rule (SECURITY.md "Secrets"), simple enough to check by eye:
/// - it holds at least [`MIN_SECRET_BITS`] for its alphabet: the smallest of decimal
///   digits (3.32 bits a character: 39 characters), hex digits of one case (4 bits: 32),
///   the base64 and base64url characters `A-Z a-z 0-9 + / - _ =` (6 bits: 22), or any
///   other characters (6.57 bits, printable ASCII's 95: 20);
/// - it has at least [`MIN_SECRET_DISTINCT_CHARS`] different characters, and no character
///   makes up more than half of it.
///
/// `openssl rand -hex 32` (what `--dev` makes: 32 random bytes in hex) or
/// `openssl rand -base64 32` pass; a word, a repeated pattern or a short code does not.
pub fn secret_weakness(value: &str) -> Option<String> {
    let chars: Vec<char> = value.chars().collect();
    let all = |f: fn(&char) -> bool| chars.iter().all(f);
    // Thousandths of a bit per character, and the alphabet's name.
    let (millibits, alphabet) = if all(char::is_ascii_digit) {
        (3_322, "decimal digits")
    } else if all(|c| c.is_ascii_digit() || ('a'..='f').contains(c))
        || all(|c| c.is_ascii_digit() || ('A'..='F').contains(c))
    {
        (4_000, "hex digits")
    } else if all(|c| c.is_ascii_alphanumeric() || "+/-_=".contains(*c)) {
        (6_000, "base64 characters")
    } else {
        (6_570, "characters")
    };
    let needed = (u64::from(MIN_SECRET_BITS) * 1_000).div_ceil(millibits);
    if (chars.len() as u64) < needed {
        return Some(format!(
            "it holds less than {MIN_SECRET_BITS} bits: {needed} {alphabet} at least are needed, it has {}",
            chars.len()
        ));
    }
    let mut counts = std::collections::HashMap::new();
    for c in &chars {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    if counts.len() < MIN_SECRET_DISTINCT_CHARS {
        return Some(format!(
            "it is too repetitive: {} different characters, at least {MIN_SECRET_DISTINCT_CHARS} are needed",
            counts.len()
        ));
    }
    if counts.values().any(|&n| n * 2 > chars.len()) {
        return Some("it is too repetitive: one character makes up more than half of it".into());
    }
    None
}

impl Secrets {
    /// Reads the secrets through `env` (the process environment in production): the
    /// admin token, the token secret, and the webhook secrets of `sim` and of each of
    /// `gateways`. With `dev`, any missing one is generated; without, a missing one is an
    /// error naming it.
    pub fn from_env<'a>(
        env: impl Fn(&str) -> Option<String>,
        dev: bool,
        gateways: impl IntoIterator<Item = &'a str>,
    ) -> Result<Secrets, Error> {
        // Each secret: its value, and whether `--dev` made it up.
        let guessable = |name: &str, value: &str| {
            secret_weakness(value).map_or(Ok(()), |why| Err(Error::GuessableSecret { name: name.to_owned(), why }))
        };
        let get = |name: &str, min: usize| -> Result<(String, bool), Error> {
            match env(name).filter(|v| !v.is_empty()) {
                Some(v) if v.len() < min => Err(Error::WeakSecret { name: name.to_owned(), min }),
                // A webhook variable is a list: each of its secrets is checked below.
                Some(v) if !name.starts_with("DISPATCH_WEBHOOK_SECRET_") => guessable(name, &v).map(|()| (v, false)),
                Some(v) => Ok((v, false)),
                None if dev => Ok((crate::hex::random_hex(32), true)),
                None => Err(Error::MissingSecret(name.to_owned())),
            }
        };
        let (admin_token, admin_token_generated) = get("DISPATCH_ADMIN_TOKEN", 16)?;
        let (token_secret, mut generated) = get("DISPATCH_TOKEN_SECRET", MIN_SECRET_BYTES)?;
        // Optional: absent (or empty) is no metrics token, in `--dev` too.
        let metrics_token = match env(METRICS_TOKEN_VAR).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) if v.len() < 16 => return Err(Error::WeakSecret { name: METRICS_TOKEN_VAR.to_owned(), min: 16 }),
            Some(v) => {
                guessable(METRICS_TOKEN_VAR, &v)?;
                Some(v)
            }
        };
        generated |= admin_token_generated;
        let token_secret = token_secret.into_bytes();
        let mut webhook_secrets = BTreeMap::new();
        for gateway in std::iter::once("sim").chain(gateways) {
            let var = webhook_secret_var(gateway);
            let (value, made_up) = get(&var, MIN_WEBHOOK_SECRET_BYTES)?;
            generated |= made_up;
            let secrets: Vec<Vec<u8>> =
                value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.as_bytes().to_vec()).collect();
            if secrets.is_empty() || secrets.iter().any(|s| s.len() < MIN_WEBHOOK_SECRET_BYTES) {
                return Err(Error::WeakSecret { name: var, min: MIN_WEBHOOK_SECRET_BYTES });
            }
            for secret in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                guessable(&var, secret)?;
            }
            webhook_secrets.insert(gateway.to_owned(), secrets);
        }
        Ok(Secrets { admin_token, token_secret, webhook_secrets, metrics_token, generated, admin_token_generated, dev })
    }
}
