//! Devices and the notification outbox: registering and removing push devices, making
//! outbox items as effects of the commands that cause them, the worker's reports, and
//! the outbox's clock (windows that end, finished items that leave).
//!
//! Guarantees: items are made only after a command succeeded (`apply` calls
//! [`State::notify_effects`] with that command's events), from the command and its
//! events alone, so a replay makes the same items with the same ids; a user with no
//! device gets no push item, and without an email no email item; a command that announces
//! a trip twice makes its notice once (per trip and kind); a report changes a
//! pending item only, and only for its next attempt (a duplicate or stale report is
//! refused and changes nothing); an item fails only on a permanent answer (`Rejected`,
//! `InvalidToken`, which also removes the device) or once its 24-hour window is over;
//! finished items leave the hot state [`KEPT_S`] after they finished.
//!
//! What is sent (API.md "Notifications"): to a driver with no open socket (the driver's
//! `connected` is not `true`), each trip offer; to the rider, accepted (name, vehicle,
//! plate; the ETA is added by the server's worker when it sends: the domain knows none),
//! arrived, cancelled by the driver or staff, no drivers nearby, expired, and the receipt
//! at completion (push, and email when the rider has an address); a chat message to the
//! trip's driver when the driver has no open socket (the driver's `connected`), and to
//! its rider when the server recorded in the command that the rider had none
//! (`PostMessage::rider_connected` not `Some(true)`: riders' presence is not in the
//! state, so the server, which holds the sockets, records what it saw when it took the
//! message); each SOS by SMS to the rules' `sos_phones`; a parcel's delivery code by SMS
//! to its recipient when the parcel is booked (in the recipient's language when the phone
//! is a rider's, else the sender's).

use std::sync::Arc;

use crate::clock::Timestamp;
use crate::command::{Actor, Command, Event, Outcome};
use crate::error::{Error, Result};
use crate::id::{DeviceId, NotificationId, TripId, UserId};
use crate::outbox::{
    AttemptOutcome, Channel, Device, GIVE_UP_S, ItemKey, KEPT_S, Kind, MAX_DEVICES_PER_USER, MAX_PREVIEW_LEN,
    Notification, Outbox, Params, Platform, Status, Target, clip_error, notification_id, validate_token,
};
use crate::trip::{Trip, TripStatus};

use super::{Effects, State, Who};

