//! The OpenAPI document (`/openapi.json`) and its docs UI (`/docs`), generated from the handlers'
//! annotations and these types.
//!
//! Query parameters are read by [`crate::params`] (to list every invalid one), so the parameter
//! types below only describe them.

use event_store::events::{Due, Priority, Recurrence, RecurrenceBasis, ReminderTime};
use service_kit::openapi::{BearerAuth, FieldErrorBody, ProblemBody};
use utoipa::{IntoParams, IntoResponses, OpenApi, ToSchema};

use crate::store::tasks::{Direction, SortKey, StatusFilter, TagsMode};
use crate::view::{
    AuditEventView, EventFeed, HistoryPage, NotificationPage, NotificationView, ReminderPage,
    ReminderView, TagList, TagView, TaskPage, TaskReminderView, TaskStatus, TaskView,
};

/// The parameters of `GET /tasks`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TaskListParams {
    /// `open` (default), `completed`, or `all` (both; deleted tasks are never listed).
    #[param(inline)]
    status: Option<StatusFilter>,
    /// Any of these priorities; repeat the parameter (or separate with commas).
    priority: Option<Vec<Priority>>,
    /// Tags (ignoring case), at most 50; repeat the parameter (or separate with commas).
    #[param(max_items = 50)]
    tags: Option<Vec<String>>,
    /// `any` (default): a task has at least one of `tags`; `all`: every one.
    #[param(inline)]
    tags_mode: Option<TagsMode>,
    /// Due before this instant (RFC 3339), or on or before this day (`2026-12-24`, UTC).
    #[param(inline)]
    due_before: Option<TimeBound>,
    /// Due after this instant (RFC 3339), or after this day (UTC).
    #[param(inline)]
    due_after: Option<TimeBound>,
    /// `true`: only open tasks whose due time has passed.
    overdue: Option<bool>,
    /// Search title and description: every word as a prefix (`groc` finds `groceries`), and
    /// titles tolerant of typos. At most 200 characters.
    #[param(max_length = 200)]
    q: Option<String>,
    /// `created` (default), `updated`, `due` (tasks without a due time last), `priority`,
    /// `title`, or `relevance` (the default with `q`, and only with `q`).
    #[param(inline)]
    sort: Option<SortKey>,
    /// `desc` (default) or `asc`.
    #[param(inline)]
    order: Option<Direction>,
    /// Page size, 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page; only valid with the same filters and sort.
    #[param(max_length = 1000)]
    cursor: Option<String>,
}

/// The parameters of `GET /tags`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TagParams {
    /// Only tags starting with this (ignoring case).
    #[param(max_length = 1000)]
    prefix: Option<String>,
    /// At most this many, 1–500, default 100.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The parameters of `GET /reminders`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ReminderParams {
    /// `pending`, `fired` or `cancelled`; all when absent.
    #[param(inline)]
    status: Option<ReminderStatus>,
    /// Page size, 1–500, default 100.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 1000)]
    cursor: Option<String>,
}

/// The parameters of `GET /notifications`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct NotificationParams {
    /// Page size, 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 1000)]
    cursor: Option<String>,
}

/// The parameters of `GET /tasks/{id}/history`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct HistoryParams {
    /// Only events with a higher `aggregate_version` (the previous page's `next`).
    after: Option<u64>,
    /// Page size, 1–500, default 100.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The parameters of `GET /events`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EventFeedParams {
    /// `partition@offset`: only events of records after this one (the previous page's `next`).
    #[param(pattern = "^[0-9]{1,9}@[0-9]{1,18}$", example = "3@1200")]
    after: Option<String>,
    /// Page size, 1–1000, default 100 (a page ends at a commit boundary).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `status` of `GET /reminders`.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ReminderStatus {
    Pending,
    Fired,
    Cancelled,
}

/// A date-time with offset (RFC 3339) or a date (UTC), years 1–9999.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum TimeBound {
    DateTime(chrono::DateTime<chrono::FixedOffset>),
    Date(chrono::NaiveDate),
}

/// The header every query takes.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct ConsistencyHeader {
    /// A command's consistency token (`partition@offset`): answer only once the read models
    /// include that change (waits up to a configured bound, then `504 projection_behind`).
    #[param(
        rename = "X-Consistency-Token",
        required = false,
        pattern = "^[0-9]{1,9}@[0-9]{1,18}$",
        example = "3@1200"
    )]
    x_consistency_token: String,
}

