//! The key-value operations the lease needs, as a trait ([`LeaseKv`]), and an in-memory
//! store ([`MemKv`]) with JetStream KV's revision rules for the model test.
//!
//! Owns the translation between the store and the [`Election`](crate::Election)'s
//! inputs. Guarantees of every implementation: revisions only grow (one counter for the
//! bucket); an update or delete with an expected revision succeeds only if the key's
//! revision (a delete's included) is still that one; a create succeeds only on an absent
//! key.

use std::sync::Mutex;

use crate::election::{LeaseValue, Observed, WriteResult};

/// A key-value bucket holding one key, the lease. Blocking.
pub trait LeaseKv: Send + Sync + 'static {
    /// The key's state.
    fn read(&self) -> Observed;
    /// Creates the key (`expected` `None`) or updates it if its revision is `expected`.
    fn write(&self, expected: Option<u64>, value: &LeaseValue) -> WriteResult;
    /// Deletes the key if its revision is `expected`.
    fn delete(&self, expected: u64) -> WriteResult;
}

/// An in-memory bucket.
#[derive(Debug)]
pub struct MemKv {
    inner: Mutex<(u64, Observed)>,
}

impl MemKv {
    /// An empty bucket.
    pub fn new() -> Self {
        MemKv { inner: Mutex::new((0, Observed::Absent)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Observed)> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for MemKv {
    fn default() -> Self {
        Self::new()
    }
}

impl LeaseKv for MemKv {
    fn read(&self) -> Observed {
        self.lock().1.clone()
    }

    fn write(&self, expected: Option<u64>, value: &LeaseValue) -> WriteResult {
        let mut inner = self.lock();
        let current = match &inner.1 {
            Observed::Held { revision, .. } | Observed::Deleted { revision } => Some(*revision),
            Observed::Absent | Observed::Unknown => None,
        };
        if current != expected {
            return WriteResult::Refused;
        }
        inner.0 += 1;
        let revision = inner.0;
        inner.1 = Observed::Held { revision, value: value.clone() };
        WriteResult::Written(revision)
    }

    fn delete(&self, expected: u64) -> WriteResult {
        let mut inner = self.lock();
        match inner.1 {
            Observed::Held { revision, .. } if revision == expected => {
                inner.0 += 1;
                let revision = inner.0;
                inner.1 = Observed::Deleted { revision };
                WriteResult::Written(revision)
            }
            _ => WriteResult::Refused,
        }
    }
}

impl<T: LeaseKv> LeaseKv for std::sync::Arc<T> {
    fn read(&self) -> Observed {
        (**self).read()
    }
    fn write(&self, expected: Option<u64>, value: &LeaseValue) -> WriteResult {
        (**self).write(expected, value)
    }
    fn delete(&self, expected: u64) -> WriteResult {
        (**self).delete(expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_need_the_current_revision() {
        let kv = MemKv::new();
        let v = LeaseValue { node_id: "a".into(), url: "u".into(), term: 1 };
        assert_eq!(kv.write(Some(1), &v), WriteResult::Refused);
        assert_eq!(kv.write(None, &v), WriteResult::Written(1));
        assert_eq!(kv.write(None, &v), WriteResult::Refused);
        assert_eq!(kv.write(Some(1), &v), WriteResult::Written(2));
        assert_eq!(kv.delete(1), WriteResult::Refused);
        assert_eq!(kv.delete(2), WriteResult::Written(3));
        assert_eq!(kv.read(), Observed::Deleted { revision: 3 });
        assert_eq!(kv.write(None, &v), WriteResult::Refused);
        assert_eq!(kv.write(Some(3), &v), WriteResult::Written(4));
    }
}
