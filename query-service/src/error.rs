//! The service's errors, each answered as RFC 9457 problem+json with a stable `code`.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use event_store::LogPosition;
use serde::Serialize;
use service_kit::problem::Problem;

/// One invalid query parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParamError {
    /// The parameter's name.
    pub field: String,
    /// Stable: `unknown_parameter`, `invalid_value`, `out_of_range`, `repeated`, `too_long`, …
    pub code: &'static str,
    pub message: String,
}

impl ParamError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Invalid query parameters, every one listed.
    #[error("invalid query parameters")]
    InvalidQuery(Vec<ParamError>),
    /// A request the server cannot use (bad cursor, bad header).
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    /// No read-model generation is active (a new installation before its first projection).
    #[error("no read-model generation is active")]
    NoActiveGeneration,
    /// The projections did not reach the consistency token in time.
    #[error("the read models have not reached {token} yet")]
    ProjectionBehind {
        token: LogPosition,
        /// The active generation's next offset to project in the token's partition.
        projected_next_offset: Option<i64>,
        waited: Duration,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl AppError {
    pub fn task_not_found() -> Self {
        AppError::NotFound {
            code: "task_not_found",
            detail: "no such task".into(),
        }
    }

    /// Whether the generation queried is gone (switched from and dropped mid-request).
    pub fn is_generation_gone(&self) -> bool {
        matches!(self, AppError::Database(error) if matches!(classify(error), DbFailure::GenerationGone))
    }
}

enum DbFailure {
    /// The database cannot be reached or is overloaded: retry later.
    Unreachable,
    /// The schema or table is gone: the generation was switched and dropped mid-request.
    GenerationGone,
    Other,
}

fn classify(error: &sqlx::Error) -> DbFailure {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => DbFailure::Unreachable,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // undefined_table, invalid_schema_name
            Some("42P01" | "3F000") => DbFailure::GenerationGone,
            // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections,
            // query_canceled (statement timeout)
            Some("57P01" | "57P02" | "57P03" | "53300" | "57014") => DbFailure::Unreachable,
            _ => DbFailure::Other,
        },
        _ => DbFailure::Other,
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let problem = match &self {
            AppError::InvalidQuery(errors) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "The request has invalid query parameters",
            )
            .extension("errors", errors),
            AppError::BadRequest { code, detail } => {
                Problem::new(StatusCode::BAD_REQUEST, code, "Bad request").detail(detail.clone())
            }
            AppError::NotFound { code, detail } => {
                Problem::new(StatusCode::NOT_FOUND, code, "Not found").detail(detail.clone())
            }
            AppError::NoActiveGeneration => unavailable_read_models(),
            AppError::ProjectionBehind {
                token,
                projected_next_offset,
                waited,
            } => {
                let behind_by = token.offset + 1 - projected_next_offset.unwrap_or(0);
                Problem::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "projection_behind",
                    "The read models have not caught up with your write yet",
                )
                .detail(format!(
                    "waited {} ms for the projections to reach {token}; retry",
                    waited.as_millis()
                ))
                .extension("consistency_token", token.to_string())
                .extension("partition", token.partition)
                .extension("projected_next_offset", projected_next_offset)
                .extension("behind_by", behind_by.max(1))
                .retry_after(1)
            }
            AppError::Database(error) => match classify(error) {
                DbFailure::Unreachable => {
                    tracing::warn!(%error, "database unavailable");
                    Problem::unavailable("the database is unavailable")
                }
                DbFailure::GenerationGone => {
                    tracing::warn!(%error, "read-model generation switched during a query");
                    unavailable_read_models()
                }
                DbFailure::Other => {
                    tracing::error!(error = %error, "query failed");
                    Problem::internal()
                }
            },
        };
        problem.into_response()
    }
}

fn unavailable_read_models() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "read_models_unavailable",
        "The read models are not available yet",
    )
    .detail("no read-model generation is active yet; retry after Retry-After")
    .retry_after(1)
}
