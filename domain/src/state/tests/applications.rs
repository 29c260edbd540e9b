//! Driver applications (`applications.rs`): draft → submitted → approved / rejected, who
//! may do what when, the going-online checks, the licence reminder.

use super::*;
use crate::application::{
    ApplicationDetails, ApplicationStatus, Date, DocumentKind, Licence, MediaType, REQUIRED_DOCUMENTS,
};
use crate::outbox::{Kind, Platform};
use crate::user::{Category, Vehicle};

/// Signs a new driver phone in: an applicant.
fn applicant(w: &mut World, phone: &str) -> UserId {
    w.run(Actor::System, Command::IssueOtp { phone: phone.into(), role: Role::Driver, code_hash: [7; 32] }).unwrap();
    let verify = Command::VerifyOtp { phone: phone.into(), code_hash: [7; 32], new_user_id: None };
    match w.run(Actor::System, verify).unwrap() {
        Outcome::User(u) => u.id,
        o => panic!("{o:?}"),
    }
}

fn details(expires_on: &str) -> Box<ApplicationDetails> {
    Box::new(ApplicationDetails {
        name: "Karim".into(),
        vehicle: Vehicle {
            make: Some("Hyundai".into()),
            model: Some("Elantra".into()),
            color: Some("silver".into()),
            year: Some(2019),
            ..Vehicle::new(Category::new("economy").unwrap(), "ABC 123")
        },
        license: Licence { number: "L-123456".into(), expires_on: Date::parse(expires_on).unwrap() },
    })
}

fn upload(kind: DocumentKind) -> Command {
    Command::AddDocument { kind, sha256: [kind as u8; 32], media_type: MediaType::Png, size: 1234 }
}

fn status(w: &World, id: UserId) -> ApplicationStatus {
    w.state.applications().get(id).unwrap().status
}

/// An applicant with every detail and document, submitted.
fn submitted(w: &mut World, phone: &str, expires_on: &str) -> UserId {
    let a = applicant(w, phone);
    w.run(Actor::User(a), Command::PutApplication(details(expires_on))).unwrap();
    for k in REQUIRED_DOCUMENTS {
        w.run(Actor::User(a), upload(k)).unwrap();
    }
    w.run(Actor::User(a), Command::SubmitApplication).unwrap();
    a
}

#[test]
fn an_application_goes_from_draft_to_submitted_to_approved_and_its_driver_works() {
    let mut w = World::new(rules());
    let a = applicant(&mut w, "+201055550001");
    assert_eq!(status(&w, a), ApplicationStatus::Draft);
    // Submitting names everything missing.
    match w.run(Actor::User(a), Command::SubmitApplication) {
        Err(Error::InvalidParam { message, .. }) => {
            for what in ["name", "vehicle", "license", "license_front", "photo"] {
                assert!(message.contains(what), "{message}");
            }
        }
        other => panic!("{other:?}"),
    }
    w.run(Actor::User(a), Command::PutApplication(details("2099-12-31"))).unwrap();
    for k in &REQUIRED_DOCUMENTS[..4] {
        w.run(Actor::User(a), upload(*k)).unwrap();
    }
    match w.run(Actor::User(a), Command::SubmitApplication) {
        Err(Error::InvalidParam { param, message }) => assert_eq!((param, message.contains("photo")), ("photo", true)),
        other => panic!("{other:?}"),
    }
    w.run(Actor::User(a), upload(DocumentKind::Photo)).unwrap();
    w.run(Actor::User(a), Command::SubmitApplication).unwrap();
    assert_eq!(status(&w, a), ApplicationStatus::Submitted);
    // Submitted: the applicant waits; edits and a second submit are refused.
    assert!(matches!(
        w.run(Actor::User(a), Command::PutApplication(details("2099-12-31"))),
        Err(Error::InvalidTransition { from: "submitted", .. })
    ));
    assert!(matches!(w.run(Actor::User(a), upload(DocumentKind::Photo)), Err(Error::InvalidTransition { .. })));
    assert!(matches!(w.run(Actor::User(a), Command::SubmitApplication), Err(Error::InvalidTransition { .. })));
    let online = Command::SetDriverStatus { online: true, location: None };
    assert!(matches!(w.run(Actor::User(a), online.clone()), Err(Error::NotApproved(_))));
    // Only an admin decides.
    let approve = Command::DecideApplication { driver_id: a, approve: true, reason: None };
    assert!(matches!(w.run(Actor::User(a), approve.clone()), Err(Error::Forbidden(_))));
    w.run(Actor::Admin, approve.clone()).unwrap();
    assert_eq!(status(&w, a), ApplicationStatus::Approved);
    let u = w.state.user(a).unwrap();
    assert_eq!((u.name.as_str(), u.vehicle.as_ref().map(|v| v.plate.as_str())), ("Karim", Some("ABC 123")));
    assert!(matches!(w.run(Actor::Admin, approve), Err(Error::InvalidTransition { from: "approved", .. })));
    assert!(matches!(
        w.run(Actor::User(a), Command::PutApplication(details("2099-12-31"))),
        Err(Error::InvalidTransition { from: "approved", .. })
    ));
    w.run(Actor::User(a), online).unwrap();
    w.finish();
}

