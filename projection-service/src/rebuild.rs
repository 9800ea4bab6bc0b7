//! Rebuilding the read models from offset 0 into a new generation while the active one keeps
//! serving, then switching over atomically.
//!
//! 1. Take the generation being built (resuming an interrupted rebuild) or create one.
//! 2. Read every partition from that generation's stored offsets, applying batches (each its own
//!    transaction, so an interruption loses nothing), with progress.
//! 3. When it is within `switch_lag` records of the end, lock the active pointer (live batches
//!    wait), apply the last records up to the active generation's offsets in that same
//!    transaction, and point queries and projectors at the new generation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use event_store::log::admin;
use event_store::{LogConfig, LogReader, StartAt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use migrations::generations::{self, Generation};
use sqlx::PgPool;

use crate::dead_letters::DeadLetterSink;
use crate::metrics;
use crate::projector::inputs;
use crate::store::{self, Mode, Statements};

/// How a rebuild runs.
#[derive(Clone, Debug)]
pub struct RebuildOptions {
    pub batch_max: usize,
    /// Switch over once at most this many records are left.
    pub switch_lag: i64,
    /// Build only; leave the switch for a later run.
    pub no_switch: bool,
    /// Draw a progress bar on standard error (it also logs progress every few seconds).
    pub progress: bool,
    /// Stop after applying this many records (to test resuming).
    pub stop_after: Option<u64>,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            batch_max: 5_000,
            switch_lag: 2_000,
            no_switch: false,
            progress: false,
            stop_after: None,
        }
    }
}

/// What a rebuild did.
#[derive(Clone, Debug, PartialEq)]
pub struct RebuildReport {
    pub generation: i32,
    pub records: u64,
    pub events: u64,
    pub seconds: f64,
    pub switched: bool,
    /// The generation it replaced.
    pub replaced: Option<i32>,
}

impl RebuildReport {
    pub fn records_per_second(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }
}

/// The generation an interrupted rebuild left, or a new one.
async fn target(pool: &PgPool) -> anyhow::Result<Generation> {
    let building = generations::list(pool)
        .await?
        .into_iter()
        .rev()
        .find(|g| g.state == "building" && g.ddl_version == generations::READ_MODEL_VERSION);
    match building {
        Some(g) => {
            tracing::info!(generation = g.number, "resuming the rebuild");
            Ok(g)
        }
        None => Ok(generations::create(pool).await?),
    }
}

