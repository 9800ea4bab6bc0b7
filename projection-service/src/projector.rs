//! The live projector: reads the log in a consumer group and applies each batch to the active
//! read-model generation in one Postgres transaction, retrying a failed batch until it commits
//! (nothing is ever skipped), and follows a switch-over to a rebuilt generation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use event_store::{LogConfig, LogReader, LogRecord, StartAt};
use migrations::generations;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::dead_letters::DeadLetterSink;
use crate::metrics;
use crate::model::{Input, Tally};
use crate::store::{self, Mode, Outcome, Statements};

/// How often the same gap may be seen before the projector accepts that the log has no records
/// there (it should never happen: the topic keeps everything and has no transactions).
const GAP_PATIENCE: u32 = 20;

/// Turns records read from the log into batch inputs.
pub fn inputs(records: Vec<LogRecord>) -> Vec<Input> {
    records
        .into_iter()
        .map(|r| {
            let key = r
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned());
            Input::new(r.position(), key, r.payload)
        })
        .collect()
}

/// Applies batches to whichever generation is active, remembering gaps and seeks.
pub struct Projector {
    pool: PgPool,
    topic: String,
    sink: Arc<dyn DeadLetterSink>,
    statements: Option<Statements>,
    /// Gaps seen per partition: (offset, times).
    gaps: HashMap<i32, (i64, u32)>,
    /// Gaps accepted after [`GAP_PATIENCE`] sightings.
    accepted_gaps: BTreeMap<i32, i64>,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("topic", &self.topic)
            .field(
                "generation",
                &self.statements.as_ref().map(|s| s.generation.number),
            )
            .finish_non_exhaustive()
    }
}

impl Projector {
    pub fn new(pool: PgPool, topic: String, sink: Arc<dyn DeadLetterSink>) -> Self {
        Self {
            pool,
            topic,
            sink,
            statements: None,
            gaps: HashMap::new(),
            accepted_gaps: BTreeMap::new(),
        }
    }

    /// Applies one batch to the active generation in one transaction. Returns where the reader
    /// must move to (gaps, or records the generation already has).
    pub async fn apply(&mut self, inputs: Vec<Input>) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await.context("starting a batch")?;
        // The commit returns before its WAL record is flushed. A crash of the database server
        // can then lose the last batches, never half of one: the offsets are in the same
        // transactions, so the projector reads those records again. Read models are rebuilt from
        // the log; waiting for the disk on each batch bought nothing but latency.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await
            .context("starting a batch")?;
        let generation = generations::active_for_batch(&mut tx)
            .await
            .context("reading the active generation")?
            .context("no active read-model generation")?;
        if self.statements.as_ref().map(|s| s.generation.number) != Some(generation.number) {
            tracing::info!(generation = generation.number, schema = %generation.schema, "projecting into generation");
            self.statements = Some(Statements::new(generation));
        }
        let statements = self.statements.as_ref().expect("set above");
        let outcome = store::apply_batch(
            &mut tx,
            statements,
            &self.topic,
            inputs,
            self.sink.as_ref(),
            Mode::Advance,
            &self.accepted_gaps,
        )
        .await?;
        tx.commit().await.context("committing a batch")?;
        metrics::BATCH_SECONDS.observe(started.elapsed().as_secs_f64());
        record(&outcome.plan.tally, outcome.already_applied);
        self.note_seeks(&outcome);
        Ok(outcome)
    }

    /// Like [`apply`](Self::apply), retried with backoff until it commits or `cancel` fires.
    pub async fn apply_until_done(
        &mut self,
        inputs: Vec<Input>,
        cancel: &CancellationToken,
    ) -> Option<Outcome> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.apply(inputs.clone()).await {
                Ok(outcome) => return Some(outcome),
                Err(error) => {
                    metrics::BATCH_FAILURES.inc();
                    tracing::error!(error = format!("{error:#}"), "batch failed; retrying");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return None,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn note_seeks(&mut self, outcome: &Outcome) {
        for (partition, offset) in &outcome.seek {
            let seen = self.gaps.entry(*partition).or_insert((*offset, 0));
            if seen.0 == *offset {
                seen.1 += 1;
            } else {
                *seen = (*offset, 1);
            }
            if seen.1 >= GAP_PATIENCE {
                tracing::error!(
                    partition,
                    offset,
                    "the log has no record here; going on past it"
                );
                self.accepted_gaps.insert(*partition, *offset);
            }
        }
    }
}

fn record(tally: &Tally, already_applied: usize) {
    for (event_type, n) in &tally.by_type {
        metrics::EVENTS.with_label_values(&[event_type]).inc_by(*n);
    }
    for (reason, n) in [
        ("duplicate", tally.duplicates),
        ("lost_race", tally.lost_races),
        ("already_applied", already_applied as u64),
    ] {
        if n > 0 {
            metrics::SKIPPED.with_label_values(&[reason]).inc_by(n);
        }
    }
}

/// Settings of the live projector.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// The partitions this process projects (see [`Selection::resolve`]).
    pub partitions: Vec<i32>,
    pub batch_max: usize,
    pub batch_wait: Duration,
    /// How long the log may stay quiet before the reader fetches at [`idle_fetch_wait`]
    /// instead; `None`: never.
    ///
    /// [`idle_fetch_wait`]: Self::idle_fetch_wait
    pub idle_after: Option<Duration>,
    /// The `fetch.wait.max.ms` of a reader of a quiet log. The first record after the quiet is
    /// projected up to about twice this late; the reader goes back to the configured wait
    /// then.
    pub idle_fetch_wait: Duration,
}

