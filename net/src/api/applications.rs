//! Drivers' applications (API.md "Drivers: onboarding"): the applicant's details, its
//! document uploads and submission; staff's list, reads, downloads and decisions.
//!
//! Guarantees: an upload's type is sniffed from its bytes (JPEG, PNG, PDF), never taken
//! from `Content-Type`, and anything else is `422 unsupported_media_type` with nothing
//! stored; its body was read with the documents' bound (`413` beyond it, never buffered
//! past it); the file is durable under its hash before the command that names it is
//! submitted, so the log never names a file that is not there (a refused command may
//! leave an unnamed file, which is harmless). A download is served only to staff, as an
//! attachment with `X-Content-Type-Options: nosniff` and the sniffed media type; a file
//! missing or damaged on disk is logged and answered `500 internal`, never a panic.

use std::sync::Arc;

use dispatch_core::application::{
    Application, ApplicationDetails, ApplicationStatus, Date, DocumentKind, Licence, MediaType,
};
use dispatch_core::{Command, Outcome, UserId, Vehicle};
use hyper::StatusCode;
use hyper::header::{CONTENT_DISPOSITION, HeaderValue};
use serde::Deserialize;
use serde_json::json;

use super::{Ctx, Empty, ReasonIn, parse_id, unexpected};
use crate::http::{self, ApiError, Cursor, Resp, json_response, rfc3339};

