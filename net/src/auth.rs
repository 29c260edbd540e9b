//! Who is calling, and what they may do.
//!
//! Owns the bearer tokens (HMAC-SHA256 with `ring`, carrying the user id, role, expiry
//! and the user's token generation), the bootstrap admin token check, the keyed hash of
//! OTP codes, and [`Allow`], the one table of which roles may call a route.
//!
//! Guarantees:
//! - tokens, the admin token and the metrics token are checked in constant time
//!   (`ring::hmac::verify`); the metrics token opens `GET /metrics` only;
//! - a token has one spelling: `dt1.`, then its payload and its MAC in lower-case hex;
//!   any other spelling of the same bytes (upper-case hex anywhere) is refused, so a
//!   token cannot be varied to slip past a deny list or a log search;
//! - a WebSocket may carry its token in `Sec-WebSocket-Protocol` rather than in its URL
//!   ([`ws_protocol_token`]): the client offers [`WS_PROTOCOL`] and
//!   `bearer.<the token's bytes in lower-case hex>`, the server answers [`WS_PROTOCOL`]
//!   only, so the token is in no URL, no access log and no response;
//! - a token is refused once its user's token generation moved past the one it carries
//!   ([`generation_ok`], the one place that check lives), once it expired, or when the
//!   role it names is not the user's role in the engine;
//! - on a route that needs a caller, one with no or a bad token is `401 unauthorized`; an
//!   authenticated caller whose role a route does not allow is `403 forbidden` — decided
//!   by [`authorize`] only (routes open to anyone never look at the token).

use dispatch_core::id::ShareId;
use dispatch_core::{Actor, Role, User, UserId};
use ring::hmac;

use crate::hex::{hex, unhex};
use crate::http::ApiError;

/// How long a user token lives, seconds (30 days).
pub const TOKEN_TTL_S: i64 = 30 * 24 * 60 * 60;

/// The authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// The holder of `DISPATCH_ADMIN_TOKEN` (no user record).
    BootstrapAdmin,
    /// A user with a valid token.
    User {
        /// Who.
        id: UserId,
        /// Their role (as the engine has it).
        role: Role,
        /// What they may do as staff (none for riders and drivers).
        perms: Permissions,
    },
}

impl Principal {
    /// A user whose rights are those of `role` by default ([`Permissions::of_role`]).
    pub fn user(id: UserId, role: Role) -> Principal {
        Principal::User { id, role, perms: Permissions::of_role(role) }
    }

    /// What this caller may do as staff: every permission for the bootstrap admin.
    pub fn permissions(self) -> Permissions {
        match self {
            Principal::BootstrapAdmin => Permissions::ALL,
            Principal::User { perms, .. } => perms,
        }
    }

    /// The engine actor.
    pub fn actor(self) -> Actor {
        match self {
            Principal::BootstrapAdmin => Actor::Admin,
            Principal::User { id, .. } => Actor::User(id),
        }
    }

    /// The role, the bootstrap admin counting as `admin`.
    pub fn role(self) -> Role {
        match self {
            Principal::BootstrapAdmin => Role::Admin,
            Principal::User { role, .. } => role,
        }
    }

    /// The user id, if a user.
    pub fn user_id(self) -> Option<UserId> {
        match self {
            Principal::BootstrapAdmin => None,
            Principal::User { id, .. } => Some(id),
        }
    }

    /// Support or admin.
    pub fn is_staff(self) -> bool {
        self.role().is_staff()
    }
}

/// What a token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    /// Whose.
    pub user: UserId,
    /// Their role at issue.
    pub role: Role,
    /// Expiry, Unix seconds.
    pub exp_s: i64,
    /// The user's token generation at issue.
    pub generation: u32,
}

const TOKEN_PREFIX: &str = "dt1.";
const PAYLOAD_LEN: usize = 8 + 1 + 8 + 4;

/// The keys: token signing, the admin token check, OTP hashing (each derived from the
/// secrets with a distinct label, so one never verifies another's data).
pub struct Keys {
    token: hmac::Key,
    admin: hmac::Key,
    admin_tag: hmac::Tag,
    /// The tag of `DISPATCH_METRICS_TOKEN` under `admin`'s key, when one is set.
    metrics_tag: Option<hmac::Tag>,
    otp: hmac::Key,
    share: hmac::Key,
}

