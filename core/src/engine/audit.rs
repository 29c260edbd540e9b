//! The audit trail's reads (issue 20: A): [`Engine::audit`] merges the entries still in
//! the hot state (the view) with the history's, newest first, without duplicates.
//!
//! Guarantees: one filter is answered from its index in O(page); with two or three, the
//! most selective one is walked and the others checked on each entry, at most
//! [`AUDIT_WALK_MAX`] entries per call (then the page stops early with a cursor).

use super::Engine;
use crate::error::Result;

impl Engine {
    /// Audit entries, newest first, numbered below `before` when given, at most `limit`
    /// (1 to 1,000), matching every filter given (`actor_id`, `target_id`, `action`): the
    /// hot ones (not yet checkpointed) merged with the history's. The history walks one
    /// index — the most selective filter given (target, then actor, then action: a target
    /// has few entries, an action many) — and checks the others on each entry: O(page)
    /// with one filter; with more, the walk reads further only past entries the other
    /// filters refuse (bounded per call by [`AUDIT_WALK_MAX`]).
    pub fn audit(&self, filter: &AuditFilter, before: Option<u64>, limit: usize) -> Result<AuditPage> {
        use crate::history::AuditBy;
        let limit = limit.clamp(1, 1000);
        let mut out: Vec<crate::audit::AuditEntry> = self.read_snapshot(|v| {
            v.audit_before(before).filter(|e| filter.matches(e)).take(limit).map(|e| (**e).clone()).collect()
        });
        let mut scanned_to = None;
        if out.len() < limit
            && let Some(h) = &self.shared.history
        {
            let by = match filter {
                AuditFilter { target_id: Some(t), .. } => AuditBy::Target(t),
                AuditFilter { actor_id: Some(a), .. } => AuditBy::Actor(a),
                AuditFilter { action: Some(a), .. } => AuditBy::Action(a),
                _ => AuditBy::All,
            };
            // The history holds entries older than the hot ones (one archived while this
            // ran may be in both: deduplicated below).
            let mut cursor = before;
            let mut walked = 0usize;
            while out.len() < limit {
                if walked >= AUDIT_WALK_MAX {
                    scanned_to = cursor;
                    break;
                }
                let page = h.audit(by, cursor, limit)?;
                let n = page.len();
                let Some(last) = page.last().map(|e| e.seq) else { break };
                walked += n;
                out.extend(page.into_iter().filter(|e| filter.matches(e)));
                cursor = Some(last);
                if n < limit {
                    break;
                }
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.seq));
        out.dedup_by_key(|e| e.seq);
        out.truncate(limit);
        Ok(AuditPage { items: out, scanned_to })
    }
}

/// History entries one [`Engine::audit`] call reads at most when filters beyond the one
/// walked refuse most of them: the answer then stops early with a cursor
/// ([`AuditPage::scanned_to`]).
pub const AUDIT_WALK_MAX: usize = 10_000;

/// The filters of an audit listing (each `None`: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// `usr_…` or `admin`.
    pub actor_id: Option<String>,
    /// The target's id, or `settings`.
    pub target_id: Option<String>,
    /// A dotted action name.
    pub action: Option<String>,
}

impl AuditFilter {
    /// Whether `e` passes every filter given.
    pub fn matches(&self, e: &crate::audit::AuditEntry) -> bool {
        self.actor_id.as_ref().is_none_or(|a| *a == e.actor_id)
            && self.target_id.as_ref().is_none_or(|t| *t == e.target_id)
            && self.action.as_ref().is_none_or(|a| *a == e.action)
    }
}

/// One page of the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditPage {
    /// Newest first.
    pub items: Vec<crate::audit::AuditEntry>,
    /// When the walk stopped at its bound before filling the page: the number it read
    /// down to (the next page continues below it).
    pub scanned_to: Option<u64>,
}
