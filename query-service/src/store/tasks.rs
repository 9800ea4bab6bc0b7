//! Task lists (filters, sorts, keyset pagination, search) and single tasks.

use chrono::{DateTime, Utc};
use migrations::generations::Generation;
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::cursor::{self, Cursor};
use crate::error::AppError;
use crate::view::{TaskReminderView, TaskStatus, TaskView};
use event_store::events::Priority;

/// Which tasks by state. Deleted tasks are never listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    Open,
    Completed,
    /// Open and completed.
    All,
}

/// How several `tags` combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TagsMode {
    /// At least one of them.
    Any,
    /// Every one of them.
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    Created,
    Updated,
    Due,
    Priority,
    Title,
    /// Search relevance (only with `q`).
    Relevance,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Asc,
    Desc,
}

impl Direction {
    fn sql(self) -> &'static str {
        match self {
            Direction::Asc => "ASC",
            Direction::Desc => "DESC",
        }
    }

    /// The comparison that means "comes after" in this direction.
    fn after(self) -> &'static str {
        match self {
            Direction::Asc => ">",
            Direction::Desc => "<",
        }
    }
}

/// A bound on `due_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DueBound {
    pub at: DateTime<Utc>,
    /// Whether `due_at == at` passes.
    pub inclusive: bool,
}

/// A full-text and typo-tolerant search.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Search {
    /// The query, lower case, whitespace collapsed: compared by trigrams with the title.
    pub text: String,
    /// `word1:* & word2:*` over the words (letters and digits only), if there are any.
    pub tsquery: Option<String>,
}

/// The least `strict_word_similarity` (trigrams of whole words) of a search and a title word
/// that counts as a typo of it: one letter missing from a five-letter word ("reprt" for
/// "report") scores 0.44, a word that merely shares its first letters with another ("cat" and
/// "call") 0.29.
const TYPO_SIMILARITY: f32 = 0.4;

/// The most words of a search that count.
const MAX_SEARCH_WORDS: usize = 16;
/// The longest word of a search that counts (longer ones are cut).
const MAX_WORD_CHARS: usize = 64;

impl Search {
    /// A search for `q`; `None` when `q` is blank.
    pub fn new(q: &str) -> Option<Self> {
        let text = q.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return None;
        }
        let text = text.to_lowercase();
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .take(MAX_SEARCH_WORDS)
            .map(|w| format!("{}:*", w.chars().take(MAX_WORD_CHARS).collect::<String>()))
            .collect();
        let tsquery = (!words.is_empty()).then(|| words.join(" & "));
        Some(Self { text, tsquery })
    }
}

/// Which tasks a list shows. Normalised (sorted, deduplicated, lower case) so that equal
/// filters have equal cursor fingerprints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskFilter {
    pub status: StatusFilter,
    /// Read-model priority numbers (0 low … 3 urgent); empty means any.
    pub priorities: Vec<i16>,
    /// Lower-case tags; empty means any.
    pub tags: Vec<String>,
    pub tags_mode: TagsMode,
    pub due_before: Option<DueBound>,
    pub due_after: Option<DueBound>,
    /// Only open tasks whose due time has passed.
    pub overdue: bool,
    pub search: Option<Search>,
}

impl Default for TaskFilter {
    fn default() -> Self {
        Self {
            status: StatusFilter::Open,
            priorities: Vec::new(),
            tags: Vec::new(),
            tags_mode: TagsMode::Any,
            due_before: None,
            due_after: None,
            overdue: false,
            search: None,
        }
    }
}

/// A page request of a task list.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskList {
    pub user: String,
    pub filter: TaskFilter,
    pub sort: SortKey,
    pub direction: Direction,
    pub limit: u32,
    /// The raw cursor of the previous page's end.
    pub cursor: Option<String>,
}

impl TaskList {
    /// The fingerprint cursors of this list carry.
    pub fn fingerprint(&self) -> String {
        cursor::fingerprint(&("tasks", &self.user, &self.filter, self.sort, self.direction))
    }
}

