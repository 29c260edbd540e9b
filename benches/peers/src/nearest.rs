//! Figure 1: the 10 nearest drivers among 100,000, within 5 km, no filter.
//!
//! - dispatch: [`DriverIndex::nearest`] in this process (no network: the HTTP server is not
//!   part of this comparison yet);
//! - Redis: `GEOSEARCH drivers FROMLONLAT lng lat BYRADIUS 5000 m ASC COUNT 10`, one client,
//!   over loopback;
//! - PostGIS: a KNN query on a `geography` column with a GiST index, one client, over loopback,
//!   a prepared statement.
//!
//! Each side answers the same query points in the same order; the answers of the peers are
//! compared with dispatch's as sets of driver ids (see [`Agreement`]).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use dispatch_core::clock::Timestamp;
use dispatch_core::geo::{CategoryCode, DriverIndex, IndexedDriver, haversine_m};
use dispatch_core::{LatLng, UserId};

use crate::city::City;
use crate::report::Latencies;

/// Search radius of every side, metres.
pub const RADIUS_M: f64 = 5_000.0;
/// Drivers per answer.
pub const LIMIT: usize = 10;
/// Queries run untimed before timing, on every side (caches, connections, plans).
const WARMUP: usize = 200;

/// The timed answers of one side.
pub struct Answers {
    /// One latency per query.
    pub latencies: Latencies,
    /// The ids each query returned, nearest first.
    pub ids: Vec<Vec<u64>>,
}

fn timed(queries: &[LatLng], mut one: impl FnMut(LatLng) -> Vec<u64>) -> Answers {
    for q in queries.iter().cycle().take(WARMUP) {
        std::hint::black_box(one(*q));
    }
    let mut samples = Vec::with_capacity(queries.len());
    let mut ids = Vec::with_capacity(queries.len());
    for q in queries {
        let start = Instant::now();
        let answer = one(*q);
        samples.push(start.elapsed());
        ids.push(answer);
    }
    Answers { latencies: Latencies::new(samples), ids }
}

/// The index of every driver of `city` (category and time unused: no filter).
pub fn dispatch_index(city: &City) -> DriverIndex {
    DriverIndex::from_drivers(city.drivers.iter().map(|d| IndexedDriver {
        id: UserId::from_raw(d.id).expect("ids start at 1"),
        position: d.at,
        category: CategoryCode(0),
        recorded_at: Timestamp::from_millis(0),
    }))
}

/// dispatch's answers, in process.
pub fn dispatch(city: &City, index: &DriverIndex) -> Answers {
    timed(&city.queries, |q| index.nearest(q, RADIUS_M, LIMIT, |_| true).iter().map(|n| n.driver.id.raw()).collect())
}

/// Loads every driver of `city` under `key` (pipelined, untimed).
pub fn redis_load(con: &mut redis::Connection, key: &str, city: &City) -> redis::RedisResult<()> {
    redis::cmd("DEL").arg(key).query::<()>(con)?;
    for chunk in city.drivers.chunks(1_000) {
        let mut pipe = redis::pipe();
        for d in chunk {
            pipe.cmd("GEOADD").arg(key).arg(d.at.lng()).arg(d.at.lat()).arg(d.id).ignore();
        }
        pipe.query::<()>(con)?;
    }
    Ok(())
}

