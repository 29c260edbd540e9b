//! The schemas of staff sign-in (API.md v1.1 "Back office": `/v1/auth/staff/*`,
//! `/v1/auth/logout`, `/v1/admin/users/{id}/staff-setup`), as `api::staff` writes and
//! reads them (request bodies strict, like every one).

use serde_json::{Value, json};

use super::schemas::*;

/// A sign-in e-mail in a request.
fn email_in() -> Value {
    json!({"type": "string", "minLength": 3, "maxLength": dispatch_core::user::MAX_EMAIL_LEN})
}

/// `POST /v1/admin/users`' answer: the token, the user, and the setup token of a staff
/// user created with an e-mail.
pub(super) fn create_user_out() -> Value {
    obj(
        &[
            ("token", string()),
            ("user", r("User")),
            (
                "setup_token",
                json!({"type": "string", "description": "A staff user created with an `email`: one-time, valid 24 h, for `POST /v1/auth/staff/setup`."}),
            ),
        ],
        &["token", "user"],
    )
}

/// `POST /v1/auth/staff/setup`.
pub(super) fn staff_setup_in() -> Value {
    strict(
        &[
            ("setup_token", json!({"type": "string", "minLength": 1, "maxLength": 256})),
            (
                "password",
                json!({"type": "string", "minLength": crate::staff::MIN_PASSWORD_CHARS, "description": "12 or more characters, at most 256 bytes."}),
            ),
        ],
        &["setup_token", "password"],
    )
}
pub(super) fn staff_setup_ex() -> Value {
    json!({"setup_token": "st1.0123456789abcdef.0123456789abcdef", "password": "correct horse battery staple"})
}
pub(super) fn staff_setup_out() -> Value {
    obj(
        &[(
            "totp_uri",
            json!({"type": "string", "description": "`otpauth://totp/dispatch:<email>?secret=<BASE32>&issuer=dispatch&algorithm=SHA1&digits=6&period=30`: for an authenticator app; shown this once."}),
        )],
        &["totp_uri"],
    )
}

/// `POST /v1/auth/staff/login`.
pub(super) fn staff_login_in() -> Value {
    strict(
        &[
            ("email", email_in()),
            ("password", json!({"type": "string", "minLength": 1})),
            ("totp", json!({"type": "string", "minLength": 1, "maxLength": 16})),
        ],
        &["email", "password", "totp"],
    )
}
pub(super) fn staff_login_ex() -> Value {
    json!({"email": "amal@example.com", "password": "correct horse battery staple", "totp": "123456"})
}

/// `POST /v1/auth/staff/login`'s answer: the token, its user, and when the token ends.
pub(super) fn staff_login_out() -> Value {
    obj(
        &[
            ("token", string()),
            ("user", r("User")),
            ("expires_at", time()),
            (
                "expires_in_s",
                json!({"type": "integer", "minimum": 1, "description": "Seconds the token is valid from now (12 hours)."}),
            ),
        ],
        &["token", "user", "expires_at", "expires_in_s"],
    )
}

/// `POST /v1/admin/users/{id}/staff-setup`.
pub(super) fn staff_setup_issue_in() -> Value {
    strict(&[("email", email_in())], &[])
}
pub(super) fn staff_setup_issue_ex() -> Value {
    json!({"email": "amal@example.com"})
}
pub(super) fn staff_setup_issue_out() -> Value {
    obj(&[("setup_token", string()), ("expires_at", time())], &["setup_token", "expires_at"])
}