/// A row of `tasks` with the task's reminders and (for searches) its relevance.
#[derive(Debug, sqlx::FromRow)]
pub struct TaskRow {
    pub task_id: Uuid,
    pub task_number: i64,
    pub title: String,
    pub description: Option<String>,
    pub priority: i16,
    pub due: Option<Value>,
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub recurrence: Option<Value>,
    pub reminders: Json<Vec<TaskReminderView>>,
    pub status: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub rank: f32,
}

impl From<TaskRow> for TaskView {
    fn from(row: TaskRow) -> Self {
        let status = TaskStatus::from_column(&row.status);
        Self {
            id: row.task_id,
            number: row.task_number,
            title: row.title,
            description: row.description,
            priority: Priority::from_rank(row.priority),
            due: row.due,
            due_at: row.due_at,
            tags: row.tags,
            recurrence: row.recurrence,
            reminders: row.reminders.0,
            status,
            completed: status == TaskStatus::Completed,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
            completed_at: row.completed_at,
        }
    }
}

/// The sort key of a row, as a cursor holds it.
fn key_of(sort: SortKey, row: &TaskRow) -> Value {
    match sort {
        SortKey::Created => Value::String(row.created_at.to_rfc3339()),
        SortKey::Updated => Value::String(row.updated_at.to_rfc3339()),
        SortKey::Due => row
            .due_at
            .map_or(Value::Null, |d| Value::String(d.to_rfc3339())),
        SortKey::Priority => Value::from(row.priority),
        SortKey::Title => Value::String(row.title.clone()),
        // The exact bits: the next page compares the recomputed rank for equality.
        SortKey::Relevance => Value::from(row.rank.to_bits()),
    }
}

/// A cursor's sort key, typed for binding.
#[derive(Clone)]
enum Key {
    Time(DateTime<Utc>),
    NoTime,
    Priority(i16),
    Text(String),
    Rank(f32),
}

fn parse_key(sort: SortKey, value: &Value) -> Option<Key> {
    let time = |v: &Value| {
        v.as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    match sort {
        SortKey::Created | SortKey::Updated => time(value).map(Key::Time),
        SortKey::Due if value.is_null() => Some(Key::NoTime),
        SortKey::Due => time(value).map(Key::Time),
        SortKey::Priority => value
            .as_i64()
            .and_then(|n| i16::try_from(n).ok())
            .map(Key::Priority),
        SortKey::Title => value.as_str().map(|s| Key::Text(s.to_owned())),
        SortKey::Relevance => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(f32::from_bits)
            .filter(|r| r.is_finite())
            .map(Key::Rank),
    }
}

/// The columns every task query returns (`t` is the task), without `rank`. A generation whose
/// tasks carry their reminders answers from the task rows alone; an older one fetches them from
/// `reminders_by_task`, already in order, so no sort runs per task (an ordered `jsonb_agg` sorts,
/// even nothing, for each task of the page).
fn task_columns(generation: &Generation) -> String {
    let reminders = if generation.tasks_carry_reminders() {
        "t.reminders".to_owned()
    } else {
        format!(
            r#"to_jsonb(ARRAY(
               SELECT jsonb_build_object(
                          'id', r.reminder_id, 'time', r.time, 'remind_at', r.remind_at,
                          'status', r.status, 'fired', r.status = 'fired')
                 FROM {reminders} r
                WHERE r.task_id = t.task_id AND r.removed_at IS NULL
                ORDER BY r.created_at, r.reminder_id)) AS reminders"#,
            reminders = generation.table("reminders"),
        )
    };
    format!(
        r#"t.task_id, t.task_number, t.title, t.description, t.priority, t.due, t.due_at, t.tags,
           t.recurrence, t.status, t.version, t.created_at, t.updated_at, t.completed_at,
           {reminders}"#
    )
}

fn push_rank(qb: &mut QueryBuilder<'_, Postgres>, search: &Search) {
    qb.push("(");
    if let Some(tsquery) = &search.tsquery {
        qb.push("ts_rank(t.search, to_tsquery('simple', ")
            .push_bind(tsquery.clone())
            .push(")) + ");
    }
    qb.push("word_similarity(")
        .push_bind(search.text.clone())
        .push(", lower(t.title)))::real");
}

