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
