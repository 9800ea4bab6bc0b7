//! Tags, reminders and notifications.

use chrono::{DateTime, Utc};
use migrations::generations::Generation;
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::cursor::{self, Cursor};
use crate::error::AppError;
use crate::view::{NotificationView, ReminderView, TagView};

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The user's tags in use, most used first; `prefix` (any case) for autocompletion.
#[tracing::instrument(skip_all, fields(schema = %generation.schema))]
pub async fn tags(
    pool: &PgPool,
    generation: &Generation,
    user: &str,
    prefix: Option<&str>,
    limit: u32,
) -> Result<Vec<TagView>, AppError> {
    let mut qb =
        QueryBuilder::<Postgres>::new("SELECT tag, tag_key, task_count, open_count, colour FROM ");
    qb.push(generation.table("tags"))
        .push(" WHERE user_id = ")
        .push_bind(user.to_owned())
        .push(" AND task_count > 0");
    if let Some(prefix) = prefix {
        qb.push(r" AND tag_key LIKE ")
            .push_bind(format!("{}%", like_escape(&prefix.to_lowercase())))
            .push(r" ESCAPE '\'");
    }
    qb.push(" ORDER BY task_count DESC, tag ASC, tag_key ASC LIMIT ")
        .push_bind(i64::from(limit));
    Ok(qb.build_query_as().fetch_all(pool).await?)
}

/// A page of reminders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReminderList {
    pub user: String,
    /// `pending`, `fired` or `cancelled`; all when `None`.
    pub status: Option<&'static str>,
    pub limit: u32,
    pub cursor: Option<String>,
}

impl ReminderList {
    fn fingerprint(&self) -> String {
        cursor::fingerprint(&("reminders", &self.user, self.status))
    }
}

/// The user's reminders by when they go off (those without a time last).
#[tracing::instrument(skip_all, fields(schema = %generation.schema))]
pub async fn reminders(
    pool: &PgPool,
    generation: &Generation,
    list: &ReminderList,
) -> Result<(Vec<ReminderView>, Option<String>), AppError> {
    let fingerprint = list.fingerprint();
    let mut qb = QueryBuilder::<Postgres>::new(
        "SELECT r.reminder_id, r.task_id, t.task_number, t.title AS task_title, r.time,
                r.remind_at, r.status, r.fired_at, r.created_at, r.updated_at
           FROM ",
    );
    qb.push(generation.table("reminders"))
        .push(" r LEFT JOIN ")
        .push(generation.table("tasks"))
        .push(" t ON t.task_id = r.task_id AND t.user_id = r.user_id WHERE r.user_id = ")
        .push_bind(list.user.clone());
    if let Some(status) = list.status {
        qb.push(" AND r.status = ").push_bind(status);
    }
    if let Some(raw) = &list.cursor {
        let cursor = Cursor::decode(raw, &fingerprint)?;
        match &cursor.key {
            Value::Null => {
                qb.push(" AND r.remind_at IS NULL AND r.reminder_id > ")
                    .push_bind(cursor.id);
            }
            key => {
                let at = time(key).ok_or_else(cursor::invalid)?;
                qb.push(" AND (r.remind_at IS NULL OR (r.remind_at, r.reminder_id) > (")
                    .push_bind(at)
                    .push(", ")
                    .push_bind(cursor.id)
                    .push("))");
            }
        }
    }
    qb.push(" ORDER BY r.remind_at ASC NULLS LAST, r.reminder_id ASC LIMIT ")
        .push_bind(i64::from(list.limit) + 1);
    let mut rows: Vec<ReminderView> = qb.build_query_as().fetch_all(pool).await?;
    let next = if rows.len() > list.limit as usize {
        rows.truncate(list.limit as usize);
        rows.last().map(|last| {
            let key = last
                .remind_at
                .map_or(Value::Null, |at| Value::String(at.to_rfc3339()));
            Cursor::new(&fingerprint, key, last.id).encode()
        })
    } else {
        None
    };
    Ok((rows, next))
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    notification_id: Uuid,
    kind: String,
    task_id: Uuid,
    reminder_id: Option<Uuid>,
    title: String,
    created_at: DateTime<Utc>,
    partition: i32,
    offset: i64,
}

/// A page of the user's notifications, newest first.
#[tracing::instrument(skip_all, fields(schema = %generation.schema))]
pub async fn notifications(
    pool: &PgPool,
    generation: &Generation,
    user: &str,
    limit: u32,
    cursor: Option<&str>,
) -> Result<(Vec<NotificationView>, Option<String>), AppError> {
    let fingerprint = cursor::fingerprint(&("notifications", user));
    let mut qb = QueryBuilder::<Postgres>::new(
        r#"SELECT notification_id, kind, task_id, reminder_id, title, created_at, "partition",
                  "offset" FROM "#,
    );
    qb.push(generation.table("notifications"))
        .push(" WHERE user_id = ")
        .push_bind(user.to_owned());
    if let Some(raw) = cursor {
        let cursor = Cursor::decode(raw, &fingerprint)?;
        let at = time(&cursor.key).ok_or_else(cursor::invalid)?;
        // Newest first; ties in id order, as the index `notifications_by_user` holds them.
        qb.push(" AND (created_at < ")
            .push_bind(at)
            .push(" OR (created_at = ")
            .push_bind(at)
            .push(" AND notification_id > ")
            .push_bind(cursor.id)
            .push("))");
    }
    qb.push(" ORDER BY created_at DESC, notification_id ASC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let mut rows: Vec<NotificationRow> = qb.build_query_as().fetch_all(pool).await?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|last| {
            Cursor::new(
                &fingerprint,
                Value::String(last.created_at.to_rfc3339()),
                last.notification_id,
            )
            .encode()
        })
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(|row| NotificationView {
            id: row.notification_id,
            kind: row.kind,
            task_id: row.task_id,
            reminder_id: row.reminder_id,
            title: row.title,
            created_at: row.created_at,
            position: format!("{}@{}", row.partition, row.offset),
        })
        .collect();
    Ok((items, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(like_escape(r"a%b_c\d"), r"a\%b\_c\\d");
        assert_eq!(like_escape("work"), "work");
    }
}