/// The condition on `t.status` of a status filter.
fn status_condition(status: StatusFilter) -> &'static str {
    match status {
        StatusFilter::Open => "t.status = 'open'",
        StatusFilter::Completed => "t.status = 'completed'",
        StatusFilter::All => "t.status IN ('open', 'completed')",
    }
}

/// `WHERE` with every condition of `filter` but its status (`status` instead) and its search
/// text (see [`push_search`]).
fn push_filter(
    qb: &mut QueryBuilder<'_, Postgres>,
    user: &str,
    status: StatusFilter,
    filter: &TaskFilter,
) {
    qb.push(" WHERE t.user_id = ").push_bind(user.to_owned());
    qb.push(" AND ").push(status_condition(status));
    if !filter.priorities.is_empty() {
        qb.push(" AND t.priority = ANY(")
            .push_bind(filter.priorities.clone())
            .push(")");
    }
    if !filter.tags.is_empty() {
        qb.push(match filter.tags_mode {
            TagsMode::Any => " AND t.tag_keys && ",
            TagsMode::All => " AND t.tag_keys @> ",
        })
        .push_bind(filter.tags.clone())
        .push("::text[]");
    }
    if let Some(bound) = filter.due_before {
        qb.push(if bound.inclusive {
            " AND t.due_at <= "
        } else {
            " AND t.due_at < "
        })
        .push_bind(bound.at);
    }
    if let Some(bound) = filter.due_after {
        qb.push(if bound.inclusive {
            " AND t.due_at >= "
        } else {
            " AND t.due_at > "
        })
        .push_bind(bound.at);
    }
    if filter.overdue {
        qb.push(" AND t.status = 'open' AND t.due_at < now()");
    }
}

/// The text conditions of a search, in parentheses.
fn push_search(qb: &mut QueryBuilder<'_, Postgres>, search: &Search) {
    qb.push("(");
    if let Some(tsquery) = &search.tsquery {
        qb.push("t.search @@ to_tsquery('simple', ")
            .push_bind(tsquery.clone())
            .push(") OR ");
    }
    // `%`: the whole title is similar; `strict_word_similarity`: its words are, with a threshold
    // that a word with one letter wrong or missing still reaches.
    qb.push("lower(t.title) % ")
        .push_bind(search.text.clone())
        .push(" OR strict_word_similarity(")
        .push_bind(search.text.clone())
        .push(", lower(t.title)) >= ")
        .push_bind(TYPO_SIMILARITY)
        .push(")");
}

/// The keyset condition "after the cursor's row". NULL due times sort last either way.
fn push_after(qb: &mut QueryBuilder<'_, Postgres>, list: &TaskList, key: Key, id: Uuid) {
    let op = list.direction.after();
    let column = match list.sort {
        SortKey::Created => "t.created_at",
        SortKey::Updated => "t.updated_at",
        SortKey::Due => "t.due_at",
        SortKey::Priority => "t.priority",
        SortKey::Title => "t.title",
        SortKey::Relevance => "",
    };
    match key {
        Key::NoTime => {
            qb.push(format!(" AND t.due_at IS NULL AND t.task_id {op} "))
                .push_bind(id);
        }
        Key::Time(at) if list.sort == SortKey::Due => {
            qb.push(format!(
                " AND (t.due_at IS NULL OR (t.due_at, t.task_id) {op} ("
            ))
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push("))");
        }
        key => {
            qb.push(" AND (");
            if list.sort == SortKey::Relevance {
                if let Some(search) = &list.filter.search {
                    push_rank(qb, search);
                }
            } else {
                qb.push(column);
            }
            qb.push(format!(", t.task_id) {op} ("));
            match key {
                Key::Time(at) => qb.push_bind(at),
                Key::Priority(p) => qb.push_bind(p),
                Key::Text(s) => qb.push_bind(s),
                Key::Rank(r) => qb.push_bind(r),
                Key::NoTime => qb.push("NULL"),
            };
            qb.push(", ").push_bind(id).push(")");
        }
    }
}

