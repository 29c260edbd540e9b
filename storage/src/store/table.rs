//! Table names.
//!
//! Owns [`TableName`], the only way a caller names a table, and the rule for names
//! found in a file. Guarantees: a name is 1 to [`TABLE_NAME_BYTES_MAX`] bytes of
//! `[a-z0-9_]` and never the store's own [`META`] table, so a caller cannot read or
//! overwrite the magic, the format or the checkpoint through the row API.

use redb::TableDefinition;

use super::StoreError;

/// Longest table name: names are code constants (`trips_by_rider`), not data.
pub const TABLE_NAME_BYTES_MAX: usize = 64;

/// The store's own table: magic, format version, checkpoint LSN and state.
pub(crate) const META: &str = "meta";

/// Every table holds byte-string keys and values.
pub(crate) type Bytes<'name> = TableDefinition<'name, &'static [u8], &'static [u8]>;

/// A table opened for reading.
pub(crate) type ReadRows = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// A table opened for writing inside the write transaction `'txn`.
pub(crate) type WriteRows<'txn> = redb::Table<'txn, &'static [u8], &'static [u8]>;

/// The definition of the table called `name`.
pub(crate) const fn definition(name: &str) -> Bytes<'_> {
    TableDefinition::new(name)
}

/// The name of a caller's table: `[a-z0-9_]`, 1 to 64 bytes, not `meta`.
///
/// Declare names as constants, so a bad one fails the build:
/// ```
/// use dispatch_storage::store::TableName;
/// const TRIPS_BY_RIDER: TableName = TableName::new("trips_by_rider");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName(&'static str);

impl TableName {
    /// The name `name`.
    ///
    /// # Panics
    /// If `name` breaks the rules above — at compile time when called in a `const`,
    /// which is how table names are meant to be declared. [`TableName::try_new`]
    /// returns an error instead.
    pub const fn new(name: &'static str) -> TableName {
        match check(name) {
            Ok(()) => TableName(name),
            Err(_) => panic!("invalid table name: use [a-z0-9_], 1 to 64 bytes, not `meta`"),
        }
    }

    /// The name `name`, or why it is refused.
    pub fn try_new(name: &'static str) -> Result<TableName, StoreError> {
        check(name).map(|()| TableName(name)).map_err(|reason| invalid(name, reason))
    }

    /// The name as a string.
    pub const fn as_str(self) -> &'static str {
        self.0
    }

    pub(crate) const fn definition(self) -> Bytes<'static> {
        definition(self.0)
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Checks a name read from a file: the store's own [`META`] or a valid caller name.
pub(crate) fn check_stored(name: &str) -> Result<(), StoreError> {
    if name == META { Ok(()) } else { check(name).map_err(|reason| invalid(name, reason)) }
}

fn invalid(name: &str, reason: &'static str) -> StoreError {
    StoreError::InvalidTableName { name: name.chars().take(TABLE_NAME_BYTES_MAX + 8).collect(), reason }
}

const fn check(name: &str) -> Result<(), &'static str> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err("empty");
    }
    if bytes.len() > TABLE_NAME_BYTES_MAX {
        return Err("longer than 64 bytes");
    }
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if !(byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_') {
            return Err("only a-z, 0-9 and _ are allowed");
        }
        at += 1;
    }
    if is_meta(bytes) {
        return Err("`meta` is the store's own table");
    }
    Ok(())
}

const fn is_meta(bytes: &[u8]) -> bool {
    matches!(bytes, b"meta")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        const TRIPS: TableName = TableName::new("trips_by_rider_2");
        assert_eq!(TRIPS.as_str(), "trips_by_rider_2");
        for bad in ["", "Trips", "trips-by-rider", "trips by rider", "meta", "é", &*"x".repeat(65).leak()] {
            assert!(TableName::try_new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(TableName::try_new(&*"x".repeat(64).leak()).is_ok());
        assert!(TableName::try_new("metadata").is_ok());
        assert!(check_stored("meta").is_ok());
        assert!(check_stored("Meta").is_err());
    }

    #[test]
    #[should_panic(expected = "invalid table name")]
    fn new_panics_on_a_bad_name_outside_a_const() {
        let name: &'static str = "no-dashes";
        let _ = TableName::new(std::hint::black_box(name));
    }
}
