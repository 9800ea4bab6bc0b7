//! The `log` benchmark: what the event store costs on top of plain Kafka produce, and how long a
//! writer waits to learn that its commit won.
//!
//! Three phases against the same broker, each on a fresh topic `bench.<uuid>`:
//!
//! 1. **Raw produce**: an rdkafka `FutureProducer` with the event store's producer settings
//!    (idempotent, `acks=all`, `linger.ms`) sends the encoded commits of phase 2 as plain
//!    records (same keys, partitions and value sizes, no headers), up to `--concurrency` in flight.
//! 2. **Event-store append**: `Appender::append` of the same number of realistic commits (built
//!    before timing), up to `--concurrency` in flight. Its throughput is compared with phase 1
//!    against the target "event-store append ≥ 80 % of raw produce throughput".
//! 3. **Append-then-confirm**: a `Writer` whose tail reads every partition appends
//!    `--confirm-records` commits one at a time, then as many again with
//!    `--confirm-concurrency` in flight; each operation lasts until the tail has read the commit
//!    back and judged it.
//!
//! With `--header-control`, phase 1b repeats phase 1 with the two headers the event store sends
//! (`event_type`, `schema_version`): it tells the broker's cost of storing headers
//! apart from the event store's own client-side cost.
//!
//! Before each timed run a few untimed operations warm the clients up (connections, metadata,
//! producer id). Missing the target is reported, not an error.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use event_store::log::{admin, headers};
use event_store::partition::partition_for;
use event_store::{Appender, Arbiter, Commit, LogConfig, LogTail, StartAt, Writer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use uuid::Uuid;

use crate::measure::{Measurement, Table, run_concurrently};
use crate::workload::Workload;

/// The target: event-store append throughput as a share of raw produce throughput.
const TARGET_PERCENT: f64 = 80.0;

/// Untimed operations before each timed run.
pub const WARMUP_RECORDS: usize = 200;

/// Untimed appends before the append-then-confirm runs.
const CONFIRM_WARMUP_RECORDS: usize = 20;

/// Options of `taskstream-bench log`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bootstrap servers of the broker under test.
    #[arg(
        long,
        env = "TASKSTREAM_KAFKA__BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,

    /// Records produced in each throughput phase (raw produce, event-store append).
    #[arg(long, default_value_t = 50_000)]
    records: usize,

    /// Size of every record value in bytes: commits are padded to it (a commit is never smaller
    /// than its unpadded encoding, 520 to 580 bytes with the default users).
    #[arg(long, default_value_t = 600)]
    payload_bytes: usize,

    /// Sends in flight at once in the throughput phases.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,

    /// Partitions of every benchmark topic.
    #[arg(long, default_value_t = 12)]
    partitions: i32,

    /// Distinct users (record keys) the commits are spread over.
    #[arg(long, default_value_t = 1_000)]
    users: usize,

    /// Commits appended and confirmed one at a time, and again with `--confirm-concurrency` in
    /// flight.
    #[arg(long, default_value_t = 2_000)]
    confirm_records: usize,

    /// Appends in flight at once in the concurrent append-then-confirm run.
    #[arg(long, default_value_t = 64)]
    confirm_concurrency: usize,

    /// The producer's `linger.ms` (the event store's default is 1).
    #[arg(long, default_value_t = LogConfig::default().linger_ms)]
    linger_ms: u32,

    /// Also run raw produce with the event store's headers, on its own topic: a control
    /// that tells the broker's cost of storing headers apart from the event store's own cost.
    #[arg(long)]
    header_control: bool,
}

