//! The REST API: routes, the caller (JWT and consistency token), parameters and responses.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use event_store::events::{Due, Priority};
use event_store::{LogPosition, UserId};
use migrations::generations::Generation;
use service_kit::auth::{AuthUser, Jwt};
use sqlx::PgPool;

use crate::Settings;
use crate::consistency;
use crate::error::AppError;
use crate::generation::ActiveGeneration;
use crate::params::{InstantOrDate, Params, QueryPairs};
use crate::store::audit;
use crate::store::lists::{self, ReminderList};
use crate::store::tasks::{
    self, Direction, DueBound, Search, SortKey, StatusFilter, TagsMode, TaskFilter, TaskList,
    TaskRef,
};
use crate::view::{
    EventFeed, HistoryPage, NotificationPage, ReminderPage, TagList, TaskPage, TaskView,
};

/// What handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: PgPool,
    pub generations: ActiveGeneration,
    pub jwt: Arc<Jwt>,
    /// The longest a query waits for its consistency token.
    pub consistency_wait: Duration,
    /// The topic's partition count: a token naming another partition is malformed.
    pub partitions: i32,
}

impl FromRef<AppState> for Arc<Jwt> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.jwt)
    }
}

impl AppState {
    /// The state over a lazily connecting pool, following the active generation. Must be called
    /// inside a Tokio runtime.
    pub fn connect(settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self::new(settings.database.pool()?, settings))
    }

    /// The state over `pool`, following the active generation. Must be called inside a Tokio
    /// runtime.
    pub fn new(pool: PgPool, settings: &Settings) -> Self {
        Self {
            generations: ActiveGeneration::follow(
                pool.clone(),
                settings.query.generation_refresh(),
            ),
            pool,
            jwt: Arc::new(Jwt::new(&settings.auth)),
            consistency_wait: settings.query.consistency_wait(),
            partitions: settings.kafka.partitions,
        }
    }
}

/// The query routes.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/{user_id}/tasks", get(list_tasks))
        .route("/api/{user_id}/tasks/{id}", get(get_task))
        .route("/api/{user_id}/tasks/{id}/history", get(task_history))
        .route("/api/{user_id}/tags", get(list_tags))
        .route("/api/{user_id}/reminders", get(list_reminders))
        .route("/api/{user_id}/notifications", get(list_notifications))
        .route("/api/{user_id}/events", get(event_feed))
        .with_state(state)
}

/// The authenticated caller of an `/api/{user_id}/…` query, and the consistency token it sent.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: UserId,
    /// `X-Consistency-Token`: read only once the read models include this record.
    pub token: Option<LogPosition>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let AuthUser(user) = AuthUser::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let token = consistency_token(&parts.headers, state.partitions)
            .map_err(IntoResponse::into_response)?;
        Ok(Self { user, token })
    }
}

fn consistency_token(
    headers: &HeaderMap,
    partitions: i32,
) -> Result<Option<LogPosition>, AppError> {
    let Some(value) = headers.get(consistency::HEADER) else {
        return Ok(None);
    };
    let invalid = |detail: String| AppError::BadRequest {
        code: "invalid_consistency_token",
        detail,
    };
    let raw = value
        .to_str()
        .map_err(|_| invalid("X-Consistency-Token must be partition@offset".into()))?
        .trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let token: LogPosition = raw
        .parse()
        .map_err(|e| invalid(format!("X-Consistency-Token must be partition@offset: {e}")))?;
    if token.partition >= partitions {
        return Err(invalid(format!(
            "X-Consistency-Token names partition {}, but the log has {partitions}",
            token.partition
        )));
    }
    Ok(Some(token))
}

impl Caller {
    fn user(&self) -> &str {
        self.user.as_str()
    }

    /// Runs `query` on the generation to read. If that generation's tables are gone (it was
    /// switched from and dropped before this process heard), re-reads the active generation and
    /// runs `query` once more, on the new one.
    async fn read<T, F, Fut>(&self, state: &AppState, query: F) -> Result<T, AppError>
    where
        F: Fn(Generation) -> Fut,
        Fut: Future<Output = Result<T, AppError>>,
    {
        let generation = self.generation(state).await?;
        let number = generation.number;
        match query(generation).await {
            Err(error) if error.is_generation_gone() => {
                let fresh = state
                    .generations
                    .refresh()
                    .await?
                    .ok_or(AppError::NoActiveGeneration)?;
                if fresh.number == number {
                    return Err(error);
                }
                query(fresh).await
            }
            outcome => outcome,
        }
    }

