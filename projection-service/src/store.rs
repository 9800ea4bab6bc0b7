//! Writing a batch into a read-model generation: one Postgres transaction that skips what the
//! generation already has (by stored offset and by `processed_events`), applies the
//! [`plan`](crate::model::plan), records dead letters and stores the next offsets.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context as _;
use migrations::generations::Generation;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::dead_letters::DeadLetterSink;
use crate::model::{self, Input, Plan, Projected, ReminderRow, TaskRow};

/// Columns of the rows the projector writes, with their SQL types (for `jsonb_to_recordset`).
const TASK_COLUMNS: &[(&str, &str)] = &[
    ("task_id", "uuid"),
    ("user_id", "text"),
    ("task_number", "bigint"),
    ("title", "text"),
    ("description", "text"),
    ("priority", "smallint"),
    ("due", "jsonb"),
    ("due_at", "timestamptz"),
    ("tags", "text[]"),
    ("tag_keys", "text[]"),
    ("recurrence", "jsonb"),
    ("occurrence_of", "jsonb"),
    ("status", "text"),
    ("version", "bigint"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("completed_at", "timestamptz"),
    ("deleted_at", "timestamptz"),
    // Only in generations whose tasks carry their reminders (see `Statements::new`).
    ("reminders", "jsonb"),
    ("partition", "integer"),
    ("offset", "bigint"),
];

const REMINDER_COLUMNS: &[(&str, &str)] = &[
    ("reminder_id", "uuid"),
    ("user_id", "text"),
    ("task_id", "uuid"),
    ("time", "jsonb"),
    ("remind_at", "timestamptz"),
    ("status", "text"),
    ("fired_at", "timestamptz"),
    ("removed_at", "timestamptz"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
];

const NOTIFICATION_COLUMNS: &[(&str, &str)] = &[
    ("notification_id", "uuid"),
    ("user_id", "text"),
    ("kind", "text"),
    ("task_id", "uuid"),
    ("reminder_id", "uuid"),
    ("title", "text"),
    ("created_at", "timestamptz"),
    ("partition", "integer"),
    ("offset", "bigint"),
];

const AUDIT_COLUMNS: &[(&str, &str)] = &[
    ("event_id", "uuid"),
    ("user_id", "text"),
    ("aggregate_type", "text"),
    ("aggregate_id", "uuid"),
    ("aggregate_version", "bigint"),
    ("event_type", "text"),
    ("schema_version", "integer"),
    ("occurred_at", "timestamptz"),
    ("actor", "text"),
    ("correlation_id", "uuid"),
    ("causation_id", "uuid"),
    ("commit_id", "uuid"),
    ("payload", "jsonb"),
    ("partition", "integer"),
    ("offset", "bigint"),
];

const LOST_RACE_COLUMNS: &[(&str, &str)] = &[
    ("partition", "integer"),
    ("offset", "bigint"),
    ("commit_id", "uuid"),
    ("aggregate_id", "uuid"),
    ("expected_version", "bigint"),
    ("current_version", "bigint"),
];

/// `INSERT INTO table (cols) SELECT cols FROM jsonb_to_recordset($1) AS x(col type, …)`, then
/// `on_conflict`.
fn insert_sql(table: &str, columns: &[(&str, &str)], on_conflict: &str) -> String {
    let names = columns
        .iter()
        .map(|(c, _)| format!(r#""{c}""#))
        .collect::<Vec<_>>()
        .join(", ");
    let typed = columns
        .iter()
        .map(|(c, t)| format!(r#""{c}" {t}"#))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} ({names}) SELECT {names} FROM jsonb_to_recordset($1) AS x({typed}) \
         {on_conflict}"
    )
}

/// `ON CONFLICT (key) DO UPDATE SET every other column = excluded`.
fn upsert_clause(key: &str, columns: &[(&str, &str)]) -> String {
    let sets = columns
        .iter()
        .filter(|(c, _)| *c != key)
        .map(|(c, _)| format!(r#""{c}" = excluded."{c}""#))
        .collect::<Vec<_>>()
        .join(", ");
    format!(r#"ON CONFLICT ("{key}") DO UPDATE SET {sets}"#)
}

/// The SQL of one generation, built once.
#[derive(Debug, Clone)]
pub struct Statements {
    pub generation: Generation,
    ensure_offsets: String,
    lock_offsets: String,
    mark_processed: String,
    release_processed: String,
    load_tasks: String,
    load_reminders: String,
    upsert_tasks: String,
    upsert_reminders: String,
    insert_notifications: String,
    insert_audit: String,
    update_tags: String,
    insert_tags: String,
    drop_empty_tags: String,
    insert_lost_races: String,
    store_offsets: String,
}

impl Statements {
    pub fn new(generation: Generation) -> Self {
        let t = |name: &str| generation.table(name);
        let task_columns: Vec<(&str, &str)> = TASK_COLUMNS
            .iter()
            .copied()
            .filter(|(c, _)| *c != "reminders" || generation.tasks_carry_reminders())
            .collect();
        Self {
            ensure_offsets: format!(
                r#"INSERT INTO {} ("partition", next_offset) SELECT unnest($1::int[]), 0
                   ON CONFLICT DO NOTHING"#,
                t("projection_offsets")
            ),
            lock_offsets: format!(
                r#"SELECT "partition", next_offset FROM {} WHERE "partition" = ANY($1)
                   ORDER BY "partition" FOR UPDATE"#,
                t("projection_offsets")
            ),
            mark_processed: format!(
                r#"INSERT INTO {} (event_id, "partition", "offset")
                   SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[])
                   ON CONFLICT DO NOTHING RETURNING event_id"#,
                t("processed_events")
            ),
            release_processed: format!(
                "DELETE FROM {} WHERE event_id = ANY($1)",
                t("processed_events")
            ),
            // A task's shown reminders are derived again from `reminders` when it is written.
            load_tasks: format!(
                "SELECT to_jsonb(x) - 'search' - 'reminders' FROM {} x WHERE task_id = ANY($1)",
                t("tasks")
            ),
            load_reminders: format!(
                "SELECT to_jsonb(x) FROM {} x WHERE task_id = ANY($1)",
                t("reminders")
            ),
            upsert_tasks: insert_sql(
                &t("tasks"),
                &task_columns,
                &upsert_clause("task_id", &task_columns),
            ),
            upsert_reminders: insert_sql(
                &t("reminders"),
                REMINDER_COLUMNS,
                &upsert_clause("reminder_id", REMINDER_COLUMNS),
            ),
            insert_notifications: insert_sql(
                &t("notifications"),
                NOTIFICATION_COLUMNS,
                "ON CONFLICT DO NOTHING",
            ),
            insert_audit: insert_sql(&t("audit_events"), AUDIT_COLUMNS, "ON CONFLICT DO NOTHING"),
            // Counts change by deltas. Postgres checks a row's constraints before it finds an
            // insert's conflict, so existing tags are updated first and new ones inserted apart.
            update_tags: format!(
                "UPDATE {} t SET task_count = t.task_count + x.task_count, \
                 open_count = t.open_count + x.open_count \
                 FROM jsonb_to_recordset($1) AS x(user_id text, tag_key text, task_count integer, \
                 open_count integer) \
                 WHERE t.user_id = x.user_id AND t.tag_key = x.tag_key",
                t("tags")
            ),
            insert_tags: format!(
                "INSERT INTO {0} (user_id, tag_key, tag, task_count, open_count) \
                 SELECT x.user_id, x.tag_key, x.tag, x.task_count, x.open_count \
                 FROM jsonb_to_recordset($1) AS x(user_id text, tag_key text, tag text, \
                 task_count integer, open_count integer) \
                 WHERE NOT EXISTS (SELECT 1 FROM {0} t \
                 WHERE t.user_id = x.user_id AND t.tag_key = x.tag_key)",
                t("tags")
            ),
            drop_empty_tags: format!(
                "DELETE FROM {} WHERE (user_id, tag_key) IN \
                 (SELECT * FROM unnest($1::text[], $2::text[])) AND task_count = 0",
                t("tags")
            ),
            insert_lost_races: insert_sql(
                &t("lost_races"),
                LOST_RACE_COLUMNS,
                "ON CONFLICT DO NOTHING",
            ),
            store_offsets: format!(
                r#"UPDATE {} o SET next_offset = x.next_offset, updated_at = now()
                   FROM unnest($1::int[], $2::bigint[]) AS x(p, next_offset)
                   WHERE o."partition" = x.p"#,
                t("projection_offsets")
            ),
            generation,
        }
    }
}

/// What a batch did, and where the reader should go next.
#[derive(Debug, Default)]
pub struct Outcome {
    pub plan: Plan,
    /// Records skipped because the generation already had them.
    pub already_applied: usize,
    /// Partitions whose reader position disagrees with the generation's stored offset: read
    /// them again from here (a gap) or skip ahead to here.
    pub seek: BTreeMap<i32, i64>,
}

impl Outcome {
    /// Adds what a later batch did to this one's.
    fn absorb(&mut self, later: Outcome) {
        let (plan, other) = (&mut self.plan, later.plan);
        plan.tasks.extend(other.tasks);
        plan.reminders.extend(other.reminders);
        plan.notifications.extend(other.notifications);
        plan.audit.extend(other.audit);
        plan.tags.extend(other.tags);
        plan.lost_races.extend(other.lost_races);
        plan.dead_letters.extend(other.dead_letters);
        plan.released.extend(other.released);
        plan.offsets.extend(other.offsets);
        plan.tally.absorb(other.tally);
        self.already_applied += later.already_applied;
        self.seek.extend(later.seek);
    }
}

/// How a batch treats the stored offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Live projection and rebuilds: apply records from the stored offset on, contiguously,
    /// and advance it.
    Advance,
    /// Re-driving dead letters: apply out of band, offsets untouched.
    Redrive,
}

/// Applies `inputs` (log order) to the generation inside `tx`. Dead letters are recorded in
/// `dead_letters` and, when new, handed to `sink` before this returns (the caller commits).
///
/// A record whose rows Postgres refuses for what they hold (a data exception or a program limit,
/// which no retry changes) would fail every batch it is in and stop the projector for good. So
/// when a batch fails that way (`Mode::Advance`), its records are applied again one at a time in
/// the same transaction, and one that still fails becomes a dead letter with Postgres' error;
/// the others are projected.
pub async fn apply_batch(
    tx: &mut PgConnection,
    statements: &Statements,
    topic: &str,
    inputs: Vec<Input>,
    sink: &dyn DeadLetterSink,
    mode: Mode,
    sought: &BTreeMap<i32, i64>,
) -> anyhow::Result<Outcome> {
    if mode == Mode::Redrive {
        return apply_batch_once(tx, statements, topic, inputs, sink, mode, sought).await;
    }
    let single = inputs.len() == 1;
    let error = match savepoint(tx, statements, topic, inputs.clone(), sink, sought).await? {
        Ok(outcome) => return Ok(outcome),
        Err(error) => error,
    };
    let mut outcome = Outcome::default();
    if single {
        let [input] = <[Input; 1]>::try_from(inputs).map_err(|_| anyhow::anyhow!("one input"))?;
        tracing::error!(position = %input.position, %error, "record cannot be projected; dead-lettering it");
        let refused = Input {
            commit: Err(format!(
                "the read models cannot store this record: {}",
                error.replace('\0', "\u{FFFD}")
            )),
            ..input
        };
        return apply_batch_once(tx, statements, topic, vec![refused], sink, mode, sought).await;
    }
    tracing::warn!(%error, records = inputs.len(), "batch refused by Postgres; applying its records one at a time");
    for input in inputs {
        let one = Box::pin(apply_batch(
            tx,
            statements,
            topic,
            vec![input],
            sink,
            mode,
            sought,
        ));
        outcome.absorb(one.await?);
    }
    Ok(outcome)
}

/// Applies `inputs` under a savepoint. A failure for the data's sake is rolled back to the
/// savepoint and returned as `Ok(Err(message))`; any other failure is an error.
async fn savepoint(
    tx: &mut PgConnection,
    statements: &Statements,
    topic: &str,
    inputs: Vec<Input>,
    sink: &dyn DeadLetterSink,
    sought: &BTreeMap<i32, i64>,
) -> anyhow::Result<Result<Outcome, String>> {
    sqlx::query("SAVEPOINT batch")
        .execute(&mut *tx)
        .await
        .context("starting a batch")?;
    match apply_batch_once(tx, statements, topic, inputs, sink, Mode::Advance, sought).await {
        Ok(outcome) => Ok(Ok(outcome)),
        Err(error) if refused_for_its_data(&error) => {
            sqlx::query("ROLLBACK TO SAVEPOINT batch")
                .execute(&mut *tx)
                .await
                .context("rolling back a refused batch")?;
            Ok(Err(format!("{error:#}")))
        }
        Err(error) => Err(error),
    }
}

/// Whether Postgres refused the batch for the values it holds: SQLSTATE class 22 (data
/// exception: text it cannot hold, a date out of its range, …) or 54 (program limit exceeded).
fn refused_for_its_data(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .and_then(|e| e.code())
            .is_some_and(|code| code.starts_with("22") || code.starts_with("54"))
    })
}

async fn apply_batch_once(
    tx: &mut PgConnection,
    statements: &Statements,
    topic: &str,
    inputs: Vec<Input>,
    sink: &dyn DeadLetterSink,
    mode: Mode,
    sought: &BTreeMap<i32, i64>,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let inputs = match mode {
        Mode::Advance => {
            let (kept, skipped, seek) = keep_unapplied(tx, statements, inputs, sought).await?;
            outcome.already_applied = skipped;
            outcome.seek = seek;
            kept
        }
        Mode::Redrive => inputs,
    };
    if inputs.is_empty() {
        return Ok(outcome);
    }

    let (mut ids, mut partitions, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
    let mut aggregates = HashSet::new();
    for input in &inputs {
        if let Ok(commit) = &input.commit {
            aggregates.insert(commit.aggregate_id());
            for event in commit.events() {
                ids.push(event.event_id);
                partitions.push(input.position.partition);
                offsets.push(input.position.offset);
            }
        }
    }
    let unprocessed: HashSet<Uuid> = sqlx::query_scalar(&statements.mark_processed)
        .bind(&ids)
        .bind(&partitions)
        .bind(&offsets)
        .fetch_all(&mut *tx)
        .await
        .context("recording processed events")?
        .into_iter()
        .collect();
    let aggregates: Vec<Uuid> = aggregates.into_iter().collect();
    let current = load(tx, statements, &aggregates).await?;

    let mut plan = model::plan(&inputs, current, unprocessed);
    if mode == Mode::Redrive {
        plan.offsets.clear();
    }
    write(tx, statements, &plan).await?;
    if !plan.released.is_empty() {
        sqlx::query(&statements.release_processed)
            .bind(&plan.released)
            .execute(&mut *tx)
            .await
            .context("releasing unapplied events")?;
    }
    record_dead_letters(tx, topic, &plan, sink).await?;
    outcome.plan = plan;
    Ok(outcome)
}

/// Drops the records the generation already applied (below its stored offset) and finds gaps
/// (a record past the stored offset: this reader is ahead of the generation). `sought` holds
/// where the reader was last moved to per partition: a record past that offset right after such
/// a move means the log has nothing in between, so it is applied.
async fn keep_unapplied(
    tx: &mut PgConnection,
    statements: &Statements,
    inputs: Vec<Input>,
    sought: &BTreeMap<i32, i64>,
) -> anyhow::Result<(Vec<Input>, usize, BTreeMap<i32, i64>)> {
    let mut partitions: Vec<i32> = inputs.iter().map(|i| i.position.partition).collect();
    partitions.sort_unstable();
    partitions.dedup();
    sqlx::query(&statements.ensure_offsets)
        .bind(&partitions)
        .execute(&mut *tx)
        .await
        .context("registering partitions")?;
    let mut next: HashMap<i32, i64> = sqlx::query_as(&statements.lock_offsets)
        .bind(&partitions)
        .fetch_all(&mut *tx)
        .await
        .context("locking projection offsets")?
        .into_iter()
        .collect();
    let mut gaps = BTreeMap::new();
    let mut ahead = BTreeMap::new();
    let mut applied = HashSet::new();
    let mut kept = Vec::with_capacity(inputs.len());
    let mut skipped = 0;
    for input in inputs {
        let p = input.position.partition;
        let expected = next.get(&p).copied().unwrap_or(0);
        let offset = input.position.offset;
        if gaps.contains_key(&p) || offset < expected {
            skipped += 1;
            if offset < expected {
                ahead.insert(p, expected);
            }
            continue;
        }
        if offset > expected && sought.get(&p) != Some(&expected) {
            gaps.insert(p, expected);
            skipped += 1;
            continue;
        }
        next.insert(p, offset + 1);
        applied.insert(p);
        kept.push(input);
    }
    ahead.retain(|p, _| !applied.contains(p));
    ahead.extend(gaps);
    Ok((kept, skipped, ahead))
}

async fn load(
    tx: &mut PgConnection,
    statements: &Statements,
    aggregates: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, Projected>> {
    let tasks: Vec<Json<TaskRow>> = sqlx::query_scalar(&statements.load_tasks)
        .bind(aggregates)
        .fetch_all(&mut *tx)
        .await
        .context("loading tasks")?;
    let reminders: Vec<Json<ReminderRow>> = sqlx::query_scalar(&statements.load_reminders)
        .bind(aggregates)
        .fetch_all(&mut *tx)
        .await
        .context("loading reminders")?;
    let mut current: HashMap<Uuid, Projected> = tasks
        .into_iter()
        .map(|Json(task)| {
            (
                task.task_id,
                Projected {
                    task,
                    reminders: BTreeMap::new(),
                },
            )
        })
        .collect();
    for Json(reminder) in reminders {
        if let Some(p) = current.get_mut(&reminder.task_id) {
            p.reminders.insert(reminder.reminder_id, reminder);
        }
    }
    Ok(current)
}

async fn write(tx: &mut PgConnection, s: &Statements, plan: &Plan) -> anyhow::Result<()> {
    async fn rows<T: serde::Serialize>(
        tx: &mut PgConnection,
        sql: &str,
        rows: &[T],
        what: &str,
    ) -> anyhow::Result<()> {
        if !rows.is_empty() {
            sqlx::query(sql)
                .bind(Json(rows))
                .execute(&mut *tx)
                .await
                .with_context(|| format!("writing {what}"))?;
        }
        Ok(())
    }
    rows(tx, &s.upsert_tasks, &plan.tasks, "tasks").await?;
    rows(tx, &s.upsert_reminders, &plan.reminders, "reminders").await?;
    rows(
        tx,
        &s.insert_notifications,
        &plan.notifications,
        "notifications",
    )
    .await?;
    rows(tx, &s.insert_audit, &plan.audit, "the audit trail").await?;
    rows(tx, &s.update_tags, &plan.tags, "tag counts").await?;
    rows(tx, &s.insert_tags, &plan.tags, "new tags").await?;
    if !plan.tags.is_empty() {
        let (users, keys): (Vec<&str>, Vec<&str>) = plan
            .tags
            .iter()
            .filter(|d| d.task_count < 0)
            .map(|d| (d.user_id.as_str(), d.tag_key.as_str()))
            .unzip();
        if !users.is_empty() {
            sqlx::query(&s.drop_empty_tags)
                .bind(users)
                .bind(keys)
                .execute(&mut *tx)
                .await
                .context("dropping unused tags")?;
        }
    }
    rows(tx, &s.insert_lost_races, &plan.lost_races, "lost races").await?;
    if !plan.offsets.is_empty() {
        let (partitions, offsets): (Vec<i32>, Vec<i64>) =
            plan.offsets.iter().map(|(p, o)| (*p, *o)).unzip();
        sqlx::query(&s.store_offsets)
            .bind(partitions)
            .bind(offsets)
            .execute(&mut *tx)
            .await
            .context("storing offsets")?;
    }
    Ok(())
}

async fn record_dead_letters(
    tx: &mut PgConnection,
    topic: &str,
    plan: &Plan,
    sink: &dyn DeadLetterSink,
) -> anyhow::Result<()> {
    for dead in &plan.dead_letters {
        let inserted = sqlx::query(
            r#"INSERT INTO public.dead_letters (topic, "partition", "offset", record_key, payload, error)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"#,
        )
        .bind(topic)
        .bind(dead.position.partition)
        .bind(dead.position.offset)
        .bind(&dead.key)
        .bind(&dead.payload)
        .bind(&dead.error)
        .execute(&mut *tx)
        .await
        .context("recording a dead letter")?
        .rows_affected();
        if inserted == 1 {
            sink.send(topic, dead).await?;
        }
    }
    Ok(())
}

/// The stored next offset per partition of a generation.
pub async fn offsets(pool: &PgPool, generation: &Generation) -> sqlx::Result<BTreeMap<i32, i64>> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(&format!(
        r#"SELECT "partition", next_offset FROM {}"#,
        generation.table("projection_offsets")
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Every read model table of a generation with the order that makes two generations comparable
/// row for row (bookkeeping timestamps left out).
const CONTENTS: &[(&str, &str, &str)] = &[
    ("tasks", "task_id", "search"),
    ("tags", "user_id, tag_key", ""),
    ("reminders", "reminder_id", ""),
    ("notifications", "notification_id", ""),
    ("audit_events", "event_id", ""),
    ("processed_events", "event_id", ""),
    ("lost_races", r#""partition", "offset""#, ""),
    ("projection_offsets", r#""partition""#, "updated_at"),
];

/// The rows of every read model of a generation, as JSON, table by table: two generations built
/// from the same log are equal.
pub async fn contents(
    pool: &PgPool,
    generation: &Generation,
) -> sqlx::Result<BTreeMap<&'static str, Vec<serde_json::Value>>> {
    let mut out = BTreeMap::new();
    for (table, order, left_out) in CONTENTS {
        let rows: Vec<serde_json::Value> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(x) - '{left_out}' FROM {} x ORDER BY {order}",
            generation.table(table)
        ))
        .fetch_all(pool)
        .await?;
        out.insert(*table, rows);
    }
    Ok(out)
}
