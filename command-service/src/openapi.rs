//! The OpenAPI document (`/openapi.json`) and its docs UI (`/docs`), generated from the handlers'
//! annotations and these schema types.
//!
//! Request bodies are checked field by field (see [`crate::input`]), so the types below only
//! describe them; the response types are the ones the handlers serialize.

use event_store::events::{Due, Priority, Recurrence, RecurrenceBasis, ReminderTime};
use serde::Serialize;
use service_kit::openapi::{BearerAuth, FieldErrorBody, ProblemBody};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, IntoResponses, OpenApi, PartialSchema, ToSchema};

use crate::domain::{TaskStatus, validate};
use crate::view::{ReminderView, TaskView};

/// The body of `POST /tasks`: the task's fields, and reminders to create with it.
#[derive(Debug)]
pub struct NewTaskInput;

/// The body of `PUT /tasks/{id}`: every field of the task (what is left out is cleared).
#[derive(Debug)]
pub struct TaskInput;

/// The body of `PATCH /tasks/{id}` (JSON merge patch).
#[derive(Debug)]
pub struct TaskPatchInput;

impl PartialSchema for NewTaskInput {
    fn schema() -> RefOr<Schema> {
        task_body(TaskBody::New).into()
    }
}

impl PartialSchema for TaskInput {
    fn schema() -> RefOr<Schema> {
        task_body(TaskBody::Replace).into()
    }
}

impl PartialSchema for TaskPatchInput {
    fn schema() -> RefOr<Schema> {
        task_body(TaskBody::Patch).into()
    }
}

impl ToSchema for NewTaskInput {}
impl ToSchema for TaskInput {}
impl ToSchema for TaskPatchInput {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TaskBody {
    New,
    Replace,
    Patch,
}

/// The task bodies, with the limits [`crate::input`] checks. `null` clears a field (or, for
/// `priority`, sets the default); only the title cannot be cleared. Fields not listed are refused.
fn task_body(body: TaskBody) -> ObjectBuilder {
    let description = match body {
        TaskBody::New => "A new task. `null` or a missing field means none (priority: `medium`).",
        TaskBody::Replace => {
            "Every field of the task: a missing or `null` field is cleared (priority: `medium`)."
        }
        TaskBody::Patch => {
            "JSON merge patch: present fields change, `null` clears `description`, `due`, `tags` \
             and `recurrence` (and sets `priority` to `medium`); the title cannot be cleared. \
             `timezone` goes with `due`."
        }
    };
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .property(
            "title",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(format!(
                    "1–{} characters after trimming; not blank, no control characters.",
                    validate::TITLE_MAX
                )))
                .min_length(Some(1))
                .max_length(Some(validate::TITLE_MAX))
                .pattern(Some(LINE)),
        )
        .property(
            "description",
            ObjectBuilder::new()
                .schema_type(nullable(Type::String))
                .description(Some(format!(
                    "At most {} characters; blank means none. No control characters but tabs and \
                     line breaks.",
                    validate::DESCRIPTION_MAX
                )))
                .max_length(Some(validate::DESCRIPTION_MAX))
                .pattern(Some(TEXT)),
        )
        .property("priority", nullable_ref("Priority"))
        .property("due", nullable_ref("DueInput"))
        .property(
            "timezone",
            ObjectBuilder::new()
                .schema_type(nullable(Type::String))
                .description(Some(
                    "IANA zone, such as `Europe/Berlin`, kept with a date-time `due`; a \
                     date-only `due` is a UTC day.",
                ))
                .examples(["Europe/Berlin"]),
        )
        .property(
            "tags",
            ArrayBuilder::new()
                .schema_type(nullable(Type::Array))
                .description(Some(format!(
                    "At most {}, unique ignoring case.",
                    validate::TAGS_MAX
                )))
                .max_items(Some(validate::TAGS_MAX))
                .items(TagName::schema()),
        )
        .property("recurrence", nullable_ref("RecurrenceInput"));
    if body == TaskBody::New {
        object = object.property(
            "reminders",
            ArrayBuilder::new()
                .schema_type(nullable(Type::Array))
                .description(Some("Reminders to create with the task."))
                .items(Ref::from_schema_name("ReminderInput")),
        );
    }
    if body != TaskBody::Patch {
        object = object.required("title");
    }
    object
}

fn nullable(kind: Type) -> SchemaType {
    SchemaType::Array(vec![kind, Type::Null])
}

