//! Staff sign-in (`staff.rs`): creating staff with an e-mail and a custom role, setups
//! (consumed once, expiring, replaced), failures and the lock, TOTP replay, signing out,
//! and that no command or state holds a password or a TOTP secret.

use super::*;
use crate::command::NewUser;
use crate::staff::{LOCK_S, MAX_FAILURES, SETUP_TTL_S};

const PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";

fn new_staff(role: Role, phone: &str) -> NewUser {
    NewUser { id: None, role, name: "Staff".into(), phone: phone.into(), vehicle: None }
}

/// Creates a support user signing in with `email`: (its id, the setup nonce).
fn staff(w: &mut World, email: &str, phone: &str) -> (UserId, u64) {
    let cmd = Command::CreateStaff {
        user: new_staff(Role::Support, phone),
        staff_role: None,
        email: Some(email.into()),
        setup_nonce: None,
    };
    match w.run(Actor::Admin, cmd).unwrap() {
        Outcome::StaffCreated { user, setup: Some((nonce, expires_at)) } => {
            assert_eq!(expires_at, w.now.plus_secs(SETUP_TTL_S as u32));
            assert_eq!(user.email.as_deref(), Some(email));
            (user.id, nonce)
        }
        o => panic!("{o:?}"),
    }
}

fn setup(w: &mut World, user_id: UserId, nonce: u64) -> Result<Outcome> {
    let cmd = Command::SetupStaff { user_id, setup_nonce: nonce, password_hash: PHC.into(), totp_nonce: None };
    w.run(Actor::System, cmd)
}

#[test]
fn a_staff_user_is_created_by_an_admin_with_a_unique_email_and_a_well_formed_role() {
    let mut w = World::new(rules());
    let rider = w.rider();
    let cmd = |role, staff_role: Option<&str>, email: Option<&str>, phone: &str| Command::CreateStaff {
        user: new_staff(role, phone),
        staff_role: staff_role.map(str::to_owned),
        email: email.map(str::to_owned),
        setup_nonce: None,
    };
    assert!(matches!(
        w.run(Actor::User(rider), cmd(Role::Support, None, Some("a@example.com"), "+201000000101")),
        Err(Error::Forbidden(_))
    ));
    let (a, _) = staff(&mut w, "Amal@Example.com", "+201000000102");
    for (role, staff_role, email, param) in [
        (Role::Support, None, Some("AMAL@example.com"), "email"),
        (Role::Support, None, Some("not an address"), "email"),
        (Role::Support, Some("Finance"), None, "role"),
        (Role::Support, Some("admin"), None, "role"),
        (Role::Admin, Some("finance"), None, "role"),
        (Role::Rider, None, Some("r@example.com"), "role"),
    ] {
        match w.run(Actor::Admin, cmd(role, staff_role, email, "+201000000103")) {
            Err(Error::InvalidParam { param: p, .. }) => assert_eq!(p, param, "{staff_role:?} {email:?}"),
            r => panic!("{r:?}"),
        }
    }
    assert_eq!(w.state.staff().by_email("amal@EXAMPLE.com"), Some(a));
    // A custom role: a support user naming it; no e-mail: no credentials (v1's token only).
    let u = match w.run(Actor::Admin, cmd(Role::Support, Some("finance"), None, "+201000000104")).unwrap() {
        Outcome::StaffCreated { user, setup: None } => user,
        o => panic!("{o:?}"),
    };
    assert_eq!((u.role, u.staff_role.as_deref()), (Role::Support, Some("finance")));
    assert!(w.state.staff().get(u.id).is_none());
    w.finish();
}

#[test]
fn a_setup_is_consumed_once_before_it_expires_and_a_new_one_replaces_the_secret() {
    let mut w = World::new(rules());
    let (a, nonce) = staff(&mut w, "amal@example.com", "+201000000201");
    assert!(matches!(setup(&mut w, a, nonce ^ 1), Err(Error::Forbidden(_))), "a forged nonce");
    let bad = Command::SetupStaff { user_id: a, setup_nonce: nonce, password_hash: "hunter2".into(), totp_nonce: None };
    assert!(w.run(Actor::System, bad).is_err(), "only a PHC hash enters the log");
    let not_system =
        Command::SetupStaff { user_id: a, setup_nonce: nonce, password_hash: PHC.into(), totp_nonce: None };
    assert!(matches!(w.run(Actor::Admin, not_system), Err(Error::Forbidden(_))));
    let first = match setup(&mut w, a, nonce).unwrap() {
        Outcome::StaffSetUp { email, totp_nonce } => {
            assert_eq!(email, "amal@example.com");
            totp_nonce
        }
        o => panic!("{o:?}"),
    };
    assert!(matches!(setup(&mut w, a, nonce), Err(Error::Forbidden(_))), "used once");
    // A new setup (the admin's re-issue): used, it replaces the TOTP nonce.
    let again = Command::IssueStaffSetup { user_id: a, email: None, nonce: None };
    let n2 = match w.run(Actor::Admin, again).unwrap() {
        Outcome::StaffSetupIssued { nonce, .. } => nonce,
        o => panic!("{o:?}"),
    };
    match setup(&mut w, a, n2).unwrap() {
        Outcome::StaffSetUp { totp_nonce, .. } => assert_ne!(totp_nonce, first),
        o => panic!("{o:?}"),
    }
    // An expired setup.
    let n3 = match w.run(Actor::Admin, Command::IssueStaffSetup { user_id: a, email: None, nonce: None }).unwrap() {
        Outcome::StaffSetupIssued { nonce, .. } => nonce,
        o => panic!("{o:?}"),
    };
    w.advance(SETUP_TTL_S);
    assert!(matches!(setup(&mut w, a, n3), Err(Error::Forbidden(_))), "expired");
    // A staff user without an e-mail gets one with its first setup; a rider gets none.
    let plain = w.user(Role::Admin, None);
    let no_email = Command::IssueStaffSetup { user_id: plain, email: None, nonce: None };
    assert!(matches!(w.run(Actor::Admin, no_email), Err(Error::InvalidParam { param: "email", .. })));
    let with = Command::IssueStaffSetup { user_id: plain, email: Some("boss@example.com".into()), nonce: None };
    w.run(Actor::Admin, with).unwrap();
    assert_eq!(w.state.staff().by_email("boss@example.com"), Some(plain));
    let rider = w.rider();
    let r = Command::IssueStaffSetup { user_id: rider, email: Some("r@example.com".into()), nonce: None };
    assert!(w.run(Actor::Admin, r).is_err());
    w.finish();
}

