//! The JSON Web Tokens the push providers want: RS256 for Google's OAuth 2 service-account
//! grant (FCM), ES256 for Apple's provider tokens (APNs), signed with `ring`.
//!
//! Guarantees: keys are PKCS#8, read from PEM once at start (a bad key is a start-up
//! error naming the variable, never a panic); tokens are compact JWS (`header.claims.sig`,
//! base64url without padding, RFC 7515); the ES256 signature is the fixed 64-byte `r‖s`
//! JWS asks for, not DER.

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

/// base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The DER of a PKCS#8 `-----BEGIN PRIVATE KEY-----` PEM.
fn pkcs8_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    PrivatePkcs8KeyDer::from_pem_slice(pem)
        .map(|k| k.secret_pkcs8_der().to_vec())
        .map_err(|e| format!("not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----): {e}"))
}

/// An RSA key from PKCS#8 PEM (a Google service account's `private_key`).
pub fn rsa_key(pem: &[u8]) -> Result<RsaKeyPair, String> {
    RsaKeyPair::from_pkcs8(&pkcs8_der(pem)?).map_err(|e| format!("not an RSA key ring accepts: {e}"))
}

/// A P-256 key from PKCS#8 PEM (an APNs `.p8` file).
pub fn p256_key(pem: &[u8]) -> Result<EcdsaKeyPair, String> {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8_der(pem)?, &SystemRandom::new())
        .map_err(|e| format!("not a P-256 key: {e}"))
}

fn signing_input(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()))
}

/// `claims` signed RS256.
pub fn sign_rs256(key: &RsaKeyPair, claims: &serde_json::Value) -> Result<String, String> {
    let input = signing_input(&serde_json::json!({"alg": "RS256", "typ": "JWT"}), claims);
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig)
        .map_err(|_| "RS256 signing failed".to_owned())?;
    Ok(format!("{input}.{}", b64url(&sig)))
}

/// `claims` signed ES256, with `kid` in the header.
pub fn sign_es256(key: &EcdsaKeyPair, kid: &str, claims: &serde_json::Value) -> Result<String, String> {
    let input = signing_input(&serde_json::json!({"alg": "ES256", "kid": kid}), claims);
    let sig = key.sign(&SystemRandom::new(), input.as_bytes()).map_err(|_| "ES256 signing failed".to_owned())?;
    Ok(format!("{input}.{}", b64url(sig.as_ref())))
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, KeyPair, UnparsedPublicKey};

    fn pem(der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
    }

    #[test]
    fn es256_tokens_verify_with_the_public_key() {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let key = p256_key(pem(doc.as_ref()).as_bytes()).unwrap();
        let jwt = sign_es256(&key, "KEY123", &serde_json::json!({"iss": "TEAM", "iat": 1})).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[0]).unwrap())
                .unwrap();
        assert_eq!(header, serde_json::json!({"alg": "ES256", "kid": "KEY123"}));
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(sig.len(), 64, "JWS wants r||s, not DER");
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key().as_ref().to_vec());
        public.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).unwrap();
        let mut tampered = sig.clone();
        tampered[0] ^= 1;
        assert!(public.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &tampered).is_err());
    }

    #[test]
    fn bad_keys_are_errors() {
        assert!(p256_key(b"not a key").is_err());
        assert!(rsa_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        assert!(rsa_key(pem(doc.as_ref()).as_bytes()).is_err(), "a P-256 key is not an RSA key");
    }
}