#[test]
fn a_rejected_applicant_cannot_work_but_may_edit_and_submit_again() {
    let mut w = World::new(rules());
    let a = submitted(&mut w, "+201055550002", "2099-12-31");
    let reject = Command::DecideApplication { driver_id: a, approve: false, reason: Some("blurry photo".into()) };
    w.run(Actor::Admin, reject).unwrap();
    assert_eq!(status(&w, a), ApplicationStatus::Rejected);
    assert_eq!(w.state.applications().get(a).unwrap().reason.as_deref(), Some("blurry photo"));
    assert!(w.state.driver(a).is_none());
    let online = Command::SetDriverStatus { online: true, location: None };
    assert!(matches!(w.run(Actor::User(a), online), Err(Error::NotApproved(_))));
    w.run(Actor::User(a), upload(DocumentKind::Photo)).unwrap();
    assert_eq!(status(&w, a), ApplicationStatus::Rejected, "editing keeps it rejected until submitted");
    w.run(Actor::User(a), Command::SubmitApplication).unwrap();
    assert_eq!(status(&w, a), ApplicationStatus::Submitted);
    // Staff-made drivers have no application to edit.
    let d = w.driver(0.5);
    assert!(matches!(w.run(Actor::User(d), upload(DocumentKind::Photo)), Err(Error::InvalidTransition { .. })));
    w.finish();
}

#[test]
fn bad_details_are_refused_with_the_field_and_change_nothing() {
    let mut w = World::new(rules());
    let a = applicant(&mut w, "+201055550003");
    let put = |d: Box<ApplicationDetails>| Command::PutApplication(d);
    let mut d = details("2099-12-31");
    d.name = String::new();
    assert!(matches!(w.run(Actor::User(a), put(d)), Err(Error::InvalidParam { param: "name", .. })));
    let mut d = details("2099-12-31");
    d.vehicle.year = Some(1900);
    assert!(matches!(w.run(Actor::User(a), put(d)), Err(Error::InvalidParam { param: "vehicle", .. })));
    let mut d = details("2099-12-31");
    d.vehicle.category = Category::new("helicopter").unwrap();
    assert!(matches!(w.run(Actor::User(a), put(d)), Err(Error::InvalidParam { param: "vehicle.category", .. })));
    let mut d = details("2099-12-31");
    d.license.number = "\u{0}".into();
    assert!(matches!(w.run(Actor::User(a), put(d)), Err(Error::InvalidParam { param: "license.number", .. })));
    assert!(matches!(
        w.run(Actor::User(a), put(details("2020-01-01"))),
        Err(Error::InvalidParam { param: "license.expires_on", .. })
    ));
    let huge = Command::AddDocument {
        kind: DocumentKind::Photo,
        sha256: [0; 32],
        media_type: MediaType::Jpeg,
        size: crate::application::MAX_DOCUMENT_BYTES as u64 + 1,
    };
    assert!(w.run(Actor::User(a), huge).is_err());
    let rider = w.rider();
    assert!(matches!(w.run(Actor::User(rider), upload(DocumentKind::Photo)), Err(Error::Forbidden(_))));
    w.finish();
}