fn nullable_ref(name: &str) -> OneOfBuilder {
    OneOfBuilder::new()
        .item(Ref::from_schema_name(name))
        .item(ObjectBuilder::new().schema_type(Type::Null))
}

/// A due date (`2026-12-24`: due by the end of that day, UTC) or a date-time with offset
/// (`2026-12-24T18:00:00+01:00`): dates 1900-01-01 to 9999-12-30, date-times in the years 1900 to
/// 9999 (UTC).
#[derive(Debug, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum DueInput {
    Date(chrono::NaiveDate),
    DateTime(chrono::DateTime<chrono::FixedOffset>),
}

/// A tag: 1–50 characters after trimming; not blank, no control characters.
#[derive(Debug)]
pub struct TagName;

impl PartialSchema for TagName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!(
                "1–{} characters after trimming; not blank, no control characters.",
                validate::TAG_MAX
            )))
            .min_length(Some(1))
            .max_length(Some(validate::TAG_MAX))
            .pattern(Some(LINE))
            .into()
    }
}

impl ToSchema for TagName {}

/// One line of text: not blank, no control characters.
const LINE: &str = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$";

/// Text of several lines: no control characters but tabs and line breaks.
const TEXT: &str = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$";

/// A recurrence rule. Fields not listed are refused.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RecurrenceInput {
    /// RFC 5545 `RRULE` value: `FREQ` (DAILY, WEEKLY, MONTHLY, YEARLY) with `INTERVAL`, `COUNT`,
    /// `UNTIL`, `BYDAY`, `BYMONTHDAY`, `BYMONTH`, `BYSETPOS`…
    #[schema(min_length = 1, example = "FREQ=WEEKLY;BYDAY=MO,TH")]
    rrule: String,
    /// Default `UTC`.
    timezone: Option<String>,
    /// Default `due_date` when the task has a due date, else `completion_date`.
    basis: Option<RecurrenceBasis>,
}

/// A reminder: at a time, or an offset before the task's due time.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ReminderInput {
    At(ReminderAt),
    BeforeDue(ReminderBeforeDue),
}

/// A reminder at a time. Fields not listed are refused.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ReminderAt {
    /// In the years 1900 to 9999.
    remind_at: chrono::DateTime<chrono::Utc>,
}

/// A reminder some time before the task's due time. Fields not listed are refused.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ReminderBeforeDue {
    /// At most a year (366 days).
    #[schema(maximum = 31_622_400)]
    before_due_seconds: u64,
}

/// The body of `POST /reminders`: the task, and when to remind.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum NewReminderInput {
    At(NewReminderAt),
    BeforeDue(NewReminderBeforeDue),
}

/// A reminder of a task at a time. Fields not listed are refused.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct NewReminderAt {
    task_id: TaskRefInput,
    /// In the years 1900 to 9999.
    remind_at: chrono::DateTime<chrono::Utc>,
}

/// A reminder some time before the task's due time. Fields not listed are refused.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct NewReminderBeforeDue {
    task_id: TaskRefInput,
    /// At most a year (366 days).
    #[schema(maximum = 31_622_400)]
    before_due_seconds: u64,
}

/// A task's UUID, or its per-user number (as a number or a string of digits).
#[derive(Debug)]
pub struct TaskRefInput;

impl PartialSchema for TaskRefInput {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .description(Some(
                "The task's UUID, or its per-user number (as a number or a string of digits).",
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]+$")),
            )
            .into()
    }
}

impl ToSchema for TaskRefInput {}