    /// The generation to read: once it has reached the caller's token, if any.
    async fn generation(&self, state: &AppState) -> Result<Generation, AppError> {
        match self.token {
            Some(token) => {
                consistency::wait_for(
                    &state.pool,
                    &state.generations,
                    token,
                    state.consistency_wait,
                )
                .await
            }
            None => state.generations.current().await,
        }
    }
}

/// `{id}` of `/tasks/{id}…`, without axum's plain-text rejection.
#[derive(Debug)]
pub struct TaskId(pub Option<TaskRef>);

impl<S: Send + Sync> FromRequestParts<S> for TaskId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((_, id)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::task_not_found())?;
        Ok(Self(TaskRef::parse(&id)))
    }
}

impl TaskId {
    fn get(self) -> Result<TaskRef, AppError> {
        self.0.ok_or_else(AppError::task_not_found)
    }
}

/// The longest `q` accepted.
pub(crate) const MAX_QUERY_CHARS: usize = 200;
/// The most tags one filter may name.
const MAX_FILTER_TAGS: usize = 50;

pub(crate) fn task_list(user: &str, pairs: QueryPairs) -> Result<TaskList, AppError> {
    let mut p = Params::new(
        pairs,
        &[
            "status",
            "priority",
            "tags",
            "tags_mode",
            "due_before",
            "due_after",
            "overdue",
            "q",
            "sort",
            "order",
            "limit",
            "cursor",
        ],
    );
    let status = p.choice(
        "status",
        &[
            ("open", StatusFilter::Open),
            ("completed", StatusFilter::Completed),
            ("all", StatusFilter::All),
        ],
        StatusFilter::Open,
    );
    let mut priorities = Vec::new();
    for raw in p.list("priority") {
        match serde_json::from_value::<Priority>(serde_json::Value::String(raw.to_lowercase())) {
            Ok(priority) => priorities.push(priority.rank()),
            Err(_) => p.error(
                "priority",
                "invalid_value",
                format!("{raw:?} is not one of: low, medium, high, urgent"),
            ),
        }
    }
    priorities.sort_unstable();
    priorities.dedup();
    let mut tags: Vec<String> = p.list("tags").iter().map(|t| t.to_lowercase()).collect();
    tags.sort();
    tags.dedup();
    if tags.len() > MAX_FILTER_TAGS {
        p.error(
            "tags",
            "too_many",
            format!("at most {MAX_FILTER_TAGS} tags"),
        );
    }
    let tags_mode = p.choice(
        "tags_mode",
        &[("any", TagsMode::Any), ("all", TagsMode::All)],
        TagsMode::Any,
    );
    // A date names a whole UTC day: `due_before=D` is due on or before D, `due_after=D` after D.
    let due_before = p.instant_or_date("due_before").map(|bound| match bound {
        InstantOrDate::Instant(at) => DueBound {
            at,
            inclusive: false,
        },
        InstantOrDate::Date(date) => DueBound {
            at: Due::Date { date }.deadline(),
            inclusive: true,
        },
    });
    let due_after = p.instant_or_date("due_after").map(|bound| match bound {
        InstantOrDate::Instant(at) => DueBound {
            at,
            inclusive: false,
        },
        InstantOrDate::Date(date) => DueBound {
            at: Due::Date { date }.deadline(),
            inclusive: false,
        },
    });
    let overdue = p.boolean("overdue").unwrap_or(false);
    let search = match p.single("q") {
        Some(q) if q.chars().count() > MAX_QUERY_CHARS => {
            p.error(
                "q",
                "too_long",
                format!("at most {MAX_QUERY_CHARS} characters"),
            );
            None
        }
        Some(q) => Search::new(&q),
        None => None,
    };
    let sort = p.choice(
        "sort",
        &[
            ("created", Some(SortKey::Created)),
            ("updated", Some(SortKey::Updated)),
            ("due", Some(SortKey::Due)),
            ("priority", Some(SortKey::Priority)),
            ("title", Some(SortKey::Title)),
            ("relevance", Some(SortKey::Relevance)),
        ],
        None,
    );
    let sort = match (sort, &search) {
        (Some(SortKey::Relevance), None) => {
            p.error("sort", "invalid_value", "relevance needs a search (q)");
            SortKey::Created
        }
        (Some(sort), _) => sort,
        (None, Some(_)) => SortKey::Relevance,
        (None, None) => SortKey::Created,
    };
    let direction = p.choice(
        "order",
        &[("asc", Direction::Asc), ("desc", Direction::Desc)],
        Direction::Desc,
    );
    let limit = p.limit(50, 200);
    let cursor = p.single("cursor");
    p.finish()?;
    Ok(TaskList {
        user: user.to_owned(),
        filter: TaskFilter {
            status,
            priorities,
            tags,
            tags_mode,
            due_before,
            due_after,
            overdue,
            search,
        },
        sort,
        direction,
        limit,
        cursor,
    })
}