/// How often the live reader asks the broker for records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pace {
    /// The configured `fetch.wait.max.ms`: records arrive soon after they are appended.
    Busy,
    /// The log has been quiet for a while: the reader waits longer per fetch, so the broker
    /// does not poll its storage for every partition many times a second for nothing.
    Idle,
}

impl Pace {
    fn label(self) -> &'static str {
        match self {
            Pace::Busy => "busy",
            Pace::Idle => "idle",
        }
    }
}

/// Which partitions a projector reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Every partition of the topic.
    All,
    /// These partitions.
    Listed(Vec<i32>),
    /// Replica `ordinal`'s share of `replicas`: the partitions `p` with `p % replicas ==
    /// ordinal`.
    Share { replicas: usize, ordinal: usize },
}

impl Selection {
    /// The selection the settings give: `replicas` above 1 takes this replica's share (its
    /// ordinal from `ordinal`, else `hostname`), otherwise `spec` (see [`parse_partitions`]).
    pub fn from_settings(
        spec: &str,
        replicas: usize,
        ordinal: Option<usize>,
        hostname: Option<&str>,
    ) -> anyhow::Result<Self> {
        let listed = parse_partitions(spec)
            .map_err(|e| anyhow::anyhow!("TASKSTREAM_PROJECTION__PARTITIONS: {e}"))?;
        if replicas <= 1 {
            return Ok(if listed.is_empty() {
                Selection::All
            } else {
                Selection::Listed(listed)
            });
        }
        anyhow::ensure!(
            listed.is_empty(),
            "TASKSTREAM_PROJECTION__PARTITIONS ({spec}) and TASKSTREAM_PROJECTION__REPLICAS \
             ({replicas}) both choose the partitions; set one of them"
        );
        let ordinal =
            service_kit::replica::ordinal(ordinal, hostname, "TASKSTREAM_PROJECTION__ORDINAL")?;
        Ok(Selection::Share { replicas, ordinal })
    }

    /// The partitions selected of a topic of `count` partitions.
    pub fn resolve(&self, count: i32) -> anyhow::Result<Vec<i32>> {
        match self {
            Selection::All => Ok((0..count).collect()),
            Selection::Listed(listed) => {
                anyhow::ensure!(
                    listed.iter().all(|p| *p < count),
                    "partitions {listed:?} asked for, but the topic has {count}"
                );
                Ok(listed.clone())
            }
            Selection::Share { replicas, ordinal } => {
                service_kit::replica::share(count, *replicas, *ordinal)
            }
        }
    }
}

