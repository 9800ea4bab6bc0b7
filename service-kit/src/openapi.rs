//! OpenAPI pieces every service's document shares: the problem+json body its errors have (they
//! all come from [`crate::problem::Problem`]) and the bearer-token security scheme. One
//! definition, so documents merged into one (the all-in-one process) agree.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, ToSchema};

/// An RFC 9457 problem, as every service answers errors (`application/problem+json`). Besides the
/// standard members it has a stable `code` and, for some codes, the extensions listed.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ProblemBody {
    #[schema(rename = "type")]
    type_: String,
    title: String,
    status: u16,
    detail: Option<String>,
    /// Stable, machine-readable, for example `validation_failed`, `invalid_query`,
    /// `task_not_found`, `task_deleted`, `version_mismatch`, `idempotency_key_reused`,
    /// `cursor_mismatch`, `projection_behind`, `unauthorized`, `forbidden`, `unavailable`.
    code: String,
    /// On `422 validation_failed` (commands) and `400 invalid_query` (queries): every invalid
    /// field or query parameter.
    errors: Option<Vec<FieldErrorBody>>,
    /// On `412` (commands): the task's current version and the events since the version sent.
    current_version: Option<u64>,
    events_since: Option<Vec<serde_json::Value>>,
    /// On `504 projection_behind` (queries): the token, and the next offset the read models
    /// will project in its partition.
    consistency_token: Option<String>,
    projected_next_offset: Option<i64>,
    behind_by: Option<i64>,
}

/// One invalid field of a body, or one invalid query parameter.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct FieldErrorBody {
    field: String,
    code: String,
    message: String,
}

/// Adds the `bearer` security scheme (a JWT in `Authorization: Bearer …`).
#[derive(Debug)]
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