impl Keys {
    /// Keys from the token secret and the admin token.
    pub fn new(token_secret: &[u8], admin_token: &str) -> Keys {
        let derive = |label: &[u8]| {
            let root = hmac::Key::new(hmac::HMAC_SHA256, token_secret);
            hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, label).as_ref())
        };
        let admin = derive(b"dispatch admin token v1");
        let admin_tag = hmac::sign(&admin, admin_token.as_bytes());
        Keys {
            token: derive(b"dispatch user token v1"),
            admin,
            admin_tag,
            metrics_tag: None,
            otp: derive(b"dispatch otp v1"),
            share: derive(b"dispatch share link v1"),
        }
    }

    /// These keys, taking `token` (`DISPATCH_METRICS_TOKEN`) as a credential for
    /// `GET /metrics` only.
    pub fn with_metrics_token(mut self, token: Option<&str>) -> Keys {
        self.metrics_tag = token.map(|t| hmac::sign(&self.admin, format!("metrics\0{t}").as_bytes()));
        self
    }

    /// A signed token for `claims`.
    pub fn issue(&self, claims: Claims) -> String {
        let mut p = Vec::with_capacity(PAYLOAD_LEN);
        p.extend_from_slice(&claims.user.raw().to_be_bytes());
        p.push(role_byte(claims.role));
        p.extend_from_slice(&claims.exp_s.to_be_bytes());
        p.extend_from_slice(&claims.generation.to_be_bytes());
        let tag = hmac::sign(&self.token, &p);
        format!("{TOKEN_PREFIX}{}.{}", hex(&p), hex(tag.as_ref()))
    }

    /// The claims of a well-signed, unexpired token in its canonical spelling (`now_s`:
    /// Unix seconds).
    pub fn verify(&self, token: &str, now_s: i64) -> Option<Claims> {
        let rest = token.strip_prefix(TOKEN_PREFIX)?;
        let (p, tag) = rest.split_once('.')?;
        let (p, tag) = (canonical_unhex(p)?, canonical_unhex(tag)?);
        hmac::verify(&self.token, &p, &tag).ok()?;
        if p.len() != PAYLOAD_LEN {
            return None;
        }
        let user = UserId::from_raw(u64::from_be_bytes(p[0..8].try_into().ok()?))?;
        let role = byte_role(p[8])?;
        let exp_s = i64::from_be_bytes(p[9..17].try_into().ok()?);
        let generation = u32::from_be_bytes(p[17..21].try_into().ok()?);
        (now_s < exp_s).then_some(Claims { user, role, exp_s, generation })
    }

    /// Whether `candidate` is the bootstrap admin token (constant time in its content).
    pub fn is_admin_token(&self, candidate: &str) -> bool {
        hmac::verify(&self.admin, candidate.as_bytes(), self.admin_tag.as_ref()).is_ok()
    }

    /// Whether `candidate` is the metrics token (constant time in its content); always
    /// `false` when none is set. It opens `GET /metrics` and nothing else: no other route
    /// asks, and to [`authenticate`] it is an unknown token.
    pub fn is_metrics_token(&self, candidate: &str) -> bool {
        self.metrics_tag.as_ref().is_some_and(|tag| {
            hmac::verify(&self.admin, format!("metrics\0{candidate}").as_bytes(), tag.as_ref()).is_ok()
        })
    }

    /// The token of share link `id`: its id and the id's MAC under the share key, 80
    /// lowercase hex digits. Derived, never stored: the log and the state hold only the
    /// link's id, so neither a copied log nor a checkpoint lets anyone follow a trip, and
    /// the engine draws no secret that would then have to be logged in clear. Changing
    /// `DISPATCH_TOKEN_SECRET` ends every link, as it ends every sign-in.
    pub fn share_token(&self, id: ShareId) -> String {
        let raw = id.raw().to_be_bytes();
        format!("{}{}", hex(&raw), hex(hmac::sign(&self.share, &raw).as_ref()))
    }

    /// The link a token names, if its MAC is right (checked in constant time) and it is
    /// spelt as [`Keys::share_token`] writes it.
    pub fn share_id(&self, token: &str) -> Option<ShareId> {
        if token.len() != 80 {
            return None;
        }
        let (raw, tag) = (canonical_unhex(token.get(..16)?)?, canonical_unhex(token.get(16..)?)?);
        hmac::verify(&self.share, &raw, &tag).ok()?;
        ShareId::from_raw(u64::from_be_bytes(raw.try_into().ok()?))
    }

    /// The keyed hash of an OTP code for `phone` (only this reaches the engine).
    pub fn otp_hash(&self, phone: &str, code: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.otp);
        ctx.update(phone.as_bytes());
        ctx.update(b"\0");
        ctx.update(code.as_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(&tag.as_ref()[..32]);
        out
    }

    /// A fresh token for `user`.
    pub fn token_for(&self, user: &User, now_s: i64) -> String {
        self.issue(Claims {
            user: user.id,
            role: user.role,
            exp_s: now_s + TOKEN_TTL_S,
            generation: user.token_generation,
        })
    }
}