/// The problems every query may answer, as `application/problem+json`.
#[derive(Debug, IntoResponses)]
#[allow(dead_code)]
pub enum QueryProblems {
    #[response(
        status = 400,
        description = "Invalid query parameters (all listed), cursor or consistency token",
        content_type = "application/problem+json"
    )]
    BadRequest(ProblemBody),
    #[response(
        status = 401,
        description = "Missing, invalid or expired token",
        content_type = "application/problem+json"
    )]
    Unauthorized(ProblemBody),
    #[response(
        status = 403,
        description = "The token is for another user",
        content_type = "application/problem+json"
    )]
    Forbidden(ProblemBody),
    #[response(
        status = 404,
        description = "No such task for this user",
        content_type = "application/problem+json"
    )]
    NotFound(ProblemBody),
    #[response(
        status = 503,
        description = "The database is unavailable or no read-model generation is active; retry \
                       after Retry-After",
        content_type = "application/problem+json"
    )]
    Unavailable(ProblemBody),
    #[response(
        status = 504,
        description = "The read models did not reach X-Consistency-Token in time",
        content_type = "application/problem+json"
    )]
    ProjectionBehind(ProblemBody),
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Taskstream queries",
        description = "Queries over the read models. Send a command's consistency token as \
                       `X-Consistency-Token` to read your own write."
    ),
    paths(
        crate::http::list_tasks,
        crate::http::get_task,
        crate::http::task_history,
        crate::http::list_tags,
        crate::http::list_reminders,
        crate::http::list_notifications,
        crate::http::event_feed,
    ),
    components(schemas(
        TaskPage, TaskView, TaskReminderView, TaskStatus, TagList, TagView, ReminderPage,
        ReminderView, NotificationPage, NotificationView, HistoryPage, EventFeed, AuditEventView,
        ProblemBody, FieldErrorBody, Priority, Due, Recurrence, RecurrenceBasis, ReminderTime
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// `GET /openapi.json` and the docs UI at `GET /docs`.
pub fn routes() -> axum::Router {
    service_kit::http::openapi_routes(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::params::QueryPairs;

    /// The schema of each query parameter of `GET /api/{user_id}/tasks`, as a validator with the
    /// document's components to resolve references in.
    fn list_parameter(name: &str) -> jsonschema::Validator {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        let parameters = doc["paths"]["/api/{user_id}/tasks"]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .clone();
        let parameter = parameters
            .iter()
            .find(|p| p["name"] == name && p["in"] == "query")
            .unwrap_or_else(|| panic!("{name} is documented"));
        let mut schema = parameter["schema"].clone();
        schema["components"] = doc["components"].clone();
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("the schema compiles")
    }

    /// A query string value as the schema sees it: numbers and booleans typed, the rest text.
    fn typed(raw: &str) -> Value {
        match serde_json::from_str::<Value>(raw) {
            Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
            _ => Value::String(raw.to_owned()),
        }
    }

    #[test]
    fn the_task_list_parameters_are_documented_as_the_service_reads_them() {
        let long_q = "q".repeat(crate::http::MAX_QUERY_CHARS + 1);
        let cases: &[(&str, &str)] = &[
            ("status", "open"),
            ("status", "completed"),
            ("status", "all"),
            ("status", "deleted"),
            ("tags_mode", "all"),
            ("tags_mode", "none"),
            ("due_before", "2026-12-24"),
            ("due_before", "2026-12-24T18:00:00+01:00"),
            ("due_before", "2026-12-24T18:00:00"),
            ("due_after", "soon"),
            ("overdue", "true"),
            ("overdue", "false"),
            ("q", "groceries"),
            ("q", &long_q),
            ("sort", "due"),
            ("sort", "title"),
            ("sort", "size"),
            ("order", "asc"),
            ("order", "up"),
            ("limit", "1"),
            ("limit", "200"),
            ("limit", "0"),
            ("limit", "201"),
            ("limit", "ten"),
        ];
        for (name, raw) in cases {
            let documented = list_parameter(name).is_valid(&typed(raw));
            let pairs = QueryPairs(vec![((*name).to_owned(), (*raw).to_owned())]);
            let accepted = crate::http::task_list("u1", pairs).is_ok();
            assert_eq!(documented, accepted, "{name}={raw}");
        }
        // The schema of one parameter cannot say that `relevance` needs `q` as well.
        assert!(list_parameter("sort").is_valid(&json!("relevance")));
        let pairs = QueryPairs(vec![("sort".into(), "relevance".into())]);
        assert!(crate::http::task_list("u1", pairs).is_err());
    }
}