impl State {
    /// The outbox and the devices.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub(super) fn register_device(
        &mut self,
        actor: Actor,
        id: Option<DeviceId>,
        platform: Platform,
        token: &str,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let Actor::User(user_id) = actor else {
            return Err(Error::Forbidden("only a signed-in user registers a device".into()));
        };
        validate_token(token)?;
        let list = self.outbox.devices_of(user_id);
        if let Some(d) = list.iter().find(|d| d.token == token && d.platform == platform) {
            return Ok(Outcome::Device { device: Box::new(d.clone()), created: false });
        }
        let id = id.ok_or_else(|| Error::Internal("register_device: the writer did not stamp an id".into()))?;
        if list.iter().any(|d| d.id == id) {
            return Err(Error::Internal(format!("device id {id} taken")));
        }
        // The same token under another user (a phone that changed hands) moves here.
        self.drop_token(token, platform, user_id, fx);
        let mut list = self.outbox.devices_of(user_id).to_vec();
        let device = Device { id, user_id, platform, token: token.to_owned(), created_at: now };
        list.push(device.clone());
        if list.len() > MAX_DEVICES_PER_USER {
            list.remove(0);
        }
        self.outbox.set_devices(user_id, Some(Arc::new(list)));
        fx.devices.push(user_id);
        Ok(Outcome::Device { device: Box::new(device), created: true })
    }

    /// Removes `token` from its holder unless that is `keep` (a token is one phone's).
    /// O(log n): the holder is looked up, not searched for among every user's devices.
    fn drop_token(&mut self, token: &str, platform: Platform, keep: UserId, fx: &mut Effects) {
        let Some(holder) = self.outbox.holder(platform, token).filter(|u| *u != keep) else { return };
        let list: Vec<Device> = self
            .outbox
            .devices_of(holder)
            .iter()
            .filter(|d| !(d.token == token && d.platform == platform))
            .cloned()
            .collect();
        self.set_devices(holder, list, fx);
    }

    fn set_devices(&mut self, user: UserId, list: Vec<Device>, fx: &mut Effects) {
        fx.devices.push(user);
        self.outbox.set_devices(user, Some(Arc::new(list)));
    }

    pub(super) fn remove_device(&mut self, actor: Actor, device_id: DeviceId, fx: &mut Effects) -> Result<Outcome> {
        let Actor::User(user_id) = actor else {
            return Err(Error::not_found("device", device_id));
        };
        if self.outbox.device(user_id, device_id).is_none() {
            return Err(Error::not_found("device", device_id));
        }
        let list = self.outbox.devices_of(user_id).iter().filter(|d| d.id != device_id).cloned().collect();
        self.set_devices(user_id, list, fx);
        Ok(Outcome::Done)
    }

    pub(super) fn notification_attempted(
        &mut self,
        who: Who,
        id: NotificationId,
        attempt: u32,
        outcome: &AttemptOutcome,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if who != Who::System {
            return Err(Error::Forbidden("only the delivery worker reports notifications".into()));
        }
        let item = self.outbox.items.get(&ItemKey::of(id)).ok_or_else(|| Error::not_found("notification", id))?;
        if item.status != Status::Pending {
            return Err(Error::InvalidTransition {
                action: "report",
                entity: format!("notification {id}"),
                from: item.status.as_str(),
            });
        }
        if attempt != item.attempts.saturating_add(1) {
            return Err(Error::Invalid(format!(
                "stale report: notification {id} has had {} attempts, the report is for attempt {attempt}",
                item.attempts
            )));
        }
        let old = Arc::clone(item);
        let mut item = Notification::clone(&old);
        item.attempts = attempt;
        let mut dead_device = None;
        match outcome {
            AttemptOutcome::Delivered { provider_id } => {
                item.status = Status::Sent;
                item.provider_id = provider_id.as_deref().map(clip_error);
            }
            AttemptOutcome::Retry { error, next_attempt_at } => {
                item.last_error = Some(clip_error(error));
                if now >= item.give_up_at {
                    item.status = Status::Failed;
                } else {
                    item.next_attempt_at = (*next_attempt_at).max(now);
                }
            }
            AttemptOutcome::InvalidToken { error } => {
                item.last_error = Some(clip_error(error));
                item.status = Status::Failed;
                if let (Target::Device(d), Some(u)) = (&item.target, item.user_id) {
                    dead_device = Some((u, *d));
                }
            }
            AttemptOutcome::Rejected { error } => {
                item.last_error = Some(clip_error(error));
                item.status = Status::Failed;
            }
        }
        if item.status != Status::Pending {
            item.finished_at = Some(now);
        }
        self.outbox.unindex_pending(&old);
        self.outbox.index(&item);
        let item = Arc::new(item);
        self.outbox.items.insert(ItemKey::of(id), Arc::clone(&item));
        if let Some((user, device)) = dead_device {
            let list = self.outbox.devices_of(user).iter().filter(|d| d.id != device).cloned().collect();
            self.set_devices(user, list, fx);
        }
        fx.notifications.push((id, Some(item)));
        Ok(Outcome::Done)
    }

    /// The outbox's part of a `Tick`: pending items whose window is over fail; finished
    /// items [`KEPT_S`] old leave.
    pub(super) fn outbox_tick(&mut self, now: Timestamp, fx: &mut Effects) {
        while let Some(&(at, id)) = self.outbox.give_up.get_min() {
            if at > now {
                break;
            }
            let Some(old) = self.outbox.items.get(&ItemKey::of(id)).cloned() else {
                self.outbox.give_up.remove_min();
                continue;
            };
            let mut item = Notification::clone(&old);
            item.status = Status::Failed;
            item.finished_at = Some(now);
            if item.last_error.is_none() {
                item.last_error = Some("not delivered within 24 hours".into());
            }
            self.outbox.unindex_pending(&old);
            self.outbox.index(&item);
            let item = Arc::new(item);
            self.outbox.items.insert(ItemKey::of(id), Arc::clone(&item));
            fx.notifications.push((id, Some(item)));
        }
        while let Some(&(at, id)) = self.outbox.done.get_min() {
            if at.plus_secs(KEPT_S) > now {
                break;
            }
            self.outbox.done.remove_min();
            self.outbox.items.remove(&ItemKey::of(id));
            fx.notifications.push((id, None));
        }
    }

    /// When the outbox next needs a `Tick` (the first pending item's window ends).
    pub(super) fn outbox_deadline(&self) -> Option<Timestamp> {
        self.outbox.next_give_up()
    }

    /// Makes the outbox items `command` (by `actor`, just applied at `now`) causes,
    /// from the events it produced.
    pub(super) fn notify_effects(
        &mut self,
        actor: Actor,
        command: &Command,
        events: &[Event],
        now: Timestamp,
        fx: &mut Effects,
    ) {
        let mut inner = command;
        while let Command::Keyed { command, .. }
        | Command::Restored { command, .. }
        | Command::Audited { command, .. } = inner
        {
            inner = command;
        }
        // A notice is made once per trip and kind, at the first event that makes it: the
        // items this command made so far say which were (a few at most, looked through
        // rather than kept in a set: a command that notifies nobody allocates nothing).
        let mark = fx.notifications.len();
        let made = |fx: &Effects, trip: TripId, kind: Kind| {
            fx.notifications[mark..]
                .iter()
                .filter_map(|(_, item)| item.as_deref())
                .any(|n| n.kind == kind && n.params.trip_id == Some(trip))
        };
        for event in events {
            match event {
                Event::TripOffered { trip, driver_id, distance_to_pickup_m, .. } => {
                    let Some(devices) = self.devices_for(*driver_id) else { continue };
                    if self.drivers.get(driver_id).is_some_and(|d| matches!(d.connected, Some((true, _)))) {
                        continue;
                    }
                    let mut params = self.trip_params(*driver_id, trip);
                    params.distance_m = Some(*distance_to_pickup_m);
                    params.amount_minor = Some(trip.fare.estimate_minor);
                    params.currency = Some(trip.fare.currency);
                    self.push_to(*driver_id, &devices, Kind::TripOffer, params, now, fx);
                }
                Event::NoDriversNearby { trip_id, rider_id } => {
                    if let Some(devices) = self.devices_for(*rider_id)
                        && !made(fx, *trip_id, Kind::NoDriversNearby)
                    {
                        // The trip is always named (the check above finds the item by it).
                        let params = match self.trips.get(trip_id) {
                            Some(t) => self.trip_params(*rider_id, &Arc::clone(t)),
                            None => Params { trip_id: Some(*trip_id), ..self.params_for(*rider_id) },
                        };
                        self.push_to(*rider_id, &devices, Kind::NoDriversNearby, params, now, fx);
                    }
                }
                Event::ChatMessage { trip, message } => {
                    // The driver's presence is in the state; the rider's is what the
                    // server recorded in the command (not known: pushed).
                    let rider_connected = match inner {
                        Command::PostMessage { rider_connected, .. } => *rider_connected,
                        _ => None,
                    };
                    let driver_away = trip
                        .driver_id
                        .filter(|d| !self.drivers.get(d).is_some_and(|d| matches!(d.connected, Some((true, _)))));
                    let rider_away = (rider_connected != Some(true)).then_some(trip.rider_id);
                    for to in [driver_away, rider_away].into_iter().flatten() {
                        if message.from_user_id == Some(to) {
                            continue;
                        }
                        let Some(devices) = self.devices_for(to) else { continue };
                        let mut params = self.trip_params(to, trip);
                        params.name = message.from_user_id.and_then(|u| self.users.get(&u)).map(|u| u.name.clone());
                        params.text = Some(message.text.chars().take(MAX_PREVIEW_LEN).collect());
                        self.push_to(to, &devices, Kind::ChatMessage, params, now, fx);
                    }
                }
                Event::AlertRaised { alert } => {
                    let phones = self.rules.sos_phones.clone();
                    for phone in phones {
                        let params = Params {
                            language: "en".into(),
                            trip_id: Some(alert.trip_id),
                            reference: self.trips.get(&alert.trip_id).map(|t| t.reference.text()),
                            name: self.users.get(&alert.raised_by).map(|u| u.name.clone()),
                            text: alert.note.clone(),
                            ..Params::default()
                        };
                        self.enqueue(None, Channel::Sms, Kind::Sos, Target::Phone(phone), params, now, fx);
                    }
                }
                Event::TripUpdated { trip } => {
                    if let (Command::CreateTrip(_), Some(parcel)) = (inner, &trip.parcel)
                        && !made(fx, trip.id, Kind::DeliveryCode)
                    {
                        self.delivery_code_sms(trip, parcel, now, fx);
                    }
                    let kind = match (inner, trip.status) {
                        (Command::AcceptTrip { .. } | Command::AcceptBid { .. }, TripStatus::Accepted) => {
                            Kind::TripAccepted
                        }
                        (Command::DriverArrived { .. }, TripStatus::Arrived) => Kind::DriverArrived,
                        (Command::CompleteTrip { .. } | Command::CompleteDelivery { .. }, TripStatus::Completed) => {
                            Kind::Receipt
                        }
                        // Not when the rider cancelled it (looked up only for a cancel).
                        (Command::CancelTrip { trip_id, .. }, _) if *trip_id == trip.id && !self.is_rider(actor) => {
                            Kind::TripCancelled
                        }
                        (Command::Tick, TripStatus::Expired) if trip.ended_at == Some(now) => Kind::TripExpired,
                        _ => continue,
                    };
                    if !made(fx, trip.id, kind) {
                        self.trip_notice(kind, trip, now, fx);
                    }
                }
                Event::OfferWithdrawn { .. } | Event::DriverPresence { .. } | Event::DriverMoved { .. } => {}
                Event::PayoutUpdated { .. } => {}
            }
        }
    }

    /// The delivery code of a parcel just booked, by SMS to its recipient (who may have
    /// no account: the item has no user).
    fn delivery_code_sms(&mut self, trip: &Trip, parcel: &crate::trip::Parcel, now: Timestamp, fx: &mut Effects) {
        let Some(code) = parcel.delivery_code else { return };
        let phone = parcel.recipient_phone.clone();
        let language = match self.user_by_phone(crate::user::Role::Rider, &phone) {
            Some(u) => u.language.clone(),
            None => self.params_for(trip.rider_id).language,
        };
        let params = Params {
            language,
            trip_id: Some(trip.id),
            reference: Some(trip.reference.text()),
            text: Some(code.to_string()),
            ..Params::default()
        };
        self.enqueue(None, Channel::Sms, Kind::DeliveryCode, Target::Phone(phone), params, now, fx);
    }

    /// `user`'s push devices, if any (a shared list: no copy). Looked up once, before an
    /// item's inputs are gathered: a user without one costs the command nothing more (the
    /// accept path of riders without the app's notifications on stays as it was;
    /// BENCHMARKS.md).
    fn devices_for(&self, user: UserId) -> Option<Arc<Vec<Device>>> {
        self.outbox.devices.get(&user).filter(|list| !list.is_empty()).cloned()
    }

    /// Whether `actor` is a rider (a user whose role is).
    fn is_rider(&self, actor: Actor) -> bool {
        matches!(actor, Actor::User(u) if self.users.get(&u).is_some_and(|u| u.role == crate::user::Role::Rider))
    }

    /// A notice about `trip` to its rider (nothing when it reaches nobody: no device, and no
    /// email for a receipt).
    fn trip_notice(&mut self, kind: Kind, trip: &Arc<Trip>, now: Timestamp, fx: &mut Effects) {
        let rider = trip.rider_id;
        let emailed = kind == Kind::Receipt && self.users.get(&rider).is_some_and(|u| u.email.is_some());
        let devices = self.devices_for(rider);
        if !emailed && devices.is_none() {
            return;
        }
        let mut params = self.trip_params(rider, trip);
        if let Some(driver) = trip.driver_id.and_then(|d| self.users.get(&d)) {
            params.name = Some(driver.name.clone());
            if let Some(v) = &driver.vehicle {
                // The words joined by spaces, as `join` would, without a `Vec` of them.
                let mut vehicle: Option<String> = None;
                for word in [&v.color, &v.make, &v.model].into_iter().flatten() {
                    match &mut vehicle {
                        Some(joined) => {
                            joined.push(' ');
                            joined.push_str(word);
                        }
                        None => vehicle = Some(word.clone()),
                    }
                }
                params.vehicle = vehicle;
                params.plate = Some(v.plate.clone());
            }
        }
        if kind == Kind::Receipt {
            params.amount_minor = trip.fare.final_minor;
            params.currency = Some(trip.fare.currency);
            let email = self.users.get(&rider).and_then(|u| u.email.clone());
            if let Some(email) = email {
                self.enqueue(Some(rider), Channel::Email, kind, Target::Email(email), params.clone(), now, fx);
            }
        }
        if let Some(devices) = devices {
            self.push_to(rider, &devices, kind, params, now, fx);
        }
    }

    /// The inputs every notice about `trip` to `user` has.
    fn trip_params(&self, user: UserId, trip: &Trip) -> Params {
        Params { trip_id: Some(trip.id), reference: Some(trip.reference.text()), ..self.params_for(user) }
    }

    pub(super) fn params_for(&self, user: UserId) -> Params {
        let language = self.users.get(&user).map(|u| u.language.clone()).unwrap_or_else(|| "en".into());
        Params { language, ..Params::default() }
    }

    /// One push item per device of `user` (none without a device).
    pub(super) fn push(&mut self, user: UserId, kind: Kind, params: Params, now: Timestamp, fx: &mut Effects) {
        if let Some(devices) = self.devices_for(user) {
            self.push_to(user, &devices, kind, params, now, fx);
        }
    }

    /// One push item per device of `devices`, `user`'s.
    fn push_to(
        &mut self,
        user: UserId,
        devices: &[Device],
        kind: Kind,
        params: Params,
        now: Timestamp,
        fx: &mut Effects,
    ) {
        let params = Arc::new(params);
        for d in devices {
            self.enqueue_shared(Some(user), Channel::Push, kind, Target::Device(d.id), Arc::clone(&params), now, fx);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &mut self,
        user_id: Option<UserId>,
        channel: Channel,
        kind: Kind,
        target: Target,
        params: Params,
        now: Timestamp,
        fx: &mut Effects,
    ) {
        self.enqueue_shared(user_id, channel, kind, target, Arc::new(params), now, fx);
    }

    #[allow(clippy::too_many_arguments)]
    fn enqueue_shared(
        &mut self,
        user_id: Option<UserId>,
        channel: Channel,
        kind: Kind,
        target: Target,
        params: Arc<Params>,
        now: Timestamp,
        fx: &mut Effects,
    ) {
        // Every item's key is below the counter (`Outbox::check`), so the counter's key is
        // free; only the one counter whose id would be 0 is skipped.
        let (key, id) = loop {
            let seq = self.outbox.seq;
            self.outbox.seq = seq.wrapping_add(1);
            if let Some(id) = notification_id(seq) {
                break (ItemKey::from_seq(seq), id);
            }
        };
        let item = Notification {
            id,
            user_id,
            channel,
            kind,
            target,
            params,
            status: Status::Pending,
            attempts: 0,
            last_error: None,
            provider_id: None,
            created_at: now,
            next_attempt_at: now,
            give_up_at: now.plus_secs(GIVE_UP_S),
            finished_at: None,
        };
        self.outbox.index(&item);
        let item = Arc::new(item);
        self.outbox.items.insert(key, Arc::clone(&item));
        fx.notifications.push((id, Some(item)));
    }
}
