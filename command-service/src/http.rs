//! The REST API: routes, headers (`If-Match`, `Idempotency-Key`, `ETag`), responses.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, patch, post, put};
use event_store::{Actor, Idempotency};
use opentelemetry::context::FutureExt as _;
use serde_json::{Map, Value};
use service_kit::auth::{AuthUser, Jwt};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{Command, DomainError, FieldError};
use crate::error::{AppError, OutcomeLabel};
use crate::input;
use crate::openapi::{
    CommandAnswer, CommandHeaders, CommandProblems, NewReminderInput, NewTaskInput,
    RecurrenceInput, TagInput, TaskInput, TaskPatchInput,
};
use crate::service::{Action, COMMANDS, CommandRequest, CommandService, Outcome, Target};

/// The header that carries a command's consistency token (also in the body).
pub const CONSISTENCY_TOKEN: &str = "x-consistency-token";
/// Set on a response that replays the first outcome of an idempotency key.
pub const IDEMPOTENT_REPLAY: &str = "idempotent-replayed";

/// What handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub service: CommandService,
    pub jwt: Arc<Jwt>,
    pub ready: tokio::sync::watch::Receiver<bool>,
}

impl FromRef<AppState> for Arc<Jwt> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.jwt)
    }
}

/// The command routes, each handler named by the command it runs (the `command` label of
/// `taskstream_commands_total`, as [`Action`] names it in the pipeline).
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/{user_id}/tasks", post(counted("create", create_task)))
        .route(
            "/api/{user_id}/tasks/{id}",
            put(counted("replace", replace_task))
                .patch(counted("patch", patch_task))
                .delete(counted("delete", delete_task)),
        )
        .route(
            "/api/{user_id}/tasks/{id}/complete",
            patch(counted("toggle_complete", toggle_complete))
                .post(counted("complete", complete_task)),
        )
        .route(
            "/api/{user_id}/tasks/{id}/reopen",
            post(counted("reopen", reopen_task)),
        )
        .route(
            "/api/{user_id}/tasks/{id}/tags",
            post(counted("add_tag", add_tag)),
        )
        .route(
            "/api/{user_id}/tasks/{id}/tags/{tag}",
            delete(counted("remove_tag", remove_tag)),
        )
        .route(
            "/api/{user_id}/tasks/{id}/recurrence",
            put(counted("set_recurrence", set_recurrence))
                .delete(counted("clear_recurrence", clear_recurrence)),
        )
        .route(
            "/api/{user_id}/reminders",
            post(counted("add_reminder", add_reminder)),
        )
        .route(
            "/api/{user_id}/reminders/{reminder_id}",
            delete(counted("remove_reminder", remove_reminder)),
        )
        .with_state(state)
}

/// Marks the answer of a request that reached the command pipeline, which counted it.
#[derive(Clone, Copy, Debug)]
struct ReachedPipeline;

/// `handler`, with the requests it turns away before the command pipeline (a missing or wrong
/// token, an invalid body or header, a task id that names nothing, the `503` while the state
/// loads) counted in `taskstream_commands_total` under `command`, as the pipeline counts the rest.
fn counted<H, T>(command: &'static str, handler: H) -> impl Handler<T, AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    handler.layer(middleware::from_fn_with_state(command, count_turned_away))
}

async fn count_turned_away(
    State(command): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if response.extensions().get::<ReachedPipeline>().is_none() {
        let outcome = response
            .extensions()
            .get::<OutcomeLabel>()
            .copied()
            .unwrap_or_else(|| OutcomeLabel::of_status(response.status()));
        COMMANDS.with_label_values(&[command, outcome.0]).inc();
    }
    response
}

