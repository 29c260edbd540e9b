//! Prefix scans: both orders, cursors across pages, prefix isolation, empty results.

use super::super::{Order, Page, Scan, Store, StoreError, key};
use super::{TRIPS, at, scratch};

/// Riders 1..=3, each with trips at times 100, 200, ... (`count` of them), keyed
/// `rider ‖ rev(time) ‖ trip` so that ascending is newest first.
fn history(count: u64) -> (tempfile::TempDir, Store) {
    let (dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    let mut checkpoint = at(1);
    for rider in 1..=3u64 {
        for n in 1..=count {
            let time = n * 100;
            let trip = rider * 1000 + n;
            let row_key = key::concat(&[&key::u64_be(rider), &key::rev_u64_be(time), &key::u64_be(trip)]);
            checkpoint.puts.push((TRIPS, row_key, format!("rider {rider} time {time}").into_bytes()));
        }
    }
    store.commit(&checkpoint).unwrap();
    (dir, store)
}

fn times(page: &Page) -> Vec<u64> {
    page.rows
        .iter()
        .map(|(k, _)| {
            let (_, rest) = key::take_u64_be(k).unwrap();
            key::take_rev_u64_be(rest).unwrap().0
        })
        .collect()
}

/// Every page of `scan`, following the cursors.
fn pages(store: &Store, scan: Scan) -> Vec<Page> {
    let mut out = Vec::new();
    let mut scan = scan;
    loop {
        let page = store.scan(TRIPS, &scan).unwrap();
        let next = page.next.clone();
        out.push(page);
        match next {
            Some(cursor) => scan = scan.after(Some(cursor)),
            None => return out,
        }
    }
}

#[test]
fn newest_first_pages_follow_each_other_without_gaps_or_repeats() {
    let (_dir, store) = history(7);
    let pages = pages(&store, Scan::new(key::u64_be(2), 3));
    let seen: Vec<Vec<u64>> = pages.iter().map(times).collect();
    assert_eq!(seen, vec![vec![700, 600, 500], vec![400, 300, 200], vec![100]]);
    assert!(pages.iter().flat_map(|p| &p.rows).all(|(_, v)| v.starts_with(b"rider 2 ")));
}

#[test]
fn oldest_first_is_the_descending_scan_of_the_same_keys() {
    let (_dir, store) = history(7);
    let pages = pages(&store, Scan::new(key::u64_be(3), 4).order(Order::Descending));
    let seen: Vec<Vec<u64>> = pages.iter().map(times).collect();
    assert_eq!(seen, vec![vec![100, 200, 300, 400], vec![500, 600, 700]]);
}

#[test]
fn an_exact_last_page_has_no_next_and_no_empty_page_follows() {
    let (_dir, store) = history(6);
    for order in [Order::Ascending, Order::Descending] {
        let pages = pages(&store, Scan::new(key::u64_be(1), 3).order(order));
        assert_eq!(pages.iter().map(|p| p.rows.len()).collect::<Vec<_>>(), vec![3, 3], "{order:?}");
    }
}

#[test]
fn a_cursor_cannot_leave_its_prefix() {
    let (_dir, store) = history(3);
    // A cursor from rider 1's pages, replayed against rider 2's prefix.
    let rider1 = store.scan(TRIPS, &Scan::new(key::u64_be(1), 1)).unwrap();
    let foreign = Scan::new(key::u64_be(2), 10).after(rider1.next.clone());
    assert!(matches!(store.scan(TRIPS, &foreign), Err(StoreError::InvalidScan { .. })));
    // Cursors inside the prefix but past its rows, in either direction, stay inside.
    for order in [Order::Ascending, Order::Descending] {
        for cursor in [key::u64_be(2).to_vec(), key::concat(&[&key::u64_be(2), &[0xff; 20]])] {
            let scan = Scan::new(key::u64_be(2), 10).order(order).after(Some(cursor));
            let page = store.scan(TRIPS, &scan).unwrap();
            assert!(page.rows.iter().all(|(k, _)| k.starts_with(&key::u64_be(2))), "{order:?}");
        }
    }
    // The prefix itself as a cursor: ascending sees the whole prefix, descending nothing.
    let up = Scan::new(key::u64_be(2), 10).after(Some(key::u64_be(2).to_vec()));
    assert_eq!(store.scan(TRIPS, &up).unwrap().rows.len(), 3);
    let down = up.order(Order::Descending);
    assert_eq!(store.scan(TRIPS, &down).unwrap(), Page::default());
}

#[test]
fn empty_results() {
    let (_dir, store) = history(2);
    assert_eq!(store.scan(TRIPS, &Scan::new(key::u64_be(9), 10)).unwrap(), Page::default());
    let never_written = super::super::TableName::new("never_written");
    assert_eq!(store.scan(never_written, &Scan::new(Vec::new(), 10)).unwrap(), Page::default());
    let (_dir, path) = scratch();
    let empty = Store::open(path).unwrap();
    assert_eq!(empty.scan(TRIPS, &Scan::new(Vec::new(), 10).order(Order::Descending)).unwrap(), Page::default());
}

#[test]
fn the_whole_table_and_limits() {
    let (_dir, store) = history(4);
    let all = pages(&store, Scan::new(Vec::new(), 5));
    assert_eq!(all.iter().map(|p| p.rows.len()).sum::<usize>(), 12);
    let keys: Vec<&Vec<u8>> = all.iter().flat_map(|p| p.rows.iter().map(|(k, _)| k)).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "ascending across pages");
    assert!(matches!(store.scan(TRIPS, &Scan::new(Vec::new(), 0)), Err(StoreError::InvalidScan { .. })));
    assert!(matches!(store.scan(TRIPS, &Scan::new(Vec::new(), 1001)), Err(StoreError::InvalidScan { .. })));
}

#[test]
fn prefixes_ending_in_ff_are_bounded_too() {
    let (_dir, path) = scratch();
    let store = Store::open(&path).unwrap();
    let mut checkpoint = at(1);
    for row_key in [vec![1, 0xff], vec![1, 0xff, 0], vec![1, 0xff, 0xff, 9], vec![2], vec![2, 0]] {
        checkpoint.puts.push((TRIPS, row_key, Vec::new()));
    }
    store.commit(&checkpoint).unwrap();
    for order in [Order::Ascending, Order::Descending] {
        let page = store.scan(TRIPS, &Scan::new(vec![1, 0xff], 10).order(order)).unwrap();
        assert_eq!(page.rows.len(), 3, "{order:?}");
        let page = store.scan(TRIPS, &Scan::new(vec![0xff], 10).order(order)).unwrap();
        assert!(page.rows.is_empty());
    }
}
