//! Trips: estimates, booking, the rider's and driver's steps (accept, decline, arrived,
//! start, complete, cancel), bids, ratings, SOS, lists, and the staff's reads of a trip
//! (timeline, trail) and cancellation.
//!
//! Guarantees: a trip is shown only to who may see it (`Trip::visible_to`: its rider, its
//! current driver, staff; anyone else gets `404`, never `403`, so ids cannot be probed);
//! the pickup code only to its rider; an estimate and a booking are priced on the same
//! route provider, along the same path (pickup → stops in order → drop-off); a won accept
//! is counted once (a replayed one is not counted again).

use dispatch_core::id::{BidId, ZoneId};
use dispatch_core::trip::{MAX_STOPS, Parcel};
use dispatch_core::trip_index::TripQuery;
use dispatch_core::trip_ref::TripRef;
use dispatch_core::{
    Category, Command, LatLng, NewTrip, Outcome, PaymentMethod, Place, Role, Trip, TripId, TripKind, TripStatus,
    TripsOf, UserId,
};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::routes::TripAction;
use super::{CancelIn, Ctx, Empty, PointIn, now, parse_id, unexpected};
use crate::http::{self, ApiError, Cursor, Resp, json_response, lat_lng, no_content};
use crate::render;

/// The id in the query parameter `name`, if given (`400 invalid_request` naming it if malformed).
fn id_param<T: std::str::FromStr>(query: &http::Query, name: &'static str) -> Result<Option<T>, ApiError> {
    query
        .get(name)
        .map(|v| v.parse().map_err(|_| ApiError::invalid(format!("{name} is malformed")).with_param(name)))
        .transpose()
}

/// Most positions `GET /v1/admin/trips/{id}/trail` answers (a sample when there are more).
pub const TRAIL_MAX_POINTS: usize = 5_000;

/// `{"lat","lng","address"}`: a pickup or a drop-off.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceIn {
    lat: f64,
    lng: f64,
    #[serde(default)]
    address: Option<String>,
}

impl PlaceIn {
    /// The place (`invalid_coordinates` when the point is out of range or not finite).
    fn get(self) -> Result<Place, ApiError> {
        Ok(Place { point: lat_lng(self.lat, self.lng)?, address: self.address })
    }
}

/// A parcel's `weight_kg` in whole grams (rounded half up). Only its form is checked here:
/// how heavy a parcel may be is the engine's one limit (its category's, `parcel_too_heavy`);
/// a weight beyond `u32` grams saturates, and so is refused there too.
fn parcel_grams(weight_kg: f64) -> Result<u32, ApiError> {
    if !(weight_kg.is_finite() && weight_kg > 0.0) {
        return Err(
            ApiError::invalid("parcel.weight_kg must be a positive number of kilograms").with_param("parcel.weight_kg")
        );
    }
    // `as` saturates: 10⁹ kg becomes u32::MAX grams, above every category's limit.
    Ok((weight_kg * 1000.0).round() as u32)
}

/// A request's `stops`: at most `MAX_STOPS` (`invalid_request`, param `stops`), each a
/// valid place (`invalid_coordinates`, param `stops.{i}`).
fn stops_in(stops: Vec<PlaceIn>) -> Result<Vec<Place>, ApiError> {
    if stops.len() > MAX_STOPS {
        let why = format!("at most {MAX_STOPS} stops, got {}", stops.len());
        return Err(ApiError::invalid(why).with_param("stops"));
    }
    stops.into_iter().enumerate().map(|(i, s)| s.get().map_err(|e| e.with_param(&format!("stops.{i}")))).collect()
}

/// The ride's waypoints: pickup, the stops in order, drop-off.
fn waypoints(pickup: &Place, stops: &[Place], dropoff: &Place) -> Vec<LatLng> {
    std::iter::once(pickup.point).chain(stops.iter().map(|s| s.point)).chain([dropoff.point]).collect()
}

