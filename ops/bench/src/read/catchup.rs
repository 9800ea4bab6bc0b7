//! Phase 1: catch-up. Appends the workload, rebuilds every read model from offset 0, and
//! compares the rebuild with Postgres inserting the same rows on its own, with the broker read
//! and the CPU work (decode and plan) timed apart.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use event_store::workload::{Record, Workload};
use event_store::{Appender, LogConfig, LogReader, StartAt};
use migrations::generations::{self, Generation};
use projection_service::dead_letters::DeadLetterTopic;
use projection_service::rebuild::{self, RebuildOptions, RebuildReport};
use projection_service::{model, projector};
use sqlx::PgPool;

use super::{Server, Summary, TARGET_REBUILD_PERCENT, key_values, log, per_second, verdict};
use crate::measure::{Measurement, run_concurrently};

/// How long reading the log may see no record before it gives up.
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What phase 1 needs.
#[derive(Debug)]
pub struct Options {
    pub records: u64,
    pub users: usize,
    pub seed: u64,
    pub append_concurrency: usize,
}

/// What phase 1 measured.
#[derive(Debug)]
pub struct CatchUp {
    records: u64,
    /// Events in the appended commits (duplicates and lost races included).
    appended_events: u64,
    appended: Measurement,
    rebuild: RebuildReport,
    batch_max: usize,
    read: Duration,
    decode: Duration,
    plan: Duration,
    /// Events the plan accepted (the rebuild's count, for a check).
    planned_events: u64,
    copy: Yardstick,
}

/// Postgres inserting the rebuilt rows again, into a fresh generation.
#[derive(Debug)]
struct Yardstick {
    /// Rows and server-side seconds per table.
    tables: Vec<(String, u64, f64)>,
    /// Server-side seconds from the first insert's start to the last one's end.
    seconds: f64,
    /// The commit, timed by the client.
    commit: Duration,
}

impl Yardstick {
    fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, rows, _)| rows).sum()
    }
}

/// Runs phase 1 on a fresh topic and database.
pub async fn run(options: &Options, base: &LogConfig, server: &Server) -> Result<CatchUp> {
    let config = log::fresh_topic(base).await?;
    let database = server.fresh_database(5).await?;
    let measured = measure(options, &config, &database.pool).await;
    server.finish(database).await?;
    measured
}

async fn measure(options: &Options, config: &LogConfig, pool: &PgPool) -> Result<CatchUp> {
    let records = workload_records(options.records, options.users, options.seed);
    let appended_events = records.iter().map(|r| r.events as u64).sum();
    eprintln!("  appending {} records…", records.len());
    let appended = append_all(config, &records, options.append_concurrency).await?;
    drop(records);

    eprintln!("  rebuilding from offset 0…");
    let sink = Arc::new(
        DeadLetterTopic::connect(config)
            .await
            .context("connect the dead-letter producer")?,
    );
    let rebuild_options = RebuildOptions {
        no_switch: false,
        progress: false,
        ..RebuildOptions::default()
    };
    let report = rebuild::rebuild(pool, config, sink, &rebuild_options)
        .await
        .context("rebuild the read models")?;
    ensure!(
        report.records == options.records,
        "the rebuild applied {} records, {} were appended",
        report.records,
        options.records
    );
    ensure!(report.switched, "the rebuild did not switch over");

    eprintln!("  reading the log alone…");
    let started = Instant::now();
    let mut reader = LogReader::assign_all(config, &config.topic, StartAt::Beginning)
        .await
        .with_context(|| format!("read {}", config.topic))?;
    let read_back = reader
        .read_to_end(READ_IDLE_TIMEOUT)
        .await
        .with_context(|| format!("read {} to its end", config.topic))?;
    let read = started.elapsed();
    drop(reader);
    ensure!(
        read_back.len() as u64 == options.records,
        "read {} records back, {} were appended",
        read_back.len(),
        options.records
    );

    eprintln!("  decoding and planning alone…");
    let started = Instant::now();
    let inputs = projector::inputs(read_back);
    let decode = started.elapsed();
    let unprocessed: HashSet<_> = inputs
        .iter()
        .filter_map(|input| input.commit.as_ref().ok())
        .flat_map(|commit| commit.events().iter().map(|e| e.event_id))
        .collect();
    let started = Instant::now();
    let plan = model::plan(&inputs, HashMap::new(), unprocessed);
    let plan_time = started.elapsed();
    let planned_events = plan.tally.events;
    drop((plan, inputs));

    eprintln!("  Postgres inserting the same rows…");
    let built = generations::get(pool, report.generation)
        .await?
        .with_context(|| format!("generation {} is gone", report.generation))?;
    let copy = copy_generation(pool, &built).await?;

    Ok(CatchUp {
        records: options.records,
        appended_events,
        appended,
        batch_max: rebuild_options.batch_max,
        rebuild: report,
        read,
        decode,
        plan: plan_time,
        planned_events,
        copy,
    })
}