fn respond(outcome: Outcome, uri: &Uri) -> Response {
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let token = outcome.position.to_string();
    let etag = format!("\"{}\"", outcome.view.version);
    let location = format!("{}/{}", uri.path().trim_end_matches('/'), outcome.view.id);
    let mut response = (
        status,
        axum::Json(CommandAnswer {
            task: outcome.view,
            consistency_token: token.clone(),
        }),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&token) {
        headers.insert(CONSISTENCY_TOKEN, v);
    }
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&location)
    {
        headers.insert(header::LOCATION, v);
    }
    if outcome.replayed {
        headers.insert(IDEMPOTENT_REPLAY, HeaderValue::from_static("true"));
    }
    response
}

/// Reads trace-context headers for the OpenTelemetry propagator.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// `{id}`: a task UUID or the per-user task number.
fn task_target(raw: &str) -> Result<Target, AppError> {
    if let Ok(number) = raw.parse::<u64>() {
        return Ok(Target::Number(number));
    }
    Uuid::parse_str(raw).map(Target::Id).map_err(|_| {
        AppError::Domain(DomainError::NotFound {
            code: "task_not_found",
            message: format!("{raw:?} is neither a task id nor a task number"),
        })
    })
}

/// `If-Match: "3"` (or `3`, or `W/"3"`) → version 3. `*` means any version.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, AppError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = value.to_str().unwrap_or_default().trim();
    if raw == "*" {
        return Ok(None);
    }
    raw.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<u64>()
        .map(Some)
        .map_err(|_| AppError::BadRequest {
            code: "invalid_if_match",
            detail: "If-Match must be the ETag of a task version, such as \"3\"".into(),
        })
}

/// `Idempotency-Key` with a hash of the request it belongs to.
fn idempotency(
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<Option<Idempotency>, AppError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| AppError::BadRequest {
            code: "invalid_idempotency_key",
            detail: "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        })?;
    let mut hash = Sha256::new();
    hash.update(method.as_str().as_bytes());
    hash.update(b" ");
    hash.update(uri.path().as_bytes());
    hash.update(b"\n");
    hash.update(body);
    let digest = hash.finalize();
    Ok(Some(Idempotency {
        key: key.to_owned(),
        request_hash: digest.iter().map(|b| format!("{b:02x}")).collect(),
    }))
}

/// What every command handler reads from the request: the authenticated user, the method and
/// path, the headers and the raw body (hashed for idempotency).
#[derive(Debug)]
pub struct CommandCall {
    user: AuthUser,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// The largest request body accepted.
const BODY_LIMIT: usize = 256 * 1024;

impl FromRequest<AppState> for CommandCall {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let user = AuthUser::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let body = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
            service_kit::problem::Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "The request body is too large",
            )
            .detail(format!("at most {BODY_LIMIT} bytes"))
            .into_response()
        })?;
        Ok(Self {
            user,
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
        })
    }
}

impl CommandCall {
    /// Runs `action` on `target` for this request's user.
    async fn run(
        self,
        state: &AppState,
        target: Target,
        action: Action,
    ) -> Result<Response, AppError> {
        if !*state.ready.borrow() {
            return Err(AppError::NotReady);
        }
        let request = CommandRequest {
            if_match: if_match(&self.headers)?,
            idempotency: idempotency(&self.headers, &self.method, &self.uri, &self.body)?,
            user: self.user.0,
            target,
            action,
            actor: Actor::User,
            correlation_id: Uuid::now_v7(),
        };
        // A caller's W3C `traceparent` travels on into the commit's Kafka headers.
        let trace = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(&self.headers))
        });
        // The pipeline counts what it answers; the mark keeps `count_turned_away` from counting
        // it again.
        let result = state.service.execute(request).with_context(trace).await;
        let mut response = match result {
            Ok(outcome) => respond(outcome, &self.uri),
            Err(error) => error.into_response(),
        };
        response.extensions_mut().insert(ReachedPipeline);
        Ok(response)
    }

    fn object(&self) -> Result<Map<String, Value>, AppError> {
        input::object(&self.body).map_err(|e| match e.code {
            "malformed_json" => AppError::BadRequest {
                code: "malformed_json",
                detail: e.message,
            },
            _ => AppError::Invalid(vec![e]),
        })
    }

    /// Commands without input accept an empty body or `{}`.
    fn no_body(&self) -> Result<(), AppError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let unknown: Vec<FieldError> = self
            .object()?
            .keys()
            .map(|k| FieldError::new(k.clone(), "unknown_field", "this request takes no body"))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(AppError::Invalid(unknown))
        }
    }

    /// A command that takes no body, on the task named by `id`.
    async fn simple(
        self,
        state: &AppState,
        id: &str,
        command: Command,
    ) -> Result<Response, AppError> {
        self.simple_action(state, id, Action::Run(Box::new(command)))
            .await
    }

    async fn simple_action(
        self,
        state: &AppState,
        id: &str,
        action: Action,
    ) -> Result<Response, AppError> {
        let target = task_target(id)?;
        self.no_body()?;
        self.run(state, target, action).await
    }
}