/// Parses a partition selection: `all` (or empty), or a list of partitions and ranges such as
/// `0-3,8`.
pub fn parse_partitions(spec: &str) -> Result<Vec<i32>, String> {
    let spec = spec.trim();
    if spec.is_empty() || spec == "all" {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let bad = || format!("{part:?} is not a partition or a range such as 0-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (i32, i32) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a < 0 || b < a {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(
                part.parse()
                    .ok()
                    .filter(|p: &i32| *p >= 0)
                    .ok_or_else(bad)?,
            ),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The timestamp of the last record projected per partition, for the lag in seconds.
pub type LastSeen = Arc<Mutex<HashMap<i32, i64>>>;

/// Runs the live projector until `cancel` fires.
pub async fn run_live(
    config: LogConfig,
    pool: PgPool,
    sink: Arc<dyn DeadLetterSink>,
    options: LiveOptions,
    last_seen: LastSeen,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    generations::ensure_active(&pool)
        .await
        .context("creating the first read-model generation")?;
    let Some(reader) = assign_retrying(&config, &pool, &options.partitions, &cancel).await else {
        return Ok(());
    };
    let idle = LogConfig {
        fetch_wait_ms: u64::try_from(options.idle_fetch_wait.as_millis()).unwrap_or(u64::MAX),
        ..config.clone()
    };
    let mut readers = PacedReaders::new(reader, config.clone(), idle);
    let mut last_record = Instant::now();
    let mut projector = Projector::new(pool.clone(), config.topic.clone(), sink);
    loop {
        let batch = tokio::select! {
            () = cancel.cancelled() => break,
            batch = readers.current.next_batch(options.batch_max, options.batch_wait) => batch,
        };
        let records = match batch {
            Ok(records) if records.is_empty() => {
                if options
                    .idle_after
                    .is_some_and(|after| last_record.elapsed() >= after)
                {
                    // The slower reader starts where the generation's stored offsets are:
                    // exactly where this one is, everything read so far being projected.
                    readers
                        .switch_to(Pace::Idle, &pool, &options.partitions)
                        .await;
                }
                continue;
            }
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "reading the log failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        last_record = Instant::now();
        let stamps: Vec<(i32, i64)> = records
            .iter()
            .filter_map(|r| r.timestamp_ms.map(|t| (r.partition, t)))
            .collect();
        let Some(outcome) = projector.apply_until_done(inputs(records), &cancel).await else {
            break;
        };
        {
            let mut seen = last_seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            seen.extend(stamps);
        }
        // Records again: back to the configured wait, from the offsets just stored (which
        // include every seek the outcome asks for).
        if readers
            .switch_to(Pace::Busy, &pool, &options.partitions)
            .await
        {
            continue;
        }
        for (partition, offset) in &outcome.seek {
            if let Err(error) = readers.current.seek(*partition, StartAt::Offset(*offset)) {
                tracing::warn!(%error, partition, offset, "cannot move the reader");
            }
        }
    }
    tracing::info!("projector stopped");
    Ok(())
}

/// [`assign`], retried every second until it succeeds; `None` once `cancel` fires. The
/// partitions were checked against the topic at start, so a failure here is the broker's or the
/// database's for now, not a reason to end the projector.
async fn assign_retrying(
    config: &LogConfig,
    pool: &PgPool,
    partitions: &[i32],
    cancel: &CancellationToken,
) -> Option<LogReader> {
    loop {
        match assign(config, pool, partitions).await {
            Ok(reader) => return Some(reader),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot start reading the log; retrying"
                );
                tokio::select! {
                    () = cancel.cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// The live reader, and the reader of the other [`Pace`] kept connected but reading nothing.
struct PacedReaders {
    current: LogReader,
    pace: Pace,
    parked: Option<LogReader>,
    busy: LogConfig,
    idle: LogConfig,
}

impl PacedReaders {
    /// `current`, reading with `busy`; `idle` is the configuration of a quiet log's reader.
    fn new(current: LogReader, busy: LogConfig, idle: LogConfig) -> Self {
        let readers = Self {
            current,
            pace: Pace::Busy,
            parked: None,
            busy,
            idle,
        };
        readers.publish();
        readers
    }

    /// Moves the reading of `partitions` to a reader at `pace` (the parked one, if any, else a
    /// new one), from where the active generation has them, and parks the current one. Returns
    /// whether it switched: not when already at `pace`, nor when that failed (logged; the
    /// current reader goes on).
    async fn switch_to(&mut self, pace: Pace, pool: &PgPool, partitions: &[i32]) -> bool {
        if self.pace == pace {
            return false;
        }
        let config = match pace {
            Pace::Busy => &self.busy,
            Pace::Idle => &self.idle,
        };
        let next = async {
            let (starts, generation) = stored_starts(pool, partitions).await?;
            tracing::debug!(
                ?starts,
                generation,
                to = pace.label(),
                "changing the reader's pace"
            );
            anyhow::Ok(match self.parked.take() {
                Some(mut reader) => {
                    reader.reassign(&starts)?;
                    reader
                }
                None => LogReader::assign(config, &config.topic, &starts)?,
            })
        };
        let next = match next.await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    from = self.pace.label(),
                    to = pace.label(),
                    "cannot change the reader's pace; keeping the current reader"
                );
                return false;
            }
        };
        let mut previous = std::mem::replace(&mut self.current, next);
        match previous.unassign() {
            Ok(()) => self.parked = Some(previous),
            Err(error) => tracing::warn!(%error, "cannot park the previous reader; dropping it"),
        }
        self.pace = pace;
        self.publish();
        true
    }

    fn publish(&self) {
        for pace in [Pace::Busy, Pace::Idle] {
            metrics::READER_PACE
                .with_label_values(&[pace.label()])
                .set(i64::from(pace == self.pace));
        }
    }
}

/// Reads `partitions` from where the active generation has them.
async fn assign(
    config: &LogConfig,
    pool: &PgPool,
    partitions: &[i32],
) -> anyhow::Result<LogReader> {
    let (starts, generation) = stored_starts(pool, partitions).await?;
    tracing::info!(?starts, generation, "projecting partitions");
    Ok(LogReader::assign(config, &config.topic, &starts)?)
}

/// Where each of `partitions` is to be read from: the active generation's stored offset, or the
/// beginning; and that generation's number.
async fn stored_starts(
    pool: &PgPool,
    partitions: &[i32],
) -> anyhow::Result<(Vec<(i32, StartAt)>, i32)> {
    let generation = generations::active(pool)
        .await?
        .context("no active read-model generation")?;
    let stored = store::offsets(pool, &generation).await?;
    let starts: Vec<(i32, StartAt)> = partitions
        .iter()
        .map(|p| {
            (
                *p,
                stored
                    .get(p)
                    .map_or(StartAt::Beginning, |o| StartAt::Offset(*o)),
            )
        })
        .collect();
    Ok((starts, generation.number))
}

/// Updates the lag gauges every `interval` until `cancel` fires.
pub async fn watch_lag(
    config: LogConfig,
    pool: PgPool,
    last_seen: LastSeen,
    interval: Duration,
    cancel: CancellationToken,
) {
    let client = match event_store::log::admin::MetadataClient::new(&config) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot measure projection lag");
            return;
        }
    };
    loop {
        if let Err(error) = update_lag(&config, &client, &pool, &last_seen).await {
            tracing::debug!(
                error = format!("{error:#}"),
                "cannot measure projection lag"
            );
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

async fn update_lag(
    config: &LogConfig,
    client: &event_store::log::admin::MetadataClient,
    pool: &PgPool,
    last_seen: &LastSeen,
) -> anyhow::Result<()> {
    let Some(generation) = generations::active(pool).await? else {
        return Ok(());
    };
    let projected = store::offsets(pool, &generation).await?;
    let ends = client.watermarks(&config.topic).await?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let seen = last_seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for (partition, low, high) in ends {
        let next = projected.get(&partition).copied().unwrap_or(low);
        let lag = (high - next).max(0);
        let label = partition.to_string();
        metrics::LAG_EVENTS.with_label_values(&[&label]).set(lag);
        let seconds = match (lag, seen.get(&partition)) {
            (0, _) => 0,
            (_, Some(t)) => (now_ms - t).max(0) / 1000,
            (_, None) => continue,
        };
        metrics::LAG_SECONDS
            .with_label_values(&[&label])
            .set(seconds);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_lists_and_ranges_parse() {
        assert_eq!(parse_partitions("all"), Ok(vec![]));
        assert_eq!(parse_partitions(" "), Ok(vec![]));
        assert_eq!(parse_partitions("0-2, 5,1"), Ok(vec![0, 1, 2, 5]));
        assert!(parse_partitions("3-1").is_err());
        assert!(parse_partitions("-1").is_err());
        assert!(parse_partitions("x").is_err());
    }

    #[test]
    fn a_selection_is_every_partition_a_list_or_this_replicas_share() {
        let all = Selection::from_settings("all", 1, None, None).expect("valid");
        assert_eq!(all, Selection::All);
        assert_eq!(all.resolve(4).expect("fits"), vec![0, 1, 2, 3]);

        let listed = Selection::from_settings("1,3", 1, None, None).expect("valid");
        assert_eq!(listed.resolve(4).expect("fits"), vec![1, 3]);
        assert!(
            listed.resolve(3).is_err(),
            "partition 3 of a 3-partition topic"
        );

        let share =
            Selection::from_settings("all", 3, None, Some("prod-taskstream-projection-service-2"))
                .expect("the ordinal from the pod name");
        assert_eq!(share.resolve(12).expect("fits"), vec![2, 5, 8, 11]);
        let explicit = Selection::from_settings("all", 3, Some(0), Some("laptop")).expect("valid");
        assert_eq!(explicit.resolve(12).expect("fits"), vec![0, 3, 6, 9]);
        assert!(share.resolve(2).is_err(), "more replicas than partitions");
    }

    #[test]
    fn conflicting_or_incomplete_selections_are_refused() {
        let both = Selection::from_settings("0-5", 2, Some(0), None).expect_err("both");
        assert!(both.to_string().contains("set one of them"), "{both}");
        let no_ordinal =
            Selection::from_settings("all", 2, None, Some("laptop")).expect_err("none");
        assert!(
            no_ordinal
                .to_string()
                .contains("TASKSTREAM_PROJECTION__ORDINAL"),
            "{no_ordinal}"
        );
        assert!(Selection::from_settings("0-", 1, None, None).is_err());
    }
}
