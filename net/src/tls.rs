//! Native TLS: `[server] tls_cert` and `tls_key` (PEM files) turned into the acceptor the
//! listener wraps every connection in. rustls on `ring` (already in the build for tokens
//! and the https SMS sink), TLS 1.2 and 1.3, HTTP/1.1 only (ALPN `http/1.1`), WebSocket
//! upgrades included.
//!
//! Guarantees:
//! - the files are read and checked once, at start: an unreadable file, a file without a
//!   certificate or a key, or a key that is not the certificate's stops start-up with an
//!   error naming the setting and the file (exit code 2, like every configuration error);
//! - a handshake is bounded ([`HANDSHAKE_TIMEOUT`]) and runs on the connection's own task,
//!   never in the accept loop;
//! - every response over TLS carries [`HSTS`] (`Strict-Transport-Security`): clients that
//!   once reached the server over TLS never fall back to plain HTTP for a year.
//!
//! A renewed certificate is read at the next start (no reload on a signal).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// The `Strict-Transport-Security` value of every response over TLS: one year.
pub const HSTS: &str = "max-age=31536000";

/// The longest a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads `cert` (a PEM chain, the server's certificate first) and `key` (a PEM private
/// key: PKCS#8, PKCS#1 or SEC1) and builds the acceptor.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, Error> {
    let setting = |name: &str, path: &Path, why: String| Error::Setting(format!("{name} {}: {why}", path.display()));
    let cert_pem = std::fs::read(cert).map_err(|e| setting("server.tls_cert", cert, e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setting("server.tls_cert", cert, format!("not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(setting("server.tls_cert", cert, "no certificate in it".into()));
    }
    let key_pem = std::fs::read(key).map_err(|e| setting("server.tls_key", key, e.to_string()))?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| setting("server.tls_key", key, format!("no PEM private key in it ({e})")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Setting(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => setting(
                "server.tls_key",
                key,
                format!("not the private key of the certificate in server.tls_cert {}", cert.display()),
            ),
            other => setting("server.tls_key", key, other.to_string()),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pems() -> (String, String) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (cert.pem(), signing_key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_loads_and_anything_else_names_the_setting_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let (cert_pem, key_pem) = pems();
        let (_, other_key_pem) = pems();
        let (cert, key, other_key) =
            (path("cert.pem", &cert_pem), path("key.pem", &key_pem), path("other.pem", &other_key_pem));
        assert!(acceptor(&cert, &key).is_ok());

        let message = |r: Result<TlsAcceptor, Error>| match r {
            Err(e @ Error::Setting(_)) => {
                assert_eq!(e.exit_code(), 2);
                e.to_string()
            }
            Err(e) => panic!("not a setting error: {e}"),
            Ok(_) => panic!("accepted"),
        };
        let missing = dir.path().join("missing.pem");
        let m = message(acceptor(&missing, &key));
        assert!(m.contains("server.tls_cert") && m.contains("missing.pem"), "{m}");
        let m = message(acceptor(&cert, &other_key));
        assert!(m.contains("server.tls_key") && m.contains("not the private key"), "{m}");
        let m = message(acceptor(&key, &key));
        assert!(m.contains("server.tls_cert") && m.contains("no certificate"), "{m}");
        let m = message(acceptor(&cert, &cert));
        assert!(m.contains("server.tls_key") && m.contains("no PEM private key"), "{m}");
    }
}