type TaskPath = Path<(String, String)>;

#[utoipa::path(
    post,
    path = "/api/{user_id}/tasks",
    tag = "tasks",
    summary = "Create a task",
    request_body = NewTaskInput,
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        CommandHeaders,
    ),
    responses(
        (status = 201, description = "Created", body = CommandAnswer),
        CommandProblems,
    )
)]
pub(crate) async fn create_task(
    State(state): State<AppState>,
    call: CommandCall,
) -> Result<Response, AppError> {
    let (fields, reminders) =
        input::task_fields(call.object()?, true).map_err(AppError::Invalid)?;
    let command = Command::Create {
        number: 0,
        fields,
        reminders,
    };
    call.run(
        &state,
        Target::New(Uuid::now_v7()),
        Action::Run(Box::new(command)),
    )
    .await
}

#[utoipa::path(
    put,
    path = "/api/{user_id}/tasks/{id}",
    tag = "tasks",
    summary = "Replace a task's editable fields",
    request_body = TaskInput,
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        ("id" = String, Path, description = "Task UUID or per-user task number"),
        CommandHeaders,
    ),
    responses(
        (status = 200, description = "The task after the command", body = CommandAnswer),
        CommandProblems,
    )
)]
pub(crate) async fn replace_task(
    State(state): State<AppState>,
    Path(path): TaskPath,
    call: CommandCall,
) -> Result<Response, AppError> {
    let (_, id) = path;
    let target = task_target(&id)?;
    let (fields, _) = input::task_fields(call.object()?, false).map_err(AppError::Invalid)?;
    call.run(
        &state,
        target,
        Action::Run(Box::new(Command::Replace(fields))),
    )
    .await
}

#[utoipa::path(
    patch,
    path = "/api/{user_id}/tasks/{id}",
    tag = "tasks",
    summary = "Change some fields (JSON merge patch)",
    request_body = TaskPatchInput,
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        ("id" = String, Path, description = "Task UUID or per-user task number"),
        CommandHeaders,
    ),
    responses(
        (status = 200, description = "The task after the command", body = CommandAnswer),
        CommandProblems,
    )
)]
pub(crate) async fn patch_task(
    State(state): State<AppState>,
    Path(path): TaskPath,
    call: CommandCall,
) -> Result<Response, AppError> {
    let (_, id) = path;
    let target = task_target(&id)?;
    let (patch, recurrence) = input::task_patch(call.object()?).map_err(AppError::Invalid)?;
    let action = match recurrence {
        None => Action::Run(Box::new(Command::Patch(patch))),
        Some(spec) => Action::PatchWithRecurrence(Box::new(patch), spec),
    };
    call.run(&state, target, action).await
}

