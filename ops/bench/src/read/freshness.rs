//! Phase 2: freshness. projection-service runs in this process; records are appended open-loop
//! at a fixed rate, and each is timed from its append being acknowledged until the active
//! generation's `projection_offsets` show it projected — the check a query with that record's
//! consistency token waits for.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use event_store::workload::{Record, Workload};
use event_store::{Appender, LogConfig, LogPosition};
use migrations::generations::{self, Generation};
use projection_service::{ProjectionSettings, Settings};
use secrecy::SecretString;
use service_kit::database::DatabaseSettings;
use service_kit::settings::HttpSettings;
use sqlx::{Connection, PgConnection};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{Database, Server, Summary, TARGET_FRESHNESS_P99_MS, log, per_second, verdict};
use crate::measure::{Latencies, Measurement, Table};

/// Records appended (and waited for) before the timed run.
const WARMUP_RECORDS: usize = 200;

/// How long every record appended may take to be projected once the appends are done.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the in-process service may take to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What phase 2 needs.
#[derive(Debug)]
pub struct Options {
    /// Records appended per second.
    pub rate: f64,
    pub duration: Duration,
    /// How often the projected offsets are read.
    pub poll: Duration,
    pub users: usize,
    pub seed: u64,
}

/// What phase 2 measured.
#[derive(Debug)]
pub struct Freshness {
    rate: f64,
    poll: Duration,
    batch_max: usize,
    /// Each append from its start until acknowledged; elapsed is the sending window (first
    /// append to last acknowledgement).
    appends: Measurement,
    /// Each record from acknowledged to seen projected; elapsed as for `appends`.
    projected: Measurement,
    /// Appends that failed.
    failed: u64,
    /// Records acknowledged but not seen projected within [`DRAIN_TIMEOUT`].
    unprojected: usize,
    /// The generator's largest lag behind its schedule.
    max_send_lag: Duration,
    /// The projector's batch transactions while the timed records were projected.
    batches: Batches,
}

/// Batch transactions counted by `taskstream_projection_batch_duration_seconds`.
#[derive(Clone, Copy, Debug, Default)]
struct Batches {
    count: u64,
    seconds: f64,
}

impl Batches {
    fn now() -> Self {
        let histogram = &projection_service::metrics::BATCH_SECONDS;
        Self {
            count: histogram.get_sample_count(),
            seconds: histogram.get_sample_sum(),
        }
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            count: self.count - earlier.count,
            seconds: self.seconds - earlier.seconds,
        }
    }
}

/// Runs phase 2 on a fresh topic and database.
pub async fn run(options: &Options, base: &LogConfig, server: &Server) -> Result<Freshness> {
    let config = log::fresh_topic(base).await?;
    let database = server.fresh_database(2).await?;
    let measured = measure(options, &config, &database).await;
    server.finish(database).await?;
    measured
}

async fn measure(options: &Options, config: &LogConfig, database: &Database) -> Result<Freshness> {
    let settings = Settings {
        http: HttpSettings::with_port(0),
        kafka: config.clone(),
        database: DatabaseSettings {
            url: SecretString::from(database.url.clone()),
            ..DatabaseSettings::default()
        },
        projection: ProjectionSettings::default(),
        ..Settings::default()
    };
    let batch_max = settings.projection.batch_max;
    let cancel = CancellationToken::new();
    let app = projection_service::build_with(settings, cancel.clone())
        .await
        .context("build projection-service")?;
    let stop = cancel.clone();
    let service = tokio::spawn(app.run(async move { stop.cancelled().await }));

    let measured = drive(options, config, database, batch_max).await;

    cancel.cancel();
    match tokio::time::timeout(STOP_TIMEOUT, service).await {
        Ok(finished) => finished
            .context("the projection-service task panicked")?
            .context("projection-service failed")?,
        Err(_) => bail!(
            "projection-service did not stop within {} s",
            STOP_TIMEOUT.as_secs()
        ),
    }
    measured
}