/// The first `count` records of the workload.
fn workload_records(count: u64, users: usize, seed: u64) -> Vec<Record> {
    let mut workload = Workload::new(users, seed);
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let mut records = Vec::with_capacity(count + 2);
    while records.len() < count {
        records.extend(workload.next_records());
    }
    records.truncate(count);
    records
}

/// Appends `records` in order, up to `concurrency` in flight.
async fn append_all(
    config: &LogConfig,
    records: &[Record],
    concurrency: usize,
) -> Result<Measurement> {
    let appender = Appender::connect(config)
        .await
        .with_context(|| format!("connect an appender to {}", config.topic))?;
    let appender = &appender;
    run_concurrently(records, concurrency, |record| async move {
        appender
            .append_raw(&record.user, &record.payload)
            .await
            .map(|_| ())
            .with_context(|| format!("append a record of {}", record.user))
    })
    .await
}

/// Inserts every row of `built` into a new generation with `INSERT … SELECT`, table by table in
/// one transaction, timing each statement on the server's clock.
async fn copy_generation(pool: &PgPool, built: &Generation) -> Result<Yardstick> {
    let fresh = generations::create(pool)
        .await
        .context("create a generation to copy into")?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = $1 AND table_type = 'BASE TABLE'
         ORDER BY table_name <> 'tasks', table_name",
    )
    .bind(&built.schema)
    .fetch_all(pool)
    .await
    .context("list the read model tables")?;
    let mut statements = Vec::with_capacity(tables.len());
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT quote_ident(column_name::text) FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = $2 AND is_generated = 'NEVER'
             ORDER BY ordinal_position",
        )
        .bind(&built.schema)
        .bind(&table)
        .fetch_all(pool)
        .await
        .with_context(|| format!("list the columns of {table}"))?;
        let columns = columns.join(", ");
        let sql = format!(
            "INSERT INTO {} ({columns}) SELECT {columns} FROM {}",
            fresh.table(&table),
            built.table(&table)
        );
        statements.push((table, sql));
    }

    let mut tx = pool.begin().await.context("begin the copy")?;
    let clock = "SELECT extract(epoch FROM clock_timestamp())::float8";
    let first: f64 = sqlx::query_scalar(clock).fetch_one(&mut *tx).await?;
    let mut last = first;
    let mut timed = Vec::with_capacity(statements.len());
    for (table, sql) in statements {
        let rows = sqlx::raw_sql(&sql)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("copy {table}"))?
            .rows_affected();
        let now: f64 = sqlx::query_scalar(clock).fetch_one(&mut *tx).await?;
        timed.push((table, rows, now - last));
        last = now;
    }
    let started = Instant::now();
    tx.commit().await.context("commit the copy")?;
    Ok(Yardstick {
        tables: timed,
        seconds: last - first,
        commit: started.elapsed(),
    })
}

impl CatchUp {
    fn events(&self) -> u64 {
        self.rebuild.events
    }

    fn rebuild_events_per_second(&self) -> f64 {
        per_second(self.events() as f64, self.rebuild.seconds)
    }

    fn postgres_events_per_second(&self) -> f64 {
        per_second(self.events() as f64, self.copy.seconds)
    }

