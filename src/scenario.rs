//! Building blocks for scenarios: users, online drivers near a point, trip
//! requests. Shared by the examples, the black-box tests and the benches so each
//! does not grow its own copy.

use dispatch_core::route::StraightLine;
use dispatch_core::{
    Actor, Category, Engine, Error, LatLng, NewTrip, NewUser, PaymentMethod, Place, Role, TripKind, UserId, Vehicle,
    demo,
};

/// Cairo's Tahrir Square: where scenarios happen unless they say otherwise.
pub const CENTER: (f64, f64) = (30.0444, 31.2357);

/// A point `north_m` metres north and `east_m` metres east of [`CENTER`].
pub fn near_center(north_m: f64, east_m: f64) -> Result<LatLng, Error> {
    let lat = CENTER.0 + north_m / 111_195.0;
    let lng = CENTER.1 + east_m / (111_195.0 * CENTER.0.to_radians().cos());
    Ok(LatLng::new(lat, lng)?)
}

/// `[lng, lat]` corners of the scenarios' zone: Cairo and every [`grid_fleet`] up to
/// 100,000 cells (the grid runs north from 29°N in rows of 50).
pub const SCENARIO_BOX: [[f64; 2]; 2] = [[30.5, 20.0], [32.5, 80.0]];

/// Creates the scenarios' zone (the demo city's prices over [`SCENARIO_BOX`]) unless the
/// engine already prices economy rides.
pub fn ensure_zone(engine: &Engine) -> Result<(), Error> {
    let economy = Category::new("economy")?;
    if !engine.read(|v| v.catalog().prices(&economy)) {
        engine.create_zone(Actor::Admin, demo::zone_spec("Scenarios", SCENARIO_BOX)?)?;
    }
    Ok(())
}

/// Creates user number `n` (phone numbers derive from it, so `n` must be unique
/// per engine and role) with role `role`; drivers drive an `economy` car (the demo
/// zone is created first if the engine has none: see [`ensure_zone`]).
pub fn user(engine: &Engine, role: Role, n: u64) -> Result<UserId, Error> {
    if role == Role::Driver {
        ensure_zone(engine)?;
    }
    let vehicle = match role {
        Role::Driver => Some(Vehicle::new(Category::new("economy")?, format!("D {n}"))),
        _ => None,
    };
    let phone = format!("+2010{n:09}");
    let new = NewUser { id: None, role, name: format!("{} {n}", role.as_str()), phone, vehicle };
    Ok(engine.create_user(Actor::Admin, new)?.id)
}

/// Creates driver number `n` and brings it online at `at`.
pub fn online_driver(engine: &Engine, n: u64, at: LatLng) -> Result<UserId, Error> {
    let id = user(engine, Role::Driver, n)?;
    engine.set_driver_status(id, true, Some(at))?;
    Ok(id)
}

/// An economy ride, paid cash, from `pickup` to a point 3 km north of it.
pub fn ride_from(pickup: LatLng) -> Result<NewTrip, Error> {
    let dropoff = LatLng::new((pickup.lat() + 0.027).min(90.0), pickup.lng())?;
    Ok(NewTrip {
        id: None,
        pickup_code: None,
        reference: None,
        kind: TripKind::Ride,
        pickup: Place::at(pickup),
        dropoff: Place::at(dropoff),
        stops: Vec::new(),
        category: Category::new("economy")?,
        parcel: None,
        payment_method: PaymentMethod::Cash,
        route: StraightLine::default().between(pickup, dropoff),
        coupon: None,
        bid_minor: None,
        scheduled_at: None,
    })
}

/// One driver and one rider per cell of a grid ~2 km apart, drivers online at
/// their cell: a trip requested at a cell is offered to that cell's driver only
/// (with a search radius under 2 km). Returns `(driver, rider, cell)` triples.
pub fn grid_fleet(engine: &Engine, cells: u64) -> Result<Vec<(UserId, UserId, LatLng)>, Error> {
    let mut out = Vec::new();
    for i in 0..cells {
        let at = LatLng::new(29.0 + (i / 50) as f64 * 0.02, 31.0 + (i % 50) as f64 * 0.02)?;
        let driver = online_driver(engine, 2 * i + 1, at)?;
        let rider = user(engine, Role::Rider, 2 * i + 2)?;
        out.push((driver, rider, at));
    }
    Ok(out)
}

/// Submits every command without waiting (as a server with many connections
/// does), then waits for every answer; answers come back in submission order.
/// A full queue, or a zone at its share of the queue, is waited out rather than
/// answered `Overloaded` (assumes this is the only thread submitting).
pub fn pipeline(
    engine: &Engine,
    commands: Vec<(Actor, dispatch_core::Command)>,
) -> Vec<Result<dispatch_core::Outcome, Error>> {
    let n = commands.len();
    let (tx, rx) = crossbeam_channel::unbounded();
    for (i, (actor, command)) in commands.into_iter().enumerate() {
        while engine.queue_depth() + 1 >= engine.queue_capacity() || !engine.zone_has_room(&command) {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        let reply = tx.clone();
        if let Err(e) = engine.submit_with(actor, command, move |r| drop(reply.send((i, r)))) {
            let _ = tx.send((i, Err(e)));
        }
    }
    let mut out: Vec<_> = rx.iter().take(n).collect();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Rules for [`grid_fleet`] benches and tests: one offer per trip (to the cell's
/// own driver), nothing lapses or goes stale during a run.
pub fn grid_rules() -> dispatch_core::DispatchRules {
    dispatch_core::DispatchRules {
        offers_per_round: 1,
        stale_location_s: 86_400,
        offer_ttl_s: 86_400,
        timeout_s: 86_400,
        open_trips_per_rider: 1,
        search_radius_m: 500,
        ..dispatch_core::DispatchRules::default()
    }
}

/// One trip per cell of a [`grid_fleet`], each offered to its cell's driver.
pub fn grid_trips(
    engine: &Engine,
    cells: &[(UserId, UserId, LatLng)],
) -> Result<Vec<std::sync::Arc<dispatch_core::Trip>>, Error> {
    let creates =
        cells.iter().map(|(_, r, at)| Ok((Actor::User(*r), dispatch_core::Command::CreateTrip(ride_from(*at)?))));
    let creates = creates.collect::<Result<Vec<_>, Error>>()?;
    pipeline(engine, creates)
        .into_iter()
        .map(|r| match r? {
            dispatch_core::Outcome::Trip(t) => Ok(t),
            other => Err(Error::internal(format!("create_trip answered {other:?}"))),
        })
        .collect()
}

/// Takes every accepted trip of a [`grid_fleet`] through arrival, start and
/// completion, so the drivers are free again.
pub fn finish_grid_trips(
    engine: &Engine,
    cells: &[(UserId, UserId, LatLng)],
    trips: &[std::sync::Arc<dispatch_core::Trip>],
) -> Result<(), Error> {
    use dispatch_core::Command;
    for step in 0..3 {
        let commands = cells.iter().zip(trips).map(|((driver, _, _), t)| {
            let command = match step {
                0 => Command::DriverArrived { trip_id: t.id },
                1 => Command::StartTrip { trip_id: t.id, pickup_code: t.pickup_code.to_string() },
                _ => Command::CompleteTrip { trip_id: t.id, distance_m: None, dropoff: None },
            };
            (Actor::User(*driver), command)
        });
        for r in pipeline(engine, commands.collect()) {
            r?;
        }
    }
    Ok(())
}
