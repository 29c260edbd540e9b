//! Black-box tests of the in-trip chat (API.md "The ride, as riders and drivers see it": the
//! messages rows and "Chat over the WebSocket") on a real `dispatchd` over loopback, with
//! real WebSocket clients: who may post when, what reaches which socket, the text rules,
//! paging newest first, the shared HTTP + socket rate limit, and messages surviving a
//! restart. The window's end (30 min after the trip) is the engine's rule, pinned by the
//! domain's model tests (`domain/src/state/tests/chat.rs`), which control the clock.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashSet;

use serde_json::{Value, json};

use common::*;

/// A city with a zone, an online driver, a rider, a trip offered to the driver and both
/// sockets open: (server, rider token, driver token, driver id, trip id, rider's socket,
/// driver's socket).
async fn offered_trip(config: Option<&str>) -> (Server, String, String, String, String, Ws, Ws) {
    let s = Server::start(&[], config);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (driver, dtok) = online_driver(&s, 1, HERE).await;
    let (_, rtok) = user(&s, "rider", 2).await;
    let rws = s.ws(&rtok).await;
    let dws = s.ws(&dtok).await;
    let trip = create_trip(&s, &rtok).await;
    let id = trip["id"].as_str().unwrap().to_owned();
    let driver_id = driver["id"].as_str().unwrap().to_owned();
    (s, rtok, dtok, driver_id, id, rws, dws)
}

