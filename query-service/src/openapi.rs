//! The OpenAPI document (`/openapi.json`) and its docs UI (`/docs`), generated from the handlers'
//! annotations and these types.
//!
//! Query parameters are read by [`crate::params`] (to list every invalid one), so the parameter
//! types below only describe them.

use event_store::events::{Due, Priority, Recurrence, RecurrenceBasis, ReminderTime};
use service_kit::openapi::{BearerAuth, FieldErrorBody, ProblemBody};
use utoipa::{IntoParams, IntoResponses, OpenApi};

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
    status: Option<String>,
    /// `low`, `medium`, `high`, `urgent`; repeat the parameter or separate with commas for
    /// any of several.
    priority: Option<Vec<String>>,
    /// Tags (ignoring case); repeat or separate with commas.
    tags: Option<Vec<String>>,
    /// `any` (default): a task has at least one of `tags`; `all`: every one.
    tags_mode: Option<String>,
    /// Due before this instant (RFC 3339), or on or before this day (`2026-12-24`, UTC).
    due_before: Option<String>,
    /// Due after this instant (RFC 3339), or after this day (UTC).
    due_after: Option<String>,
    /// `true`: only open tasks whose due time has passed.
    overdue: Option<bool>,
    /// Search title and description: every word as a prefix (`groc` finds `groceries`), and
    /// titles tolerant of typos. At most 200 characters.
    q: Option<String>,
    /// `created` (default), `updated`, `due` (tasks without a due time last), `priority`,
    /// `title`, or `relevance` (the default with `q`).
    sort: Option<String>,
    /// `desc` (default) or `asc`.
    order: Option<String>,
    /// Page size, 1–200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page; only valid with the same filters and sort.
    cursor: Option<String>,
}

/// The parameters of `GET /tags`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TagParams {
    /// Only tags starting with this (ignoring case).
    prefix: Option<String>,
    /// At most this many, 1–500, default 100.
    limit: Option<u32>,
}

/// The parameters of `GET /reminders`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ReminderParams {
    /// `pending`, `fired` or `cancelled`; all when absent.
    status: Option<String>,
    /// Page size, 1–500, default 100.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The parameters of `GET /notifications`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct NotificationParams {
    /// Page size, 1–200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
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
    limit: Option<u32>,
}

/// The parameters of `GET /events`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EventFeedParams {
    /// `partition@offset`: only events of records after this one (the previous page's `next`).
    after: Option<String>,
    /// Page size, 1–1000, default 100 (a page ends at a commit boundary).
    limit: Option<u32>,
}

/// The header every query takes.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct ConsistencyHeader {
    /// A command's consistency token (`partition@offset`): answer only once the read models
    /// include that change (waits up to a configured bound, then `504 projection_behind`).
    #[param(rename = "X-Consistency-Token")]
    x_consistency_token: Option<String>,
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
