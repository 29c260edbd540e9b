//! Prefix scans with cursor paging.
//!
//! Owns [`Scan`], [`Order`] and [`Page`], and the translation of a scan into the key
//! range it reads. Guarantees:
//! - a scan reads only keys that start with its prefix, whatever cursor it is given:
//!   a cursor is caller input (it comes back from outside in an HTTP query), so one
//!   that does not start with the prefix is refused, and the range is bounded by the
//!   prefix on both sides in any case;
//! - the cursor is exclusive: a page continues right after the key it names, so
//!   paging with [`Page::next`] visits every row once, in order, as long as the rows
//!   do not change between pages (a row added behind the cursor is not revisited);
//! - a page holds at most [`SCAN_LIMIT_MAX`] rows and, past its first row, at most
//!   [`SCAN_BYTES_MAX`] bytes; [`Page::next`] is set exactly when at least one more
//!   row follows.

use std::ops::Bound;

use super::{KEY_BYTES_MAX, StoreError, VALUE_BYTES_MAX, key};

/// Most rows one scan returns: a page of history for an API answer.
pub const SCAN_LIMIT_MAX: usize = 1000;

/// Most key and value bytes one page holds beyond its first row (which may be a
/// single large value): bounds the memory of an answer whatever `limit` says.
pub const SCAN_BYTES_MAX: usize = 64 * 1024 * 1024;

const _: () = assert!(KEY_BYTES_MAX + VALUE_BYTES_MAX <= SCAN_BYTES_MAX, "a page must hold at least one row");

/// The key range a scan reads: from a bound within the scan's own keys to an owned end.
pub(crate) type KeyRange<'scan> = (Bound<&'scan [u8]>, Bound<Vec<u8>>);

/// The direction of a scan, in byte order of the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Smallest key first (newest first for keys built with [`key::rev_u64_be`]).
    Ascending,
    /// Largest key first.
    Descending,
}

/// One page of a prefix scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Only keys starting with these bytes; empty for the whole table.
    pub prefix: Vec<u8>,
    /// Continue after this key (exclusive): the [`Page::next`] of the previous page.
    /// Must start with `prefix`.
    pub after: Option<Vec<u8>>,
    /// At most this many rows, 1 to [`SCAN_LIMIT_MAX`].
    pub limit: usize,
    /// Which end to start from.
    pub order: Order,
}

impl Scan {
    /// The first `limit` rows under `prefix`, ascending.
    pub fn new(prefix: impl Into<Vec<u8>>, limit: usize) -> Scan {
        Scan { prefix: prefix.into(), after: None, limit, order: Order::Ascending }
    }

    /// The same scan in `order`.
    pub fn order(mut self, order: Order) -> Scan {
        self.order = order;
        self
    }

    /// The same scan continuing after `cursor` (`None` starts from the beginning).
    pub fn after(mut self, cursor: Option<Vec<u8>>) -> Scan {
        self.after = cursor;
        self
    }

    /// Checks the scan and returns the key range it reads, or `None` when that range
    /// is empty.
    pub(crate) fn range(&self) -> Result<Option<KeyRange<'_>>, StoreError> {
        if self.limit == 0 || self.limit > SCAN_LIMIT_MAX {
            return Err(StoreError::InvalidScan { reason: "limit must be 1 to 1000" });
        }
        if self.prefix.len() > KEY_BYTES_MAX {
            return Err(StoreError::TooLarge { what: "scan prefix", size: self.prefix.len(), max: KEY_BYTES_MAX });
        }
        let end = key::prefix_end(&self.prefix).map_or(Bound::Unbounded, Bound::Excluded);
        let Some(after) = &self.after else {
            return Ok(Some((Bound::Included(self.prefix.as_slice()), end)));
        };
        if after.len() > KEY_BYTES_MAX {
            return Err(StoreError::TooLarge { what: "scan cursor", size: after.len(), max: KEY_BYTES_MAX });
        }
        if !after.starts_with(&self.prefix) {
            return Err(StoreError::InvalidScan { reason: "the cursor does not belong to this prefix" });
        }
        Ok(match self.order {
            // `after` starts with the prefix, so it is below `end`: the range stays inside.
            Order::Ascending => Some((Bound::Excluded(after.as_slice()), end)),
            // Keys under the prefix and below `after`: none when `after` is the prefix itself.
            Order::Descending if *after == self.prefix => None,
            Order::Descending => Some((Bound::Included(self.prefix.as_slice()), Bound::Excluded(after.clone()))),
        })
    }
}