fn messages(id: &str) -> String {
    format!("/v1/trips/{id}/messages")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn riders_drivers_and_staff_chat_over_http_and_the_socket() {
    let (s, rider, driver, driver_id, id, mut rws, mut dws) = offered_trip(None).await;
    let (_, stranger) = user(&s, "rider", 3).await;
    let (_, other_driver) = user(&s, "driver", 4).await;
    let (support_user, support) = user(&s, "support", 5).await;
    let mut sws = s.ws(&support).await;
    let path = messages(&id);

    // Before accept: the rider waits for a driver (409); the offered driver is no party
    // yet and strangers do not see the trip (404); staff may write at any time.
    s.post(&path, &rider, json!({"text": "hello?"})).await.expect_error(409, "invalid_transition");
    s.post(&path, &driver, json!({"text": "hi"})).await.expect_error(404, "not_found");
    s.post(&path, &stranger, json!({"text": "hi"})).await.expect_error(404, "not_found");
    s.get(&path, &stranger).await.expect_error(404, "not_found");
    s.post("/v1/trips/trp_0000000000000001/messages", &rider, json!({"text": "hi"}))
        .await
        .expect_error(404, "not_found");
    let early = s.post(&path, ADMIN, json!({"text": "Support here: a driver is on the way."})).await.expect(201);
    assert_eq!((&early["from_role"], &early["from_user_id"]), (&json!("admin"), &Value::Null), "{early}");
    let seen = next_of(&mut rws, "chat_message").await;
    assert_eq!(seen["message"], early, "the rider hears staff before accept");

    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);

    // The rider posts over HTTP: trimmed, and it reaches the rider's and the driver's sockets.
    let m = s.post(&path, &rider, json!({"text": "  I'm at the main gate  "})).await.expect(201);
    assert!(m["id"].as_str().unwrap().starts_with("msg_"), "{m}");
    assert_eq!(
        (&m["trip_id"], &m["from_role"], &m["text"]),
        (&json!(id), &json!("rider"), &json!("I'm at the main gate"))
    );
    assert!(m["from_user_id"].as_str().unwrap().starts_with("usr_") && m["at"].is_string(), "{m}");
    assert_eq!(next_of(&mut dws, "chat_message").await["message"], m, "the driver's socket");
    assert_eq!(next_of(&mut rws, "chat_message").await["message"], m, "the sender's own socket");

    // The driver answers over the socket: the rider hears it, and so does the driver.
    send(&mut dws, json!({"type": "chat", "trip_id": id, "text": "Two minutes away"})).await;
    let from_driver = next_of(&mut rws, "chat_message").await["message"].clone();
    assert_eq!((&from_driver["from_role"], &from_driver["from_user_id"]), (&json!("driver"), &json!(driver_id)));
    assert_eq!(from_driver["text"], "Two minutes away");
    assert_eq!(next_of(&mut dws, "chat_message").await["message"], from_driver);

    // The text rules, over HTTP and over the socket.
    for bad in
        [json!({"text": ""}), json!({"text": " \t "}), json!({"text": "x".repeat(1001)}), json!({"text": "a\u{7}b"})]
    {
        s.post(&path, &rider, bad.clone()).await.expect_error(400, "invalid_request");
    }
    for bad in [json!({}), json!({"text": 5}), json!({"text": "hi", "to": "driver"})] {
        s.post(&path, &rider, bad.clone()).await.expect_error(400, "invalid_request");
    }
    let full = s.post(&path, &driver, json!({"text": format!(" {} ", "ب".repeat(1000))})).await.expect(201);
    assert_eq!(full["text"].as_str().unwrap().chars().count(), 1000, "1,000 characters pass (2,000 bytes)");
    send(&mut rws, json!({"type": "chat", "trip_id": id, "text": "   "})).await;
    assert_eq!(next_of(&mut rws, "error").await["code"], "invalid_request");
    send(&mut rws, json!({"type": "chat", "trip_id": id})).await;
    assert_eq!(next_of(&mut rws, "error").await["code"], "invalid_request");
    // Strangers are refused as if the trip did not exist, over the socket too.
    let mut xws = s.ws(&other_driver).await;
    send(&mut xws, json!({"type": "chat", "trip_id": id, "text": "hi"})).await;
    assert_eq!(next_of(&mut xws, "error").await["code"], "not_found");
    s.post(&path, &stranger, json!({"text": "hi"})).await.expect_error(404, "not_found");

    // Support posts without following the trip: the parties and the sender's socket hear it.
    let sup = s.post(&path, &support, json!({"text": "Support: all good?"})).await.expect(201);
    assert_eq!((&sup["from_role"], &sup["from_user_id"]), (&json!("support"), &support_user["id"]));
    for ws in [&mut rws, &mut dws, &mut sws] {
        // Skip the earlier messages this socket may still hold.
        loop {
            let f = next_of(ws, "chat_message").await;
            if f["message"]["id"] == sup["id"] {
                break;
            }
        }
    }

    // Newest first, paged; the same list for the rider, the driver and staff.
    let all_ids = [&early, &m, &from_driver, &full, &sup].map(|v| v["id"].as_str().unwrap().to_owned());
    for token in [&rider, &driver, &support, &ADMIN.to_owned()] {
        let mut seen = Vec::new();
        let mut url = format!("{path}?limit=2");
        loop {
            let page = s.get(&url, token).await.expect(200);
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 2);
            seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
            match page["next_cursor"].as_str() {
                Some(c) => url = format!("{path}?limit=2&cursor={c}"),
                None => break,
            }
        }
        let want: Vec<String> = all_ids.iter().rev().cloned().collect();
        assert_eq!(seen, want, "newest first, every message once");
    }
    let first_page = s.get(&format!("{path}?limit=1"), &rider).await.expect(200);
    assert_eq!(first_page["items"][0], sup, "the page shows the message as posted");
    s.get(&format!("{path}?cursor=nope"), &rider).await.expect_error(400, "invalid_request");
    s.get(&format!("{path}?limit=0"), &rider).await.expect_error(400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_who_gives_the_trip_back_is_out_of_its_chat() {
    let (s, rider, driver, _, id, mut rws, _dws) = offered_trip(None).await;
    let path = messages(&id);
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);
    s.post(&path, &driver, json!({"text": "on my way"})).await.expect(201);
    s.post(&format!("/v1/trips/{id}/cancel"), &driver, json!({"reason_code": "other"})).await.expect(200);
    // Searching again: the driver who gave it back neither reads nor writes; the rider
    // waits for the next driver to write, and still reads what was said.
    s.get(&path, &driver).await.expect_error(404, "not_found");
    s.post(&path, &driver, json!({"text": "sorry"})).await.expect_error(404, "not_found");
    s.post(&path, &rider, json!({"text": "anyone?"})).await.expect_error(409, "invalid_transition");
    let page = s.get(&path, &rider).await.expect(200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    next_of(&mut rws, "chat_message").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_messages_a_minute_over_http_and_the_socket_together_then_429() {
    let (s, rider, driver, _, id, mut rws, _dws) = offered_trip(None).await;
    let path = messages(&id);
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);
    // A burst of the full 30: 20 over HTTP, 10 over the socket.
    for i in 0..20 {
        s.post(&path, &rider, json!({"text": format!("http {i}")})).await.expect(201);
    }
    for i in 0..10 {
        send(&mut rws, json!({"type": "chat", "trip_id": id, "text": format!("ws {i}")})).await;
    }
    let mut got = HashSet::new();
    while got.len() < 30 {
        let f = next_of(&mut rws, "chat_message").await;
        got.insert(f["message"]["id"].as_str().unwrap().to_owned());
    }
    // The 31st, either way, is refused; over HTTP with Retry-After.
    let r = s.post(&path, &rider, json!({"text": "one more"})).await;
    r.expect_error(429, "rate_limited");
    assert!(r.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|n| n >= 1), "{:?}", r.headers);
    send(&mut rws, json!({"type": "chat", "trip_id": id, "text": "one more"})).await;
    assert_eq!(next_of(&mut rws, "error").await["code"], "rate_limited");
    // The driver's bucket is the driver's own.
    s.post(&path, &driver, json!({"text": "I can still write"})).await.expect(201);
    let page = s.get(&format!("{path}?limit=200"), &rider).await.expect(200);
    assert_eq!(page["items"].as_array().unwrap().len(), 31, "nothing refused was kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_chat_per_min_is_honoured_and_messages_survive_a_restart() {
    let config = "[limits]\nchat_per_min = 3\n[retention]\nchat_days = 7\n";
    let (mut s, rider, driver, _, id, _rws, _dws) = offered_trip(Some(config)).await;
    let path = messages(&id);
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);
    for i in 0..3 {
        s.post(&path, &rider, json!({"text": format!("m{i}")})).await.expect(201);
    }
    s.post(&path, &rider, json!({"text": "m3"})).await.expect_error(429, "rate_limited");
    let before = s.get(&path, &rider).await.expect(200);

    // Durable: a restart on the same data directory reads the same chat back.
    s.sigterm();
    assert!(s.wait_exit().success());
    let dir = tempfile::tempdir().unwrap();
    std::fs::rename(s.data_dir(), dir.path().join("data")).unwrap();
    let s2 = Server::start_in(dir, &[], Some(config));
    let after = s2.get(&path, &rider).await.expect(200);
    assert_eq!(after, before);
    assert_eq!(after["items"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_sockets_hear_a_trip_they_follow_and_the_admin_token_hears_its_own_frame() {
    let (s, rider, driver, _, id, _rws, _dws) = offered_trip(None).await;
    let (_, support) = user(&s, "support", 3).await;
    let (_, other_support) = user(&s, "support", 4).await;
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);
    // One support agent follows the trip, the other does not.
    let mut following = s.ws(&support).await;
    send(&mut following, json!({"type": "subscribe", "trip_id": id})).await;
    next_of(&mut following, "subscribed").await;
    let mut idle = s.ws(&other_support).await;
    let m = s.post(&messages(&id), &rider, json!({"text": "where are you?"})).await.expect(201);
    assert_eq!(next_of(&mut following, "chat_message").await["message"], m);
    // The bootstrap admin token has no user: its own chat frame comes back as the reply.
    let mut admin = s.ws(ADMIN).await;
    send(&mut admin, json!({"type": "chat", "trip_id": id, "text": "Support is watching this trip"})).await;
    let own = next_of(&mut admin, "chat_message").await["message"].clone();
    assert_eq!((&own["from_role"], &own["from_user_id"]), (&json!("admin"), &Value::Null));
    assert_eq!(next_of(&mut following, "chat_message").await["message"], own);
    // The agent who follows nothing heard neither: the next frame it gets is its own pong.
    send(&mut idle, json!({"type": "ping"})).await;
    let next = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut idle)).await.unwrap().unwrap().unwrap();
    let next: Value = serde_json::from_str(next.to_text().unwrap()).unwrap();
    assert_eq!(next["type"], "pong", "{next}");
}
