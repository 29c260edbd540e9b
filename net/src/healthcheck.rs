//! `dispatchd healthcheck`: one `GET /healthz` of a running server, for a container's
//! `HEALTHCHECK` (the runtime image has no curl).
//!
//! Guarantees: `Ok` only when the server answered `200` within the timeout; anything
//! else (no connection, another status, no answer in time, a URL that is not `http://`)
//! is an `Err` saying what happened. It sends no credentials: `/healthz` needs none.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Where a server started with the container's `--listen 0.0.0.0:8080` answers, seen
/// from inside the container.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/healthz";

/// GETs `url` (plain `http://` only: the check runs beside the server, on loopback)
/// and waits at most `timeout` for the answer.
pub fn check(url: &str, timeout: Duration) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(format!("{url:?}: only http://host[:port]/path URLs are checked"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let answer = tokio::time::timeout(timeout, client.get(uri))
            .await
            .map_err(|_| format!("{url}: no answer within {} s", timeout.as_secs_f64()))?
            .map_err(|e| format!("{url}: {}", chain(&e)))?;
        match answer.status().as_u16() {
            200 => Ok(()),
            status => Err(format!("{url} answered {status}")),
        }
    })
}

/// An error and its sources, `: `-separated (hyper's own message is only "client error
/// (Connect)"; the cause, such as "Connection refused", is in the chain).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_checked() {
        for url in ["https://127.0.0.1:8080/healthz", "127.0.0.1:8080", "not a url", "ftp://x/healthz"] {
            assert!(check(url, Duration::from_secs(1)).is_err(), "{url}");
        }
    }

    #[test]
    fn a_closed_port_is_unhealthy() {
        // Bind then drop: the port is (very likely) closed right after.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = check(&format!("http://127.0.0.1:{port}/healthz"), Duration::from_secs(5)).unwrap_err();
        assert!(err.contains(&port.to_string()), "{err}");
    }
}
