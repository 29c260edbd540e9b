//! The staff's user indexes (`GET /v1/admin/users`): every user newest first, by role and
//! by status, and the search keys — a normalised name (prefix search) and the phone's
//! digits reversed (suffix search).
//!
//! Owns [`UserIndex`] (persistent ordered sets, shared with the view like the users map:
//! an O(1) clone) and the normalisations [`name_key`] and [`phone_key`].
//!
//! Guarantees:
//! - the index is a function of the users alone: [`UserIndex::replace`] is called with a
//!   user as it was and as it is by every command that creates or changes one (the state)
//!   and by every publish of a changed user (the view), and [`UserIndex::of`] rebuilds it
//!   when a state is read back; `State::check_invariants` compares it with a rebuild;
//! - every query walks an ordered set from its start key and stops after a page: its cost
//!   is O(log n + page) for a filter the index answers alone; a filter it answers only in
//!   part (a search with a role or a status) reads the search's candidates and keeps the
//!   matching ones, O(log n + candidates read), bounded by [`MAX_CANDIDATES`] per page;
//! - an erased user has no name or phone key (its personal data is gone, and its old
//!   number may sign up again as someone else).

use std::cmp::Reverse;
use std::sync::Arc;

use crate::clock::Timestamp;
use crate::id::UserId;
use crate::user::{Role, User, UserStatus};

/// Most index entries one page of a partly-answered search reads (a search with a role
/// or status filter): a page may come back short, with a cursor to go on from.
pub const MAX_CANDIDATES: usize = 10_000;

/// The lowest user id (a range's start under a key).
const MIN_ID: UserId = UserId::from_nonzero(std::num::NonZeroU64::MIN);

/// Shortest phone suffix searched (fewer digits would name too many people).
pub const MIN_PHONE_DIGITS: usize = 4;

/// The search key of a name: Unicode lower case (`char::to_lowercase`, which maps every
/// character, not only ASCII), leading and trailing white space dropped and every run of
/// inner white space made one space. No other folding (accents, scripts, compatibility
/// forms) is done: `Émile` is found by `ém`, not by `em`.
pub fn name_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// The search key of a phone number: its digits, last first (so that a suffix of the
/// number is a prefix of the key).
pub fn phone_key(phone: &str) -> String {
    phone.bytes().rev().filter(u8::is_ascii_digit).map(char::from).collect()
}

/// What a list page asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserQuery {
    /// Every user (or those of a role, or a status), newest first.
    Newest,
    /// Users whose normalised name starts with this (already normalised) prefix, in the
    /// order of (normalised name, id).
    NamePrefix(String),
    /// Users whose phone ends with these digits (given in reading order), in the order
    /// of (reversed digits, id).
    PhoneSuffix(String),
}

/// Where a page ends (the next page starts strictly after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCursor {
    /// A position in a newest-first list.
    Newest(Timestamp, UserId),
    /// A position in a search: the key and the id.
    Key(String, UserId),
}

/// The users' indexes (see the module's guarantees).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserIndex {
    by_created: imbl::OrdSet<(Reverse<Timestamp>, UserId)>,
    by_role: imbl::OrdSet<(Role, Reverse<Timestamp>, UserId)>,
    /// Blocked and erased users only (the few); `active` is answered by the newest-first
    /// set, skipping the few others.
    by_status: imbl::OrdSet<(UserStatus, Reverse<Timestamp>, UserId)>,
    by_name: imbl::OrdSet<(String, UserId)>,
    by_phone: imbl::OrdSet<(String, UserId)>,
}

