//! The audit trail straight from the log, and a check that the projected trail matches it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context as _;
use chrono::SubsecRound;
use event_store::log::admin;
use event_store::partition::partition_for;
use event_store::{Arbiter, LogConfig, LogReader, StartAt};
use migrations::generations;
use serde::Serialize;
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use crate::model::AuditRow;

/// Which events to show.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub user: Option<String>,
    pub task: Option<Uuid>,
}

/// Reads the log (the user's partition when a user is given, else all of it) to its current end
/// and returns the accepted events that match, in log order, as audit rows. Lost races are not
/// part of the trail; undecodable records are skipped here (they are in the dead letters).
pub async fn from_log(config: &LogConfig, filter: &Filter) -> anyhow::Result<Vec<AuditRow>> {
    from_log_until(config, filter, None).await
}

async fn from_log_until(
    config: &LogConfig,
    filter: &Filter,
    until: Option<&BTreeMap<i32, i64>>,
) -> anyhow::Result<Vec<AuditRow>> {
    let partitions = admin::partition_count(config, &config.topic).await?;
    let wanted: Vec<i32> = match &filter.user {
        Some(user) => vec![partition_for(user, partitions)],
        None => (0..partitions).collect(),
    };
    let starts: Vec<_> = wanted.iter().map(|p| (*p, StartAt::Beginning)).collect();
    let mut reader = LogReader::assign(config, &config.topic, &starts)?;
    let records = reader.read_to_end(Duration::from_secs(10)).await?;
    let mut arbiters: HashMap<i32, Arbiter> = HashMap::new();
    let mut rows = Vec::new();
    for record in records {
        if until.is_some_and(|u| record.offset >= u.get(&record.partition).copied().unwrap_or(0)) {
            continue;
        }
        let Ok(commit) = crate::model::decode(&record.payload) else {
            continue;
        };
        let arbiter = arbiters.entry(record.partition).or_default();
        if !arbiter.judge(&commit).is_accepted() {
            continue;
        }
        if filter
            .user
            .as_deref()
            .is_some_and(|u| commit.user_id().as_str() != u)
            || filter.task.is_some_and(|t| commit.aggregate_id() != t)
        {
            continue;
        }
        for event in commit.events() {
            rows.push(AuditRow::new(commit.commit_id, event, record.position()));
        }
    }
    Ok(rows)
}

/// Prints audit rows for people: one block per event.
pub fn pretty(rows: &[AuditRow]) -> String {
    let mut out = String::new();
    for row in rows {
        out.push_str(&format!(
            "{}  {}@{}  task {} v{}  {} (schema v{})\n    by {} for {}  correlation {}  causation {}  event {}\n    {}\n",
            row.occurred_at.to_rfc3339(),
            row.partition,
            row.offset,
            row.aggregate_id,
            row.aggregate_version,
            row.event_type,
            row.schema_version,
            row.actor,
            row.user_id,
            row.correlation_id,
            row.causation_id,
            row.event_id,
            serde_json::to_string(&row.payload).unwrap_or_default(),
        ));
    }
    out
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verification {
    pub generation: i32,
    /// Events compared (those the generation has projected so far).
    pub compared: usize,
    /// In the log, not in the projected trail.
    pub missing: Vec<Uuid>,
    /// In the projected trail, not accepted in the log.
    pub unexpected: Vec<Uuid>,
    /// In both, with different contents.
    pub different: Vec<Uuid>,
}

impl Verification {
    pub fn matches(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.different.is_empty()
    }
}

/// Compares the active generation's audit trail with the log, up to the offsets the generation
/// has projected (so a projector that is still catching up is not reported as wrong).
pub async fn verify(
    pool: &PgPool,
    config: &LogConfig,
    filter: &Filter,
) -> anyhow::Result<Verification> {
    let generation = generations::active(pool)
        .await?
        .context("no active read-model generation")?;
    let until = crate::store::offsets(pool, &generation).await?;
    let from_log = from_log_until(config, filter, Some(&until)).await?;
    let projected: Vec<Json<AuditRow>> = sqlx::query_scalar(&format!(
        "SELECT to_jsonb(a) FROM {} a WHERE ($1::text IS NULL OR user_id = $1)
           AND ($2::uuid IS NULL OR aggregate_id = $2)",
        generation.table("audit_events")
    ))
    .bind(&filter.user)
    .bind(filter.task)
    .fetch_all(pool)
    .await?;
    let mut projected: HashMap<Uuid, AuditRow> = projected
        .into_iter()
        .map(|Json(r)| (r.event_id, r))
        .collect();
    let mut result = Verification {
        generation: generation.number,
        compared: from_log.len(),
        ..Verification::default()
    };
    for mut row in from_log {
        // Postgres keeps microseconds.
        row.occurred_at = row.occurred_at.trunc_subsecs(6);
        match projected.remove(&row.event_id) {
            None => result.missing.push(row.event_id),
            Some(p) if p != row => result.different.push(row.event_id),
            Some(_) => {}
        }
    }
    result.unexpected = projected.into_keys().collect();
    result.unexpected.sort();
    Ok(result)
}