#[test]
fn an_expired_licence_keeps_its_driver_offline_and_is_reminded_once_fourteen_days_before() {
    // T0 is 2023-11-14 22:13 UTC: the reminder is due 2023-11-16 00:00, expiry from 2023-12-01 00:00.
    let mut w = World::new(rules());
    let a = submitted(&mut w, "+201055550004", "2023-11-30");
    w.run(Actor::User(a), Command::RegisterDevice { id: None, platform: Platform::Fcm, token: "tok".into() }).unwrap();
    w.run(Actor::Admin, Command::DecideApplication { driver_id: a, approve: true, reason: None }).unwrap();
    let reminders = |w: &World| w.state.outbox().newest_first(None, |n| n.kind == Kind::LicenceExpiring, 10);
    w.advance(24 * 3_600);
    assert_eq!(reminders(&w).len(), 0, "not yet");
    w.advance(2 * 3_600);
    assert_eq!(reminders(&w).len(), 1, "14 days before");
    let item = reminders(&w)[0].clone();
    assert_eq!((item.user_id, item.params.text.as_deref()), (Some(a), Some("2023-11-30")));
    w.advance(24 * 3_600);
    assert_eq!(reminders(&w).len(), 1, "once per licence");
    let online = Command::SetDriverStatus { online: true, location: None };
    w.run(Actor::User(a), online.clone()).unwrap();
    w.run(Actor::User(a), Command::SetDriverStatus { online: false, location: None }).unwrap();
    w.advance(15 * 24 * 3_600);
    assert!(matches!(w.run(Actor::User(a), online), Err(Error::DocumentExpired { .. })));
    w.finish();
}

#[test]
fn a_licence_that_expires_while_its_driver_works_stops_the_driver() {
    // T0 is 2023-11-14 22:13 UTC; licences valid through 2023-11-14 expire at 2023-11-15 00:00.
    let mut w = World::new(rules());
    let idle = submitted(&mut w, "+201055550005", "2023-11-14");
    let busy = submitted(&mut w, "+201055550006", "2023-11-14");
    for d in [idle, busy] {
        w.run(Actor::Admin, Command::DecideApplication { driver_id: d, approve: true, reason: None }).unwrap();
        let here = crate::geo::LatLng::new(crate::testkit::CAIRO.0, crate::testkit::CAIRO.1).unwrap();
        w.run(Actor::User(d), Command::SetDriverStatus { online: true, location: Some(here) }).unwrap();
    }
    // `busy` takes a trip (the nearest first: offer both, accept with `busy`).
    let rider = w.rider();
    let trip = w.trip(rider);
    w.accept(busy, trip).unwrap();
    let availability = |w: &World, d: UserId| w.state.driver(d).unwrap().availability;
    assert_eq!(availability(&w, idle), crate::driver::Availability::Available);
    w.advance(2 * 3_600);
    assert_eq!(availability(&w, idle), crate::driver::Availability::Offline, "stopped at the expiry");
    assert!(w.state.driver(idle).unwrap().pending_offers.is_empty(), "its offers withdrawn");
    assert_eq!(availability(&w, busy), crate::driver::Availability::OnTrip, "the trip goes on");
    w.run(Actor::User(busy), Command::DriverArrived { trip_id: trip }).unwrap();
    let code = w.get(trip).pickup_code.to_string();
    w.run(Actor::User(busy), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
    w.run(Actor::User(busy), Command::CompleteTrip { trip_id: trip, distance_m: None, dropoff: None }).unwrap();
    assert_eq!(availability(&w, busy), crate::driver::Availability::Offline, "not available after it");
    let online = Command::SetDriverStatus { online: true, location: None };
    assert!(matches!(w.run(Actor::User(busy), online), Err(Error::DocumentExpired { .. })));
    w.finish();
}

#[test]
fn a_submission_is_announced_to_the_webhook_endpoints_that_want_it() {
    let mut w = World::new(rules());
    let cmd = Command::CreateWebhookEndpoint {
        id: None,
        secret: None,
        url: "https://hooks.example.com/in".into(),
        events: vec!["application.*".into()],
        description: None,
    };
    let Outcome::WebhookEndpoint(e) = w.run(Actor::Admin, cmd).unwrap() else { panic!() };
    let a = submitted(&mut w, "+201000000777", "2030-01-01");
    let log = w.state.hooks().deliveries_of(e.id, None, 10);
    assert_eq!(log.len(), 1, "the edits and uploads before it are not announced");
    assert_eq!(log[0].event.kind, crate::hooks::EventType::ApplicationSubmitted);
    match &log[0].event.data {
        crate::hooks::EventData::Application(app) => {
            assert_eq!((app.driver_id, app.status), (a, ApplicationStatus::Submitted));
        }
        other => panic!("{other:?}"),
    }
    w.finish();
}