#[test]
fn failures_lock_the_account_and_a_success_resets_them_and_remembers_its_step() {
    let mut w = World::new(rules());
    let (a, nonce) = staff(&mut w, "amal@example.com", "+201000000301");
    let ok = |step| Command::StaffLoginSucceeded { user_id: a, step };
    let fail = Command::StaffLoginFailed { user_id: a };
    assert!(matches!(w.run(Actor::System, ok(100)), Err(Error::Forbidden(_))), "not set up yet");
    setup(&mut w, a, nonce).unwrap();
    assert!(matches!(w.run(Actor::Admin, ok(100)), Err(Error::Forbidden(_))), "the server's only");
    for _ in 0..MAX_FAILURES - 1 {
        assert_eq!(w.run(Actor::System, fail.clone()).unwrap(), Outcome::StaffLoginCounted { locked: false });
    }
    // A success resets the count.
    assert!(matches!(w.run(Actor::System, ok(100)).unwrap(), Outcome::User(u) if u.id == a));
    assert_eq!(w.state.staff().get(a).unwrap().failures, 0);
    assert!(matches!(w.run(Actor::System, ok(100)), Err(Error::Forbidden(_))), "a code is used once");
    assert!(matches!(w.run(Actor::System, ok(99)), Err(Error::Forbidden(_))), "an earlier step too");
    for i in 0..MAX_FAILURES {
        let locked = i == MAX_FAILURES - 1;
        assert_eq!(w.run(Actor::System, fail.clone()).unwrap(), Outcome::StaffLoginCounted { locked });
    }
    match w.run(Actor::System, ok(101)) {
        Err(Error::RateLimited { retry_after_s, .. }) => assert_eq!(retry_after_s, LOCK_S as u64),
        r => panic!("locked even with the right code: {r:?}"),
    }
    assert!(matches!(w.run(Actor::System, fail.clone()), Err(Error::RateLimited { .. })));
    w.advance(LOCK_S - 1);
    assert!(matches!(w.run(Actor::System, ok(101)), Err(Error::RateLimited { retry_after_s: 1, .. })));
    w.advance(1);
    assert!(matches!(w.run(Actor::System, ok(101)).unwrap(), Outcome::User(_)), "unlocked after 15 minutes");
    w.finish();
}

#[test]
fn signing_out_ends_every_token_of_the_caller_only() {
    let mut w = World::new(rules());
    let (rider, other) = (w.rider(), w.rider());
    let generation = |w: &World, u| w.state.user(u).unwrap().token_generation;
    w.run(Actor::User(rider), Command::SignOut).unwrap();
    assert_eq!((generation(&w, rider), generation(&w, other)), (1, 0));
    assert!(w.run(Actor::Admin, Command::SignOut).is_err(), "the bootstrap admin has no tokens to end");
    assert!(w.run(Actor::System, Command::SignOut).is_err());
    w.finish();
}

#[test]
fn no_command_or_state_holds_a_password_or_a_totp_secret() {
    let mut w = World::new(rules());
    let (a, nonce) = staff(&mut w, "amal@example.com", "+201000000401");
    setup(&mut w, a, nonce).unwrap();
    w.run(Actor::System, Command::StaffLoginFailed { user_id: a }).unwrap();
    w.run(Actor::System, Command::StaffLoginSucceeded { user_id: a, step: 7 }).unwrap();
    // What a staff command carries, field by field: ids, nonces, an e-mail, a step and the
    // PHC hash; nothing else can hold a secret (the commands' fields are exhaustive here).
    for r in &w.log {
        match &r.command {
            Command::CreateStaff { user, staff_role: _, email: _, setup_nonce: _ } => assert!(user.vehicle.is_none()),
            Command::SetupStaff { user_id: _, setup_nonce: _, password_hash, totp_nonce: _ } => {
                crate::staff::validate_phc(password_hash).unwrap();
            }
            Command::IssueStaffSetup { user_id: _, email: _, nonce: _ }
            | Command::StaffLoginFailed { user_id: _ }
            | Command::StaffLoginSucceeded { user_id: _, step: _ } => {}
            _ => {}
        }
    }
    // The credentials, exhaustively: the e-mail, the PHC hash, nonces, counters and times.
    let c = w.state.staff().get(a).unwrap();
    let crate::staff::Credentials { email, password_hash, setup, totp_nonce, last_step, failures, locked_until } = &**c;
    assert_eq!(email, "amal@example.com");
    assert_eq!(password_hash.as_deref(), Some(PHC));
    assert_eq!((setup, totp_nonce.is_some(), last_step, failures, locked_until), (&None, true, &Some(7), &0, &None));
    w.finish();
}
