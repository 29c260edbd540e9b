//! Before the load: the users (created `--setup-concurrency` at a time through `POST
//! /v1/admin/users`, with phone numbers of a prefix drawn per run), the zone the run needs,
//! and the source addresses connections leave from.
//!
//! Guarantees: a phone already taken is replaced by a random one (a few times), any other
//! refusal stops the run with the server's answer; tokens come back in the users' order;
//! source addresses are loopback ones, and only for a target on 127.0.0.0/8.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{self, Http};
use crate::{CENTER, Error, WAIT};

/// The addresses connections leave from: none to choose (the kernel's) for one, else
/// 127.0.0.1 … 127.0.0.`n`.
pub fn sources(addr: SocketAddr, asked: u8, drivers: usize) -> Result<Vec<IpAddr>, Error> {
    let n = match asked {
        0 => drivers.div_ceil(10_000).clamp(1, 250),
        n => usize::from(n),
    };
    if n <= 1 {
        return Ok(Vec::new());
    }
    if !addr.ip().is_loopback() || !addr.is_ipv4() {
        return Err(Error::Usage(format!("{n} source addresses need a target on 127.0.0.0/8, not {addr}")));
    }
    Ok((1..=n).filter_map(|i| u8::try_from(i).ok()).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))).collect())
}

/// Creates the users `range` (those under `drivers` are drivers, the rest riders),
/// `concurrency` at a time, each worker over its own connection; answers their tokens in
/// order.
pub async fn create_users(
    addr: SocketAddr,
    admin: &str,
    range: std::ops::Range<usize>,
    drivers: usize,
    phones: &Arc<Phones>,
    concurrency: usize,
) -> Result<Vec<String>, Error> {
    let next = Arc::new(AtomicU64::new(range.start as u64));
    let mut workers = Vec::new();
    for _ in 0..concurrency.clamp(1, range.len().max(1)) {
        let (next, phones, admin, end) = (Arc::clone(&next), Arc::clone(phones), admin.to_owned(), range.end);
        workers.push(tokio::spawn(async move {
            let mut http = Http::new(addr);
            let mut made = Vec::new();
            loop {
                let n = usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(usize::MAX);
                if n >= end {
                    return Ok::<_, Error>(made);
                }
                let role = if n < drivers { "driver" } else { "rider" };
                made.push((n, create_user(&mut http, &admin, role, n, &phones).await?));
            }
        }));
    }
    let mut tokens = vec![String::new(); range.len()];
    for w in workers {
        let made = w.await.map_err(|e| Error::Server(format!("a setup task failed: {e}")))??;
        for (n, token) in made {
            tokens[n - range.start] = token;
        }
    }
    Ok(tokens)
}

/// The phone numbers of one run: `+2019`, the run's three digits, the user's index in seven.
pub struct Phones {
    /// The run's three digits.
    pub run: u16,
}

impl Phones {
    /// User `n`'s number.
    pub fn number(&self, n: usize) -> String {
        format!("+2019{:03}{:07}", self.run, n % 10_000_000)
    }
}

/// Creates a user; answers its token. A phone already taken is replaced by a random one
/// (a few times); any other refusal stops the run with the server's answer.
pub async fn create_user(http: &mut Http, admin: &str, role: &str, n: usize, phones: &Phones) -> Result<String, Error> {
    let mut phone = phones.number(n);
    let mut last = (0, Value::Null);
    for _ in 0..4 {
        let mut body = json!({"role": role, "name": format!("{role} {n}"), "phone": phone});
        if role == "driver" {
            body["vehicle"] = json!({"category": "economy", "plate": format!("LG {n}")});
        }
        let (status, v) = http.call("POST", "/v1/admin/users", admin, Some(body)).await;
        if status == 201 {
            return v["token"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| Error::Server(format!("creating {role} {n}: a 201 without a token: {v}")));
        }
        let taken = matches!(status, 400 | 409 | 422) && v.to_string().contains("phone");
        last = (status, v);
        if !taken {
            break;
        }
        phone = Phones { run: rand::random_range(0..1000) }.number(rand::random_range(0..10_000_000));
    }
    let (status, v) = last;
    Err(Error::Server(format!("creating {role} {n} (phone {phone}) was refused: {status} {v}")))
}

/// Waits until a zone serves [`CENTER`] (the demo city sets its zone up beside the
/// server's start); fails at once if the admin token is refused.
pub async fn await_zone(http: &mut Http, admin: &str) -> Result<(), Error> {
    let deadline = Instant::now() + WAIT;
    let path = format!("/v1/zones/lookup?lat={}&lng={}", CENTER.0, CENTER.1);
    loop {
        let (status, v) = http.call("GET", &path, admin, None).await;
        match status {
            200 => return Ok(()),
            401 | 403 => return Err(Error::Server(format!("the admin token was refused: {status} {v}"))),
            client::NO_ANSWER => return Err(Error::Server(format!("no answer from {}: {v}", http.addr()))),
            _ if Instant::now() >= deadline => {
                return Err(Error::Server(format!(
                    "no zone serves {CENTER:?} after {} s (last answer {status} {v}); start dispatchd with --dev --demo",
                    WAIT.as_secs()
                )));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_only_big_runs_and_only_on_loopback() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap_or_else(|_| unreachable!());
        assert!(sources(local, 0, 200).is_ok_and(|s| s.is_empty()), "a small run is left as it was");
        assert!(sources(local, 0, 10_000).is_ok_and(|s| s.is_empty()));
        let many = sources(local, 0, 100_000).unwrap_or_default();
        assert_eq!(many.len(), 10);
        assert_eq!(many[0], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(many[9], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10)));
        assert_eq!(sources(local, 3, 10).unwrap_or_default().len(), 3);
        let remote: SocketAddr = "10.0.0.1:8080".parse().unwrap_or_else(|_| unreachable!());
        assert!(sources(remote, 0, 100_000).is_err(), "source addresses are loopback ones");
        assert!(sources(remote, 0, 500).is_ok());
    }
}
