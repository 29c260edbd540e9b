//! Black-box tests of the ride as riders and drivers see it (API.md "The ride, as riders
//! and drivers see it"): the trip's `driver` and `rider` cards, who sees which, the
//! driver's vehicle details and position, ratings averaged from the third one, who
//! cancelled a trip and why (`cancellation`, its `reason_code`), and the trip's `eta`
//! (the router's, or the straight line's when it is down).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use serde_json::{Value, json};

use common::*;

const KARIM: &str = "+201000000101";
const AMAL: &str = "+201000000102";

/// A driver's body for `POST /v1/admin/users` with this vehicle.
fn driver_body(vehicle: Value) -> Value {
    json!({"role": "driver", "name": "Karim Adel", "phone": KARIM, "vehicle": vehicle})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vehicle_details_are_validated_field_by_field() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let car = |extra: Value| {
        let mut v = json!({"category": "economy", "plate": "ABC 123"});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    for (extra, param) in [
        (json!({"make": "M".repeat(81)}), "vehicle.make"),
        (json!({"make": ""}), "vehicle.make"),
        (json!({"color": "sil\u{7}ver"}), "vehicle.color"),
        (json!({"model": "Elan\u{85}tra"}), "vehicle.model"),
        (json!({"year": 1949}), "vehicle.year"),
        (json!({"year": 2101}), "vehicle.year"),
        (json!({"doors": 4}), "vehicle.doors"),
    ] {
        let r = s.post("/v1/admin/users", ADMIN, driver_body(car(extra.clone()))).await;
        r.expect_error(400, "invalid_request");
        assert_eq!(r.json["error"]["param"], param, "{extra}: {}", r.text);
    }
    // Nothing of the refused bodies was kept: the phone is still free.
    let ok = car(json!({"make": "M".repeat(40), "year": 1950}));
    let u = s.post("/v1/admin/users", ADMIN, driver_body(ok)).await.expect(201);
    assert_eq!(u["user"]["vehicle"]["make"].as_str().map(|m| m.chars().count()), Some(40));
    assert_eq!((&u["user"]["vehicle"]["model"], &u["user"]["vehicle"]["year"]), (&Value::Null, &json!(1950)));
}

/// The trip `id` as `token` sees it.
async fn trip(s: &Server, id: &str, token: &str) -> Value {
    s.get(&format!("/v1/trips/{id}"), token).await.expect(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn riders_see_who_is_coming_drivers_whom_to_pick_up_and_ratings_show_from_the_third() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let vehicle = json!({"category": "economy", "plate": "CAI 101", "make": "Hyundai", "model": "Elantra",
        "color": "silver", "year": 2019});
    let created = s.post("/v1/admin/users", ADMIN, driver_body(vehicle)).await.expect(201);
    let (karim, driver) = (created["user"].clone(), created["token"].as_str().unwrap().to_owned());
    assert_eq!(karim["vehicle"]["year"], 2019);
    assert_eq!(karim["rating"], Value::Null);
    let body = json!({"status": "online", "location": {"lat": HERE.0, "lng": HERE.1}});
    s.post("/v1/driver/status", &driver, body).await.expect(200);
    let created = s.post("/v1/admin/users", ADMIN, json!({"role": "rider", "name": "Amal Hassan", "phone": AMAL}));
    let created = created.await.expect(201);
    let (amal, rider) = (created["user"].clone(), created["token"].as_str().unwrap().to_owned());
    let (_, stranger) = user(&s, "rider", 3).await;
    let mut dws = s.ws(&driver).await;
    let mut rws = s.ws(&rider).await;

    let rider_stars = [5, 4, 4];
    let driver_stars = [5, 5, 4];
    for ride in 0..3 {
        let booked = create_trip(&s, &rider).await;
        let id = booked["id"].as_str().unwrap().to_owned();
        assert_eq!((&booked["driver"], &booked["rider"]), (&Value::Null, &Value::Null), "no driver yet");

        let accepted = s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);
        assert!(accepted.get("pickup_code").is_none());
        assert_eq!(accepted["rider"]["first_name"], "Amal", "the accepting driver sees whom to pick up");

        // The rider: who is coming, in what car, and where they are.
        let seen = trip(&s, &id, &rider).await;
        let card = &seen["driver"];
        assert_eq!((&card["id"], &card["name"]), (&karim["id"], &json!("Karim")));
        assert_eq!(
            card["vehicle"],
            json!({"category": "economy", "make": "Hyundai", "model": "Elantra", "color": "silver", "plate": "CAI 101"})
        );
        assert_eq!((&card["location"]["lat"], &card["location"]["lng"]), (&json!(HERE.0), &json!(HERE.1)));
        assert!(card["location"]["at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(seen["rider"], Value::Null, "the rider is not shown their own card");
        assert!(seen["pickup_code"].is_string());

        // The driver: whom to pick up (first name only), never the pickup code.
        let seen = trip(&s, &id, &driver).await;
        assert_eq!((&seen["rider"]["id"], &seen["rider"]["first_name"]), (&amal["id"], &json!("Amal")));
        assert!(seen["rider"].get("phone").is_none() && seen["rider"].get("name").is_none());
        assert!(seen.get("pickup_code").is_none(), "{seen}");

        // Staff see both; anyone else sees nothing at all.
        let seen = trip(&s, &id, ADMIN).await;
        assert_eq!((&seen["driver"]["id"], &seen["rider"]["id"]), (&karim["id"], &amal["id"]));
        s.get(&format!("/v1/trips/{id}"), &stranger).await.expect_error(404, "not_found");

        // The WebSocket frames carry the same cards to the same people.
        let frame = loop {
            let f = next_of(&mut rws, "trip_updated").await;
            if f["trip"]["id"] == id.as_str() && f["trip"]["status"] == "accepted" {
                break f;
            }
        };
        assert_eq!(
            (&frame["trip"]["driver"]["vehicle"]["make"], &frame["trip"]["rider"]),
            (&json!("Hyundai"), &Value::Null)
        );
        let frame = loop {
            let f = next_of(&mut dws, "trip_updated").await;
            if f["trip"]["id"] == id.as_str() && f["trip"]["status"] == "accepted" {
                break f;
            }
        };
        assert_eq!(frame["trip"]["rider"]["first_name"], "Amal");
        assert!(frame["trip"].get("pickup_code").is_none());

        s.post(&format!("/v1/trips/{id}/arrived"), &driver, json!({})).await.expect(200);
        let code = booked["pickup_code"].as_str().unwrap();
        s.post(&format!("/v1/trips/{id}/start"), &driver, json!({"pickup_code": code})).await.expect(200);
        assert!(trip(&s, &id, &rider).await["driver"]["location"].is_object(), "in progress: still shown");
        s.post(&format!("/v1/trips/{id}/complete"), &driver, json!({})).await.expect(200);
        let done = trip(&s, &id, &rider).await;
        assert_eq!(done["driver"]["id"], karim["id"], "the card stays");
        assert!(done["driver"].get("location").is_none(), "no position once the trip ended: {done}");

        // Ratings: the rider rates the driver, the driver the rider; null until 3 each.
        let rate = |stars: u8| json!({"stars": stars});
        s.post(&format!("/v1/trips/{id}/rating"), &rider, rate(rider_stars[ride])).await.expect(201);
        s.post(&format!("/v1/trips/{id}/rating"), &driver, rate(driver_stars[ride])).await.expect(201);
        s.post(&format!("/v1/trips/{id}/rating"), &rider, rate(1)).await.expect_error(409, "invalid_transition");
        let karim_rating = &trip(&s, &id, &rider).await["driver"]["rating"];
        let amal_rating = &trip(&s, &id, &driver).await["rider"]["rating"];
        if ride < 2 {
            assert_eq!((karim_rating, amal_rating), (&Value::Null, &Value::Null), "after {} ratings", ride + 1);
        } else {
            // 13/3 = 4.333… and 14/3 = 4.666…; the refused second rating counted for nothing.
            assert_eq!(karim_rating, &json!({"average": 4.33, "count": 3}));
            assert_eq!(amal_rating, &json!({"average": 4.67, "count": 3}));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_trip_records_who_cancelled_it_and_the_reason_code() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let (_, driver) = online_driver(&s, 2, HERE).await;

    // Not cancelled yet: `cancellation` is there, and null.
    let booked = create_trip(&s, &rider).await;
    let id = booked["id"].as_str().unwrap().to_owned();
    assert_eq!(booked["cancellation"], Value::Null, "{booked}");
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);

    // An unknown code is refused, about `reason_code`, and the trip goes on.
    let path = format!("/v1/trips/{id}/cancel");
    let r = s.post(&path, &rider, json!({"reason_code": "bored"})).await;
    r.expect_error(400, "invalid_request");
    assert_eq!(r.json["error"]["param"], "reason_code", "{}", r.text);
    let t = trip(&s, &id, &rider).await;
    assert_eq!((&t["status"], &t["cancellation"]), (&json!("accepted"), &Value::Null));

    let body = json!({"reason_code": "driver_late", "reason": "still far"});
    let t = s.post(&path, &rider, body).await.expect(200);
    assert_eq!(t["status"], "cancelled");
    let c = &t["cancellation"];
    assert_eq!(
        (&c["by"], &c["reason_code"], &c["reason"]),
        (&json!("rider"), &json!("driver_late"), &json!("still far"))
    );
    assert_eq!(trip(&s, &id, ADMIN).await["cancellation"]["reason_code"], "driver_late", "staff see it too");

    // Only a reason: the code is `other`; and an empty body is `other` too.
    for (n, body) in [(0, json!({"reason": "plans changed"})), (1, json!({}))] {
        let id = create_trip(&s, &rider).await["id"].as_str().unwrap().to_owned();
        let t = s.post(&format!("/v1/trips/{id}/cancel"), &rider, body.clone()).await.expect(200);
        let c = &t["cancellation"];
        assert_eq!((&c["by"], &c["reason_code"]), (&json!("rider"), &json!("other")), "{n}: {t}");
        assert_eq!(c["reason"], body.get("reason").cloned().unwrap_or(json!("")));
    }

    // Staff cancel: `by` is staff, with the code given.
    let id = create_trip(&s, &rider).await["id"].as_str().unwrap().to_owned();
    let staff = format!("/v1/admin/trips/{id}/cancel");
    let r = s.post(&staff, ADMIN, json!({"reason_code": "nope"})).await;
    r.expect_error(400, "invalid_request");
    assert_eq!(r.json["error"]["param"], "reason_code", "{}", r.text);
    let t = s.post(&staff, ADMIN, json!({"reason_code": "unsafe", "reason": "reported"})).await.expect(200);
    let c = &t["cancellation"];
    assert_eq!((&c["by"], &c["reason_code"]), (&json!("staff"), &json!("unsafe")), "{t}");
}

/// Books a trip for `rider` and has `driver` accept it; returns the trip's id.
async fn booked_and_accepted(s: &Server, rider: &str, driver: &str) -> String {
    let id = create_trip(s, rider).await["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/trips/{id}/accept"), driver, json!({})).await.expect(200);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eta_is_the_routers_while_the_driver_comes_and_drives_and_is_null_otherwise() {
    let (url, mut heads) =
        fake_router(r#"{"code":"Ok","routes":[{"distance":2500.0,"duration":312.0}]}"#.to_owned()).await;
    let s = Server::start(&[], Some(&format!("[route]\nrouter_url = \"{url}\"\n")));
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, driver) = user(&s, "driver", 1).await;
    let (_, rider) = user(&s, "rider", 2).await;
    // Two kilometres north of the pickup.
    let body = json!({"status": "online", "location": {"lat": HERE.0 + 0.018, "lng": HERE.1}});
    s.post("/v1/driver/status", &driver, body).await.expect(200);
    let id = create_trip(&s, &rider).await["id"].as_str().unwrap().to_owned();
    assert_eq!(trip(&s, &id, &rider).await["eta"], Value::Null, "searching: nobody is on the way");
    s.post(&format!("/v1/trips/{id}/accept"), &driver, json!({})).await.expect(200);

    // Accepted: seconds to the pickup, from the router; the same to the driver and staff.
    let eta = trip(&s, &id, &rider).await["eta"].clone();
    assert_eq!((&eta["pickup_s"], &eta["dropoff_s"], &eta["source"]), (&json!(312), &Value::Null, &json!("router")));
    assert!(eta["at"].as_str().unwrap().ends_with('Z'));
    assert!(heads.recv().await.unwrap().starts_with("GET /route/v1/driving/"));
    // Asked again within 10 s: the same ETA, computed at the same time (not asked again).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(trip(&s, &id, &driver).await["eta"], eta);
    assert_eq!(trip(&s, &id, ADMIN).await["eta"], eta);

    s.post(&format!("/v1/trips/{id}/arrived"), &driver, json!({})).await.expect(200);
    assert_eq!(trip(&s, &id, &rider).await["eta"], Value::Null, "arrived: nothing to wait for");
    let code = trip(&s, &id, &rider).await["pickup_code"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/trips/{id}/start"), &driver, json!({"pickup_code": code})).await.expect(200);
    let eta = trip(&s, &id, &rider).await["eta"].clone();
    assert_eq!((&eta["pickup_s"], &eta["dropoff_s"], &eta["source"]), (&Value::Null, &json!(312), &json!("router")));
    s.post(&format!("/v1/trips/{id}/complete"), &driver, json!({})).await.expect(200);
    assert_eq!(trip(&s, &id, &rider).await["eta"], Value::Null, "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_router_down_the_eta_is_the_straight_lines_and_says_so() {
    // Bind and drop: nothing listens there any more.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    for config in [None, Some(format!("[route]\nrouter_url = \"http://{dead}\"\n"))] {
        let s = Server::start(&[], config.as_deref());
        s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
        let (_, driver) = user(&s, "driver", 1).await;
        let (_, rider) = user(&s, "rider", 2).await;
        let body = json!({"status": "online", "location": {"lat": HERE.0 + 0.018, "lng": HERE.1}});
        s.post("/v1/driver/status", &driver, body).await.expect(200);
        let id = booked_and_accepted(&s, &rider, &driver).await;
        let eta = trip(&s, &id, &rider).await["eta"].clone();
        assert_eq!(eta["source"], "straight_line", "{config:?}: {eta}");
        // 2 km × the default detour 1.3 at 30 km/h: about 312 s.
        let s_ = eta["pickup_s"].as_u64().unwrap();
        assert!((250..=400).contains(&s_), "{config:?}: {eta}");
    }
}