/// Rebuilds every read model; see the module docs.
pub async fn rebuild(
    pool: &PgPool,
    config: &LogConfig,
    sink: Arc<dyn DeadLetterSink>,
    options: &RebuildOptions,
) -> anyhow::Result<RebuildReport> {
    let started = Instant::now();
    let generation = target(pool).await?;
    let statements = Statements::new(generation.clone());
    let partitions = admin::partition_count(config, &config.topic).await?;
    let mut next: BTreeMap<i32, i64> = store::offsets(pool, &generation).await?;
    let starts: Vec<(i32, StartAt)> = (0..partitions)
        .map(|p| {
            let start = next
                .get(&p)
                .map_or(StartAt::Beginning, |o| StartAt::Offset(*o));
            (p, start)
        })
        .collect();
    let mut reader = LogReader::assign(config, &config.topic, &starts)?;

    let bar = progress_bar(options.progress);
    let mut report = RebuildReport {
        generation: generation.number,
        records: 0,
        events: 0,
        seconds: 0.0,
        switched: false,
        replaced: None,
    };
    let mut ends = ends(config).await?;
    let mut ends_read = Instant::now();
    let mut last_log = Instant::now();
    loop {
        if ends_read.elapsed() > Duration::from_secs(2) {
            ends = self::ends(config).await?;
            ends_read = Instant::now();
        }
        let (done, remaining) = progress(&next, &ends);
        bar.set_length(done + remaining);
        bar.set_position(done);
        metrics::REBUILD
            .with_label_values(&["done"])
            .set(done as i64);
        metrics::REBUILD
            .with_label_values(&["remaining"])
            .set(remaining as i64);
        if last_log.elapsed() > Duration::from_secs(5) {
            tracing::info!(
                generation = generation.number,
                done,
                remaining,
                per_second = format!("{:.0}", bar.per_sec()),
                "rebuilding"
            );
            last_log = Instant::now();
        }
        if remaining as i64 <= options.switch_lag
            || options.stop_after.is_some_and(|n| report.records >= n)
        {
            break;
        }
        let records = reader
            .next_batch(options.batch_max, Duration::from_millis(500))
            .await?;
        if records.is_empty() {
            continue;
        }
        let count = records.len() as u64;
        let mut tx = pool.begin().await?;
        let outcome = store::apply_batch(
            &mut tx,
            &statements,
            &config.topic,
            inputs(records),
            sink.as_ref(),
            Mode::Advance,
            &BTreeMap::new(),
        )
        .await?;
        tx.commit().await?;
        anyhow::ensure!(
            outcome.seek.is_empty(),
            "the log has a gap in partitions {:?}; run the rebuild again to resume",
            outcome.seek
        );
        next.extend(outcome.plan.offsets.iter().map(|(p, o)| (*p, *o)));
        report.records += count;
        report.events += outcome.plan.tally.events;
    }
    bar.finish_and_clear();

    if !options.no_switch && options.stop_after.is_none_or(|n| report.records < n) {
        report.replaced = switch_over(
            pool,
            config,
            &statements,
            &mut reader,
            &mut next,
            sink.as_ref(),
            &mut report,
        )
        .await?;
        report.switched = true;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Catches the new generation up to the active one under the switch lock and activates it.
async fn switch_over(
    pool: &PgPool,
    config: &LogConfig,
    statements: &Statements,
    reader: &mut LogReader,
    next: &mut BTreeMap<i32, i64>,
    sink: &dyn DeadLetterSink,
    report: &mut RebuildReport,
) -> anyhow::Result<Option<i32>> {
    let mut tx = pool.begin().await?;
    let live = generations::lock_for_switch(&mut tx).await?;
    let target: BTreeMap<i32, i64> = match &live {
        Some(live) => sqlx::query_as::<_, (i32, i64)>(&format!(
            r#"SELECT "partition", next_offset FROM {}"#,
            live.table("projection_offsets")
        ))
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect(),
        None => BTreeMap::new(),
    };
    // The live generation may also be behind the end of the log: take whichever is further.
    let ends = ends(config).await?;
    let wanted: BTreeMap<i32, i64> = ends
        .iter()
        .map(|(p, end)| (*p, (*end).max(target.get(p).copied().unwrap_or(0))))
        .collect();
    let behind = |next: &BTreeMap<i32, i64>| {
        wanted
            .iter()
            .any(|(p, want)| next.get(p).copied().unwrap_or(0) < *want)
    };
    while behind(next) {
        let records = reader.next_batch(5_000, Duration::from_secs(5)).await?;
        anyhow::ensure!(
            !records.is_empty(),
            "the log did not deliver the last records in time; nothing was switched"
        );
        let count = records.len() as u64;
        let outcome = store::apply_batch(
            &mut tx,
            statements,
            &config.topic,
            inputs(records),
            sink,
            Mode::Advance,
            &BTreeMap::new(),
        )
        .await?;
        next.extend(outcome.plan.offsets.iter().map(|(p, o)| (*p, *o)));
        report.records += count;
        report.events += outcome.plan.tally.events;
    }
    generations::activate(&mut tx, statements.generation.number).await?;
    tx.commit().await.context("switching over")?;
    tracing::info!(
        generation = statements.generation.number,
        replaced = ?live.as_ref().map(|g| g.number),
        "switched to the rebuilt generation"
    );
    // Keep the generation just replaced (to compare or fall back to); drop older retired ones.
    for old in generations::list(pool).await? {
        if old.state == "retired" && Some(old.number) != live.as_ref().map(|g| g.number) {
            generations::drop_generation(pool, &old).await?;
        }
    }
    Ok(live.map(|g| g.number))
}

async fn ends(config: &LogConfig) -> anyhow::Result<BTreeMap<i32, i64>> {
    Ok(admin::watermarks(config, &config.topic)
        .await?
        .into_iter()
        .map(|(p, _, high)| (p, high))
        .collect())
}

fn progress(next: &BTreeMap<i32, i64>, ends: &BTreeMap<i32, i64>) -> (u64, u64) {
    let mut done = 0u64;
    let mut remaining = 0u64;
    for (p, end) in ends {
        let at = next.get(p).copied().unwrap_or(0).min(*end);
        done += at.max(0) as u64;
        remaining += (end - at).max(0) as u64;
    }
    (done, remaining)
}

fn progress_bar(visible: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(0),
        if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} rebuild [{elapsed_precise}] {wide_bar} {pos}/{len} records \
             {per_sec} ETA {eta}",
        )
        .expect("valid template"),
    );
    bar
}