/// The body of `POST /tasks/{id}/tags`. Fields not listed are refused.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct TagInput {
    #[schema(inline)]
    tag: TagName,
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
    /// The ETag of the version your change is based on (`"3"`; `W/"3"` and `3` are read the
    /// same, `*` is any version); `412` if the task moved on.
    #[param(
        rename = "If-Match",
        required = false,
        pattern = r#"^(\*|(W/)?"[0-9]{1,19}"|[0-9]{1,19})$"#,
        example = "\"3\""
    )]
    if_match: String,
    /// Retry-safe key of 1–255 visible ASCII characters: a retry answers the first result and
    /// appends nothing; the same key with another body is `422`.
    #[param(
        rename = "Idempotency-Key",
        required = false,
        max_length = 255,
        pattern = "^[!-~]([ -~]*[!-~])?$"
    )]
    idempotency_key: String,
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
        NewTaskInput, TaskInput, TaskPatchInput, DueInput, RecurrenceInput, ReminderInput, NewReminderInput,
        TaskRefInput, TagInput,
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

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::input;

    /// A validator of one of the document's schemas, its references resolved within the document.
    fn validator(name: &str) -> jsonschema::Validator {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": format!("#/components/schemas/{name}"),
            "components": doc["components"],
        });
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("the schema compiles")
    }

    fn object(value: &Value) -> Map<String, Value> {
        value.as_object().expect("cases are objects").clone()
    }

    /// Every case is accepted by the schema exactly when the service accepts it, but for
    /// `server_only`: bodies the schema cannot tell apart from valid ones (IANA zones, RRULE
    /// grammar, tags equal but for case), which the service alone refuses.
    fn assert_agree(
        schema: &str,
        accepts: impl Fn(&Value) -> bool,
        cases: &[Value],
        server_only: &[Value],
    ) {
        let validator = validator(schema);
        for case in cases {
            assert_eq!(
                validator.is_valid(case),
                accepts(case),
                "{schema} and the service disagree on {case}"
            );
        }
        for case in server_only {
            assert!(
                validator.is_valid(case) && !accepts(case),
                "{schema}: expected only the service to refuse {case}"
            );
        }
    }

    fn long(n: usize) -> String {
        "x".repeat(n)
    }

    fn tags(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i}")).collect()
    }

    /// Bodies every task body treats alike.
    fn task_cases() -> Vec<Value> {
        vec![
            json!({"title": "Buy milk"}),
            json!({"title": "  padded  "}),
            json!({
                "title": "Everything", "description": "d", "priority": "urgent",
                "due": "2026-12-24", "timezone": "Europe/Berlin", "tags": ["a", "B"],
                "recurrence": {"rrule": "FREQ=WEEKLY;BYDAY=MO", "basis": "due_date"}
            }),
            json!({"title": "t", "due": "2026-12-24T18:00:00+01:00"}),
            json!({"title": "t", "description": null, "priority": null, "due": null,
                   "timezone": null, "tags": null, "recurrence": null}),
            json!({"title": long(validate::TITLE_MAX)}),
            json!({"title": "t", "description": long(validate::DESCRIPTION_MAX)}),
            json!({"title": "t", "tags": tags(validate::TAGS_MAX)}),
            json!({"title": "t", "tags": [long(validate::TAG_MAX)]}),
            json!({"title": ""}),
            json!({"title": "   "}),
            json!({"title": 5}),
            json!({"title": long(validate::TITLE_MAX + 1)}),
            json!({"title": "t", "description": long(validate::DESCRIPTION_MAX + 1)}),
            json!({"title": "t", "priority": "huge"}),
            json!({"title": "t", "due": "tomorrow"}),
            json!({"title": "t", "due": "2026-13-01"}),
            json!({"title": "t", "due": "2026-12-24T18:00:00"}),
            json!({"title": "t", "due": "9999-12-30"}),
            json!({"title": "t", "tags": tags(validate::TAGS_MAX + 1)}),
            json!({"title": "t", "tags": [""]}),
            json!({"title": "t", "tags": [" "]}),
            json!({"title": "t", "tags": [long(validate::TAG_MAX + 1)]}),
            json!({"title": "t", "tags": "a"}),
            json!({"title": "t", "recurrence": {"rrule": ""}}),
            json!({"title": "t", "recurrence": {"rrule": "FREQ=DAILY", "every": 2}}),
            json!({"title": "t", "recurrence": {"rrule": "FREQ=DAILY", "basis": "never"}}),
            json!({"title": "t", "colour": "red"}),
            json!({"": false}),
            json!({"title": "nul\u{0}inside"}),
            json!({"title": "esc\u{1b}[31m"}),
            json!({"title": "t", "description": "two\r\nlines\tand a tab"}),
            json!({"title": "t", "description": "bell\u{7}"}),
            json!({"title": "t", "tags": ["a\u{0}"]}),
            json!({"title": "Grüße 日本"}),
        ]
    }

    fn task_server_only() -> Vec<Value> {
        vec![
            // A format says nothing of a year's range.
            json!({"title": "t", "due": "1899-12-31"}),
            json!({"title": "t", "timezone": "Mars/Olympus_Mons"}),
            json!({"title": "t", "recurrence": {"rrule": "FREQ=SECONDLY"}}),
            json!({"title": "t", "tags": ["a", "A"]}),
        ]
    }

    #[test]
    fn the_new_task_schema_accepts_what_the_service_accepts() {
        let mut cases = task_cases();
        cases.extend([
            json!({}),
            json!({"title": "t", "reminders": [
                {"before_due_seconds": 3600}, {"remind_at": "2026-12-24T10:00:00Z"}
            ]}),
            json!({"title": "t", "reminders": null}),
            json!({"title": "t", "reminders": [{"before_due_seconds": 366 * 24 * 3600}]}),
            json!({"title": "t", "reminders": [{"before_due_seconds": 366 * 24 * 3600 + 1}]}),
            json!({"title": "t", "reminders": [{"before_due_seconds": -1}]}),
            json!({"title": "t", "reminders": [{}]}),
            json!({"title": "t", "reminders": [
                {"remind_at": "2026-12-24T10:00:00Z", "before_due_seconds": 5}
            ]}),
            json!({"title": "t", "reminders": [{"remind_at": "2026-12-24T10:00:00Z", "note": 1}]}),
            json!({"title": "t", "reminders": [{"remind_at": "at ten"}]}),
        ]);
        let mut server_only = task_server_only();
        server_only
            .push(json!({"title": "t", "reminders": [{"remind_at": "1899-12-31T23:59:59Z"}]}));
        assert_agree(
            "NewTaskInput",
            |v| input::task_fields(object(v), true).is_ok(),
            &cases,
            &server_only,
        );
    }

    #[test]
    fn the_replacing_task_schema_accepts_what_the_service_accepts() {
        let mut cases = task_cases();
        cases.extend([
            json!({}),
            json!({"title": "t", "reminders": [{"before_due_seconds": 60}]}),
        ]);
        assert_agree(
            "TaskInput",
            |v| input::task_fields(object(v), false).is_ok(),
            &cases,
            &task_server_only(),
        );
    }

    #[test]
    fn the_patch_schema_accepts_what_the_service_accepts() {
        let mut cases = task_cases();
        cases.extend([
            json!({}),
            json!({"priority": "low"}),
            json!({"due": null, "tags": null, "recurrence": null, "description": null}),
            json!({"title": null}),
            json!({"reminders": []}),
            json!({"due": "2026-12-24T18:00:00Z", "timezone": "Asia/Tokyo"}),
        ]);
        let mut server_only = task_server_only();
        // A zone without a due: it would change nothing.
        server_only.push(json!({"timezone": "Asia/Tokyo"}));
        assert_agree(
            "TaskPatchInput",
            |v| input::task_patch(object(v)).is_ok(),
            &cases,
            &server_only,
        );
    }

    #[test]
    fn the_if_match_header_is_documented_as_the_service_reads_it() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        let header = doc["paths"]["/api/{user_id}/tasks/{id}"]["patch"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == "If-Match")
            .expect("If-Match is documented")["schema"]
            .clone();
        let validator = jsonschema::validator_for(&header).expect("the schema compiles");
        for raw in [
            "\"3\"",
            "W/\"3\"",
            "3",
            "*",
            "\"9999999999999999999\"",
            "\"99999999999999999999999\"",
            "null",
            "\"v3\"",
            "",
        ] {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert("if-match", raw.parse().expect("a header value"));
            assert_eq!(
                validator.is_valid(&json!(raw)),
                crate::http::if_match(&headers).is_ok(),
                "If-Match: {raw}"
            );
        }
    }

    #[test]
    fn the_tag_schema_accepts_what_the_service_accepts() {
        assert_agree(
            "TagInput",
            |v| input::tag(object(v)).is_ok(),
            &[
                json!({"tag": "home"}),
                json!({"tag": long(validate::TAG_MAX)}),
                json!({"tag": ""}),
                json!({"tag": "  "}),
                json!({"tag": long(validate::TAG_MAX + 1)}),
                json!({"tag": 3}),
                json!({}),
                json!({"tag": "home", "colour": "red"}),
            ],
            &[],
        );
    }

    #[test]
    fn the_recurrence_schema_accepts_what_the_service_accepts() {
        assert_agree(
            "RecurrenceInput",
            |v| input::recurrence(object(v)).is_ok(),
            &[
                json!({"rrule": "FREQ=MONTHLY;BYMONTHDAY=1"}),
                json!({"rrule": "FREQ=DAILY", "timezone": "UTC", "basis": "completion_date"}),
                json!({"rrule": "FREQ=DAILY", "timezone": null, "basis": null}),
                json!({}),
                json!({"rrule": ""}),
                json!({"rrule": "FREQ=DAILY", "basis": "sometimes"}),
                json!({"rrule": "FREQ=DAILY", "count": 3}),
            ],
            &[json!({"rrule": "FREQ=DAILY;BYMONTH=13"})],
        );
    }
}
