//! Stamping: the writer fills in the fresh ids and random values a command left empty,
//! before it is applied and logged.
//!
//! This is the one place a command meets randomness. It reads the state (to skip ids
//! already taken) but never changes it, and the stamped command is what the log
//! records: replay applies it as stamped and draws nothing.

use crate::command::Command;
use crate::id::{
    AlertId, BidId, CouponId, DeviceId, EndpointId, IdSource, MessageId, ShareId, TransferId, TripId, UserId, ZoneId,
};
use crate::trip::PickupCode;
use crate::trip_ref::TripRef;

use super::State;

impl State {
    /// Fills in the fresh ids and random values left empty in `command` by its caller,
    /// drawing from `ids` and skipping ids already taken here. Called by the writer only,
    /// before [`apply`](super::apply); what the caller put in is kept.
    pub fn stamp(&self, command: &mut Command, ids: &mut dyn IdSource) {
        match command {
            Command::CreateUser(u) if u.id.is_none() => {
                u.id = Some(fresh(ids, UserId::generate, |u| self.user(u).is_none()));
            }
            Command::CreateTrip(t) => {
                if t.id.is_none() {
                    t.id = Some(fresh(ids, TripId::generate, |t| self.trip(t).is_none()));
                }
                if t.pickup_code.is_none() {
                    t.pickup_code = Some(PickupCode::from_random(ids.next_u64()));
                }
                if t.reference.is_none() {
                    // Free among the last 30 days' trips (an expired entry not yet purged
                    // counts as taken: one more draw, never a clash).
                    t.reference = Some(fresh(ids, |ids| TripRef::from_random(ids.next_u64()), |r| !self.ref_taken(r)));
                }
                // A parcel's delivery code, for its recipient (drawn last: a ride's draws
                // are what they were before parcels had codes).
                if let Some(p) = t.parcel.as_mut()
                    && p.delivery_code.is_none()
                {
                    p.delivery_code = Some(PickupCode::from_random(ids.next_u64()));
                }
            }
            Command::CreateZone { id, .. } if id.is_none() => {
                *id = Some(fresh(ids, ZoneId::generate, |z| self.zone(z).is_none()));
            }
            Command::CreateCoupon { id, .. } if id.is_none() => {
                *id = Some(fresh(ids, CouponId::generate, |c| !self.coupon_id_taken(c)));
            }
            Command::PlaceBid { id, .. } if id.is_none() => {
                // Bid ids are unique per trip; 64 random bits make a clash across trips moot.
                *id = Some(fresh(ids, BidId::generate, |_| true));
            }
            Command::CreateShare { id, .. } if id.is_none() => {
                *id = Some(fresh(ids, ShareId::generate, |s| self.share(s).is_none()));
            }
            Command::PostMessage { id, .. } if id.is_none() => {
                // Message ids are unique per trip; 64 random bits make a clash across trips moot.
                *id = Some(fresh(ids, MessageId::generate, |_| true));
            }
            Command::RegisterDevice { id, .. } if id.is_none() => {
                // Device ids are unique per user; 64 random bits make a clash across users moot.
                *id = Some(fresh(ids, DeviceId::generate, |_| true));
            }
            Command::CreateWebhookEndpoint { id, secret, .. } => {
                if id.is_none() {
                    *id = Some(fresh(ids, EndpointId::generate, |e| self.hooks().endpoint(e).is_none()));
                }
                if secret.is_none() {
                    *secret = Some(crate::hooks::secret_from([
                        ids.next_u64(),
                        ids.next_u64(),
                        ids.next_u64(),
                        ids.next_u64(),
                    ]));
                }
            }
            Command::RaiseSos { id, .. } if id.is_none() => {
                *id = Some(fresh(ids, AlertId::generate, |a| self.alert(a).is_none()));
            }
            Command::VerifyOtp { new_user_id, .. } if new_user_id.is_none() => {
                *new_user_id = Some(fresh(ids, UserId::generate, |u| self.user(u).is_none()));
            }
            Command::RequestPayout { id, .. } if id.is_none() => {
                *id = Some(fresh(ids, crate::id::PayoutId::generate, |p| self.payout(p).is_none()));
            }
            Command::CreateTopUp { id, .. } if id.is_none() => {
                *id = Some(fresh(ids, crate::id::TopUpId::generate, |t| self.top_up(t).is_none()));
            }
            Command::CashReceived { id, .. } if id.is_none() => {
                *id = Some(fresh(ids, TransferId::generate, |t| self.ledger().transfer(t).is_none()));
            }
            Command::CreditWallet { id, .. } | Command::Refund { id, .. } if id.is_none() => {
                *id = Some(fresh(ids, TransferId::generate, |t| self.ledger().transfer(t).is_none()));
            }
            // ----- issue 20: S -----
            Command::CreateStaff { user, email, setup_nonce, .. } => {
                if user.id.is_none() {
                    user.id = Some(fresh(ids, UserId::generate, |u| self.user(u).is_none()));
                }
                if email.is_some() && setup_nonce.is_none() {
                    *setup_nonce = Some(ids.next_u64());
                }
            }
            Command::IssueStaffSetup { nonce, .. } if nonce.is_none() => *nonce = Some(ids.next_u64()),
            Command::SetupStaff { totp_nonce, .. } if totp_nonce.is_none() => *totp_nonce = Some(ids.next_u64()),
            Command::Keyed { command, .. } | Command::Restored { command, .. } => self.stamp(command, ids),
            Command::Audited { command, .. } => self.stamp(command, ids),
            _ => {}
        }
    }
}

/// A fresh id of type `I` for which `free` holds.
fn fresh<I: Copy>(ids: &mut dyn IdSource, generate: fn(&mut dyn IdSource) -> I, free: impl Fn(I) -> bool) -> I {
    loop {
        let id = generate(ids);
        if free(id) {
            return id;
        }
    }
}