/// A record of the raw produce phase: an encoded commit with its key and partition, and the
/// header values the event store sends with it (used only by the header control).
#[derive(Debug)]
struct RawRecord {
    key: String,
    partition: i32,
    value: Vec<u8>,
    headers: [(&'static str, String); 2],
}

impl RawRecord {
    fn of(commit: &Commit, partitions: i32) -> Self {
        let key = commit.user_id().as_str().to_owned();
        let (event_types, schema_versions) = commit.header_values();
        Self {
            partition: partition_for(&key, partitions),
            key,
            value: commit.encode(),
            headers: [
                (headers::EVENT_TYPE, event_types),
                (headers::SCHEMA_VERSION, schema_versions),
            ],
        }
    }

    fn kafka_headers(&self) -> OwnedHeaders {
        self.headers
            .iter()
            .fold(OwnedHeaders::new(), |all, (key, value)| {
                all.insert(Header {
                    key,
                    value: Some(value.as_str()),
                })
            })
    }
}

/// Whether raw produce sends the event store's headers too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawHeaders {
    Without,
    With,
}

/// Runs the benchmark and prints its results.
pub async fn run(args: Args) -> Result<()> {
    ensure!(args.records > 0, "--records must be positive");
    ensure!(args.concurrency > 0, "--concurrency must be positive");
    ensure!(args.partitions > 0, "--partitions must be positive");
    ensure!(args.users > 0, "--users must be positive");
    ensure!(
        args.confirm_records > 0,
        "--confirm-records must be positive"
    );
    ensure!(
        args.confirm_concurrency > 0,
        "--confirm-concurrency must be positive"
    );

    let base = LogConfig {
        brokers: args.brokers.clone(),
        partitions: args.partitions,
        client_id: "taskstream-bench".into(),
        linger_ms: args.linger_ms,
        ..LogConfig::default()
    };

    eprintln!(
        "building {} commits of {} users…",
        args.records + WARMUP_RECORDS,
        args.users
    );
    let mut workload = Workload::new("user", args.users, args.payload_bytes)?;
    let warmup = workload.commits(WARMUP_RECORDS)?;
    let commits = workload.commits(args.records)?;
    let used: BTreeSet<i32> = commits
        .iter()
        .map(|c| partition_for(c.user_id().as_str(), args.partitions))
        .collect();
    let raw_warmup = raw_records(&warmup, args.partitions);
    let raw = raw_records(&commits, args.partitions);
    let sizes = raw.iter().map(|r| r.value.len());
    let value_bytes = match (sizes.clone().min(), sizes.max()) {
        (Some(min), Some(max)) if min == max => format!("{min} bytes"),
        (Some(min), Some(max)) => format!("{min}-{max} bytes"),
        _ => "none".to_owned(),
    };

    print_parameters(&args, &value_bytes, used.len());

    let report = run_phases(&args, &base, (&raw_warmup, &raw), (&warmup, &commits)).await?;
    print!("{report}");
    Ok(())
}

/// Runs the phases, each on a fresh topic; returns the report.
async fn run_phases(
    args: &Args,
    base: &LogConfig,
    (raw_warmup, raw_records): (&[RawRecord], &[RawRecord]),
    (warmup, commits): (&[Commit], &[Commit]),
) -> Result<String> {
    let mut table = Table::default();

    eprintln!("phase 1/3: raw produce of {} records…", raw_records.len());
    let config = fresh_topic(base).await?;
    let produced = raw_produce(
        &config,
        (raw_warmup, raw_records),
        args.concurrency,
        RawHeaders::Without,
    )
    .await?;
    table.push("1 raw produce (rdkafka FutureProducer)", produced.clone());

    let with_headers = if args.header_control {
        eprintln!(
            "phase 1b (control): raw produce of {} records with the event store's headers…",
            raw_records.len()
        );
        let config = fresh_topic(base).await?;
        let measured = raw_produce(
            &config,
            (raw_warmup, raw_records),
            args.concurrency,
            RawHeaders::With,
        )
        .await?;
        table.push("1b raw produce + event-store headers", measured.clone());
        Some(measured)
    } else {
        None
    };

    eprintln!(
        "phase 2/3: event-store append of {} commits…",
        commits.len()
    );
    let config = fresh_topic(base).await?;
    let appended = event_store_append(&config, warmup, commits, args.concurrency).await?;
    table.push("2 event-store Appender::append", appended.clone());

    eprintln!(
        "phase 3/3: append-then-confirm of {} commits, sequential and at concurrency {}…",
        args.confirm_records, args.confirm_concurrency
    );
    let config = fresh_topic(base).await?;
    let confirmed = append_then_confirm(&config, args).await?;
    table.push("3a Writer::append, sequential", confirmed.sequential);
    table.push(
        format!(
            "3b Writer::append, concurrency {}",
            args.confirm_concurrency
        ),
        confirmed.concurrent,
    );

    let percent = 100.0 * appended.throughput() / produced.throughput();
    let verdict = if percent >= TARGET_PERCENT {
        "PASS"
    } else {
        "FAIL"
    };
    let mut report = format!(
        "\n{}\n\
         event-store / raw produce throughput: {percent:.1} % \
         (target: event-store append >= {TARGET_PERCENT:.0} % of raw produce throughput) {verdict}\n",
        table.render(),
    );
    match with_headers {
        Some(with_headers) => {
            let control = 100.0 * appended.throughput() / with_headers.throughput();
            report.push_str(&format!(
                "event-store / raw produce with the same headers: {control:.1} % (control)\n"
            ));
        }
        None if percent < TARGET_PERCENT => report.push_str(
            "(run with --header-control to see how much of the gap is the broker storing headers)\n",
        ),
        None => {}
    }
    report.push_str(&format!(
        "commits judged lost races in phase 3: {} (expected 0)\n",
        confirmed.lost_races
    ));
    Ok(report)
}

fn print_parameters(args: &Args, value_bytes: &str, partitions_used: usize) {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    println!("taskstream-bench log");
    let rows = [
        ("brokers", args.brokers.clone()),
        ("cores", cores.to_string()),
        ("librdkafka", librdkafka),
        (
            "records per phase",
            format!("{} (+{WARMUP_RECORDS} untimed warm-up)", args.records),
        ),
        (
            "record value",
            format!(
                "{value_bytes} (encoded commit; --payload-bytes {})",
                args.payload_bytes
            ),
        ),
        ("concurrency", args.concurrency.to_string()),
        (
            "partitions",
            format!("{} ({partitions_used} used)", args.partitions),
        ),
        ("users", args.users.to_string()),
        (
            "producer",
            format!(
                "enable.idempotence=true acks=all linger.ms={}",
                args.linger_ms
            ),
        ),
        (
            "confirm records",
            format!(
                "{} sequential, {} at concurrency {}",
                args.confirm_records, args.confirm_records, args.confirm_concurrency
            ),
        ),
    ];
    for (name, value) in rows {
        println!("  {name:<18} {value}");
    }
}

/// The raw produce phase on its own, for benchmarks that compare with it: builds `records`
/// commits (plus [`WARMUP_RECORDS`] untimed warm-up ones) of `users` users padded to
/// `payload_bytes`, and sends them as plain records without headers to a fresh topic, up to
/// `concurrency` in flight.
pub async fn raw_produce_on_fresh_topic(
    base: &LogConfig,
    users: usize,
    payload_bytes: usize,
    records: usize,
    concurrency: usize,
) -> Result<Measurement> {
    let mut workload = Workload::new("user", users, payload_bytes)?;
    let warmup = raw_records(&workload.commits(WARMUP_RECORDS)?, base.partitions);
    let records = raw_records(&workload.commits(records)?, base.partitions);
    let config = fresh_topic(base).await?;
    raw_produce(
        &config,
        (&warmup, &records),
        concurrency,
        RawHeaders::Without,
    )
    .await
}

/// The records raw produce sends for `commits`.
fn raw_records(commits: &[Commit], partitions: i32) -> Vec<RawRecord> {
    commits
        .iter()
        .map(|c| RawRecord::of(c, partitions))
        .collect()
}

/// Creates a topic `bench.<uuid>` with the configured partitions; returns its config.
///
/// Benchmark topics are left in place: tansu 0.6.0 can lose its storage service when a topic is
/// deleted while a consumer still fetches from it, which takes the whole broker down.
pub async fn fresh_topic(base: &LogConfig) -> Result<LogConfig> {
    let topic = format!("bench.{}", Uuid::new_v4());
    let config = LogConfig {
        topic: topic.clone(),
        ..base.clone()
    };
    admin::ensure_topic(&config, &topic, config.partitions)
        .await
        .with_context(|| format!("create topic {topic} on {}", config.brokers))?;
    eprintln!("  on topic {topic}");
    Ok(config)
}

/// Phase 1: plain records through a producer configured like the event store's appender.
async fn raw_produce(
    config: &LogConfig,
    (warmup, records): (&[RawRecord], &[RawRecord]),
    concurrency: usize,
    headers: RawHeaders,
) -> Result<Measurement> {
    let producer: FutureProducer = Appender::producer_config(config, "raw")
        .create()
        .with_context(|| format!("create a producer for {}", config.brokers))?;
    let timeout = Timeout::After(Duration::from_millis(config.append_timeout_ms));
    let send = |record| produce(&producer, &config.topic, record, headers, timeout);
    run_concurrently(warmup, concurrency, send).await?;
    run_concurrently(records, concurrency, send).await
}

async fn produce(
    producer: &FutureProducer,
    topic: &str,
    record: &RawRecord,
    headers: RawHeaders,
    timeout: Timeout,
) -> Result<()> {
    let mut kafka_record = FutureRecord::to(topic)
        .key(record.key.as_str())
        .payload(record.value.as_slice())
        .partition(record.partition);
    if headers == RawHeaders::With {
        kafka_record = kafka_record.headers(record.kafka_headers());
    }
    producer
        .send(kafka_record, timeout)
        .await
        .map(|_| ())
        .map_err(|(error, _)| error)
        .with_context(|| format!("produce a record to {topic}"))
}

/// Phase 2: the event store's appender.
async fn event_store_append(
    config: &LogConfig,
    warmup: &[Commit],
    commits: &[Commit],
    concurrency: usize,
) -> Result<Measurement> {
    let appender = Appender::connect(config)
        .await
        .with_context(|| format!("connect an appender to {}", config.topic))?;
    let op = |commit| append(&appender, commit);
    run_concurrently(warmup, concurrency, op).await?;
    run_concurrently(commits, concurrency, op).await
}

/// Appends `commit`, with the commit id as context of an error.
pub async fn append(appender: &Appender, commit: &Commit) -> Result<()> {
    appender
        .append(commit)
        .await
        .map(|_| ())
        .with_context(|| format!("append commit {}", commit.commit_id))
}

/// What phase 3 measured.
#[derive(Debug)]
struct Confirmed {
    sequential: Measurement,
    concurrent: Measurement,
    lost_races: u64,
}

/// Phase 3: a writer tailing every partition, appending and waiting for each verdict.
async fn append_then_confirm(config: &LogConfig, args: &Args) -> Result<Confirmed> {
    let mut workload = Workload::new("writer", args.users, args.payload_bytes)?;
    let warmup = workload.commits(CONFIRM_WARMUP_RECORDS)?;
    let sequential = workload.commits(args.confirm_records)?;
    let concurrent = workload.commits(args.confirm_records)?;

    let appender = Appender::connect(config)
        .await
        .with_context(|| format!("connect an appender to {}", config.topic))?;
    let starts: Vec<(i32, StartAt)> = (0..config.partitions)
        .map(|p| (p, StartAt::Beginning))
        .collect();
    let tail = LogTail::start(config, "bench", &starts, Arbiter::new(), ())
        .await
        .with_context(|| format!("start a tail of {}", config.topic))?;
    tail.caught_up()
        .await
        .with_context(|| format!("catch up with {}", config.topic))?;
    let writer = Writer::new(config, appender, Arc::new(tail));

    let lost_races = AtomicU64::new(0);
    let op = |commit| confirm(&writer, &lost_races, commit);
    run_concurrently(&warmup, 1, op).await?;
    let sequential = run_concurrently(&sequential, 1, op).await?;
    let concurrent = run_concurrently(&concurrent, args.confirm_concurrency, op).await?;
    Ok(Confirmed {
        sequential,
        concurrent,
        lost_races: lost_races.load(Ordering::Relaxed),
    })
}

/// Appends `commit` through `writer` and waits for its verdict, counting lost races in `lost`.
async fn confirm(writer: &Writer, lost: &AtomicU64, commit: &Commit) -> Result<()> {
    let confirmation = writer
        .append(commit)
        .await
        .with_context(|| format!("append and confirm commit {}", commit.commit_id))?;
    if !confirmation.verdict.is_accepted() {
        lost.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