    fn percent(&self) -> f64 {
        100.0 * self.rebuild_events_per_second() / self.postgres_events_per_second().max(1e-9)
    }

    pub fn report(&self) -> String {
        let records = self.records as f64;
        let rebuild = self.rebuild.seconds;
        let read = self.read.as_secs_f64();
        let decode = self.decode.as_secs_f64();
        let plan = self.plan.as_secs_f64();
        let copy = self.copy.seconds;
        let share = |seconds: f64| 100.0 * seconds / rebuild.max(1e-9);
        let tables = self
            .copy
            .tables
            .iter()
            .map(|(table, rows, seconds)| format!("{table} {rows} ({:.0} ms)", seconds * 1e3))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = [
            (
                "appended".to_owned(),
                format!(
                    "{} records, {} events (duplicates and lost races included) in {:.1} s: \
                     {:.0} records/s (Appender::append_raw)",
                    self.records,
                    self.appended_events,
                    self.appended.elapsed.as_secs_f64(),
                    self.appended.throughput()
                ),
            ),
            (
                "rebuild".to_owned(),
                format!(
                    "{rebuild:.2} s: {:.0} records/s, {:.0} events/s ({} events accepted; \
                     generation {}, batches of {}, switched over)",
                    per_second(records, rebuild),
                    self.rebuild_events_per_second(),
                    self.rebuild.events,
                    self.rebuild.generation,
                    self.batch_max,
                ),
            ),
            (
                "  broker read alone".to_owned(),
                format!(
                    "{read:.2} s = {:.0} % of the rebuild: {:.0} records/s \
                     (LogReader::assign_all + read_to_end)",
                    share(read),
                    per_second(records, read)
                ),
            ),
            (
                "  decode + plan alone".to_owned(),
                format!(
                    "{:.2} s = {:.0} % of the rebuild (decode {decode:.2} s, plan {plan:.2} s; \
                     CPU, one batch, {} events planned)",
                    decode + plan,
                    share(decode + plan),
                    self.planned_events
                ),
            ),
            (
                "  Postgres alone".to_owned(),
                format!(
                    "{copy:.2} s = {:.0} % of the rebuild: {} rows INSERT … SELECT into a new \
                     generation in one transaction, server-side (commit {:.0} ms more)",
                    share(copy),
                    self.copy.rows(),
                    self.copy.commit.as_secs_f64() * 1e3
                ),
            ),
            ("    by table".to_owned(), tables),
            (
                "Postgres yardstick".to_owned(),
                format!(
                    "{:.0} events/s equivalent ({} events / {copy:.2} s)",
                    self.postgres_events_per_second(),
                    self.events()
                ),
            ),
        ];
        let percent = self.percent();
        format!(
            "1. catch-up: rebuild from offset 0 into a new generation vs. Postgres inserting the \
             same rows\n{}\
             rebuild / Postgres: {:.0} / {:.0} events/s = {percent:.1} %\n\
             target: rebuild >= {TARGET_REBUILD_PERCENT:.0} % of Postgres' own insert rate {}\n",
            key_values(&rows),
            self.rebuild_events_per_second(),
            self.postgres_events_per_second(),
            verdict(Some(percent >= TARGET_REBUILD_PERCENT)),
        )
    }

    pub fn summarise(&self, summary: &mut Summary) {
        summary.push(
            format!("1 rebuild of {} records", self.records),
            format!(
                "{:.0} records/s, {:.0} events/s",
                per_second(self.records as f64, self.rebuild.seconds),
                self.rebuild_events_per_second()
            ),
            "-",
            None,
        );
        let percent = self.percent();
        summary.push(
            "1 rebuild / Postgres insert rate",
            format!(
                "{percent:.1} % ({:.0} of {:.0} events/s)",
                self.rebuild_events_per_second(),
                self.postgres_events_per_second()
            ),
            format!(">= {TARGET_REBUILD_PERCENT:.0} %"),
            Some(percent >= TARGET_REBUILD_PERCENT),
        );
    }
}