fn order_by(sort: SortKey, direction: Direction) -> String {
    let dir = direction.sql();
    match sort {
        SortKey::Created => format!("t.created_at {dir}, t.task_id {dir}"),
        SortKey::Updated => format!("t.updated_at {dir}, t.task_id {dir}"),
        SortKey::Due => format!("t.due_at {dir} NULLS LAST, t.task_id {dir}"),
        SortKey::Priority => format!("t.priority {dir}, t.task_id {dir}"),
        SortKey::Title => format!("t.title {dir}, t.task_id {dir}"),
        SortKey::Relevance => format!("rank {dir}, t.task_id {dir}"),
    }
}

/// One page of a task list and the cursor of the next.
#[tracing::instrument(skip_all, fields(schema = %generation.schema))]
pub async fn list(
    pool: &PgPool,
    generation: &Generation,
    list: &TaskList,
) -> Result<(Vec<TaskView>, Option<String>), AppError> {
    let fingerprint = list.fingerprint();
    let after = match &list.cursor {
        Some(raw) => {
            let cursor = Cursor::decode(raw, &fingerprint)?;
            let key = parse_key(list.sort, &cursor.key).ok_or_else(cursor::invalid)?;
            Some((key, cursor.id))
        }
        None => None,
    };
    let mut qb = QueryBuilder::<Postgres>::new("SELECT ");
    qb.push(task_columns(generation)).push(", ");
    match &list.filter.search {
        Some(search) => push_rank(&mut qb, search),
        None => {
            qb.push("0::real");
        }
    }
    qb.push(" AS rank FROM ");
    let tasks = generation.table("tasks");
    let limit = i64::from(list.limit) + 1;
    match (&list.filter.search, list.filter.status) {
        // A search matches the text against each of the user's tasks that pass the other
        // filters. `OFFSET 0` keeps the text conditions out of that scan, so every plan starts
        // from the user's rows, the statement's cached generic plan included (in generation 1,
        // a generic plan started from GIN indexes over every user's tasks). Planning a search
        // with its values each time cost more than running it.
        (Some(search), status) => {
            qb.push("(SELECT * FROM ").push(&tasks).push(" t");
            push_filter(&mut qb, &list.user, status, &list.filter);
            qb.push(" OFFSET 0) t WHERE ");
            push_search(&mut qb, search);
            if let Some((key, id)) = after {
                push_after(&mut qb, list, key, id);
            }
        }
        // The open and the completed tasks are two ranges of the keyset indexes: each gives at
        // most a page in order, and only those are merged.
        (None, StatusFilter::All) => {
            qb.push("(");
            for (n, status) in [StatusFilter::Open, StatusFilter::Completed]
                .into_iter()
                .enumerate()
            {
                if n > 0 {
                    qb.push(" UNION ALL ");
                }
                qb.push("(SELECT * FROM ").push(&tasks).push(" t");
                push_filter(&mut qb, &list.user, status, &list.filter);
                if let Some((key, id)) = &after {
                    push_after(&mut qb, list, key.clone(), *id);
                }
                qb.push(" ORDER BY ")
                    .push(order_by(list.sort, list.direction))
                    .push(" LIMIT ")
                    .push_bind(limit)
                    .push(")");
            }
            qb.push(") t");
        }
        (None, status) => {
            qb.push(&tasks).push(" t");
            push_filter(&mut qb, &list.user, status, &list.filter);
            if let Some((key, id)) = after {
                push_after(&mut qb, list, key, id);
            }
        }
    }
    qb.push(" ORDER BY ")
        .push(order_by(list.sort, list.direction))
        .push(" LIMIT ")
        .push_bind(limit);
    let mut rows: Vec<TaskRow> = qb.build_query_as().fetch_all(pool).await?;
    let limit = list.limit as usize;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last()
            .map(|last| Cursor::new(&fingerprint, key_of(list.sort, last), last.task_id).encode())
    } else {
        None
    };
    Ok((rows.into_iter().map(TaskView::from).collect(), next))
}

