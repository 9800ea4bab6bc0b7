//! The service's errors, each answered as RFC 9457 problem+json with a stable `code`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use event_store::RawEnvelope;
use service_kit::problem::Problem;

use crate::domain::{DomainError, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Malformed input: every invalid field.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// A request the server cannot parse at all (bad JSON, bad header).
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// `If-Match` named another version than the task's current one.
    #[error("the task is at version {current}")]
    Stale {
        current: u64,
        since: Vec<RawEnvelope>,
        complete: bool,
    },
    #[error("the idempotency key was used for another request")]
    IdempotencyKeyReused,
    /// The state is still being rebuilt from the log.
    #[error("the service is still loading its state from the event log")]
    NotReady,
    /// Kept losing races against another writer.
    #[error("the task is being changed concurrently")]
    Contention,
    #[error(transparent)]
    Log(#[from] event_store::Error),
}

/// The metrics outcome of an error answer, kept on the response so that a request turned away
/// before the command pipeline is counted with the label the pipeline would give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutcomeLabel(pub &'static str);

impl OutcomeLabel {
    /// The outcome of an error answer that is not an [`AppError`]'s: the token checks' `401` and
    /// `403`, a `413` body, an extractor's rejection.
    pub fn of_status(status: StatusCode) -> Self {
        Self(match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_client_error() => "bad_request",
            _ => "error",
        })
    }
}

impl AppError {
    /// A stable label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            AppError::Domain(DomainError::Invalid(_)) | AppError::Invalid(_) => "invalid",
            AppError::Domain(DomainError::Conflict { .. }) => "conflict",
            AppError::Domain(DomainError::NotFound { .. }) => "not_found",
            AppError::BadRequest { .. } => "bad_request",
            AppError::Stale { .. } => "precondition_failed",
            AppError::IdempotencyKeyReused => "idempotency_key_reused",
            AppError::NotReady | AppError::Contention => "unavailable",
            AppError::Log(e) if e.is_transient() => "unavailable",
            AppError::Log(_) => "error",
        }
    }
}

fn invalid(errors: &[FieldError]) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "The request has invalid fields",
    )
    .extension("errors", errors)
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let problem = match &self {
            AppError::Domain(DomainError::Invalid(errors)) | AppError::Invalid(errors) => {
                invalid(errors)
            }
            AppError::Domain(DomainError::Conflict { code, message }) => {
                Problem::new(StatusCode::CONFLICT, code, "The task's state forbids this")
                    .detail(message.clone())
            }
            AppError::Domain(DomainError::NotFound { code, message }) => {
                Problem::new(StatusCode::NOT_FOUND, code, "Not found").detail(message.clone())
            }
            AppError::BadRequest { code, detail } => {
                Problem::new(StatusCode::BAD_REQUEST, code, "Bad request").detail(detail.clone())
            }
            AppError::Stale {
                current,
                since,
                complete,
            } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "version_mismatch",
                "The task changed since the version you sent",
            )
            .detail(format!(
                "the task is at version {current}; re-apply your change on top of the events listed"
            ))
            .extension("current_version", current)
            .extension("events_since", since)
            .extension("events_since_complete", complete),
            AppError::IdempotencyKeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "This Idempotency-Key was used for a different request",
            ),
            AppError::NotReady => {
                Problem::unavailable("the service is still loading its state from the event log")
            }
            AppError::Contention => Problem::unavailable("the task is being changed concurrently"),
            AppError::Log(error) if error.is_transient() => {
                tracing::warn!(%error, "event log unavailable");
                Problem::unavailable(
                    "the event log is unavailable; nothing was changed unless a retry with the same Idempotency-Key says so",
                )
            }
            AppError::Log(error) => {
                tracing::error!(error = %error, "event log failure");
                Problem::internal()
            }
        };
        let mut response = problem.into_response();
        response
            .extensions_mut()
            .insert(OutcomeLabel(self.outcome()));
        response
    }
}