/// The rows of one scan and where the next page starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// `(key, value)` in the scan's order.
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
    /// The last key of `rows` when more rows follow, to pass as [`Scan::after`];
    /// `None` when this page is the last.
    pub next: Option<Vec<u8>>,
}

/// Collects a page from rows in scan order, reading at most one row beyond it.
pub(crate) fn collect<E>(scan: &Scan, rows: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), E>>) -> Result<Page, E> {
    let mut page = Page::default();
    let mut bytes = 0usize;
    for row in rows {
        let (key, value) = row?;
        let full = page.rows.len() == scan.limit
            || (!page.rows.is_empty() && bytes + key.len() + value.len() > SCAN_BYTES_MAX);
        if full {
            page.next = page.rows.last().map(|(key, _)| key.clone());
            break;
        }
        bytes += key.len() + value.len();
        page.rows.push((key, value));
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_foreign_cursors_are_refused() {
        assert!(Scan::new(b"a".to_vec(), 0).range().is_err());
        assert!(Scan::new(b"a".to_vec(), SCAN_LIMIT_MAX + 1).range().is_err());
        assert!(Scan::new(b"a".to_vec(), SCAN_LIMIT_MAX).range().is_ok());
        let escape = Scan::new(b"rider1".to_vec(), 10).after(Some(b"rider0zzz".to_vec()));
        assert!(matches!(escape.range(), Err(StoreError::InvalidScan { .. })));
        let long = Scan::new(Vec::new(), 10).after(Some(vec![0; KEY_BYTES_MAX + 1]));
        assert!(matches!(long.range(), Err(StoreError::TooLarge { .. })));
    }

    #[test]
    fn ranges_stay_inside_the_prefix() {
        let scan = Scan::new(vec![1, 0xff], 10).after(Some(vec![1, 0xff, 7]));
        let (start, end) = scan.range().unwrap().unwrap();
        assert_eq!((start, end), (Bound::Excluded(&[1, 0xff, 7][..]), Bound::Excluded(vec![2])));
        let scan = scan.order(Order::Descending);
        let (start, end) = scan.range().unwrap().unwrap();
        assert_eq!((start, end), (Bound::Included(&[1, 0xff][..]), Bound::Excluded(vec![1, 0xff, 7])));
        let at_prefix = Scan::new(vec![1], 10).order(Order::Descending).after(Some(vec![1]));
        assert_eq!(at_prefix.range().unwrap(), None);
        let whole = Scan::new(Vec::new(), 10);
        assert_eq!(whole.range().unwrap(), Some((Bound::Included(&[][..]), Bound::Unbounded)));
    }

    #[test]
    fn next_is_set_only_when_a_row_follows() {
        let rows = |n: u8| (0..n).map(|i| Ok::<_, ()>((vec![i], vec![i])));
        let scan = Scan::new(Vec::new(), 3);
        assert_eq!(collect(&scan, rows(3)).unwrap().next, None);
        let page = collect(&scan, rows(4)).unwrap();
        assert_eq!((page.rows.len(), page.next), (3, Some(vec![2])));
        assert_eq!(collect(&scan, rows(0)).unwrap(), Page::default());
    }

    #[test]
    fn a_page_stops_at_its_byte_budget_but_holds_at_least_one_row() {
        let big = VALUE_BYTES_MAX;
        let rows = (0..10u8).map(|i| Ok::<_, ()>((vec![i], vec![0; big])));
        let page = collect(&Scan::new(Vec::new(), 10), rows).unwrap();
        assert_eq!(page.rows.len(), SCAN_BYTES_MAX / (big + 1));
        assert_eq!(page.next, page.rows.last().map(|(key, _)| key.clone()));
    }
}