/// How a path names a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskRef {
    Id(Uuid),
    Number(i64),
}

impl TaskRef {
    /// `{id}`: a UUID or the per-user task number; anything else names no task.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.bytes().all(|b| b.is_ascii_digit()) {
            return raw.parse::<i64>().ok().map(TaskRef::Number);
        }
        Uuid::parse_str(raw).ok().map(TaskRef::Id)
    }

    fn push(self, qb: &mut QueryBuilder<'_, Postgres>) {
        match self {
            TaskRef::Id(id) => qb.push(" AND t.task_id = ").push_bind(id),
            TaskRef::Number(n) => qb.push(" AND t.task_number = ").push_bind(n),
        };
    }
}

/// The user's task, unless deleted.
#[tracing::instrument(skip_all, fields(schema = %generation.schema))]
pub async fn get(
    pool: &PgPool,
    generation: &Generation,
    user: &str,
    task: TaskRef,
) -> Result<Option<TaskView>, AppError> {
    let mut qb = QueryBuilder::<Postgres>::new("SELECT ");
    qb.push(task_columns(generation))
        .push(", 0::real AS rank FROM ")
        .push(generation.table("tasks"))
        .push(" t WHERE t.user_id = ")
        .push_bind(user.to_owned())
        .push(" AND t.status <> 'deleted'");
    task.push(&mut qb);
    let row: Option<TaskRow> = qb.build_query_as().fetch_optional(pool).await?;
    Ok(row.map(TaskView::from))
}

/// The id of the user's task, deleted or not (for its history).
#[tracing::instrument(skip_all, fields(schema = %generation.schema))]
pub async fn resolve_any(
    pool: &PgPool,
    generation: &Generation,
    user: &str,
    task: TaskRef,
) -> Result<Option<Uuid>, AppError> {
    let mut qb = QueryBuilder::<Postgres>::new("SELECT t.task_id FROM ");
    qb.push(generation.table("tasks"))
        .push(" t WHERE t.user_id = ")
        .push_bind(user.to_owned());
    task.push(&mut qb);
    let row: Option<(Uuid,)> = qb.build_query_as().fetch_optional(pool).await?;
    Ok(row.map(|(id,)| id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_keeps_only_letters_and_digits_as_prefix_words() {
        let search = Search::new("  Grocer's  & milk:* (2%) ").expect("not blank");
        assert_eq!(search.text, "grocer's & milk:* (2%)");
        assert_eq!(
            search.tsquery.as_deref(),
            Some("grocer:* & s:* & milk:* & 2:*")
        );
        let only_symbols = Search::new("&&& :* !").expect("not blank");
        assert_eq!(only_symbols.tsquery, None);
        assert_eq!(Search::new("   "), None);
        let many = Search::new(&"a ".repeat(100)).expect("not blank");
        assert_eq!(
            many.tsquery.expect("words").matches(":*").count(),
            MAX_SEARCH_WORDS
        );
    }

    #[test]
    fn task_refs_are_numbers_or_uuids() {
        assert_eq!(TaskRef::parse("42"), Some(TaskRef::Number(42)));
        let id = Uuid::now_v7();
        assert_eq!(TaskRef::parse(&id.to_string()), Some(TaskRef::Id(id)));
        for bad in ["", "-1", "4 2", "99999999999999999999999", "x", "1e3"] {
            assert_eq!(TaskRef::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cursor_keys_must_fit_the_sort() {
        assert!(parse_key(SortKey::Due, &Value::Null).is_some());
        assert!(parse_key(SortKey::Created, &Value::Null).is_none());
        assert!(parse_key(SortKey::Priority, &Value::from(70_000)).is_none());
        assert!(parse_key(SortKey::Title, &Value::from(1)).is_none());
        assert!(parse_key(SortKey::Relevance, &Value::from(f32::NAN.to_bits())).is_none());
        assert!(parse_key(SortKey::Relevance, &Value::from(0.5f32.to_bits())).is_some());
    }
}
