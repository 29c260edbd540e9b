//! The fan-out (`--fanout N`): N staff sockets subscribed to one trip at a time, a driver
//! taking it through accepted, arrived, started and completed, and each change timed to
//! the last socket that had it.
//!
//! Guarantees: every socket must see every change within [`WAIT`] (or the fan-out fails,
//! saying which change and how many sockets missed it); a socket refused right after a big
//! run (the server still closing the drivers' sockets) is tried again for ten seconds; the
//! sockets' reader parses only a frame's type and trip status.
//!
//! `FANOUT_MARKS=1` prints each change's window (from just before its request to the last
//! socket's frame) on stderr as `Instant`s of the monotonic clock, to cut a `perf record
//! -a -k CLOCK_MONOTONIC` profile to what the figures measure.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::client::Http;
use crate::{CENTER, Phones, WAIT, create_user, open_ws};

/// Where the fan-out's driver and trips are: 28 km south of [`CENTER`], still in the demo
/// zone but far from the city's drivers (within ~3 km of it). After a big run they are
/// still online and nearer than anyone at the centre: the fan-out's trip was offered to
/// them, not to its own driver (403 `not_offered` after 15,000 drivers).
const FANOUT_SPOT: (f64, f64) = (CENTER.0 - 0.25, CENTER.1);

/// What one fan-out measured: for each trip change, when the last of the sockets had it
/// (from just before the HTTP request that made the change), and every socket's delay.
pub struct Fanout {
    pub last: Vec<Duration>,
    pub each: Vec<Duration>,
}

/// `n` staff sockets subscribed to one trip at a time; a driver drives `trips` trips through
/// accept, arrived, start and complete; each change must reach every socket. Fails (saying
/// why) if a socket or a step fails.
pub async fn fanout(
    addr: SocketAddr,
    admin: &str,
    n: usize,
    trips: usize,
    users: UserSetup<'_>,
) -> Result<Fanout, String> {
    let mut http = Http::new(addr);
    let rider = create_user(&mut http, admin, "rider", users.first, users.phones).await.map_err(|e| e.to_string())?;
    let driver =
        create_user(&mut http, admin, "driver", users.first + 1, users.phones).await.map_err(|e| e.to_string())?;
    let online = json!({"status": "online", "location": {"lat": FANOUT_SPOT.0, "lng": FANOUT_SPOT.1}});
    let (status, body) = http.call("POST", "/v1/driver/status", &driver, Some(online)).await;
    if status != 200 {
        return Err(format!("the driver could not go online: {status} {body}"));
    }
    // Every socket forwards what it reads: (socket, when, the trip's status).
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant, String)>();
    let mut sinks = Vec::with_capacity(n);
    for i in 0..n {
        // Right after a big run the server may still be closing the drivers' sockets (its
        // cap counts them until it has): a refused socket is tried again for a while.
        let mut tries = 0;
        let ws = loop {
            match open_ws(addr, None, admin).await {
                Ok(ws) => break ws,
                Err(_) if tries < 40 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(format!("socket {i} could not connect: {e}")),
            }
        };
        let (sink, mut stream) = ws.split();
        sinks.push(sink);
        let seen_tx = seen_tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = stream.next().await {
                let at = Instant::now();
                let status = match frame_status(&text) {
                    Some(status) => status,
                    None => continue,
                };
                if seen_tx.send((i, at, status)).is_err() {
                    return;
                }
            }
        });
    }
    // Waits until every socket has said `status` (other frames are skipped).
    async fn all_of(
        seen: &mut tokio::sync::mpsc::UnboundedReceiver<(usize, Instant, String)>,
        n: usize,
        status: &str,
    ) -> Result<Vec<Instant>, String> {
        let mut at: Vec<Option<Instant>> = vec![None; n];
        let mut missing = n;
        let deadline = tokio::time::Instant::now() + WAIT;
        while missing > 0 {
            let Ok(Some((i, when, s))) = tokio::time::timeout_at(deadline, seen.recv()).await else {
                return Err(format!("{missing} of {n} sockets did not see `{status}` within {} s", WAIT.as_secs()));
            };
            if s == status && at.get(i).is_some_and(Option::is_none) {
                at[i] = Some(when);
                missing -= 1;
            }
        }
        Ok(at.into_iter().flatten().collect())
    }
    let marks = std::env::var_os("FANOUT_MARKS").is_some();
    let mut out = Fanout { last: Vec::new(), each: Vec::new() };
    for _ in 0..trips {
        let body = json!({"pickup": {"lat": FANOUT_SPOT.0, "lng": FANOUT_SPOT.1}, "dropoff": {"lat": FANOUT_SPOT.0 + 0.02, "lng": FANOUT_SPOT.1},
            "category": "economy", "payment_method": "cash"});
        let (status, trip) = http.call("POST", "/v1/trips", &rider, Some(body)).await;
        let (Some(id), 201) = (trip["id"].as_str(), status) else {
            return Err(format!("booking failed: {status} {trip}"));
        };
        let code = trip["pickup_code"].as_str().unwrap_or_default();
        let subscribe = json!({"type": "subscribe", "trip_id": id}).to_string();
        for sink in &mut sinks {
            if sink.send(Message::Text(subscribe.clone().into())).await.is_err() {
                return Err("a socket closed".to_owned());
            }
        }
        all_of(&mut seen, n, "subscribed").await?;
        for (step, status, body) in [
            ("accept", "accepted", None),
            ("arrived", "arrived", None),
            ("start", "in_progress", Some(json!({"pickup_code": code}))),
            ("complete", "completed", Some(json!({"distance_m": 2_300}))),
        ] {
            let sent = Instant::now();
            let (code, reply) = http.call("POST", &format!("/v1/trips/{id}/{step}"), &driver, body).await;
            if code != 200 {
                return Err(format!("{step} failed: {code} {reply}"));
            }
            let at = all_of(&mut seen, n, status).await?;
            out.each.extend(at.iter().map(|t| t.duration_since(sent)));
            out.last.push(at.iter().max().map_or(Duration::ZERO, |t| t.duration_since(sent)));
            if marks {
                // The change's window on the monotonic clock, to cut a profile to it
                // (`perf record -k CLOCK_MONOTONIC`).
                eprintln!("change {step}: {sent:?} .. {:?}", at.iter().max().copied().unwrap_or(sent));
            }
        }
    }
    for mut sink in sinks {
        let _ = sink.send(Message::Close(None)).await;
    }
    Ok(out)
}

