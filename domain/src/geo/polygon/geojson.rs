//! How a [`ZoneGeometry`] is written and read: as the GeoJSON it came from in human-readable
//! formats (JSON), as raw `[lng, lat]` rings in binary ones (postcard, the WAL). Both ways of
//! reading validate again. A GeoJSON body is read with a bound on its nesting and on the count
//! of its values, so a hostile body is refused before it is all in memory.

use std::fmt;

use geo::{LineString, MultiPolygon, Polygon};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{GeometryError, GeometryKind, MAX_POSITIONS, MAX_RINGS, Ring, ZoneGeometry};

/// Values (numbers and arrays) a `coordinates` member may hold while it is being read: enough
/// for [`MAX_POSITIONS`] positions with altitude and [`MAX_RINGS`] rings, and no more, so a
/// hostile body is refused before it is stored.
const MAX_COORDINATE_VALUES: usize = 4 * MAX_POSITIONS + 2 * MAX_RINGS + 1;

/// `MultiPolygon` coordinates are arrays four deep; nothing valid is deeper.
const MAX_NESTING: usize = 4;

struct RingSer<'a>(&'a LineString<f64>);

impl Serialize for RingSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.0.len()))?;
        for c in &self.0.0 {
            seq.serialize_element(&[c.x, c.y])?;
        }
        seq.end()
    }
}

struct PolygonSer<'a>(&'a Polygon<f64>);

impl Serialize for PolygonSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(1 + self.0.interiors().len()))?;
        seq.serialize_element(&RingSer(self.0.exterior()))?;
        for hole in self.0.interiors() {
            seq.serialize_element(&RingSer(hole))?;
        }
        seq.end()
    }
}

struct PolygonsSer<'a>(&'a MultiPolygon<f64>);

impl Serialize for PolygonsSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.0.len()))?;
        for polygon in self.0.iter() {
            seq.serialize_element(&PolygonSer(polygon))?;
        }
        seq.end()
    }
}

/// The binary form: raw `[lng, lat]` rings, validated again when read.
#[derive(Serialize, Deserialize)]
pub(super) enum Compact {
    Polygon(Vec<Ring>),
    MultiPolygon(Vec<Vec<Ring>>),
}

impl Serialize for ZoneGeometry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut st = s.serialize_struct("Geometry", 2)?;
            st.serialize_field("type", self.kind.name())?;
            match self.kind {
                GeometryKind::Polygon => match self.shape.0.first() {
                    Some(p) => st.serialize_field("coordinates", &PolygonSer(p))?,
                    None => st.serialize_field("coordinates", &[(); 0])?,
                },
                GeometryKind::MultiPolygon => st.serialize_field("coordinates", &PolygonsSer(&self.shape))?,
            }
            st.end()
        } else {
            let polygons: Vec<Vec<Ring>> = self
                .raw_rings()
                .map(|rings| rings.map(|ring| ring.0.iter().map(|c| [c.x, c.y]).collect()).collect())
                .collect();
            match self.kind {
                GeometryKind::Polygon => Compact::Polygon(polygons.into_iter().next().unwrap_or_default()),
                GeometryKind::MultiPolygon => Compact::MultiPolygon(polygons),
            }
            .serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for ZoneGeometry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            d.deserialize_map(GeoJsonVisitor)
        } else {
            let (kind, polygons) = match Compact::deserialize(d)? {
                Compact::Polygon(rings) => (GeometryKind::Polygon, vec![rings]),
                Compact::MultiPolygon(polygons) => (GeometryKind::MultiPolygon, polygons),
            };
            ZoneGeometry::from_rings(kind, polygons).map_err(de::Error::custom)
        }
    }
}

struct GeoJsonVisitor;

