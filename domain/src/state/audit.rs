//! The audit trail and runtime settings (issue 20): `Command::Audited` applies a staff
//! command and, when it succeeded, appends one entry to the trail; `UpdateSettings`
//! changes dispatch rules and zones' bidding and surge at once; entries leave the hot
//! state for the history like acknowledged alerts (`Command::Archive`).
//!
//! Guarantees: an entry is made only for a command that succeeded, once (a refused one
//! changes nothing and makes none; `Keyed { Audited { … } }` answers a replayed key
//! before it gets here); entries are numbered densely in log order and never change; only
//! staff commands are audited; a settings change is checked whole before anything is
//! applied, and the dispatch keys it sets are kept as overrides of the configuration.

use std::sync::Arc;

use super::{Effects, State, Who};
use crate::audit::{AuditEntry, actor_id, validate_request_id};
use crate::clock::Timestamp;
use crate::command::{Actor, Command, Outcome};
use crate::error::{Error, Result};
use crate::settings::{RuleOverrides, SettingsChange};
use crate::zone::{MAX_SURGE_BPS, NO_SURGE_BPS};

impl State {
    pub(super) fn audited(
        &mut self,
        actor: Actor,
        request_id: &str,
        command: &Command,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        validate_request_id(request_id)?;
        if matches!(command, Command::Keyed { .. } | Command::Audited { .. } | Command::Restored { .. }) {
            return Err(Error::Invalid("an audited command goes inside its idempotency key, never around one".into()));
        }
        let action = command
            .audit_action()
            .ok_or_else(|| Error::Invalid(format!("{} is not a staff action", command.name())))?;
        // The role as it is now, before the command (which might change it).
        let actor_role = match (actor, self.who(actor)?) {
            (Actor::Admin, _) => "admin".to_owned(),
            (Actor::User(u), Who::Staff { .. }) => {
                // A custom staff role shows by its name (`[roles.<name>]`).
                self.users.get(&u).map_or_else(
                    || "staff".to_owned(),
                    |u| u.staff_role.clone().unwrap_or_else(|| u.role.as_str().to_owned()),
                )
            }
            _ => return Err(Error::Forbidden("only staff actions are audited".into())),
        };
        let outcome = self.dispatch_command(actor, command, now, fx)?;
        let (target_id, details) = command.audit_target(actor, &outcome);
        self.audit_seq += 1;
        let entry = AuditEntry {
            seq: self.audit_seq,
            at: now,
            actor_id: actor_id(actor),
            actor_role,
            action: action.to_owned(),
            target_id,
            request_id: request_id.to_owned(),
            details,
        };
        self.audit.insert(entry.seq, Arc::new(entry));
        fx.audit.push(self.audit_seq);
        Ok(outcome)
    }

    pub(super) fn update_settings(
        &mut self,
        who: Who,
        change: &SettingsChange,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        // Which staff may is the server's to decide (the `settings.write` permission).
        if !matches!(who, Who::System | Who::Staff { .. }) {
            return Err(Error::Forbidden("only staff change settings".into()));
        }
        let rules = change.dispatch.checked_on(&self.rules)?;
        let mut zones = Vec::with_capacity(change.zones.len());
        for (id, s) in &change.zones {
            let zone = self
                .catalog
                .get(*id)
                .ok_or_else(|| Error::InvalidParam { param: "zones", message: format!("no zone {id}") })?;
            let mut z = (**zone).clone();
            if let Some(surge) = s.surge {
                if !(NO_SURGE_BPS..=MAX_SURGE_BPS).contains(&surge.max_bps) {
                    return Err(Error::InvalidParam {
                        param: "zones",
                        message: format!("{id}: surge.max_bps must be from {NO_SURGE_BPS} to {MAX_SURGE_BPS}"),
                    });
                }
                z.spec.surge = surge;
            }
            if let Some(b) = s.bidding {
                z.spec.bidding = b;
            }
            if let Some(m) = s.mode {
                z.matching = m;
            }
            z.updated_at = now;
            zones.push(Arc::new(z));
        }
        // Checked whole: now apply.
        self.rules = rules;
        self.rule_overrides = self.rule_overrides.merged(&change.dispatch);
        for z in zones {
            self.put_zone(z, now, fx);
        }
        fx.catalog = true;
        fx.rules = true;
        Ok(Outcome::Done)
    }

    /// Audit entries whose history rows are durable leave the hot state.
    pub(super) fn archive_audit(&mut self, seqs: &[u64], fx: &mut Effects) {
        for seq in seqs {
            if self.audit.remove(seq).is_some() {
                fx.audit.push(*seq);
            }
        }
    }

    /// The audit entries in the hot state, oldest first.
    pub fn audit_entries(&self) -> impl DoubleEndedIterator<Item = &Arc<AuditEntry>> {
        self.audit.values()
    }

    /// An audit entry still in the hot state.
    pub fn audit_entry(&self, seq: u64) -> Option<&Arc<AuditEntry>> {
        self.audit.get(&seq)
    }

    /// The number of the last audit entry made (0: none yet).
    pub fn audit_seq(&self) -> u64 {
        self.audit_seq
    }

    /// The dispatch keys set at runtime: the writer puts them on top of the
    /// configuration's rules at open.
    pub fn rule_overrides(&self) -> &RuleOverrides {
        &self.rule_overrides
    }
}