/// A route that takes no query parameters.
fn no_params(pairs: QueryPairs) -> Result<(), AppError> {
    Params::new(pairs, &[]).finish()
}

#[utoipa::path(
    get,
    path = "/api/{user_id}/tasks",
    tag = "queries",
    summary = "List tasks",
    description = "Filters combine with AND. Pages are keyset-paginated: pass `next_cursor` back \
                   as `cursor` with the same filters and sort until it is null. With `q` and no \
                   `sort`, the most relevant tasks come first (title matches above description \
                   matches; words match as prefixes; titles also match with typos).",
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        crate::openapi::TaskListParams,
        crate::openapi::ConsistencyHeader,
    ),
    responses(
        (status = 200, description = "A page of tasks", body = TaskPage),
        crate::openapi::QueryProblems,
    )
)]
#[tracing::instrument(skip_all, fields(user = %caller.user))]
pub(crate) async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
    pairs: QueryPairs,
) -> Result<Json<TaskPage>, AppError> {
    let list = task_list(caller.user(), pairs)?;
    let (pool, list) = (&state.pool, &list);
    let (items, next_cursor) = caller
        .read(&state, |g| async move { tasks::list(pool, &g, list).await })
        .await?;
    Ok(Json(TaskPage { items, next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/{user_id}/tasks/{id}",
    tag = "queries",
    summary = "Get a task",
    description = "A deleted task, or one of another user, is `404`. `ETag` is the version; \
                   `If-None-Match` with it answers `304`.",
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        ("id" = String, Path, description = "Task UUID or per-user task number"),
        crate::openapi::ConsistencyHeader,
    ),
    responses(
        (status = 200, description = "The task", body = TaskView,
         headers(("ETag" = String, description = "The task's version, quoted"))),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        crate::openapi::QueryProblems,
    )
)]
#[tracing::instrument(skip_all, fields(user = %caller.user))]
pub(crate) async fn get_task(
    State(state): State<AppState>,
    caller: Caller,
    task: TaskId,
    headers: HeaderMap,
    pairs: QueryPairs,
) -> Result<Response, AppError> {
    no_params(pairs)?;
    let task = task.get()?;
    let (pool, user) = (&state.pool, caller.user());
    let view = caller
        .read(
            &state,
            |g| async move { tasks::get(pool, &g, user, task).await },
        )
        .await?
        .ok_or_else(AppError::task_not_found)?;
    let etag = format!("\"{}\"", view.version);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        });
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Json(view).into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/{user_id}/tasks/{id}/history",
    tag = "queries",
    summary = "A task's history",
    description = "Every event of the task, oldest first, with who caused it and where it is in \
                   the log. Deleted tasks keep their history.",
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        ("id" = String, Path, description = "Task UUID or per-user task number"),
        crate::openapi::HistoryParams,
        crate::openapi::ConsistencyHeader,
    ),
    responses(
        (status = 200, description = "A page of the task's events", body = HistoryPage),
        crate::openapi::QueryProblems,
    )
)]
#[tracing::instrument(skip_all, fields(user = %caller.user))]
pub(crate) async fn task_history(
    State(state): State<AppState>,
    caller: Caller,
    task: TaskId,
    pairs: QueryPairs,
) -> Result<Json<HistoryPage>, AppError> {
    let mut p = Params::new(pairs, &["after", "limit"]);
    let after = p.integer("after").unwrap_or(0);
    let limit = p.limit(100, 500);
    p.finish()?;
    let task = task.get()?;
    let (pool, user) = (&state.pool, caller.user());
    let (task_id, items, next) = caller
        .read(&state, |g| async move {
            let task_id = tasks::resolve_any(pool, &g, user, task)
                .await?
                .ok_or_else(AppError::task_not_found)?;
            let (items, next) = audit::history(pool, &g, user, task_id, after, limit).await?;
            Ok((task_id, items, next))
        })
        .await?;
    Ok(Json(HistoryPage {
        task_id,
        items,
        next,
    }))
}

#[utoipa::path(
    get,
    path = "/api/{user_id}/tags",
    tag = "queries",
    summary = "List tags with counts",
    description = "Tags on the user's tasks (not deleted), most used first. `prefix` \
                   autocompletes, ignoring case.",
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        crate::openapi::TagParams,
        crate::openapi::ConsistencyHeader,
    ),
    responses(
        (status = 200, description = "The tags", body = TagList),
        crate::openapi::QueryProblems,
    )
)]
#[tracing::instrument(skip_all, fields(user = %caller.user))]
pub(crate) async fn list_tags(
    State(state): State<AppState>,
    caller: Caller,
    pairs: QueryPairs,
) -> Result<Json<TagList>, AppError> {
    let mut p = Params::new(pairs, &["prefix", "limit"]);
    let prefix = p.single("prefix");
    let limit = p.limit(100, 500);
    p.finish()?;
    let (pool, user, prefix) = (&state.pool, caller.user(), prefix.as_deref());
    let items = caller
        .read(&state, |g| async move {
            lists::tags(pool, &g, user, prefix, limit).await
        })
        .await?;
    Ok(Json(TagList { items }))
}