/// Redis's answers over one connection, searching within `radius_m`. Redis finds and sorts
/// every member within the radius before it keeps the 10 nearest (`COUNT` without `ANY`), so
/// its cost grows with the radius; dispatch's does not (its search stops at the 10th).
pub fn redis(con: &mut redis::Connection, key: &str, city: &City, radius_m: f64) -> redis::RedisResult<Answers> {
    let mut failure = None;
    let answers = timed(&city.queries, |q| {
        let found: redis::RedisResult<Vec<u64>> = redis::cmd("GEOSEARCH")
            .arg(key)
            .arg("FROMLONLAT")
            .arg(q.lng())
            .arg(q.lat())
            .arg("BYRADIUS")
            .arg(radius_m)
            .arg("m")
            .arg("ASC")
            .arg("COUNT")
            .arg(LIMIT)
            .query(con);
        found.unwrap_or_else(|e| {
            failure.get_or_insert(e);
            Vec::new()
        })
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(answers),
    }
}

/// The KNN query: `<->` on `geography` is the distance on a sphere, which is what dispatch
/// ranks by (haversine), and it is index-assisted (GiST). On `geometry` in SRID 4326 the same
/// operator ranks by planar degrees, which at Cairo's latitude weighs east-west distance by
/// 1/cos(30°) too much and so returns different drivers.
pub const KNN_SQL: &str =
    "SELECT id FROM driver_positions ORDER BY geog <-> ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography LIMIT 10";

/// Creates `driver_positions` with every driver of `city` and its GiST index (untimed).
pub fn postgis_load(client: &mut postgres::Client, city: &City) -> Result<(), postgres::Error> {
    client.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS postgis;
         DROP TABLE IF EXISTS driver_positions;
         CREATE TABLE driver_positions (id bigint PRIMARY KEY, geog geography(Point, 4326) NOT NULL);",
    )?;
    for chunk in city.drivers.chunks(5_000) {
        let values: Vec<String> =
            chunk.iter().map(|d| format!("({}, 'SRID=4326;POINT({} {})')", d.id, d.at.lng(), d.at.lat())).collect();
        client.batch_execute(&format!("INSERT INTO driver_positions VALUES {}", values.join(",")))?;
    }
    // Two calls: VACUUM refuses to run in the implicit transaction of a multi-statement string.
    client.batch_execute("CREATE INDEX driver_positions_geog ON driver_positions USING gist (geog)")?;
    client.batch_execute("VACUUM ANALYZE driver_positions")
}

/// The plan PostgreSQL chooses for [`KNN_SQL`] (to show it is an index scan).
pub fn postgis_plan(client: &mut postgres::Client, at: LatLng) -> Result<String, postgres::Error> {
    let sql = KNN_SQL.replace("$1", &at.lng().to_string()).replace("$2", &at.lat().to_string());
    let rows = client.query(&format!("EXPLAIN {sql}"), &[])?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0).trim().to_string()).collect::<Vec<_>>().join("; "))
}

/// PostGIS's answers over one connection, with a prepared statement.
pub fn postgis(client: &mut postgres::Client, city: &City) -> Result<Answers, postgres::Error> {
    let statement = client.prepare(KNN_SQL)?;
    let mut failure = None;
    let answers = timed(&city.queries, |q| match client.query(&statement, &[&q.lng(), &q.lat()]) {
        Ok(rows) => rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect(),
        Err(e) => {
            failure.get_or_insert(e);
            Vec::new()
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(answers),
    }
}

/// How a peer's answers compare with dispatch's.
pub struct Agreement {
    /// Queries compared.
    pub queries: usize,
    /// Queries whose set of ids differs from dispatch's.
    pub differing_queries: usize,
    /// Ids a peer returned that dispatch did not, over all queries.
    pub differing_ids: usize,
    /// Of those ids, the largest excess of their (haversine) distance over dispatch's 10th, m:
    /// how much nearer a driver the peer missed, at worst.
    pub worst_excess_m: f64,
}

/// Compares `peer` with `dispatch` query by query.
pub fn agreement(city: &City, dispatch: &Answers, peer: &Answers) -> Agreement {
    let mut out = Agreement { queries: 0, differing_queries: 0, differing_ids: 0, worst_excess_m: 0.0 };
    let at = |id: u64| city.drivers[(id - 1) as usize].at;
    for ((q, ours), theirs) in city.queries.iter().zip(&dispatch.ids).zip(&peer.ids) {
        out.queries += 1;
        let ours_set: HashSet<u64> = ours.iter().copied().collect();
        let extra: Vec<u64> = theirs.iter().copied().filter(|id| !ours_set.contains(id)).collect();
        if extra.is_empty() && ours.len() == theirs.len() {
            continue;
        }
        out.differing_queries += 1;
        out.differing_ids += extra.len().max(ours.len().saturating_sub(theirs.len()));
        let last = ours.last().map_or(0.0, |id| haversine_m(*q, at(*id)));
        for id in extra {
            out.worst_excess_m = out.worst_excess_m.max(haversine_m(*q, at(id)) - last);
        }
    }
    out
}

/// The median round trip of a trivial request (`f` does one), for the notes: what a peer pays
/// for the network before it does any work.
pub fn round_trip(mut f: impl FnMut()) -> Duration {
    for _ in 0..WARMUP {
        f();
    }
    let samples = (0..2_000)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    Latencies::new(samples).quantile(0.5)
}