#[utoipa::path(
    delete,
    path = "/api/{user_id}/tasks/{id}",
    tag = "tasks",
    summary = "Delete a task",
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        ("id" = String, Path, description = "Task UUID or per-user task number"),
        CommandHeaders,
    ),
    responses(
        (status = 200, description = "The task after the command", body = CommandAnswer),
        CommandProblems,
    )
)]
pub(crate) async fn delete_task(
    State(state): State<AppState>,
    Path(path): TaskPath,
    call: CommandCall,
) -> Result<Response, AppError> {
    let (_, id) = path;
    call.simple(&state, &id, Command::Delete).await
}

#[utoipa::path(
    patch,
    path = "/api/{user_id}/tasks/{id}/complete",
    tag = "tasks",
    summary = "Toggle completion (complete an open task, reopen a completed one)",
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        ("id" = String, Path, description = "Task UUID or per-user task number"),
        CommandHeaders,
    ),
    responses(
        (status = 200, description = "The task after the command", body = CommandAnswer),
        CommandProblems,
    )
)]
pub(crate) async fn toggle_complete(
    State(state): State<AppState>,
    Path(path): TaskPath,
    call: CommandCall,
) -> Result<Response, AppError> {
    let (_, id) = path;
    call.simple_action(&state, &id, Action::ToggleComplete)
        .await
}

#[utoipa::path(
    post,
    path = "/api/{user_id}/tasks/{id}/complete",
    tag = "tasks",
    summary = "Complete a task",
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        ("id" = String, Path, description = "Task UUID or per-user task number"),
        CommandHeaders,
    ),
    responses(
        (status = 200, description = "The task after the command", body = CommandAnswer),
        CommandProblems,
    )
)]
pub(crate) async fn complete_task(
    State(state): State<AppState>,
    Path(path): TaskPath,
    call: CommandCall,
) -> Result<Response, AppError> {
    let (_, id) = path;
    call.simple(&state, &id, Command::Complete).await
}

#[utoipa::path(
    post,
    path = "/api/{user_id}/tasks/{id}/reopen",
    tag = "tasks",
    summary = "Reopen a completed task",
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        ("id" = String, Path, description = "Task UUID or per-user task number"),
        CommandHeaders,
    ),
    responses(
        (status = 200, description = "The task after the command", body = CommandAnswer),
        CommandProblems,
    )
)]
pub(crate) async fn reopen_task(
    State(state): State<AppState>,
    Path(path): TaskPath,
    call: CommandCall,
) -> Result<Response, AppError> {
    let (_, id) = path;
    call.simple(&state, &id, Command::Reopen).await
}

#[utoipa::path(
    delete,
    path = "/api/{user_id}/tasks/{id}/recurrence",
    tag = "tasks",
    summary = "Clear the recurrence rule",
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        ("id" = String, Path, description = "Task UUID or per-user task number"),
        CommandHeaders,
    ),
    responses(
        (status = 200, description = "The task after the command", body = CommandAnswer),
        CommandProblems,
    )
)]
pub(crate) async fn clear_recurrence(
    State(state): State<AppState>,
    Path(path): TaskPath,
    call: CommandCall,
) -> Result<Response, AppError> {
    let (_, id) = path;
    call.simple(&state, &id, Command::ClearRecurrence).await
}

#[utoipa::path(
    post,
    path = "/api/{user_id}/tasks/{id}/tags",
    tag = "tasks",
    summary = "Add a tag",
    request_body = TagInput,
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        ("id" = String, Path, description = "Task UUID or per-user task number"),
        CommandHeaders,
    ),
    responses(
        (status = 200, description = "The task after the command", body = CommandAnswer),
        CommandProblems,
    )
)]
pub(crate) async fn add_tag(
    State(state): State<AppState>,
    Path(path): TaskPath,
    call: CommandCall,
) -> Result<Response, AppError> {
    let (_, id) = path;
    let target = task_target(&id)?;
    let tag = input::tag(call.object()?).map_err(AppError::Invalid)?;
    call.run(&state, target, Action::Run(Box::new(Command::AddTag(tag))))
        .await
}