#[utoipa::path(
    get,
    path = "/api/{user_id}/reminders",
    tag = "queries",
    summary = "List reminders",
    description = "By when they go off; reminders without a time (an offset before a due date \
                   the task no longer has) last.",
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        crate::openapi::ReminderParams,
        crate::openapi::ConsistencyHeader,
    ),
    responses(
        (status = 200, description = "A page of reminders", body = ReminderPage),
        crate::openapi::QueryProblems,
    )
)]
#[tracing::instrument(skip_all, fields(user = %caller.user))]
pub(crate) async fn list_reminders(
    State(state): State<AppState>,
    caller: Caller,
    pairs: QueryPairs,
) -> Result<Json<ReminderPage>, AppError> {
    let mut p = Params::new(pairs, &["status", "limit", "cursor"]);
    let status = p.choice(
        "status",
        &[
            ("pending", Some("pending")),
            ("fired", Some("fired")),
            ("cancelled", Some("cancelled")),
        ],
        None,
    );
    let limit = p.limit(100, 500);
    let cursor = p.single("cursor");
    p.finish()?;
    let list = ReminderList {
        user: caller.user().to_owned(),
        status,
        limit,
        cursor,
    };
    let (pool, list) = (&state.pool, &list);
    let (items, next_cursor) = caller
        .read(
            &state,
            |g| async move { lists::reminders(pool, &g, list).await },
        )
        .await?;
    Ok(Json(ReminderPage { items, next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/{user_id}/notifications",
    tag = "queries",
    summary = "List notifications",
    description = "Newest first.",
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        crate::openapi::NotificationParams,
        crate::openapi::ConsistencyHeader,
    ),
    responses(
        (status = 200, description = "A page of notifications", body = NotificationPage),
        crate::openapi::QueryProblems,
    )
)]
#[tracing::instrument(skip_all, fields(user = %caller.user))]
pub(crate) async fn list_notifications(
    State(state): State<AppState>,
    caller: Caller,
    pairs: QueryPairs,
) -> Result<Json<NotificationPage>, AppError> {
    let mut p = Params::new(pairs, &["limit", "cursor"]);
    let limit = p.limit(50, 200);
    let cursor = p.single("cursor");
    p.finish()?;
    let (pool, user, cursor) = (&state.pool, caller.user(), cursor.as_deref());
    let (items, next_cursor) = caller
        .read(&state, |g| async move {
            lists::notifications(pool, &g, user, limit, cursor).await
        })
        .await?;
    Ok(Json(NotificationPage { items, next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/{user_id}/events",
    tag = "queries",
    summary = "The user's event feed",
    description = "Every event of the user's, in log order, after the position `after`. A page \
                   never ends inside a commit (the events one command wrote): it may hold fewer \
                   than `limit` events, or more when one commit alone has more. Continue (or \
                   poll) with `next`.",
    params(
        ("user_id" = String, Path, description = "The user (the token's sub)"),
        crate::openapi::EventFeedParams,
        crate::openapi::ConsistencyHeader,
    ),
    responses(
        (status = 200, description = "A page of events", body = EventFeed),
        crate::openapi::QueryProblems,
    )
)]
#[tracing::instrument(skip_all, fields(user = %caller.user))]
pub(crate) async fn event_feed(
    State(state): State<AppState>,
    caller: Caller,
    pairs: QueryPairs,
) -> Result<Json<EventFeed>, AppError> {
    let mut p = Params::new(pairs, &["after", "limit"]);
    let after = match p.single("after") {
        Some(raw) => match raw.parse::<LogPosition>() {
            Ok(position) => Some(position),
            Err(e) => {
                p.error(
                    "after",
                    "invalid_value",
                    format!("must be partition@offset: {e}"),
                );
                None
            }
        },
        None => None,
    };
    let limit = p.limit(100, 1000);
    p.finish()?;
    let (pool, user) = (&state.pool, caller.user());
    let (items, has_more) = caller
        .read(&state, |g| async move {
            audit::feed(pool, &g, user, after, limit).await
        })
        .await?;
    let next = match items.last() {
        Some(last) => Some(last.position.clone()),
        None => after.map(|a| a.to_string()),
    };
    Ok(Json(EventFeed {
        items,
        next,
        has_more,
    }))
}
