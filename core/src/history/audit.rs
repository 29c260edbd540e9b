//! The audit trail's history (issue 20: A): reading entries back from the `audit` table
//! and its three indexes (`audit_by_actor`, `audit_by_target`, `audit_by_action`), which
//! the checkpoint writes (`History::write`).
//!
//! Guarantees: a listing is newest first and costs one index scan of at most a page and
//! one point read per entry, whatever the trail holds; a name longer than any stored one,
//! or with a 0 byte, names nothing.

use dispatch_storage::store::{self, Order, Scan, key};

use super::{AUDIT, AUDIT_BY_ACTION, AUDIT_BY_ACTOR, AUDIT_BY_TARGET, History, store_error};
use crate::audit::AuditEntry;
use crate::error::{Error, Result};

/// Which index an audit listing walks: by actor, target or action (the name), or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditBy<'a> {
    /// `audit_by_actor`.
    Actor(&'a str),
    /// `audit_by_target`.
    Target(&'a str),
    /// `audit_by_action`.
    Action(&'a str),
    /// `audit` itself, newest first.
    All,
}

/// Longest actor, target or action name an index holds (longer ones name nothing).
const MAX_AUDIT_NAME_LEN: usize = 256;

/// `name ‖ 0 ‖ rev(seq)`: ascending is newest first under one name.
pub(super) fn audit_index_key(name: &str, seq: u64) -> Vec<u8> {
    key::concat(&[name.as_bytes(), &[0], &key::rev_u64_be(seq)])
}

impl History {
    /// An archived audit entry.
    pub fn audit_entry(&self, seq: u64) -> Result<Option<AuditEntry>> {
        let bytes =
            self.store.get(AUDIT, &key::u64_be(seq)).map_err(|e| store_error("cannot read an audit entry", &e))?;
        bytes
            .map(|b| {
                postcard::from_bytes(&b)
                    .map_err(|e| Error::Storage(format!("a stored audit entry does not decode: {e}")))
            })
            .transpose()
    }

    /// Up to `limit` (1 to 1000) archived audit entries under `by`, newest first, with a
    /// number below `before` when given: one index scan and a point read per entry, so
    /// O(page) whatever the trail holds.
    pub fn audit(&self, by: AuditBy<'_>, before: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>> {
        let limit = limit.clamp(1, store::SCAN_LIMIT_MAX);
        let seqs: Vec<u64> = match by {
            AuditBy::All => {
                // Descending from just below `before`: the cursor is exclusive.
                let after = before.map(|b| key::u64_be(b).to_vec());
                let scan = Scan::new(Vec::new(), limit).order(Order::Descending).after(after);
                let page = self.store.scan(AUDIT, &scan).map_err(|e| store_error("cannot list the audit trail", &e))?;
                page.rows
                    .iter()
                    .map(|(k, _)| {
                        key::take_u64_be(k)
                            .map(|(s, _)| s)
                            .ok_or_else(|| Error::Storage("an audit row has a malformed key".into()))
                    })
                    .collect::<Result<_>>()?
            }
            AuditBy::Actor(name) | AuditBy::Target(name) | AuditBy::Action(name) => {
                let table = match by {
                    AuditBy::Actor(_) => AUDIT_BY_ACTOR,
                    AuditBy::Target(_) => AUDIT_BY_TARGET,
                    _ => AUDIT_BY_ACTION,
                };
                if name.len() > MAX_AUDIT_NAME_LEN || name.as_bytes().contains(&0) {
                    return Ok(Vec::new());
                }
                let prefix = key::concat(&[name.as_bytes(), &[0]]);
                let after = before.map(|b| audit_index_key(name, b));
                let scan = Scan::new(prefix, limit).order(Order::Ascending).after(after);
                let page = self.store.scan(table, &scan).map_err(|e| store_error("cannot list the audit trail", &e))?;
                page.rows
                    .iter()
                    .map(|(k, _)| {
                        k.get(k.len().saturating_sub(8)..)
                            .and_then(key::take_rev_u64_be)
                            .map(|(s, _)| s)
                            .ok_or_else(|| Error::Storage("an audit index row has a malformed key".into()))
                    })
                    .collect::<Result<_>>()?
            }
        };
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            match self.audit_entry(seq)? {
                Some(e) => out.push(e),
                None => return Err(Error::Storage(format!("the audit index names entry {seq}, which is missing"))),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::AuditBy;
    use crate::audit::{AuditEntry, Detail};
    use crate::clock::Timestamp;
    use crate::history::{History, Leaving};

    fn entry(seq: u64, actor: &str, target: &str, action: &str) -> Arc<AuditEntry> {
        Arc::new(AuditEntry {
            seq,
            at: Timestamp::from_millis(1_700_000_000_000 + i64::try_from(seq).unwrap()),
            actor_id: actor.into(),
            actor_role: "admin".into(),
            action: action.into(),
            target_id: target.into(),
            request_id: format!("req_{seq}"),
            details: vec![("n".into(), Detail::Int(i64::try_from(seq).unwrap()))],
        })
    }

    /// Each index lists its entries newest first, pages below a cursor, and names no other;
    /// a name that is a prefix of another (`usr_1` of `usr_12`) is not confused with it.
    #[test]
    fn each_index_lists_its_entries_newest_first_and_pages_below_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).unwrap();
        let audit = (1..=30)
            .map(|n| {
                let actor = if n % 3 == 0 { "usr_12" } else { "usr_1" };
                let action = if n % 2 == 0 { "trip.cancel" } else { "driver.suspend" };
                entry(n, actor, &format!("trp_{}", n % 5), action)
            })
            .collect();
        let cp = crate::checkpoint::Prepared { lsn: 1, blob: Vec::new(), changes: Default::default() };
        history.write(cp, &Leaving { audit, ..Leaving::default() }, Timestamp::from_millis(0)).unwrap();
        let seqs = |by, before, limit| -> Vec<u64> {
            history.audit(by, before, limit).unwrap().iter().map(|e| e.seq).collect()
        };
        assert_eq!(seqs(AuditBy::All, None, 3), [30, 29, 28]);
        assert_eq!(seqs(AuditBy::All, Some(2), 5), [1]);
        assert_eq!(seqs(AuditBy::Actor("usr_12"), None, 4), [30, 27, 24, 21]);
        assert_eq!(seqs(AuditBy::Actor("usr_12"), Some(21), 4), [18, 15, 12, 9]);
        assert_eq!(seqs(AuditBy::Actor("usr_1"), None, 3), [29, 28, 26]);
        assert_eq!(seqs(AuditBy::Target("trp_0"), None, 10), [30, 25, 20, 15, 10, 5]);
        assert_eq!(seqs(AuditBy::Action("trip.cancel"), Some(7), 10), [6, 4, 2]);
        assert!(seqs(AuditBy::Actor("usr_9"), None, 10).is_empty());
        assert!(seqs(AuditBy::Actor(&"x".repeat(300)), None, 10).is_empty());
        let e = history.audit_entry(7).unwrap().unwrap();
        assert_eq!((e.request_id.as_str(), e.details.len()), ("req_7", 1));
    }
}