#[utoipa::path(
    delete,
    path = "/api/{user_id}/tasks/{id}/tags/{tag}",
    tag = "tasks",
    summary = "Remove a tag (ignoring case)",
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        ("id" = String, Path, description = "Task UUID or per-user task number"),
        ("tag" = String, Path, description = "The tag"),
        CommandHeaders,
    ),
    responses(
        (status = 200, description = "The task after the command", body = CommandAnswer),
        CommandProblems,
    )
)]
pub(crate) async fn remove_tag(
    State(state): State<AppState>,
    Path(path): Path<(String, String, String)>,
    call: CommandCall,
) -> Result<Response, AppError> {
    let (_, id, tag) = path;
    call.simple(&state, &id, Command::RemoveTag(tag)).await
}

#[utoipa::path(
    put,
    path = "/api/{user_id}/tasks/{id}/recurrence",
    tag = "tasks",
    summary = "Set the recurrence rule",
    request_body = RecurrenceInput,
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        ("id" = String, Path, description = "Task UUID or per-user task number"),
        CommandHeaders,
    ),
    responses(
        (status = 200, description = "The task after the command", body = CommandAnswer),
        CommandProblems,
    )
)]
pub(crate) async fn set_recurrence(
    State(state): State<AppState>,
    Path(path): TaskPath,
    call: CommandCall,
) -> Result<Response, AppError> {
    let (_, id) = path;
    let target = task_target(&id)?;
    let recurrence = input::recurrence(call.object()?).map_err(AppError::Invalid)?;
    call.run(&state, target, Action::SetRecurrence(recurrence))
        .await
}

#[utoipa::path(
    post,
    path = "/api/{user_id}/reminders",
    tag = "tasks",
    summary = "Add a reminder to a task",
    request_body = NewReminderInput,
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        CommandHeaders,
    ),
    responses(
        (status = 200, description = "The task after the command", body = CommandAnswer),
        CommandProblems,
    )
)]
pub(crate) async fn add_reminder(
    State(state): State<AppState>,
    call: CommandCall,
) -> Result<Response, AppError> {
    let mut object = call.object()?;
    let target = match object.remove("task_id") {
        Some(Value::String(s)) => task_target(&s)?,
        Some(Value::Number(n)) if n.as_u64().is_some() => Target::Number(n.as_u64().unwrap_or(0)),
        _ => {
            return Err(AppError::Invalid(vec![FieldError::new(
                "task_id",
                "required",
                "give the task's id or number",
            )]));
        }
    };
    let time = input::reminder_time(Value::Object(object)).map_err(|mut e| {
        e.field = e.field.trim_start_matches('.').to_owned();
        AppError::Invalid(vec![e])
    })?;
    let command = Command::AddReminder {
        reminder_id: Uuid::now_v7(),
        time,
    };
    call.run(&state, target, Action::Run(Box::new(command)))
        .await
}

#[utoipa::path(
    delete,
    path = "/api/{user_id}/reminders/{reminder_id}",
    tag = "tasks",
    summary = "Remove a reminder",
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        ("reminder_id" = String, Path, description = "The reminder's UUID"),
        CommandHeaders,
    ),
    responses(
        (status = 200, description = "The task after the command", body = CommandAnswer),
        CommandProblems,
    )
)]
pub(crate) async fn remove_reminder(
    State(state): State<AppState>,
    Path(path): TaskPath,
    call: CommandCall,
) -> Result<Response, AppError> {
    let (_, reminder_id) = path;
    let reminder_id = Uuid::parse_str(&reminder_id).map_err(|_| {
        AppError::Domain(DomainError::NotFound {
            code: "reminder_not_found",
            message: "no such reminder".into(),
        })
    })?;
    call.no_body()?;
    call.run(
        &state,
        Target::Reminder(reminder_id),
        Action::Run(Box::new(Command::RemoveReminder { reminder_id })),
    )
    .await
}