/// The bytes of `s` if it is lower-case hex, the one spelling [`hex`] writes.
fn canonical_unhex(s: &str) -> Option<Vec<u8>> {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)).then(|| unhex(s)).flatten()
}

/// The WebSocket subprotocol the server speaks, and answers when a client offers it.
pub const WS_PROTOCOL: &str = "dispatch.v1";

/// The prefix of the subprotocol value that carries a token: `bearer.` and the token's
/// bytes in lower-case hex (a subprotocol is an HTTP token: an admin token may hold
/// characters it cannot).
pub const WS_BEARER_PREFIX: &str = "bearer.";

/// Longest token read from a `Sec-WebSocket-Protocol` value, bytes (a user token is 110).
const WS_TOKEN_MAX_BYTES: usize = 512;

/// The token a WebSocket upgrade offers in `Sec-WebSocket-Protocol` (`values`: each of
/// the header's values), and whether it offers [`WS_PROTOCOL`]. A `bearer.` value that is
/// not canonical lower-case hex of printable ASCII counts as a bad token (an empty one,
/// which no check accepts), never as no token.
pub fn ws_protocol_token<'a>(values: impl IntoIterator<Item = &'a str>) -> (Option<String>, bool) {
    let mut token = None;
    let mut speaks = false;
    for offered in values.into_iter().flat_map(|v| v.split(',')).map(str::trim) {
        if offered == WS_PROTOCOL {
            speaks = true;
        } else if let Some(hex) = offered.strip_prefix(WS_BEARER_PREFIX) {
            let decoded = (hex.len() <= 2 * WS_TOKEN_MAX_BYTES)
                .then(|| canonical_unhex(hex))
                .flatten()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|t| t.bytes().all(|b| b.is_ascii_graphic()));
            token = Some(decoded.unwrap_or_default());
        }
    }
    (token, speaks)
}

fn role_byte(r: Role) -> u8 {
    match r {
        Role::Rider => 1,
        Role::Driver => 2,
        Role::Support => 3,
        Role::Admin => 4,
    }
}

fn byte_role(b: u8) -> Option<Role> {
    Some(match b {
        1 => Role::Rider,
        2 => Role::Driver,
        3 => Role::Support,
        4 => Role::Admin,
        _ => return None,
    })
}