/// What the fan-out reads of a frame: its type and, for `trip_updated`, the trip's status.
/// Deserialised without building a `Value` (the rest is skipped, not allocated): 1,000
/// sockets read each change on the same two cores as the server, so the reader's cost is
/// in the measured delay of the last socket.
#[derive(serde::Deserialize)]
struct FrameHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    trip: Option<TripHead<'a>>,
}

#[derive(serde::Deserialize)]
struct TripHead<'a> {
    #[serde(borrow)]
    status: Option<std::borrow::Cow<'a, str>>,
}

/// `subscribed`, or a `trip_updated` frame's trip status; `None` for any other frame.
fn frame_status(text: &str) -> Option<String> {
    let head: FrameHead<'_> = serde_json::from_str(text).ok()?;
    match &*head.kind {
        "trip_updated" => Some(head.trip.and_then(|t| t.status).map(|s| s.into_owned()).unwrap_or_default()),
        "subscribed" => Some("subscribed".to_owned()),
        _ => None,
    }
}

/// Where the fan-out's own users are numbered from, and their phones.
#[derive(Clone, Copy)]
pub struct UserSetup<'a> {
    pub first: usize,
    pub phones: &'a Phones,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fanout_reads_a_frames_type_and_trip_status() {
        let updated = json!({"type": "trip_updated", "trip": {"id": "t1", "status": "arrived",
            "rider": {"status": "active", "name": "R"}, "stops": [{"status": "x"}]}})
        .to_string();
        assert_eq!(frame_status(&updated).as_deref(), Some("arrived"));
        let escaped = r#"{"trip":{"status":"in_\u0070rogress"},"type":"trip_updated"}"#;
        assert_eq!(frame_status(escaped).as_deref(), Some("in_progress"));
        assert_eq!(frame_status(r#"{"type":"subscribed","trip_id":"t1"}"#).as_deref(), Some("subscribed"));
        assert_eq!(frame_status(r#"{"type":"trip_offer","offer":{}}"#), None);
        assert_eq!(frame_status("not json"), None);
    }
}