/// Appends and watches while the service runs.
async fn drive(
    options: &Options,
    config: &LogConfig,
    database: &Database,
    batch_max: usize,
) -> Result<Freshness> {
    let conn = PgConnection::connect(&database.url)
        .await
        .context("connect the offset poller")?;
    let generation = generations::active(&database.pool)
        .await
        .context("read the active generation")?
        .context("projection-service activated no generation")?;
    let tracker = Arc::new(Mutex::new(Tracker::new()?));
    let stop_polling = CancellationToken::new();
    let poller = tokio::spawn(poll(
        conn,
        generation,
        Arc::clone(&tracker),
        options.poll,
        stop_polling.clone(),
    ));

    let appender = Arc::new(
        Appender::connect(config)
            .await
            .with_context(|| format!("connect an appender to {}", config.topic))?,
    );
    let planned = (options.rate * options.duration.as_secs_f64()).ceil() as usize;
    let mut workload = Workload::with_prefix(options.users, options.seed, "fresh");
    let mut records = Vec::with_capacity(WARMUP_RECORDS + planned + 2);
    while records.len() < WARMUP_RECORDS + planned {
        records.extend(workload.next_records());
    }
    let timed = records.split_off(WARMUP_RECORDS);

    eprintln!("  warming up with {WARMUP_RECORDS} records…");
    let mut warmup = JoinSet::new();
    for record in records {
        warmup.spawn(append(Arc::clone(&appender), Arc::clone(&tracker), record));
    }
    while let Some(done) = warmup.join_next().await {
        done.context("an append task panicked")??;
    }
    drain(&tracker, DRAIN_TIMEOUT).await?;
    lock(&tracker).restart()?;

    eprintln!(
        "  appending {:.0} records/s for {} s…",
        options.rate,
        options.duration.as_secs()
    );
    let before = Batches::now();
    let sent = open_loop(options, &appender, &tracker, timed).await?;
    eprintln!("  waiting for the last records to be projected…");
    let unprojected = match drain(&tracker, DRAIN_TIMEOUT).await {
        Ok(()) => 0,
        Err(_) => lock(&tracker).pending(),
    };
    let batches = Batches::now().since(before);
    stop_polling.cancel();
    poller
        .await
        .context("the offset poller panicked")?
        .context("the offset poller failed")?;

    let elapsed = sent.window;
    let (latencies, projected) = {
        let tracker = lock(&tracker);
        (tracker.latencies.clone(), tracker.projected)
    };
    Ok(Freshness {
        rate: options.rate,
        poll: options.poll,
        batch_max,
        appends: Measurement {
            operations: sent.acks.count(),
            elapsed,
            latencies: sent.acks,
        },
        projected: Measurement {
            operations: projected,
            elapsed,
            latencies,
        },
        failed: sent.failed,
        unprojected,
        max_send_lag: sent.max_lag,
        batches,
    })
}

/// What the open loop sent.
#[derive(Debug)]
struct Sent {
    acks: Latencies,
    failed: u64,
    /// From the first append's due time to the last acknowledgement.
    window: Duration,
    max_lag: Duration,
}

/// Appends `records` at `options.rate`, on schedule whatever the answers take: every
/// millisecond, every record due by then is started.
async fn open_loop(
    options: &Options,
    appender: &Arc<Appender>,
    tracker: &Arc<Mutex<Tracker>>,
    records: Vec<Record>,
) -> Result<Sent> {
    let mut acks = Latencies::new()?;
    let mut failed = 0;
    let mut max_lag = Duration::ZERO;
    let mut last_ack = Instant::now();
    let mut in_flight = JoinSet::new();
    let mut reap =
        |done: Result<Result<(Duration, Instant)>, tokio::task::JoinError>| -> Result<()> {
            match done.context("an append task panicked")? {
                Ok((latency, acked)) => {
                    acks.record(latency);
                    last_ack = last_ack.max(acked);
                }
                Err(_) => failed += 1,
            }
            Ok(())
        };
    let total = records.len();
    let mut records = records.into_iter();
    let mut sent = 0usize;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while sent < total {
        ticker.tick().await;
        let elapsed = started.elapsed();
        let due = ((elapsed.as_secs_f64() * options.rate) as usize + 1).min(total);
        if due > sent {
            // The first of the records started now has waited since its due time.
            let first_due = Duration::from_secs_f64(sent as f64 / options.rate);
            max_lag = max_lag.max(elapsed.saturating_sub(first_due));
        }
        for record in records.by_ref().take(due - sent) {
            in_flight.spawn(append(Arc::clone(appender), Arc::clone(tracker), record));
        }
        sent = due;
        while let Some(done) = in_flight.try_join_next() {
            reap(done)?;
        }
    }
    while let Some(done) = in_flight.join_next().await {
        reap(done)?;
    }
    Ok(Sent {
        acks,
        failed,
        window: last_ack.saturating_duration_since(started),
        max_lag,
    })
}

/// Appends `record`, then registers it with `tracker`; returns the append's latency and when it
/// was acknowledged.
async fn append(
    appender: Arc<Appender>,
    tracker: Arc<Mutex<Tracker>>,
    record: Record,
) -> Result<(Duration, Instant)> {
    let started = Instant::now();
    let position = appender
        .append_raw(&record.user, &record.payload)
        .await
        .with_context(|| format!("append a record of {}", record.user))?;
    let acked = Instant::now();
    lock(&tracker).expect(position, acked);
    Ok((acked - started, acked))
}

fn lock(tracker: &Mutex<Tracker>) -> std::sync::MutexGuard<'_, Tracker> {
    tracker.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records acknowledged but not yet seen projected, and the latencies of those that were.
#[derive(Debug)]
struct Tracker {
    /// Per partition: offset → when its append was acknowledged.
    pending: HashMap<i32, BTreeMap<i64, Instant>>,
    latencies: Latencies,
    projected: u64,
}

impl Tracker {
    fn new() -> Result<Self> {
        Ok(Self {
            pending: HashMap::new(),
            latencies: Latencies::new()?,
            projected: 0,
        })
    }

    /// Forgets the latencies measured so far.
    fn restart(&mut self) -> Result<()> {
        self.latencies = Latencies::new()?;
        self.projected = 0;
        Ok(())
    }