/// Whether a token's generation is still current for `user`: the one place token
/// revocation (`POST /v1/admin/users/{id}/revoke-tokens`) is enforced.
pub fn generation_ok(user: &User, claims: &Claims) -> bool {
    claims.generation == user.token_generation
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Resolves a bearer token against the engine's users: the principal, or
/// `401 unauthorized`.
pub fn authenticate(
    keys: &Keys,
    token: &str,
    now_s: i64,
    user: impl FnOnce(UserId) -> Option<std::sync::Arc<User>>,
) -> Result<Principal, ApiError> {
    let unauthorized = || ApiError::new("unauthorized", "invalid or expired token");
    if keys.is_admin_token(token) {
        return Ok(Principal::BootstrapAdmin);
    }
    let claims = keys.verify(token, now_s).ok_or_else(unauthorized)?;
    let u = user(claims.user).ok_or_else(unauthorized)?;
    if u.role != claims.role || !generation_ok(&u, &claims) {
        return Err(unauthorized());
    }
    Ok(Principal::user(u.id, u.role))
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// Anyone, authenticated or not.
    Anyone,
    /// Any authenticated caller.
    Authenticated,
    /// Callers with one of these roles (the bootstrap admin is `admin`).
    Roles(&'static [Role]),
    /// Staff whose role grants this permission (API.md "Back office": `support` and
    /// `admin` by default, more roles from `[roles.<name>]`).
    Permission(Permission),
}

/// A staff permission (API.md v1.1 "Back office"): what a staff role may do. A route
/// names at most one ([`Allow::Permission`]); a role is a set of them ([`Permissions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// `trips.read`
    TripsRead,
    /// `trips.cancel`
    TripsCancel,
    /// `refunds.create`
    RefundsCreate,
    /// `drivers.suspend`
    DriversSuspend,
    /// `users.read`
    UsersRead,
    /// `users.write`
    UsersWrite,
    /// `users.block`
    UsersBlock,
    /// `applications.review`
    ApplicationsReview,
    /// `payouts.approve`
    PayoutsApprove,
    /// `settings.write`
    SettingsWrite,
    /// `zones.write`
    ZonesWrite,
    /// `coupons.write`
    CouponsWrite,
    /// `reports.read`
    ReportsRead,
    /// `audit.read`
    AuditRead,
    /// `notifications.read`
    NotificationsRead,
}

impl Permission {
    /// Every permission, in the order API.md lists them.
    pub const ALL: [Permission; 15] = [
        Permission::TripsRead,
        Permission::TripsCancel,
        Permission::RefundsCreate,
        Permission::DriversSuspend,
        Permission::UsersRead,
        Permission::UsersWrite,
        Permission::UsersBlock,
        Permission::ApplicationsReview,
        Permission::PayoutsApprove,
        Permission::SettingsWrite,
        Permission::ZonesWrite,
        Permission::CouponsWrite,
        Permission::ReportsRead,
        Permission::AuditRead,
        Permission::NotificationsRead,
    ];

    /// Its name in the config and the OpenAPI document (`trips.read`).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::TripsRead => "trips.read",
            Permission::TripsCancel => "trips.cancel",
            Permission::RefundsCreate => "refunds.create",
            Permission::DriversSuspend => "drivers.suspend",
            Permission::UsersRead => "users.read",
            Permission::UsersWrite => "users.write",
            Permission::UsersBlock => "users.block",
            Permission::ApplicationsReview => "applications.review",
            Permission::PayoutsApprove => "payouts.approve",
            Permission::SettingsWrite => "settings.write",
            Permission::ZonesWrite => "zones.write",
            Permission::CouponsWrite => "coupons.write",
            Permission::ReportsRead => "reports.read",
            Permission::AuditRead => "audit.read",
            Permission::NotificationsRead => "notifications.read",
        }
    }

    /// The permission named `s`, if any.
    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of [`Permission`]s (a bit set: `Copy`, checked in O(1)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(u16);

impl Permissions {
    /// No permission (riders, drivers).
    pub const NONE: Permissions = Permissions(0);
    /// Every permission (`admin`, the bootstrap admin).
    pub const ALL: Permissions = Permissions((1 << Permission::ALL.len()) - 1);
    /// `support`'s default rights (API.md v1.1 details).
    pub const SUPPORT: Permissions = Permissions::of(&[
        Permission::TripsRead,
        Permission::TripsCancel,
        Permission::RefundsCreate,
        Permission::UsersRead,
        Permission::NotificationsRead,
        Permission::ReportsRead,
    ]);

    /// The set of `list`.
    pub const fn of(list: &[Permission]) -> Permissions {
        let mut bits = 0u16;
        let mut i = 0;
        while i < list.len() {
            bits |= 1 << (list[i] as u16);
            i += 1;
        }
        Permissions(bits)
    }

    /// The default rights of a built-in role.
    pub fn of_role(role: Role) -> Permissions {
        match role {
            Role::Admin => Permissions::ALL,
            Role::Support => Permissions::SUPPORT,
            Role::Rider | Role::Driver => Permissions::NONE,
        }
    }

    /// Whether `p` is in the set.
    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// The set's permissions, in [`Permission::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

/// Staff: support and admin.
pub const STAFF: Allow = Allow::Roles(&[Role::Support, Role::Admin]);
/// Admin only.
pub const ADMIN: Allow = Allow::Roles(&[Role::Admin]);
/// Riders.
pub const RIDER: Allow = Allow::Roles(&[Role::Rider]);
/// Drivers.
pub const DRIVER: Allow = Allow::Roles(&[Role::Driver]);
/// Riders and drivers.
pub const RIDER_OR_DRIVER: Allow = Allow::Roles(&[Role::Rider, Role::Driver]);

/// The one permission check: `401` for no caller where one is needed, `403` for a
/// role the route does not allow.
pub fn authorize(allow: Allow, who: Option<Principal>) -> Result<(), ApiError> {
    match (allow, who) {
        (Allow::Anyone, _) => Ok(()),
        (_, None) => Err(ApiError::new("unauthorized", "a bearer token is required")),
        (Allow::Authenticated, Some(_)) => Ok(()),
        (Allow::Roles(roles), Some(p)) if roles.contains(&p.role()) => Ok(()),
        (Allow::Roles(_), Some(p)) => {
            Err(ApiError::new("forbidden", format!("the {} role may not do this", p.role().as_str())))
        }
        (Allow::Permission(perm), Some(p)) if p.permissions().contains(perm) => Ok(()),
        (Allow::Permission(perm), Some(_)) => {
            Err(ApiError::new("forbidden", format!("this needs the {} permission", perm.as_str())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispatch_core::clock::Timestamp;
    use std::sync::Arc;

    fn user(generation: u32) -> Arc<User> {
        Arc::new(User {
            id: UserId::from_raw(42).unwrap(),
            role: Role::Driver,
            name: "Omar".into(),
            phone: "+201000000001".into(),
            vehicle: None,
            token_generation: generation,
            suspended: false,
            created_at: Timestamp::from_millis(0),
            rating: Default::default(),
            email: None,
            language: "en".into(),
            default_payment_method: None,
            blocked: None,
            erased_at: None,
        })
    }

    #[test]
    fn a_share_token_names_its_link_only_as_written_and_only_under_its_key() {
        let keys = Keys::new(&[7u8; 32], "admin-token-0123456789");
        let id = ShareId::from_raw(0x0123_4567_89ab_cdef).unwrap();
        let token = keys.share_token(id);
        assert_eq!(token.len(), 80);
        assert_eq!(keys.share_id(&token), Some(id));
        assert_eq!(Keys::new(&[8u8; 32], "admin-token-0123456789").share_id(&token), None, "another secret");
        let mut tampered = token.clone().into_bytes();
        tampered[20] = if tampered[20] == b'0' { b'1' } else { b'0' };
        assert_eq!(keys.share_id(std::str::from_utf8(&tampered).unwrap()), None);
        let other = ShareId::from_raw(0x0123_4567_89ab_cdee).unwrap();
        let swapped = format!("{}{}", &keys.share_token(other)[..16], &token[16..]);
        assert_eq!(keys.share_id(&swapped), None, "a MAC does not travel to another id");
        for bad in [token.to_uppercase(), token[..79].to_owned(), format!("{token}0"), String::new()] {
            assert_eq!(keys.share_id(&bad), None, "{bad}");
        }
    }

    #[test]
    fn the_metrics_token_is_recognised_only_when_set_and_is_no_principal() {
        let keys = Keys::new(&[7u8; 32], "admin-token-0123456789");
        assert!(!keys.is_metrics_token("metrics-token-0123456789"), "none set");
        assert!(!keys.is_metrics_token(""));
        let keys = keys.with_metrics_token(Some("metrics-token-0123456789"));
        assert!(keys.is_metrics_token("metrics-token-0123456789"));
        assert!(!keys.is_metrics_token("metrics-token-012345678"));
        assert!(!keys.is_metrics_token("admin-token-0123456789"), "the admin token is not the metrics token");
        assert!(!keys.is_admin_token("metrics-token-0123456789"));
        assert!(authenticate(&keys, "metrics-token-0123456789", 0, |_| None).is_err(), "no principal");
    }

    #[test]
    fn tokens_round_trip_and_refuse_tampering_expiry_and_revocation() {
        let keys = Keys::new(&[7u8; 32], "admin-token-0123456789");
        let u = user(0);
        let t = keys.token_for(&u, 1_000);
        assert_eq!(authenticate(&keys, &t, 1_001, |_| Some(u.clone())), Ok(Principal::user(u.id, Role::Driver)));
        // Expired.
        assert!(authenticate(&keys, &t, 1_000 + TOKEN_TTL_S, |_| Some(u.clone())).is_err());
        // Revoked: the user's generation moved on.
        assert!(authenticate(&keys, &t, 1_001, |_| Some(user(1))).is_err());
        // Tampered: a flipped payload digit.
        let mut bad = t.clone().into_bytes();
        bad[5] = if bad[5] == b'0' { b'1' } else { b'0' };
        assert!(authenticate(&keys, std::str::from_utf8(&bad).unwrap(), 1_001, |_| Some(u.clone())).is_err());
        // Another secret's token.
        let other = Keys::new(&[8u8; 32], "admin-token-0123456789");
        assert!(authenticate(&other, &t, 1_001, |_| Some(u.clone())).is_err());
        assert_eq!(authenticate(&keys, "admin-token-0123456789", 0, |_| None), Ok(Principal::BootstrapAdmin));
        assert!(authenticate(&keys, "admin-token-012345678", 0, |_| None).is_err());
    }

    #[test]
    fn a_token_has_one_spelling() {
        let keys = Keys::new(&[7u8; 32], "admin-token-0123456789");
        let t = keys.token_for(&user(0), 1_000);
        assert!(keys.verify(&t, 1_001).is_some());
        let (payload, mac) = t.rsplit_once('.').unwrap();
        assert!(keys.verify(&format!("{payload}.{}", mac.to_ascii_uppercase()), 1_001).is_none(), "upper-case MAC");
        assert!(keys.verify(&format!("dt1.{}", t[4..].to_ascii_uppercase()), 1_001).is_none(), "upper-case all");
        assert_eq!(canonical_unhex("0a1b"), Some(vec![0x0a, 0x1b]));
        assert_eq!(canonical_unhex("0A1b"), None);
    }

    #[test]
    fn a_websocket_token_comes_from_its_bearer_subprotocol() {
        let hex = |t: &str| t.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        let offered = format!("dispatch.v1, bearer.{}", hex("dt1.ab.cd"));
        assert_eq!(ws_protocol_token([offered.as_str()]), (Some("dt1.ab.cd".to_owned()), true));
        // Over several header lines, in any order.
        let bearer = format!("bearer.{}", hex("x+/="));
        assert_eq!(ws_protocol_token([bearer.as_str(), "dispatch.v1"]), (Some("x+/=".to_owned()), true));
        assert_eq!(ws_protocol_token(["dispatch.v1"]), (None, true));
        assert_eq!(ws_protocol_token(["chat", "superchat"]), (None, false));
        // A malformed bearer value is a bad token (never a missing one): upper-case hex, odd
        // length, not hex, not printable, too long.
        for bad in [
            format!("bearer.{}", hex("token").to_ascii_uppercase()),
            "bearer.abc".to_owned(),
            "bearer.zz".to_owned(),
            format!("bearer.{}", hex("to ken")),
            format!("bearer.{}", "61".repeat(WS_TOKEN_MAX_BYTES + 1)),
        ] {
            assert_eq!(ws_protocol_token([bad.as_str()]), (Some(String::new()), false), "{bad}");
        }
    }

    #[test]
    fn one_table_decides_401_and_403() {
        let rider = Principal::user(UserId::from_raw(1).unwrap(), Role::Rider);
        assert_eq!(authorize(DRIVER, None).unwrap_err().code, "unauthorized");
        assert_eq!(authorize(DRIVER, Some(rider)).unwrap_err().code, "forbidden");
        assert!(authorize(RIDER, Some(rider)).is_ok());
        assert!(authorize(ADMIN, Some(Principal::BootstrapAdmin)).is_ok());
        assert!(authorize(STAFF, Some(Principal::BootstrapAdmin)).is_ok());
        assert!(authorize(Allow::Anyone, None).is_ok());
        let support = Principal::user(UserId::from_raw(2).unwrap(), Role::Support);
        assert!(authorize(Allow::Permission(Permission::UsersRead), Some(support)).is_ok());
        assert_eq!(authorize(Allow::Permission(Permission::UsersBlock), Some(support)).unwrap_err().code, "forbidden");
        assert_eq!(authorize(Allow::Permission(Permission::TripsRead), Some(rider)).unwrap_err().code, "forbidden");
        assert_eq!(authorize(Allow::Permission(Permission::TripsRead), None).unwrap_err().code, "unauthorized");
        assert!(authorize(Allow::Permission(Permission::AuditRead), Some(Principal::BootstrapAdmin)).is_ok());
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
            assert!(Permissions::ALL.contains(p));
        }
        assert_eq!(Permissions::ALL.iter().count(), 15);
        assert_eq!(Permissions::SUPPORT.iter().count(), 6);
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }
}