impl<'de> Visitor<'de> for GeoJsonVisitor {
    type Value = ZoneGeometry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a GeoJSON Polygon or MultiPolygon object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ZoneGeometry, A::Error> {
        let mut kind: Option<String> = None;
        let mut coordinates: Option<Nested> = None;
        let budget = std::cell::Cell::new(0usize);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" if kind.is_none() => kind = Some(map.next_value()?),
                "coordinates" if coordinates.is_none() => {
                    coordinates = Some(map.next_value_seed(NestedSeed { depth: 0, budget: &budget })?)
                }
                // RFC 7946 §5: a geometry may carry a bounding box; it is recomputed.
                "bbox" => {
                    map.next_value::<IgnoredAny>()?;
                }
                "type" | "coordinates" => {
                    return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
                }
                other => {
                    return Err(de::Error::unknown_field(other, &["type", "coordinates", "bbox"]));
                }
            }
        }
        let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
        let coordinates = coordinates.ok_or_else(|| de::Error::missing_field("coordinates"))?;
        from_nested(&kind, coordinates).map_err(de::Error::custom)
    }
}

/// A GeoJSON `coordinates` value read before its `type` is known (members come in any order).
enum Nested {
    Number(f64),
    List(Vec<Nested>),
}

/// Reads a [`Nested`], refusing nesting deeper than a `MultiPolygon`'s and more values than
/// [`MAX_COORDINATE_VALUES`].
struct NestedSeed<'a> {
    depth: usize,
    budget: &'a std::cell::Cell<usize>,
}

impl NestedSeed<'_> {
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        let used = self.budget.get() + 1;
        self.budget.set(used);
        if used > MAX_COORDINATE_VALUES {
            Err(E::custom(GeometryError::TooManyPositions { count: MAX_POSITIONS + 1 }))
        } else {
            Ok(())
        }
    }
}

impl<'de> DeserializeSeed<'de> for NestedSeed<'_> {
    type Value = Nested;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Nested, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NestedSeed<'_> {
    type Value = Nested;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nested arrays of numbers")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Nested, E> {
        self.spend()?;
        Ok(Nested::Number(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Nested, E> {
        self.visit_f64(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Nested, E> {
        self.visit_f64(v as f64)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Nested, A::Error> {
        self.spend()?;
        if self.depth >= MAX_NESTING {
            return Err(de::Error::custom("coordinates are nested deeper than a MultiPolygon's"));
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(NestedSeed { depth: self.depth + 1, budget: self.budget })? {
            items.push(item);
        }
        Ok(Nested::List(items))
    }
}

fn from_nested(kind: &str, coordinates: Nested) -> Result<ZoneGeometry, GeometryError> {
    match kind {
        "Polygon" => {
            let shape = GeometryKind::Polygon;
            let rings = list(coordinates, shape, "coordinates must be an array of rings")?;
            ZoneGeometry::polygon(rings_of(rings, shape)?)
        }
        "MultiPolygon" => {
            let shape = GeometryKind::MultiPolygon;
            let polygons = list(coordinates, shape, "coordinates must be an array of polygons")?;
            let polygons = polygons
                .into_iter()
                .map(|p| rings_of(list(p, shape, "each polygon must be an array of rings")?, shape))
                .collect::<Result<_, _>>()?;
            ZoneGeometry::multi_polygon(polygons)
        }
        other => Err(GeometryError::UnsupportedType { found: other.chars().take(40).collect() }),
    }
}

fn list(value: Nested, kind: GeometryKind, reason: &'static str) -> Result<Vec<Nested>, GeometryError> {
    match value {
        Nested::List(items) => Ok(items),
        Nested::Number(_) => Err(GeometryError::Malformed { kind, reason }),
    }
}

fn rings_of(rings: Vec<Nested>, kind: GeometryKind) -> Result<Vec<Vec<Vec<f64>>>, GeometryError> {
    rings
        .into_iter()
        .map(|ring| {
            list(ring, kind, "each ring must be an array of positions")?
                .into_iter()
                .map(|position| {
                    list(position, kind, "each position must be an array of numbers")?
                        .into_iter()
                        .map(|n| match n {
                            Nested::Number(v) => Ok(v),
                            Nested::List(_) => {
                                Err(GeometryError::Malformed { kind, reason: "a position holds numbers, not arrays" })
                            }
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}
