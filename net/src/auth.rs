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
/// How long a staff user's token lives, seconds (12 hours; API.md v1.1 "Back office").
pub const STAFF_TOKEN_TTL_S: i64 = 12 * 60 * 60;

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

    /// Whether this caller sees every trip and the city (`trips.read`): staff's view of
    /// trips, over HTTP and the WebSocket. A custom staff role without it sees only what
    /// its other permissions open.
    pub fn reads_trips(self) -> bool {
        self.permissions().contains(Permission::TripsRead)
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
    // ----- issue 20: S -----
    /// Signs staff setup tokens.
    staff_setup: hmac::Key,
    /// Derives staff TOTP secrets.
    totp: hmac::Key,
    /// Signs requests one cluster node forwards to another (issue 21): every node of a
    /// cluster has the same token secret.
    cluster: hmac::Key,
}

/// What a staff setup token names: whose setup, which one, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupClaims {
    /// Whose.
    pub user: UserId,
    /// The setup's nonce (the state's; consuming it clears it).
    pub nonce: u64,
    /// Expiry, Unix seconds.
    pub exp_s: i64,
}

const SETUP_PREFIX: &str = "st1.";

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
            staff_setup: derive(b"dispatch staff setup v1"),
            totp: derive(b"dispatch staff totp v1"),
            cluster: derive(b"dispatch cluster forward v1"),
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

    // ----- issue 21 -----
    /// The tag (hex) of a cluster-internal message: what a node sends with a request it
    /// forwards (`crate::cluster::forward`).
    pub fn cluster_tag(&self, message: &[u8]) -> String {
        crate::hex::hex(hmac::sign(&self.cluster, message).as_ref())
    }

    /// Whether `tag` (hex) is this cluster's tag of `message` (compared in constant time).
    pub fn is_cluster_tag(&self, message: &[u8], tag: &str) -> bool {
        crate::hex::unhex(tag).is_some_and(|t| hmac::verify(&self.cluster, message, &t).is_ok())
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

    /// A fresh token for `user`: 12 hours for staff ([`STAFF_TOKEN_TTL_S`]), 30 days for
    /// riders and drivers ([`TOKEN_TTL_S`]).
    pub fn token_for(&self, user: &User, now_s: i64) -> String {
        let ttl = if user.role.is_staff() { STAFF_TOKEN_TTL_S } else { TOKEN_TTL_S };
        self.issue(Claims { user: user.id, role: user.role, exp_s: now_s + ttl, generation: user.token_generation })
    }

    // ----- issue 20: S -----
    /// A staff setup token: `st1.`, then the user id, the setup's nonce and its expiry
    /// (Unix seconds), and their MAC under the setup key, in lower-case hex. Derived, never
    /// stored: the state keeps only the nonce and the expiry.
    pub fn setup_token(&self, c: SetupClaims) -> String {
        let p = setup_payload(c);
        format!("{SETUP_PREFIX}{}.{}", hex(&p), hex(hmac::sign(&self.staff_setup, &p).as_ref()))
    }

    /// What a setup token names, if its MAC is right, it is spelt as
    /// [`Keys::setup_token`] writes it and it has not expired at `now_s`.
    pub fn setup_claims(&self, token: &str, now_s: i64) -> Option<SetupClaims> {
        let (p, tag) = token.strip_prefix(SETUP_PREFIX)?.split_once('.')?;
        let (p, tag) = (canonical_unhex(p)?, canonical_unhex(tag)?);
        hmac::verify(&self.staff_setup, &p, &tag).ok()?;
        if p.len() != 24 {
            return None;
        }
        let user = UserId::from_raw(u64::from_be_bytes(p[0..8].try_into().ok()?))?;
        let nonce = u64::from_be_bytes(p[8..16].try_into().ok()?);
        let exp_s = i64::from_be_bytes(p[16..24].try_into().ok()?);
        (now_s < exp_s).then_some(SetupClaims { user, nonce, exp_s })
    }

    /// A staff user's TOTP secret: 20 bytes of HMAC-SHA256, under the TOTP key, of the user
    /// id and the nonce the writer drew at its setup. Derived, never stored or logged.
    pub fn totp_secret(&self, user: UserId, nonce: u64) -> [u8; 20] {
        let mut ctx = hmac::Context::with_key(&self.totp);
        ctx.update(&user.raw().to_be_bytes());
        ctx.update(&nonce.to_be_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; 20];
        out.copy_from_slice(&tag.as_ref()[..20]);
        out
    }
}