impl Ctx<'_> {
    /// The answer of a command about an application.
    fn application_out(status: StatusCode, o: Outcome) -> Result<Resp, ApiError> {
        match o {
            Outcome::Application(a) => Ok(json_response(status, &crate::render::application(&a))),
            o => Err(unexpected(&o)),
        }
    }

    /// `PUT /v1/driver/application`: the applicant's name, vehicle and licence, whole.
    pub(super) async fn put_application(&mut self) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct LicenseIn {
            number: String,
            expires_on: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            name: String,
            vehicle: Vehicle,
            license: LicenseIn,
        }
        let b: In = self.json(false)?;
        let expires_on =
            Date::parse(&b.license.expires_on).map_err(|e| ApiError::from(e).with_param("license.expires_on"))?;
        let details = ApplicationDetails {
            name: b.name,
            vehicle: b.vehicle,
            license: Licence { number: b.license.number, expires_on },
        };
        let o = self.submit(Command::PutApplication(Box::new(details))).await?;
        Self::application_out(StatusCode::OK, o)
    }

    /// `PUT /v1/driver/application/documents/{kind}`: the raw file; its type from its bytes.
    pub(super) async fn upload_document(&mut self, kind: &str) -> Result<Resp, ApiError> {
        let kind = DocumentKind::parse(kind).ok_or_else(|| ApiError::not_found("document kind"))?;
        let media_type = MediaType::sniff(&self.body).ok_or_else(|| {
            ApiError::new(
                "unsupported_media_type",
                "a document must be a JPEG, PNG or PDF file (its type is read from its bytes, not from Content-Type)",
            )
        })?;
        // Checked before a file is written (the engine checks again): only an applicant
        // that may change its application stores anything.
        let id = self.principal()?.user_id().ok_or_else(|| ApiError::new("forbidden", "only an applicant uploads"))?;
        let editable = self.app.engine.read(|v| v.applications().get(id).map(|a| a.status));
        match editable {
            None => return Err(ApiError::new("invalid_transition", "this driver has no application to change")),
            Some(s) if !s.editable() => {
                return Err(ApiError::new(
                    "invalid_transition",
                    format!("cannot change application {id} while it is {}", s.as_str()),
                ));
            }
            Some(_) => {}
        }
        let bytes = self.body.clone();
        let size = bytes.len() as u64;
        let data_dir = self.app.config.store.data_dir.clone();
        let stored = tokio::task::spawn_blocking(move || crate::documents::store(&data_dir, &bytes)).await;
        let sha256 = match stored {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot store a document");
                return Err(ApiError::new("internal", "the document could not be stored"));
            }
            Err(e) => {
                tracing::error!(error = %e, "the document store task failed");
                return Err(ApiError::new("internal", "internal error"));
            }
        };
        let o = self.submit(Command::AddDocument { kind, sha256, media_type, size }).await?;
        match o {
            Outcome::Application(a) => {
                let d = a.documents.get(&kind).ok_or_else(|| ApiError::new("internal", "internal error"))?;
                Ok(json_response(
                    StatusCode::CREATED,
                    &json!({"kind": kind.as_str(), "media_type": d.media_type.as_str(), "size": d.size,
                        "sha256": d.hash_hex(), "uploaded_at": rfc3339(d.uploaded_at),
                        "application": crate::render::application(&a)}),
                ))
            }
            o => Err(unexpected(&o)),
        }
    }

    /// `POST /v1/driver/application/submit`: `400 invalid_request` naming what is missing.
    pub(super) async fn submit_application(&mut self) -> Result<Resp, ApiError> {
        self.json::<Empty>(true)?;
        match self.submit(Command::SubmitApplication).await {
            Err(mut e) if e.code == "invalid_request" => {
                // Every missing field and document in `details`, not only the first.
                let id = self.principal()?.user_id();
                let missing = id.and_then(|id| self.app.engine.read(|v| v.applications().get(id).map(|a| a.missing())));
                if let Some(missing) = missing.filter(|m| !m.is_empty()) {
                    let fields = missing
                        .iter()
                        .map(|m| http::FieldError {
                            param: (*m).to_owned(),
                            code: "invalid_request",
                            message: format!("{m} is missing"),
                        })
                        .collect();
                    e = e.with_fields(fields);
                }
                Err(e)
            }
            r => Self::application_out(StatusCode::OK, r?),
        }
    }

    /// `GET /v1/admin/applications?status=&limit=&cursor=`: newest first (by when it last
    /// changed).
    pub(super) fn list_applications(&self) -> Result<Resp, ApiError> {
        let limit = http::limit(&self.query)?;
        let cursor = Cursor::from_query(&self.query)?;
        let status = self
            .query
            .get("status")
            .map(|s| {
                ApplicationStatus::parse(s).ok_or_else(|| {
                    ApiError::invalid("status must be draft, submitted, approved or rejected").with_param("status")
                })
            })
            .transpose()?;
        let mut found: Vec<(i64, u64, Arc<Application>)> = self.app.engine.read_snapshot(|v| {
            v.applications()
                .iter()
                .filter(|a| status.is_none_or(|s| a.status == s))
                .filter(|a| cursor.is_none_or(|c| c.precedes(a.updated_at.as_millis(), a.driver_id.raw())))
                .map(|a| (a.updated_at.as_millis(), a.driver_id.raw(), Arc::clone(a)))
                .collect()
        });
        found.sort_by_key(|(at, id, _)| std::cmp::Reverse((*at, *id)));
        found.truncate(limit);
        let last = found.last().map(|(at, id, _)| Cursor { at_ms: *at, id: *id });
        let items = found.iter().map(|(_, _, a)| crate::render::application(a)).collect();
        Ok(json_response(StatusCode::OK, &http::page(items, limit, last)))
    }

    fn find_application(&self, id: &str) -> Result<Arc<Application>, ApiError> {
        let id: UserId = parse_id(id, "application")?;
        self.app.engine.read(|v| v.applications().get(id).cloned()).ok_or_else(|| ApiError::not_found("application"))
    }

    /// `GET /v1/admin/applications/{id}`.
    pub(super) fn get_application(&self, id: &str) -> Result<Resp, ApiError> {
        let a = self.find_application(id)?;
        Ok(json_response(StatusCode::OK, &crate::render::application(&a)))
    }

    /// `GET /v1/admin/applications/{id}/documents/{kind}`: the file, as an attachment.
    pub(super) async fn application_document(&self, id: &str, kind: &str) -> Result<Resp, ApiError> {
        let a = self.find_application(id)?;
        let kind = DocumentKind::parse(kind).ok_or_else(|| ApiError::not_found("document kind"))?;
        let d = a.documents.get(&kind).ok_or_else(|| ApiError::not_found("document"))?.clone();
        let data_dir = self.app.config.store.data_dir.clone();
        let read = tokio::task::spawn_blocking(move || crate::documents::read(&data_dir, &d.sha256)).await;
        let bytes = match read {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!(application = %a.driver_id, kind = kind.as_str(), error = %e, "a document file is missing or damaged");
                return Err(ApiError::new("internal", "the document's file is missing or damaged on the server"));
            }
            Err(e) => {
                tracing::error!(error = %e, "the document read task failed");
                return Err(ApiError::new("internal", "internal error"));
            }
        };
        let media_type = a.documents.get(&kind).map_or(MediaType::Pdf, |d| d.media_type);
        let mut r = http::bytes_response(media_type.as_str(), bytes.into());
        let name = format!("attachment; filename=\"{}-{}.{}\"", a.driver_id, kind.as_str(), media_type.extension());
        let disposition = HeaderValue::from_str(&name).unwrap_or(HeaderValue::from_static("attachment"));
        r.headers_mut().insert(CONTENT_DISPOSITION, disposition);
        r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        Ok(r)
    }

    /// `POST /v1/admin/applications/{id}/approve` (`approve`) or `/reject`: `{"reason"?}`.
    pub(super) async fn decide_application(&mut self, id: &str, approve: bool) -> Result<Resp, ApiError> {
        let b: ReasonIn = self.json(true)?;
        let driver_id: UserId = parse_id(id, "application")?;
        let reason = (!b.reason.is_empty()).then_some(b.reason);
        let o = self.submit(Command::DecideApplication { driver_id, approve, reason }).await?;
        Self::application_out(StatusCode::OK, o)
    }
}
