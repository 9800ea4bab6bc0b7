//! The OpenAPI document (`/openapi.json`) and its docs UI (`/docs`), generated from the handlers'
//! annotations and these schema types.
//!
//! Request bodies are checked field by field (see [`crate::input`]), so the types below only
//! describe them; the response types are the ones the handlers serialize.

use event_store::events::{Due, Priority, Recurrence, RecurrenceBasis, ReminderTime};
use serde::Serialize;
use service_kit::openapi::{BearerAuth, FieldErrorBody, ProblemBody};
use utoipa::{IntoParams, IntoResponses, OpenApi, ToSchema};

use crate::domain::TaskStatus;
use crate::view::{ReminderView, TaskView};

/// The body of `POST /tasks` and `PUT /tasks/{id}`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct TaskInput {
    /// 1–200 characters after trimming.
    title: String,
    /// At most 4000 characters; blank means none.
    description: Option<String>,
    /// Default `medium`.
    priority: Option<Priority>,
    /// A date (`2026-12-24`) or a date-time with offset (`2026-12-24T18:00:00+01:00`).
    due: Option<String>,
    /// IANA zone of the due time and the recurrence, such as `Europe/Berlin`.
    timezone: Option<String>,
    /// At most 20, each 1–50 characters, unique ignoring case.
    tags: Option<Vec<String>>,
    recurrence: Option<RecurrenceInput>,
    /// Only on `POST`: reminders to create with the task.
    reminders: Option<Vec<ReminderInput>>,
}

/// The body of `PATCH /tasks/{id}` (JSON merge patch): present fields change, `null` clears
/// `description`, `due`, `tags` and `recurrence`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct TaskPatchInput {
    title: Option<String>,
    description: Option<String>,
    priority: Option<Priority>,
    due: Option<String>,
    timezone: Option<String>,
    tags: Option<Vec<String>>,
    recurrence: Option<RecurrenceInput>,
}

/// A recurrence rule.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct RecurrenceInput {
    /// RFC 5545 `RRULE` value: `FREQ` (DAILY, WEEKLY, MONTHLY, YEARLY) with `INTERVAL`, `COUNT`,
    /// `UNTIL`, `BYDAY`, `BYMONTHDAY`, `BYMONTH`, `BYSETPOS`…
    rrule: String,
    /// Default `UTC`.
    timezone: Option<String>,
    /// Default `due_date` when the task has a due date, else `completion_date`.
    basis: Option<RecurrenceBasis>,
}

/// A reminder: exactly one of `remind_at` or `before_due_seconds`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ReminderInput {
    remind_at: Option<chrono::DateTime<chrono::Utc>>,
    /// At most a year.
    before_due_seconds: Option<u64>,
}

/// The body of `POST /reminders`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct NewReminderInput {
    /// The task's UUID or per-user number.
    task_id: String,
    remind_at: Option<chrono::DateTime<chrono::Utc>>,
    before_due_seconds: Option<u64>,
}

/// The body of `POST /tasks/{id}/tags`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct TagInput {
    tag: String,
}

/// A command's answer: the task after the command, and where that change is in the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandAnswer {
    #[serde(flatten)]
    pub task: TaskView,
    /// `partition@offset`; send it to queries to read your own write.
    pub consistency_token: String,
}

/// The headers every command takes.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct CommandHeaders {
    /// The ETag of the version your change is based on; `412` if the task moved on.
    #[param(rename = "If-Match")]
    if_match: Option<String>,
    /// Retry-safe key: a retry answers the first result and appends nothing; the same key with
    /// another body is `422`.
    #[param(rename = "Idempotency-Key")]
    idempotency_key: Option<String>,
}

/// The problems every command may answer, as `application/problem+json`.
#[derive(Debug, IntoResponses)]
#[allow(dead_code)]
pub enum CommandProblems {
    #[response(
        status = 400,
        description = "Malformed JSON or header",
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
        description = "No such task (or tag, reminder) for this user",
        content_type = "application/problem+json"
    )]
    NotFound(ProblemBody),
    #[response(
        status = 409,
        description = "The task's state forbids this",
        content_type = "application/problem+json"
    )]
    Conflict(ProblemBody),
    #[response(
        status = 412,
        description = "If-Match names an older version; lists the events since",
        content_type = "application/problem+json"
    )]
    Stale(ProblemBody),
    #[response(
        status = 422,
        description = "Invalid fields, all listed; or a reused Idempotency-Key",
        content_type = "application/problem+json"
    )]
    Invalid(ProblemBody),
    #[response(
        status = 503,
        description = "The event log is unavailable or the state is loading; retry after Retry-After",
        content_type = "application/problem+json"
    )]
    Unavailable(ProblemBody),
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Taskstream commands",
        description = "Commands on tasks. Every change is appended to the event log and answered \
                       once it is confirmed there. Send `Idempotency-Key` to retry safely and \
                       `If-Match` (the `ETag`) to change only the version you saw."
    ),
    paths(
        crate::http::create_task,
        crate::http::replace_task,
        crate::http::patch_task,
        crate::http::delete_task,
        crate::http::toggle_complete,
        crate::http::complete_task,
        crate::http::reopen_task,
        crate::http::add_tag,
        crate::http::remove_tag,
        crate::http::set_recurrence,
        crate::http::clear_recurrence,
        crate::http::add_reminder,
        crate::http::remove_reminder,
    ),
    components(schemas(
        TaskInput, TaskPatchInput, RecurrenceInput, ReminderInput, NewReminderInput, TagInput,
        CommandAnswer, TaskView, ReminderView, TaskStatus, ProblemBody, FieldErrorBody,
        Priority, Due, Recurrence, RecurrenceBasis, ReminderTime
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// `GET /openapi.json` and the docs UI at `GET /docs`.
pub fn routes() -> axum::Router {
    service_kit::http::openapi_routes(ApiDoc::openapi())
}