impl Ctx<'_> {
    /// `POST /v1/fares/estimate`: every category's quote (or one), priced as a booking now would be.
    pub(super) async fn estimate(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            pickup: PlaceIn,
            dropoff: PlaceIn,
            #[serde(default)]
            stops: Vec<PlaceIn>,
            #[serde(default)]
            category: Option<Category>,
            #[serde(default)]
            coupon: Option<String>,
            #[serde(default)]
            parcel: Option<ParcelWeightIn>,
        }
        /// Only the weight prices a parcel; the booking's whole `parcel` object may be sent.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ParcelWeightIn {
            weight_kg: f64,
            #[serde(default)]
            #[allow(dead_code)]
            description: Option<String>,
            #[serde(default)]
            #[allow(dead_code)]
            recipient_phone: Option<String>,
        }
        let b: In = self.json(false)?;
        let rider = self.principal()?.user_id().ok_or_else(|| ApiError::new("forbidden", "riders only"))?;
        let (pickup, dropoff, stops) = (b.pickup.get()?, b.dropoff.get()?, stops_in(b.stops)?);
        let parcel_g = b.parcel.map(|p| parcel_grams(p.weight_kg)).transpose()?;
        let path = self.app.path(waypoints(&pickup, &stops, &dropoff)).await;
        let route = path.route;
        let t = now();
        let est = self.app.engine.read(|v| {
            v.price_book().estimate(pickup.point, &route, b.category.as_ref(), parcel_g, b.coupon.as_deref(), rider, t)
        })?;
        // Each category's drivers near the pickup: the writer's R-tree, asked after a commit,
        // with the filter a dispatch round uses.
        let categories: Vec<Category> = est.quotes.iter().map(|(c, _)| c.clone()).collect();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.app.engine.supply_near_with(pickup.point, categories, t, move |r| {
            let _ = tx.send(r);
        })?;
        let supply = match rx.await {
            Ok(r) => r.map_err(ApiError::from)?,
            Err(_) => return Err(ApiError::from_core(&dispatch_core::Error::ShutDown)),
        };
        let straight_line = self.app.routes.straight_line();
        let estimates: Vec<Value> = est
            .quotes
            .iter()
            .zip(&supply)
            .map(|((c, q), (nearby, nearest))| {
                // The nearest driver's way to the pickup on the straight line of `[route]`:
                // no router call per estimate.
                let eta = nearest.map(|n| straight_line.between(n.driver.position, pickup.point).duration_s);
                json!({
                    "category": c.as_str(),
                    "fare": {"amount_minor": q.fare.amount_minor, "currency": q.fare.currency.code(),
                             "currency_exponent": q.fare.currency.exponent()},
                    "distance_m": q.distance_m,
                    "duration_s": q.duration_s,
                    "surge_bps": q.surge_bps,
                    "discount_minor": q.discount_minor,
                    "route_source": serde_json::to_value(q.route_source).unwrap_or(Value::Null),
                    "breakdown": serde_json::to_value(q.breakdown).unwrap_or(Value::Null),
                    "route": {"polyline": path.polyline},
                    "pickup_eta_s": eta,
                    "nearby_drivers": nearby,
                })
            })
            .collect();
        Ok(json_response(StatusCode::OK, &json!({"zone_id": est.zone.id.to_string(), "estimates": estimates})))
    }

    /// `POST /v1/trips`: the route is asked for here, the price is locked by the engine.
    pub(super) async fn create_trip(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ParcelIn {
            weight_kg: f64,
            description: String,
            recipient_phone: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct BidIn {
            amount_minor: i64,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            pickup: PlaceIn,
            dropoff: PlaceIn,
            #[serde(default)]
            stops: Vec<PlaceIn>,
            category: Category,
            payment_method: PaymentMethod,
            #[serde(default)]
            coupon: Option<String>,
            #[serde(default)]
            kind: Option<TripKind>,
            #[serde(default)]
            parcel: Option<ParcelIn>,
            #[serde(default)]
            bid: Option<BidIn>,
            #[serde(default)]
            scheduled_at: Option<String>,
        }
        let b: In = self.json(false)?;
        // The window (15 minutes to 7 days ahead) is the engine's to check, at its `now`.
        let scheduled_at = b
            .scheduled_at
            .as_deref()
            .map(|s| http::parse_rfc3339(s, "scheduled_at").map_err(|e| e.with_param("scheduled_at")))
            .transpose()?;
        let (pickup, dropoff, stops) = (b.pickup.get()?, b.dropoff.get()?, stops_in(b.stops)?);
        let parcel = b
            .parcel
            .map(|p| {
                Ok::<_, ApiError>(Parcel {
                    weight_g: parcel_grams(p.weight_kg)?,
                    description: p.description,
                    recipient_phone: p.recipient_phone,
                    delivery_code: None,
                })
            })
            .transpose()?;
        // The same path as the estimate's (and so, with a router, its cached answer).
        let route = self.app.path(waypoints(&pickup, &stops, &dropoff)).await.route;
        let new = NewTrip {
            id: None,
            pickup_code: None,
            reference: None,
            kind: b.kind.unwrap_or(if parcel.is_some() { TripKind::Parcel } else { TripKind::Ride }),
            pickup,
            dropoff,
            stops,
            category: b.category,
            parcel,
            payment_method: b.payment_method,
            route,
            coupon: b.coupon,
            bid_minor: b.bid.map(|x| x.amount_minor),
            scheduled_at,
        };
        let o = self.submit(Command::CreateTrip(new)).await?;
        if let Outcome::Trip(t) = &o {
            self.new_trip = Some(t.id);
        }
        self.trip_out(StatusCode::CREATED, o)
    }

    /// `GET /v1/trips`: a rider's or a driver's own trips.
    pub(super) async fn my_trips(&self) -> Result<Resp, ApiError> {
        let p = self.principal()?;
        let id = p.user_id().ok_or_else(|| ApiError::new("forbidden", "riders and drivers only"))?;
        let of = if p.role() == Role::Driver { TripsOf::Driver(id) } else { TripsOf::Rider(id) };
        self.list_trips(of).await
    }

    /// A page of trips, newest first: `of` whom, filtered by `?status=` and `?zone_id=`,
    /// and for staff (`of` everyone) by `?rider_id=`, `?driver_id=`, `?from=`, `?to=`
    /// (creation time) and `?ref=` (finished ones come from the history on disk, through
    /// its indexes, read off the runtime threads). A malformed filter is `400
    /// invalid_request` naming it.
    pub(super) async fn list_trips(&self, of: TripsOf) -> Result<Resp, ApiError> {
        let limit = http::limit(&self.query)?;
        let cursor = Cursor::from_query(&self.query)?
            .map(|c| {
                TripId::from_raw(c.id)
                    .map(|trip| (c.at_ms, trip))
                    .ok_or_else(|| ApiError::invalid("cursor is malformed"))
            })
            .transpose()?;
        let status: Option<TripStatus> = self
            .query
            .get("status")
            .map(|s| {
                serde_json::from_value(json!(s)).map_err(|_| ApiError::invalid("unknown status").with_param("status"))
            })
            .transpose()?;
        let zone: Option<ZoneId> = id_param(&self.query, "zone_id")?;
        let mut query = TripQuery { status, zone, ..TripQuery::default() };
        match of {
            TripsOf::Rider(u) => query.rider = Some(u),
            TripsOf::Driver(u) => query.driver = Some(u),
            TripsOf::All => {
                query.rider = id_param(&self.query, "rider_id")?;
                query.driver = id_param(&self.query, "driver_id")?;
                let date = |field: &'static str| {
                    self.query
                        .get(field)
                        .map(|s| super::payouts::parse_date_or_time(s, field).map_err(|e| e.with_param(field)))
                        .transpose()
                };
                query.from = date("from")?;
                query.to = date("to")?;
                if let Some(r) = self.query.get("ref") {
                    let reference = TripRef::parse(r).ok_or_else(|| {
                        ApiError::invalid("ref must be a trip reference: 6 characters like 7KQ-2M4").with_param("ref")
                    })?;
                    return self.trip_by_ref(reference, move |t: &Trip| query.matches(t)).await;
                }
            }
        }
        let trips = self.app.blocking(move |e| e.find_trips(&query, cursor, limit)).await?;
        let last = trips.last().map(|t| Cursor { at_ms: t.created_at.as_millis(), id: t.id.raw() });
        let items = self.trips_json(&trips);
        Ok(json_response(StatusCode::OK, &http::page(items, limit, last)))
    }

    /// `GET /v1/admin/trips?ref=`: the trip booked with `reference` in the last 30 days,
    /// hot or in the history (a page of one, or none), if it passes the other filters.
    async fn trip_by_ref(&self, reference: TripRef, keep: impl Fn(&Trip) -> bool) -> Result<Resp, ApiError> {
        let at = now();
        let found = self
            .app
            .blocking(move |e| match e.query(move |s| s.trip_by_ref(reference, at))? {
                Some(id) => e.find_trip(id),
                None => Ok(None),
            })
            .await?;
        let trips: Vec<std::sync::Arc<Trip>> = found.into_iter().filter(|t| keep(t)).collect();
        let items = self.trips_json(&trips);
        Ok(json_response(StatusCode::OK, &json!({"items": items, "next_cursor": null})))
    }

    /// `GET /v1/trips/{id}`: to whom may see it (else `404`); staff also see the names.
    pub(super) async fn get_trip(&self, id: &str) -> Result<Resp, ApiError> {
        let t = self.visible_trip(id).await?;
        self.refresh_eta(&t).await;
        let mut v = self.trip_json(&t);
        if self.principal()?.reads_trips() {
            // Operators talk to the people of a trip: staff see their names.
            let name = |u: UserId| self.app.engine.user(u).map(|u| u.name.clone());
            v["rider_name"] = json!(name(t.rider_id));
            v["driver_name"] = json!(t.driver_id.and_then(name));
        }
        Ok(json_response(StatusCode::OK, &v))
    }

    /// `POST /v1/trips/{id}/{action}`: a driver's step, or a cancel; accepts are counted won or lost.
    pub(super) async fn trip_action(&mut self, id: &str, action: TripAction) -> Result<Resp, ApiError> {
        let trip_id: TripId = parse_id(id, "trip")?;
        let command = match action {
            TripAction::Accept => {
                self.json::<Empty>(true)?;
                Command::AcceptTrip { trip_id }
            }
            TripAction::Decline => {
                self.json::<Empty>(true)?;
                Command::DeclineTrip { trip_id }
            }
            TripAction::Arrived => {
                self.json::<Empty>(true)?;
                Command::DriverArrived { trip_id }
            }
            TripAction::Start => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct In {
                    pickup_code: String,
                }
                let b: In = self.json(false)?;
                Command::StartTrip { trip_id, pickup_code: b.pickup_code }
            }
            TripAction::Complete => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct In {
                    #[serde(default)]
                    distance_m: Option<u32>,
                    #[serde(default)]
                    dropoff: Option<PointIn>,
                    #[serde(default)]
                    delivery_code: Option<String>,
                }
                let b: In = self.json(true)?;
                let dropoff = b.dropoff.map(|p| p.get()).transpose()?;
                // A parcel without its code is the engine's `invalid_request` (it knows the kind).
                match b.delivery_code {
                    Some(delivery_code) => {
                        Command::CompleteDelivery { trip_id, delivery_code, distance_m: b.distance_m, dropoff }
                    }
                    None => Command::CompleteTrip { trip_id, distance_m: b.distance_m, dropoff },
                }
            }
            TripAction::Cancel => {
                let b: CancelIn = self.json(true)?;
                Command::CancelTrip { trip_id, code: b.code()?, reason: b.reason }
            }
        };
        let result = self.submit(command).await;
        if action == TripAction::Accept {
            let m = &self.app.metrics;
            match &result {
                // A replayed accept won nothing new: it was counted the first time.
                Ok(_) if self.replayed => 0,
                Ok(_) => m.accepts_won.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                Err(e) if e.code == "trip_already_assigned" => {
                    m.accepts_lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                }
                Err(_) => 0,
            };
        }
        match result? {
            // Counted by the engine (the 5th wrong code locks the start), a refusal here.
            Outcome::PickupCodeRefused { attempts_left } => Err(ApiError::new(
                "forbidden",
                if attempts_left == 0 {
                    "wrong pickup code; the start is now locked: staff can unlock it".to_owned()
                } else {
                    format!("wrong pickup code; {attempts_left} more attempts before the start locks")
                },
            )),
            // The same for a parcel's delivery code at completion.
            Outcome::DeliveryCodeRefused { attempts_left } => Err(ApiError::new(
                "forbidden",
                if attempts_left == 0 {
                    "wrong delivery code; the completion is now locked: staff can complete the trip".to_owned()
                } else {
                    format!("wrong delivery code; {attempts_left} more attempts before the completion locks")
                },
            )),
            Outcome::Done if action == TripAction::Decline => Ok(no_content()),
            o @ Outcome::Trip(_) => self.trip_out(StatusCode::OK, o),
            Outcome::Done => Ok(no_content()),
            o => Err(unexpected(&o)),
        }
    }

    /// `POST /v1/trips/{id}/bids`: an offered driver's price.
    pub(super) async fn place_bid(&mut self, id: &str) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            amount_minor: i64,
        }
        let b: In = self.json(false)?;
        let trip_id: TripId = parse_id(id, "trip")?;
        match self.submit(Command::PlaceBid { id: None, trip_id, amount_minor: b.amount_minor }).await? {
            Outcome::Bid { bid, trip } => {
                Ok(json_response(StatusCode::CREATED, &render::bid(&trip.id.to_string(), &bid)))
            }
            o => Err(unexpected(&o)),
        }
    }

    /// `GET /v1/trips/{id}/bids`: the trip's rider only (anyone else: `404`).
    pub(super) async fn list_bids(&self, id: &str) -> Result<Resp, ApiError> {
        let t = self.visible_trip(id).await?;
        if !self.for_rider(&t) {
            return Err(ApiError::not_found("trip"));
        }
        let tid = t.id.to_string();
        let items: Vec<Value> = t.bids.iter().map(|b| render::bid(&tid, b)).collect();
        Ok(json_response(StatusCode::OK, &json!({"items": items})))
    }

    /// `POST /v1/trips/{id}/bids/{bid_id}/accept`.
    pub(super) async fn accept_bid(&mut self, id: &str, bid: &str) -> Result<Resp, ApiError> {
        self.json::<Empty>(true)?;
        let trip_id: TripId = parse_id(id, "trip")?;
        let bid_id: BidId = parse_id(bid, "bid")?;
        let o = self.submit(Command::AcceptBid { trip_id, bid_id }).await?;
        self.trip_out(StatusCode::OK, o)
    }

    /// `POST /v1/trips/{id}/rating`: 1 to 5 stars.
    pub(super) async fn rate(&mut self, id: &str) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            stars: u8,
            #[serde(default)]
            comment: Option<String>,
        }
        let b: In = self.json(false)?;
        if !(1..=5).contains(&b.stars) {
            return Err(ApiError::invalid("stars must be 1 to 5"));
        }
        let trip_id: TripId = parse_id(id, "trip")?;
        let (stars, comment) = (b.stars, b.comment.clone());
        self.submit(Command::RateTrip { trip_id, stars, comment }).await?;
        Ok(json_response(
            StatusCode::CREATED,
            &json!({"trip_id": trip_id.to_string(), "stars": stars, "comment": b.comment}),
        ))
    }

    /// `POST /v1/trips/{id}/sos`: an alert every staff socket hears.
    pub(super) async fn sos(&mut self, id: &str) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            #[serde(default)]
            location: Option<PointIn>,
            #[serde(default)]
            note: Option<String>,
        }
        let b: In = self.json(true)?;
        let trip_id: TripId = parse_id(id, "trip")?;
        let location = b.location.map(|l| l.get()).transpose()?;
        match self.submit(Command::RaiseSos { id: None, trip_id, location, note: b.note }).await? {
            Outcome::Alert(a) => Ok(json_response(StatusCode::CREATED, &render::alert(&a))),
            o => Err(unexpected(&o)),
        }
    }

    /// `POST /v1/admin/trips/{id}/cancel`.
    pub(super) async fn admin_cancel(&mut self, id: &str) -> Result<Resp, ApiError> {
        let b: CancelIn = self.json(true)?;
        let trip_id: TripId = parse_id(id, "trip")?;
        let o = self.submit(Command::CancelTrip { trip_id, code: b.code()?, reason: b.reason }).await?;
        self.trip_out(StatusCode::OK, o)
    }

    /// `POST /v1/admin/trips/{id}/complete`: staff complete an in-progress parcel without
    /// its delivery code (they confirmed the delivery, e.g. after the code locked).
    pub(super) async fn admin_complete(&mut self, id: &str) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            #[serde(default)]
            distance_m: Option<u32>,
        }
        let b: In = self.json(true)?;
        let trip_id: TripId = parse_id(id, "trip")?;
        let o = self.submit(Command::CompleteTrip { trip_id, distance_m: b.distance_m, dropoff: None }).await?;
        self.trip_out(StatusCode::OK, o)
    }

    /// `POST /v1/admin/trips/{id}/unlock`: staff unlock a pickup code (or a parcel's
    /// delivery code) that wrong codes locked; the driver may try again.
    pub(super) async fn unlock_code(&mut self, id: &str) -> Result<Resp, ApiError> {
        self.json::<Empty>(true)?;
        let trip_id: TripId = parse_id(id, "trip")?;
        let o = self.submit(Command::UnlockPickupCode { trip_id }).await?;
        self.trip_out(StatusCode::OK, o)
    }

    /// `GET /v1/admin/trips/{id}/events`: the timeline built from the trip record.
    pub(super) async fn trip_events(&self, id: &str) -> Result<Resp, ApiError> {
        let t = self.visible_trip(id).await?;
        Ok(json_response(StatusCode::OK, &json!({"items": render::timeline(&t), "next_cursor": null})))
    }

    /// `GET /v1/admin/trips/{id}/trail`: where the trip's driver went from the accept to
    /// the end (or now), oldest first, at most [`TRAIL_MAX_POINTS`] (evenly sampled).
    pub(super) async fn trip_trail(&self, id: &str) -> Result<Resp, ApiError> {
        let t = self.visible_trip(id).await?;
        let trail = match (t.driver_id, t.accepted_at) {
            (Some(driver), Some(from)) => {
                let until = if t.status.is_terminal() { t.ended_at.unwrap_or(t.updated_at) } else { now() };
                Some(self.app.blocking(move |e| e.driver_trail(driver, from, until, TRAIL_MAX_POINTS)).await?)
            }
            _ => None,
        };
        let items: Vec<Value> = trail.iter().flat_map(|tr| tr.points.iter()).map(render::trail_point).collect();
        let recorded = trail.as_ref().map_or(0, |tr| tr.recorded);
        let sampled = items.len() < recorded;
        Ok(json_response(
            StatusCode::OK,
            &json!({"items": items, "recorded": recorded, "sampled": sampled,
                "truncated": trail.is_some_and(|tr| tr.truncated), "next_cursor": null}),
        ))
    }
}