    fn expect(&mut self, position: LogPosition, acked: Instant) {
        self.pending
            .entry(position.partition)
            .or_default()
            .insert(position.offset, acked);
    }

    /// Every pending record below a partition's next offset was projected by `seen`.
    fn observe(&mut self, next_offsets: &[(i32, i64)], seen: Instant) {
        for (partition, next) in next_offsets {
            let Some(pending) = self.pending.get_mut(partition) else {
                continue;
            };
            let later = pending.split_off(next);
            for acked in std::mem::replace(pending, later).into_values() {
                self.latencies.record(seen.saturating_duration_since(acked));
                self.projected += 1;
            }
        }
    }

    fn pending(&self) -> usize {
        self.pending.values().map(BTreeMap::len).sum()
    }
}

/// Reads the generation's projected offsets every `every` until `stop`, telling `tracker`.
async fn poll(
    mut conn: PgConnection,
    generation: Generation,
    tracker: Arc<Mutex<Tracker>>,
    every: Duration,
    stop: CancellationToken,
) -> Result<()> {
    // The check of query-service's consistency token: projected once `next_offset > offset`.
    let sql = format!(
        r#"SELECT "partition", next_offset FROM {}"#,
        generation.table("projection_offsets")
    );
    loop {
        let rows: Vec<(i32, i64)> = sqlx::query_as(&sql)
            .fetch_all(&mut conn)
            .await
            .context("read the projected offsets")?;
        let seen = Instant::now();
        lock(&tracker).observe(&rows, seen);
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Waits until every acknowledged record was seen projected, at most `timeout`.
async fn drain(tracker: &Mutex<Tracker>, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let pending = lock(tracker).pending();
        if pending == 0 {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!(
                "{pending} records not projected within {} s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Freshness {
    fn p99_ms(&self) -> f64 {
        self.projected.latencies.quantile_ms(0.99)
    }

    fn achieved(&self) -> f64 {
        per_second(
            self.appends.operations as f64,
            self.appends.elapsed.as_secs_f64(),
        )
    }

    fn pass(&self) -> bool {
        self.p99_ms() <= TARGET_FRESHNESS_P99_MS && self.failed == 0 && self.unprojected == 0
    }

    pub fn report(&self) -> String {
        let mut table = Table::of("records");
        table.push("append acknowledged (append_raw)", self.appends.clone());
        table.push("acknowledged -> projected", self.projected.clone());
        let p = &self.projected.latencies;
        format!(
            "2. freshness: projection-service in this process (batches of at most {}), {:.0} \
             records/s offered open loop; each record timed from its append's acknowledgement \
             until projection_offsets.next_offset of its partition is past it (polled every {} \
             ms)\n{}\
             achieved: {:.0} records/s acknowledged; appends failed: {}; never seen projected: \
             {}; generator's largest lag behind schedule: {:.1} ms\n\
             projector: {} batch transactions, on average {:.1} records and {:.1} ms each\n\
             freshness p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n\
             target: p99 <= {TARGET_FRESHNESS_P99_MS:.0} ms (every record projected) {}\n",
            self.batch_max,
            self.rate,
            self.poll.as_millis(),
            table.render(),
            self.achieved(),
            self.failed,
            self.unprojected,
            self.max_send_lag.as_secs_f64() * 1e3,
            self.batches.count,
            self.projected.operations as f64 / self.batches.count.max(1) as f64,
            self.batches.seconds * 1e3 / self.batches.count.max(1) as f64,
            p.quantile_ms(0.50),
            p.quantile_ms(0.99),
            p.max_ms(),
            verdict(Some(self.pass())),
        )
    }

    pub fn summarise(&self, summary: &mut Summary) {
        let p = &self.projected.latencies;
        summary.push(
            "2 freshness p99 (ack -> projected)",
            format!(
                "{:.2} ms (p50 {:.2}, max {:.2})",
                p.quantile_ms(0.99),
                p.quantile_ms(0.50),
                p.max_ms()
            ),
            format!("<= {TARGET_FRESHNESS_P99_MS:.0} ms"),
            Some(self.pass()),
        );
        summary.push(
            "2 freshness commit rate",
            format!("{:.0} records/s", self.achieved()),
            format!("{:.0} offered", self.rate),
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_counts_once_its_partition_is_past_it() {
        let mut tracker = Tracker::new().expect("tracker");
        let acked = Instant::now();
        for offset in [3, 4, 5] {
            tracker.expect(
                LogPosition {
                    partition: 1,
                    offset,
                },
                acked,
            );
        }
        tracker.observe(&[(1, 4), (2, 100)], acked + Duration::from_millis(7));
        assert_eq!(tracker.projected, 1);
        assert_eq!(tracker.pending(), 2);
        assert!((tracker.latencies.max_ms() - 7.0).abs() < 0.1);
        tracker.observe(&[(1, 6)], acked + Duration::from_millis(9));
        assert_eq!(tracker.projected, 3);
        assert_eq!(tracker.pending(), 0);
    }
}
