//! Black-box tests of the OpenAPI document and of strict bodies (issue 25): the real
//! `dispatchd` serves its document to anyone, and refuses a body that breaks its
//! operation's schema with one answer listing every violation, creating nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeSet;

use common::*;
use hyper::Method;
use serde_json::{Value, json};

fn params(v: &Value) -> BTreeSet<String> {
    v["error"]["details"].as_array().unwrap().iter().map(|d| d["param"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_to_anyone_and_is_openapi_3_1() {
    let s = Server::start(&[], None);
    let r = s.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.json["openapi"].as_str().unwrap().starts_with("3.1"), "{}", r.json["openapi"]);
    assert_eq!(r.json["paths"]["/v1/trips"]["post"]["operationId"], "trip_create");
    // A stale token does not turn the public document into a 401.
    let r = s.call(Method::GET, "/v1/openapi.json", Some("nonsense"), None).await;
    assert_eq!(r.status, 200);
    // What is served is the committed file, byte for byte.
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    assert_eq!(r.text, committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_the_wrong_shape_are_refused_whole_and_create_nothing() {
    let s = Server::start(&[], None);
    s.post("/v1/admin/zones", ADMIN, cairo_zone()).await.expect(201);
    let (_, rider) = user(&s, "rider", 1).await;
    let good = json!({"pickup": {"lat": HERE.0, "lng": HERE.1}, "dropoff": {"lat": 30.06, "lng": 31.25},
        "category": "economy", "payment_method": "cash"});

    // An array where the pickup object is expected: serde took `[lat, lng]` before.
    let mut b = good.clone();
    b["pickup"] = json!([HERE.0, HERE.1]);
    let r = s.post("/v1/trips", &rider, b).await;
    r.expect_error(400, "invalid_request");
    assert_eq!(r.json["error"]["param"], "pickup", "{}", r.text);

    // A bare positional array for the whole body.
    let r = s.post("/v1/trips", &rider, json!([[HERE.0, HERE.1], [30.06, 31.25], "economy", "cash"])).await;
    r.expect_error(400, "invalid_request");
    assert_eq!(r.json["error"]["details"].as_array().unwrap().len(), 1, "{}", r.text);

    // Three wrong fields: one answer naming the three.
    let mut b = good.clone();
    b["pickup"]["lat"] = json!("north");
    b["category"] = json!(7);
    b["payment_method"] = json!("barter");
    let r = s.post("/v1/trips", &rider, b).await;
    r.expect_error(400, "invalid_request");
    assert_eq!(
        params(&r.json),
        ["category", "payment_method", "pickup.lat"].map(str::to_owned).into_iter().collect(),
        "{}",
        r.text
    );
    assert_eq!(r.json["error"]["param"], r.json["error"]["details"][0]["param"]);
    assert!(r.json["error"]["details"].as_array().unwrap().iter().all(|d| d["code"] == "invalid_request"));

    // An unknown field is named; a missing one too.
    let mut b = good.clone();
    b["tip_minor"] = json!(500);
    b.as_object_mut().unwrap().remove("category");
    let r = s.post("/v1/trips", &rider, b).await;
    r.expect_error(400, "invalid_request");
    assert_eq!(params(&r.json), ["category", "tip_minor"].map(str::to_owned).into_iter().collect(), "{}", r.text);

    // Not JSON at all stays `invalid_json`; coordinates out of range stay `invalid_coordinates`.
    s.call(Method::POST, "/v1/trips", Some(&rider), Some("{\"pickup\":")).await.expect_error(400, "invalid_json");
    let mut b = good.clone();
    b["pickup"]["lat"] = json!(91.0);
    s.post("/v1/trips", &rider, b).await.expect_error(400, "invalid_coordinates");

    // None of these created a trip.
    let list = s.get("/v1/trips", &rider).await.expect(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");

    // The good body still books, and a step that needs no fields still takes an empty body.
    let trip = s.post("/v1/trips", &rider, good).await.expect(201);
    let id = trip["id"].as_str().unwrap();
    let r = s.call(Method::POST, &format!("/v1/trips/{id}/cancel"), Some(&rider), Some("")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // But not an array for it.
    let (_, rider2) = user(&s, "rider", 2).await;
    let trip = s
        .post(
            "/v1/trips",
            &rider2,
            json!({"pickup": {"lat": HERE.0, "lng": HERE.1},
        "dropoff": {"lat": 30.06, "lng": 31.25}, "category": "economy", "payment_method": "cash"}),
        )
        .await
        .expect(201);
    let r = s.post(&format!("/v1/trips/{}/cancel", trip["id"].as_str().unwrap()), &rider2, json!(["why"])).await;
    r.expect_error(400, "invalid_request");
}
