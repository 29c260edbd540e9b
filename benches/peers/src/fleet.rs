//! Users for the engine sides, created pipelined (100,000 drivers one `create_user` at a
//! time would wait for 200,000 fsyncs): drivers online at given points, and riders.

use dispatch::scenario::{ensure_zone, pipeline};
use dispatch_core::{Actor, Category, Command, Engine, Error, LatLng, NewUser, Outcome, Role, UserId, Vehicle};

fn new_user(role: Role, n: u64) -> Result<NewUser, Error> {
    let vehicle = match role {
        Role::Driver => Some(Vehicle::new(Category::new("economy")?, format!("D {n}"))),
        _ => None,
    };
    // Phone numbers derive from `n`: callers keep `n` unique per engine.
    Ok(NewUser { id: None, role, name: format!("{} {n}", role.as_str()), phone: format!("+2010{n:09}"), vehicle })
}

/// Creates users `first_n, first_n + 1, ...` of `role`, one per entry of `count`.
pub fn users(engine: &Engine, role: Role, first_n: u64, count: usize) -> Result<Vec<UserId>, Error> {
    ensure_zone(engine)?;
    let creates = (0..count as u64)
        .map(|k| Ok((Actor::Admin, Command::CreateUser(new_user(role, first_n + k)?))))
        .collect::<Result<Vec<_>, Error>>()?;
    pipeline(engine, creates)
        .into_iter()
        .map(|r| match r? {
            Outcome::User(u) => Ok(u.id),
            other => Err(Error::internal(format!("create_user answered {other:?}"))),
        })
        .collect()
}

/// Creates one driver per point (numbered from `first_n`) and brings each online there.
pub fn drivers_at(engine: &Engine, first_n: u64, points: &[LatLng]) -> Result<Vec<UserId>, Error> {
    let ids = users(engine, Role::Driver, first_n, points.len())?;
    let online = ids
        .iter()
        .zip(points)
        .map(|(id, at)| (Actor::User(*id), Command::SetDriverStatus { online: true, location: Some(*at) }))
        .collect();
    for r in pipeline(engine, online) {
        r?;
    }
    Ok(ids)
}
