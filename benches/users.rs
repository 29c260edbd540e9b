//! Staff's user search over 1,000,000 users (issue 20: U), answered from the user
//! indexes (`dispatch_core::user_index`), as `GET /v1/admin/users` does:
//!
//! - `users/name_prefix`: a page of 50 users whose name starts with a common prefix
//!   (`"amal h"`: about 1 user in 200 matches);
//! - `users/phone_suffix`: a page of users whose phone ends in 6 given digits;
//! - `users/phone_suffix4`: the same with 4 digits (about 100 users match);
//! - `users/name_prefix_role`: the name search with a role filter (drivers are 1 in 10:
//!   the index's candidates are read and filtered);
//! - `users/newest_role`: the newest 50 drivers.
//!
//! Target: under 5 ms per search (they are microseconds). Memory of the indexes is printed
//! once (resident growth while they are built).
//!
//! Run: `cargo bench --bench users`
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use dispatch_core::clock::Timestamp;
use dispatch_core::user::{DEFAULT_LANGUAGE, User};
use dispatch_core::user_index::{UserIndex, UserQuery};
use dispatch_core::{Role, UserId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const USERS: u64 = 1_000_000;
const FIRST: [&str; 20] = [
    "Amal", "Omar", "Mona", "Ahmed", "Sara", "Youssef", "Nour", "Karim", "Hana", "Mahmoud", "Laila", "Tarek", "Dina",
    "Mostafa", "Rania", "Hassan", "Salma", "Khaled", "Yasmin", "Ali",
];
const LAST: [&str; 10] = ["Hassan", "Farouk", "Zaki", "Saleh", "Nabil", "Fahmy", "Gamal", "Fouad", "Kamel", "Adel"];

fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The users, in a B-tree by id like the view's (a std one: the look-up the index makes per hit).
fn users() -> std::collections::BTreeMap<UserId, Arc<User>> {
    let mut rng = StdRng::seed_from_u64(7);
    (1..=USERS)
        .map(|i| {
            let role = if i % 10 == 0 { Role::Driver } else { Role::Rider };
            let name = format!(
                "{} {} {}",
                FIRST[rng.random_range(0..FIRST.len())],
                LAST[rng.random_range(0..LAST.len())],
                i % 97
            );
            let u = User {
                id: UserId::from_raw(dispatch_core::id::mix64(i)).unwrap(),
                role,
                name,
                phone: format!("+2010{:08}", rng.random_range(0..100_000_000u64)),
                vehicle: None,
                token_generation: 0,
                suspended: false,
                created_at: Timestamp::from_millis(1_700_000_000_000 + i as i64 * 1_000),
                rating: Default::default(),
                email: None,
                language: DEFAULT_LANGUAGE.into(),
                default_payment_method: None,
                staff_role: None,
                blocked: None,
                erased_at: None,
            };
            (u.id, Arc::new(u))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let users = users();
    let before = resident_bytes();
    let index = UserIndex::of(users.values());
    if let (Some(a), Some(b)) = (before, resident_bytes()) {
        println!("user indexes of {USERS} users: {} MiB resident ({} B a user)", (b - a) >> 20, (b - a) / USERS as i64);
    }
    let look = |id: UserId| users.get(&id);
    let mut g = c.benchmark_group("users");
    let name = UserQuery::NamePrefix("amal h".into());
    let n = index.page(look, &name, None, None, None, 50).0.len();
    assert_eq!(n, 50, "the prefix matches a full page");
    g.bench_function("name_prefix", |b| b.iter(|| black_box(index.page(look, &name, None, None, None, 50))));
    let phone = UserQuery::PhoneSuffix(users.values().nth(12_345).unwrap().phone[8..].to_owned());
    assert!(!index.page(look, &phone, None, None, None, 50).0.is_empty());
    g.bench_function("phone_suffix", |b| b.iter(|| black_box(index.page(look, &phone, None, None, None, 50))));
    let phone4 = UserQuery::PhoneSuffix("4567".into());
    g.bench_function("phone_suffix4", |b| b.iter(|| black_box(index.page(look, &phone4, None, None, None, 50))));
    let role = Some(Role::Driver);
    g.bench_function("name_prefix_role", |b| b.iter(|| black_box(index.page(look, &name, role, None, None, 50))));
    let newest = UserQuery::Newest;
    g.bench_function("newest_role", |b| b.iter(|| black_box(index.page(look, &newest, role, None, None, 50))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