fn setup_payload(c: SetupClaims) -> Vec<u8> {
    let mut p = Vec::with_capacity(24);
    p.extend_from_slice(&c.user.raw().to_be_bytes());
    p.extend_from_slice(&c.nonce.to_be_bytes());
    p.extend_from_slice(&c.exp_s.to_be_bytes());
    p
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
/// `401 unauthorized`. A user of a custom staff role gets that role's permissions from
/// `roles` (`[roles.<name>]`; none when the role is no longer configured); everyone else
/// their role's defaults ([`Permissions::of_role`]).
pub fn authenticate(
    keys: &Keys,
    token: &str,
    now_s: i64,
    user: impl FnOnce(UserId) -> Option<std::sync::Arc<User>>,
    roles: impl FnOnce(&str) -> Option<Permissions>,
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
    Ok(match &u.staff_role {
        Some(name) => Principal::User { id: u.id, role: u.role, perms: roles(name).unwrap_or(Permissions::NONE) },
        None => Principal::user(u.id, u.role),
    })
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

// ----- issue 20: S -----
/// The permissions of custom staff role `name` (`[roles.<name>]`): its name 1-32 of
/// `[a-z0-9_]` and not a built-in role's, every permission one of [`Permission::ALL`]'s
/// names; else what is wrong, naming the role (and the unknown permission).
pub fn custom_role(name: &str, permissions: &[String]) -> Result<Permissions, String> {
    dispatch_core::staff::validate_role_name(name).map_err(|e| match e {
        dispatch_core::DomainError::InvalidParam { message, .. } => format!("roles.{name}: {message}"),
        e => format!("roles.{name}: {e}"),
    })?;
    let mut set = Vec::with_capacity(permissions.len());
    for p in permissions {
        set.push(Permission::parse(p).ok_or_else(|| format!("roles.{name}: unknown permission {p:?}"))?);
    }
    Ok(Permissions::of(&set))
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
            staff_role: None,
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
        assert!(authenticate(&keys, "metrics-token-0123456789", 0, |_| None, |_| None).is_err(), "no principal");
    }

    #[test]
    fn tokens_round_trip_and_refuse_tampering_expiry_and_revocation() {
        let keys = Keys::new(&[7u8; 32], "admin-token-0123456789");
        let u = user(0);
        let t = keys.token_for(&u, 1_000);
        assert_eq!(
            authenticate(&keys, &t, 1_001, |_| Some(u.clone()), |_| None),
            Ok(Principal::user(u.id, Role::Driver))
        );
        // Expired.
        assert!(authenticate(&keys, &t, 1_000 + TOKEN_TTL_S, |_| Some(u.clone()), |_| None).is_err());
        // Revoked: the user's generation moved on.
        assert!(authenticate(&keys, &t, 1_001, |_| Some(user(1)), |_| None).is_err());
        // Tampered: a flipped payload digit.
        let mut bad = t.clone().into_bytes();
        bad[5] = if bad[5] == b'0' { b'1' } else { b'0' };
        assert!(authenticate(&keys, std::str::from_utf8(&bad).unwrap(), 1_001, |_| Some(u.clone()), |_| None).is_err());
        // Another secret's token.
        let other = Keys::new(&[8u8; 32], "admin-token-0123456789");
        assert!(authenticate(&other, &t, 1_001, |_| Some(u.clone()), |_| None).is_err());
        assert_eq!(authenticate(&keys, "admin-token-0123456789", 0, |_| None, |_| None), Ok(Principal::BootstrapAdmin));
        assert!(authenticate(&keys, "admin-token-012345678", 0, |_| None, |_| None).is_err());
    }

    // ----- issue 20: S -----
    #[test]
    fn staff_tokens_last_12_hours_and_a_custom_role_gets_its_configured_rights() {
        let keys = Keys::new(&[7u8; 32], "admin-token-0123456789");
        let staff = Arc::new(User { role: Role::Support, staff_role: Some("finance".into()), ..(*user(0)).clone() });
        let t = keys.token_for(&staff, 1_000);
        let finance = Permissions::of(&[Permission::UsersRead]);
        let p = authenticate(&keys, &t, 1_001, |_| Some(staff.clone()), |name| (name == "finance").then_some(finance));
        assert_eq!(p.map(Principal::permissions), Ok(finance));
        let gone = authenticate(&keys, &t, 1_001, |_| Some(staff.clone()), |_| None);
        assert_eq!(gone.map(Principal::permissions), Ok(Permissions::NONE), "a role no longer configured");
        assert!(authenticate(&keys, &t, 1_000 + STAFF_TOKEN_TTL_S, |_| Some(staff.clone()), |_| None).is_err());
        assert!(authenticate(&keys, &t, 999 + STAFF_TOKEN_TTL_S, |_| Some(staff.clone()), |_| None).is_ok());
        let driver = keys.token_for(&user(0), 1_000);
        assert!(authenticate(&keys, &driver, 1_000 + STAFF_TOKEN_TTL_S, |_| Some(user(0)), |_| None).is_ok());
    }

    #[test]
    fn a_setup_token_names_its_setup_until_it_expires_and_only_under_its_key() {
        let keys = Keys::new(&[7u8; 32], "admin-token-0123456789");
        let c = SetupClaims { user: UserId::from_raw(42).unwrap(), nonce: 0xdead_beef, exp_s: 2_000 };
        let t = keys.setup_token(c);
        assert_eq!(keys.setup_claims(&t, 1_999), Some(c));
        assert_eq!(keys.setup_claims(&t, 2_000), None, "expired");
        assert_eq!(Keys::new(&[8u8; 32], "admin-token-0123456789").setup_claims(&t, 0), None);
        let forged = keys.setup_token(SetupClaims { exp_s: 9_999, ..c });
        let swapped = format!("{}.{}", forged.rsplit_once('.').unwrap().0, t.rsplit_once('.').unwrap().1);
        assert_eq!(keys.setup_claims(&swapped, 0), None, "a later expiry under the old MAC");
        assert_eq!(keys.setup_claims(&t.to_uppercase(), 0), None);
        assert!(keys.verify(&t, 0).is_none() && keys.setup_claims(&keys.token_for(&user(0), 0), 0).is_none());
        // The TOTP secret: per user and per setup, and under its own key.
        let s = keys.totp_secret(c.user, 1);
        assert_ne!(s, keys.totp_secret(c.user, 2));
        assert_ne!(s, keys.totp_secret(UserId::from_raw(43).unwrap(), 1));
        assert_ne!(s, Keys::new(&[8u8; 32], "admin-token-0123456789").totp_secret(c.user, 1));
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
