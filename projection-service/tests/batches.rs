//! Batches applied straight to Postgres (no broker): the tables agree with each other.

use std::collections::BTreeMap;

use event_store::LogPosition;
use event_store::workload::Workload;
use futures::future::BoxFuture;
use migrations::generations;
use projection_service::dead_letters::DeadLetterSink;
use projection_service::model::{DeadLetter, Input};
use projection_service::store::{self, Mode, Statements};

struct Discard;

impl DeadLetterSink for Discard {
    fn send<'a>(&'a self, _: &'a str, _: &'a DeadLetter) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// A workload spread over `partitions` partitions by user, as the log would hold it.
fn log(records: usize, partitions: i32, seed: u64) -> Vec<Input> {
    let mut workload = Workload::new(40, seed);
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut inputs = Vec::new();
    while inputs.len() < records {
        for r in workload.next_records() {
            let partition = event_store::partition::partition_for(&r.user, partitions);
            let offset = next.entry(partition).or_default();
            inputs.push(Input::new(
                LogPosition {
                    partition,
                    offset: *offset,
                },
                Some(r.user),
                r.payload,
            ));
            *offset += 1;
        }
    }
    inputs
}

#[tokio::test]
async fn tag_counts_equal_the_tasks_whatever_the_batch_size() {
    let (pool, _) = migrations::testing::fresh_database().await;
    let inputs = log(8_000, 3, 77);
    for batch_size in [5_000, 333] {
        let generation = generations::create(&pool).await.unwrap();
        let statements = Statements::new(generation.clone());
        for batch in inputs.chunks(batch_size) {
            apply(&pool, &statements, batch)
                .await
                .unwrap_or_else(|e| panic!("batch size {batch_size}: {e:#}"));
            assert_counts(&pool, &generation, batch_size).await;
        }
    }
}

/// Applies `batch` in a transaction of its own, as the projector does.
async fn apply(
    pool: &sqlx::PgPool,
    statements: &Statements,
    batch: &[Input],
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    store::apply_batch(
        &mut tx,
        statements,
        "t",
        batch.to_vec(),
        &Discard,
        Mode::Advance,
        &BTreeMap::new(),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn assert_counts(
    pool: &sqlx::PgPool,
    generation: &generations::Generation,
    batch_size: usize,
) {
    let wrong: Vec<(String, String, i32, i32, i64, i64)> = sqlx::query_as(&format!(
            "WITH counted AS (
                 SELECT user_id, k AS tag_key, count(*) AS n, count(*) FILTER (WHERE status = 'open') AS o
                 FROM {tasks}, unnest(tag_keys) AS k WHERE status <> 'deleted' GROUP BY 1, 2)
             SELECT coalesce(t.user_id, c.user_id), coalesce(t.tag_key, c.tag_key),
                    coalesce(t.task_count, 0), coalesce(t.open_count, 0),
                    coalesce(c.n, 0), coalesce(c.o, 0)
             FROM {tags} t FULL JOIN counted c USING (user_id, tag_key)
             WHERE coalesce(t.task_count, 0) <> coalesce(c.n, 0)
                OR coalesce(t.open_count, 0) <> coalesce(c.o, 0)",
            tasks = generation.table("tasks"),
            tags = generation.table("tags"),
        ))
        .fetch_all(pool)
        .await
        .unwrap();
    assert!(wrong.is_empty(), "batch size {batch_size}: {wrong:?}");
}

/// Tasks whose `reminders` column differs from their rows in `reminders` (not removed, oldest
/// first), compared as typed values so JSON spellings of the same instant agree.
async fn reminders_out_of_step(pool: &sqlx::PgPool, generation: &generations::Generation) -> i64 {
    sqlx::query_scalar(&format!(
        r#"SELECT count(*) FROM {tasks} t
           WHERE ARRAY(SELECT (x.id, x."time", x.remind_at, x.status, x.fired)::text
                       FROM jsonb_to_recordset(t.reminders)
                            AS x(id uuid, "time" jsonb, remind_at timestamptz, status text,
                                 fired boolean))
              <> ARRAY(SELECT (r.reminder_id, r."time", r.remind_at, r.status,
                               r.status = 'fired')::text
                       FROM {reminders} r
                       WHERE r.task_id = t.task_id AND r.removed_at IS NULL
                       ORDER BY r.created_at, r.reminder_id)"#,
        tasks = generation.table("tasks"),
        reminders = generation.table("reminders"),
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn apply_all(pool: &sqlx::PgPool, generation: &generations::Generation, inputs: &[Input]) {
    let statements = Statements::new(generation.clone());
    for batch in inputs.chunks(500) {
        apply(pool, &statements, batch)
            .await
            .unwrap_or_else(|e| panic!("generation {}: {e:#}", generation.ddl_version));
    }
}

#[tokio::test]
async fn tasks_carry_their_reminders_and_older_layouts_are_still_written() {
    let (pool, _) = migrations::testing::fresh_database().await;
    let inputs = log(4_000, 3, 91);

    let current = generations::create(&pool).await.unwrap();
    assert!(current.tasks_carry_reminders());
    apply_all(&pool, &current, &inputs).await;
    let (with, fired): (i64, i64) = sqlx::query_as(&format!(
        r#"SELECT count(*) FILTER (WHERE jsonb_array_length(reminders) > 0),
                  count(*) FILTER (WHERE reminders @> '[{{"fired": true}}]')
           FROM {}"#,
        current.table("tasks")
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        with > 0 && fired > 0,
        "{with} tasks with reminders, {fired} fired"
    );
    assert_eq!(reminders_out_of_step(&pool, &current).await, 0);

    // A generation of version 2 has no such column: the same batches still apply to it.
    let mut older = generations::create(&pool).await.unwrap();
    sqlx::query(&format!(
        "ALTER TABLE {} DROP COLUMN reminders",
        older.table("tasks")
    ))
    .execute(&pool)
    .await
    .unwrap();
    older.ddl_version = 2;
    assert!(!older.tasks_carry_reminders());
    apply_all(&pool, &older, &inputs).await;
    let count = |g: &generations::Generation| {
        let sql = format!(
            "SELECT (SELECT count(*) FROM {}) + (SELECT count(*) FROM {})",
            g.table("tasks"),
            g.table("reminders")
        );
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count(&older).await, count(&current).await);
}
