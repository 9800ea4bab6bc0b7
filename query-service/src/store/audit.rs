//! The audit trail: a task's history and a user's event feed.

use chrono::{DateTime, Utc};
use event_store::LogPosition;
use migrations::generations::Generation;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::AppError;
use crate::view::AuditEventView;

const COLUMNS: &str = r#"event_id, event_type, schema_version, aggregate_type, aggregate_id,
    aggregate_version, occurred_at, actor, correlation_id, causation_id, commit_id, payload,
    "partition", "offset""#;

#[derive(sqlx::FromRow)]
struct AuditRow {
    event_id: Uuid,
    event_type: String,
    schema_version: i32,
    aggregate_type: String,
    aggregate_id: Uuid,
    aggregate_version: i64,
    occurred_at: DateTime<Utc>,
    actor: String,
    correlation_id: Uuid,
    causation_id: Uuid,
    commit_id: Uuid,
    payload: Value,
    partition: i32,
    offset: i64,
}

impl AuditRow {
    fn position(&self) -> LogPosition {
        LogPosition {
            partition: self.partition,
            offset: self.offset,
        }
    }
}

impl From<AuditRow> for AuditEventView {
    fn from(row: AuditRow) -> Self {
        let position = row.position().to_string();
        Self {
            event_id: row.event_id,
            event_type: row.event_type,
            schema_version: row.schema_version,
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
            aggregate_version: row.aggregate_version,
            occurred_at: row.occurred_at,
            actor: row.actor,
            correlation_id: row.correlation_id,
            causation_id: row.causation_id,
            commit_id: row.commit_id,
            payload: row.payload,
            position,
        }
    }
}

/// The events of one of the user's tasks with a version above `after`, oldest first; and the
/// version to continue after if there are more.
#[tracing::instrument(skip_all, fields(schema = %generation.schema))]
pub async fn history(
    pool: &PgPool,
    generation: &Generation,
    user: &str,
    task_id: Uuid,
    after: i64,
    limit: u32,
) -> Result<(Vec<AuditEventView>, Option<i64>), AppError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {} WHERE aggregate_id = $1 AND user_id = $2
           AND aggregate_version > $3 ORDER BY aggregate_version LIMIT $4",
        generation.table("audit_events")
    );
    let mut rows: Vec<AuditRow> = sqlx::query_as(&sql)
        .bind(task_id)
        .bind(user)
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.aggregate_version)
    } else {
        None
    };
    Ok((rows.into_iter().map(AuditEventView::from).collect(), next))
}

/// A page of the user's events after `after`, in log order, never ending inside a commit (one
/// record): a page may stop short of `limit` to end at a commit boundary, or, when a single
/// commit holds more than `limit` events, hold that whole commit. Answers the events and whether
/// more follow.
#[tracing::instrument(skip_all, fields(schema = %generation.schema))]
pub async fn feed(
    pool: &PgPool,
    generation: &Generation,
    user: &str,
    after: Option<LogPosition>,
    limit: u32,
) -> Result<(Vec<AuditEventView>, bool), AppError> {
    // One user's events all live in one partition (the record key is the user), so the offset
    // orders them.
    let after_offset = after.map_or(-1, |p| p.offset);
    let table = generation.table("audit_events");
    let sql = format!(
        r#"SELECT {COLUMNS} FROM {table} WHERE user_id = $1 AND "offset" > $2
           ORDER BY "offset", aggregate_version LIMIT $3"#
    );
    let mut rows: Vec<AuditRow> = sqlx::query_as(&sql)
        .bind(user)
        .bind(after_offset)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
    let limit = limit as usize;
    if rows.len() <= limit {
        return Ok((rows.into_iter().map(AuditEventView::from).collect(), false));
    }
    let cut = rows[limit - 1].offset;
    if rows[limit].offset != cut {
        rows.truncate(limit);
    } else {
        // The page would end inside the commit at `cut`: end before it, or if it is the
        // page's only commit, return all of it.
        rows.retain(|r| r.offset != cut);
        if rows.is_empty() {
            let sql = format!(
                r#"SELECT {COLUMNS} FROM {table} WHERE user_id = $1 AND "offset" = $2
                   ORDER BY aggregate_version"#
            );
            rows = sqlx::query_as(&sql)
                .bind(user)
                .bind(cut)
                .fetch_all(pool)
                .await?;
            let sql = format!(
                r#"SELECT EXISTS (SELECT 1 FROM {table} WHERE user_id = $1 AND "offset" > $2)"#
            );
            let (more,): (bool,) = sqlx::query_as(&sql)
                .bind(user)
                .bind(cut)
                .fetch_one(pool)
                .await?;
            return Ok((rows.into_iter().map(AuditEventView::from).collect(), more));
        }
    }
    Ok((rows.into_iter().map(AuditEventView::from).collect(), true))
}