impl UserIndex {
    /// The index of `users`: O(n log n), when a state is read back.
    pub fn of<'a>(users: impl IntoIterator<Item = &'a Arc<User>>) -> Self {
        let mut index = UserIndex::default();
        for u in users {
            index.replace(None, u);
        }
        index
    }

    /// `new` replaces `old` (the same user as it was, or `None` when it is new).
    pub fn replace(&mut self, old: Option<&User>, new: &User) {
        if let Some(old) = old {
            let same = old.id == new.id
                && old.created_at == new.created_at
                && old.role == new.role
                && old.status() == new.status()
                && old.name == new.name
                && old.phone == new.phone;
            if same {
                // Nothing indexed changed (a rating, a token generation): no work, no
                // allocation — the common case of a user's change.
                return;
            }
            self.by_created.remove(&(Reverse(old.created_at), old.id));
            self.by_role.remove(&(old.role, Reverse(old.created_at), old.id));
            self.by_status.remove(&(old.status(), Reverse(old.created_at), old.id));
            if let Some(k) = Self::name_of(old) {
                self.by_name.remove(&(k, old.id));
            }
            if let Some(k) = Self::phone_of(old) {
                self.by_phone.remove(&(k, old.id));
            }
        }
        self.by_created.insert((Reverse(new.created_at), new.id));
        self.by_role.insert((new.role, Reverse(new.created_at), new.id));
        if new.status() != UserStatus::Active {
            self.by_status.insert((new.status(), Reverse(new.created_at), new.id));
        }
        if let Some(k) = Self::name_of(new) {
            self.by_name.insert((k, new.id));
        }
        if let Some(k) = Self::phone_of(new) {
            self.by_phone.insert((k, new.id));
        }
    }

    fn name_of(u: &User) -> Option<String> {
        (u.erased_at.is_none()).then(|| name_key(&u.name))
    }

    fn phone_of(u: &User) -> Option<String> {
        (u.erased_at.is_none() && !u.phone.is_empty()).then(|| phone_key(&u.phone))
    }

    /// Users indexed.
    pub fn len(&self) -> usize {
        self.by_created.len()
    }

    /// Whether no user is indexed.
    pub fn is_empty(&self) -> bool {
        self.by_created.is_empty()
    }

    /// Up to `limit` users answering `query`, of `role` and `status` when given, strictly
    /// after `after`; with the cursor of the last entry read when the page may go on
    /// (`None`: nothing further). `user` looks a user up by id (the state's or the view's
    /// map). Costs: see the module's guarantees.
    pub fn page<'a>(
        &self,
        user: impl Fn(UserId) -> Option<&'a Arc<User>>,
        query: &UserQuery,
        role: Option<Role>,
        status: Option<UserStatus>,
        after: Option<&UserCursor>,
        limit: usize,
    ) -> (Vec<Arc<User>>, Option<UserCursor>) {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        // The first position under a key: the newest time sorts first.
        const NEWEST: Reverse<Timestamp> = Reverse(Timestamp::from_millis(i64::MAX));
        let limit = limit.max(1);
        let keep = |u: &User| role.is_none_or(|r| u.role == r) && status.is_none_or(|s| u.status() == s);
        match query {
            UserQuery::Newest => {
                let after = match after {
                    Some(UserCursor::Newest(at, id)) => Some((Reverse(*at), *id)),
                    _ => None,
                };
                // Which set answers: a status other than active has its own, a role its
                // own; a role with a status reads the status's (the few) and filters.
                let ids: Box<dyn Iterator<Item = (Timestamp, UserId)>> = match (role, status) {
                    (_, Some(s)) if s != UserStatus::Active => {
                        let start = after.map_or(Included((s, NEWEST, MIN_ID)), |(t, id)| Excluded((s, t, id)));
                        Box::new(
                            self.by_status
                                .range((start, Unbounded))
                                .take_while(move |(st, _, _)| *st == s)
                                .map(|(_, Reverse(t), id)| (*t, *id)),
                        )
                    }
                    (Some(r), _) => {
                        let start = after.map_or(Included((r, NEWEST, MIN_ID)), |(t, id)| Excluded((r, t, id)));
                        Box::new(
                            self.by_role
                                .range((start, Unbounded))
                                .take_while(move |(ro, _, _)| *ro == r)
                                .map(|(_, Reverse(t), id)| (*t, *id)),
                        )
                    }
                    (None, _) => {
                        let start = after.map_or(Unbounded, Excluded);
                        Box::new(self.by_created.range((start, Unbounded)).map(|(Reverse(t), id)| (*t, *id)))
                    }
                };
                walk(ids, |at, id| UserCursor::Newest(*at, id), &user, keep, limit)
            }
            UserQuery::NamePrefix(prefix) | UserQuery::PhoneSuffix(prefix) => {
                let (set, prefix) = match query {
                    UserQuery::PhoneSuffix(digits) => (&self.by_phone, digits.chars().rev().collect::<String>()),
                    _ => (&self.by_name, prefix.clone()),
                };
                let start = match after {
                    Some(UserCursor::Key(k, id)) => Excluded((k.clone(), *id)),
                    _ => Included((prefix.clone(), MIN_ID)),
                };
                let ids = set.range((start, Unbounded)).take_while(|(k, _)| k.starts_with(&prefix));
                walk(ids.map(|(k, id)| (k, *id)), |k, id| UserCursor::Key((*k).clone(), id), &user, keep, limit)
            }
        }
    }
}
/// Walks index entries (a key and its user) in order: the users that pass `keep`, up to
/// `limit`, reading at most [`MAX_CANDIDATES`] entries; with the cursor (`cursor` of the
/// last entry read) when the page may go on (`None`: the entries ran out).
fn walk<'a, K>(
    entries: impl Iterator<Item = (K, UserId)>,
    cursor: impl Fn(&K, UserId) -> UserCursor,
    user: &impl Fn(UserId) -> Option<&'a Arc<User>>,
    keep: impl Fn(&User) -> bool,
    limit: usize,
) -> (Vec<Arc<User>>, Option<UserCursor>) {
    let mut out = Vec::new();
    for (read, (k, id)) in entries.enumerate() {
        if let Some(u) = user(id)
            && keep(u)
        {
            out.push(Arc::clone(u));
            if out.len() >= limit {
                return (out, Some(cursor(&k, id)));
            }
        }
        if read + 1 >= MAX_CANDIDATES {
            return (out, Some(cursor(&k, id)));
        }
    }
    (out, None)
}
