//! The `commands` benchmark: command-service's throughput, latency and restart time over HTTP,
//! against the broker's raw produce rate.
//!
//! Four phases in one run, each on a fresh topic `bench.<uuid>` (topics are left in place, see
//! [`log::fresh_topic`]):
//!
//! 1. **Raw produce**: the `log` benchmark's phase 1 on its own
//!    ([`log::raw_produce_on_fresh_topic`]), the yardstick for the throughput ratio.
//! 2. **Closed loop**: command-service runs in this process ([`service::InProcess`]); a pool of
//!    tasks is created through its API, then `--connections` workers each send one command at a
//!    time for `--duration-secs`: create 40 %, update (`PATCH`) 30 %, complete 20 %, delete 10 %
//!    ([`load`]). Its throughput is the service's peak, compared with raw produce against the
//!    targets "≥ 50 % of raw produce" and, as a stretch, "≥ 80 %".
//! 3. **Open loop**: the same mix on a fixed arrival schedule at half of that peak, for
//!    `--duration-secs`, against "p99 ≤ 20 ms at half of peak".
//! 4. **Restart**: `--restart-events` commits are appended to a fresh topic with the event
//!    store's `Appender`, then a new service is timed from `build` until `/ready` answers 200,
//!    its state rebuilt from the log; the time is extrapolated to 1,000,000 events unless that
//!    many were written, against "serving again ≤ 10 s with 1M events".
//!
//! Missing a target is reported, not an error; a command answered with anything but 2xx is
//! counted and printed by status, not an error either.

mod load;
mod service;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use event_store::{Appender, Commit, LogConfig};
use reqwest::Client;
use service_kit::auth::Jwt;

use crate::log;
use crate::measure::{Measurement, Table, run_concurrently};
use crate::workload::Workload;
use load::{Api, Op, Run};
use service::InProcess;

/// Target: the closed loop's throughput as a share of raw produce throughput, in percent.
const TARGET_PERCENT: f64 = 50.0;

/// Stretch target for the same ratio.
const STRETCH_PERCENT: f64 = 80.0;

/// Target: p99 latency of the open loop at half of the peak, in milliseconds.
const TARGET_P99_MS: f64 = 20.0;

/// The event count the restart target is stated for.
const TARGET_EVENTS: u64 = 1_000_000;

/// Target: seconds from start until serving again with [`TARGET_EVENTS`] events in the log.
const TARGET_RESTART_SECS: f64 = 10.0;

/// Options of `taskstream-bench commands`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bootstrap servers of the broker under test.
    #[arg(
        long,
        env = "TASKSTREAM_KAFKA__BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,

    /// Closed-loop workers, each with one command in flight (and one HTTP/1.1 connection).
    #[arg(long, default_value_t = 64)]
    connections: usize,

    /// Length of the closed loop, and again of the open loop, in seconds.
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,

    /// Partitions of every benchmark topic.
    #[arg(long, default_value_t = 12)]
    partitions: i32,

    /// The producer's `linger.ms` (`TASKSTREAM_KAFKA__LINGER_MS`; the service default), for raw
    /// produce and the service alike.
    #[arg(long, default_value_t = LogConfig::default().linger_ms)]
    linger_ms: u32,

    /// Users the commands (and the restart events) are spread over; at least `--connections`.
    #[arg(long, default_value_t = 1_000)]
    users: usize,

    /// Tasks created through the API before the closed loop, split evenly over the workers, so
    /// that updates, completes and deletes have targets from the start.
    #[arg(long, default_value_t = 2_000)]
    pool_tasks: usize,

    /// Seed of the operation mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Records produced in the raw produce phase.
    #[arg(long, default_value_t = 50_000)]
    raw_records: usize,

    /// Sends in flight at once in the raw produce phase and when writing the restart events.
    #[arg(long, default_value_t = 256)]
    raw_concurrency: usize,

    /// Size of every raw produce record value and restart event commit, in bytes (commits are
    /// padded to it, never cut).
    #[arg(long, default_value_t = 600)]
    payload_bytes: usize,

    /// Events (one per commit) written before the restart is timed; the target is stated for
    /// 1,000,000, smaller counts are extrapolated.
    #[arg(long, default_value_t = 100_000)]
    restart_events: u64,

    /// Events written after the snapshots and before the start from them is timed.
    #[arg(long, default_value_t = 10_000)]
    restart_tail_events: u64,

    /// The Postgres database the restarted services keep their snapshots in.
    #[arg(
        long,
        env = "TASKSTREAM_DATABASE__URL",
        default_value = "postgres://taskstream:taskstream@127.0.0.1:5432/taskstream"
    )]
    database_url: String,

    /// How long a service may take to answer `/ready` with 200.
    #[arg(long, default_value_t = 600)]
    ready_timeout_secs: u64,
}

/// Runs the benchmark and prints its results.
pub async fn run(args: Args) -> Result<()> {
    ensure!(args.connections > 0, "--connections must be positive");
    ensure!(args.duration_secs > 0, "--duration-secs must be positive");
    ensure!(args.partitions > 0, "--partitions must be positive");
    ensure!(
        args.users >= args.connections,
        "--users must be at least --connections (workers do not share users)"
    );
    ensure!(args.raw_records > 0, "--raw-records must be positive");
    ensure!(
        args.raw_concurrency > 0,
        "--raw-concurrency must be positive"
    );
    ensure!(args.restart_events > 0, "--restart-events must be positive");

    let base = LogConfig {
        brokers: args.brokers.clone(),
        partitions: args.partitions,
        client_id: "taskstream-bench".into(),
        linger_ms: args.linger_ms,
        ..LogConfig::default()
    };
    let duration = Duration::from_secs(args.duration_secs);
    let ready_timeout = Duration::from_secs(args.ready_timeout_secs);
    let client = Client::builder()
        .build()
        .context("build the HTTP client for /ready")?;
    print_parameters(&args);

    eprintln!(
        "phase 1/4: raw produce of {} records on a fresh topic…",
        args.raw_records
    );
    let raw = log::raw_produce_on_fresh_topic(
        &base,
        args.users,
        args.payload_bytes,
        args.raw_records,
        args.raw_concurrency,
    )
    .await?;
    let mut raw_table = Table::default();
    raw_table.push("raw produce (rdkafka FutureProducer)", raw.clone());
    println!("\n1. raw produce\n{}", raw_table.render());

    eprintln!("phase 2/4: command-service on a fresh topic…");
    let config = log::fresh_topic(&base).await?;
    let settings = service::settings(config, None);
    let jwt = Jwt::new(&settings.auth);
    let (running, empty_start) = InProcess::start(settings, &client, ready_timeout).await?;
    let api = Api::new(running.base().to_owned(), args.users, &jwt)?;
    let per_worker = args.pool_tasks.div_ceil(args.connections);
    eprintln!(
        "  ready after {:.2} s; creating {} pool tasks…",
        empty_start.as_secs_f64(),
        per_worker * args.connections
    );
    let pools = load::precreate(&api, args.connections, per_worker).await?;
    eprintln!(
        "  closed loop: {} connections for {} s…",
        args.connections, args.duration_secs
    );
    let closed = load::closed_loop(&api, pools, duration, args.seed).await?;
    let peak = closed.stats.all(closed.elapsed)?;
    println!("{}", closed_report(&args, &closed, &peak, &raw)?);

    let rate = peak.throughput() / 2.0;
    eprintln!(
        "phase 3/4: open loop at {rate:.0} commands/s for {} s…",
        args.duration_secs
    );
    let open = load::open_loop(&api, closed.pool, rate, duration, args.seed).await?;
    println!("{}", open_report(&open, rate)?);
    running
        .stop()
        .await
        .context("stop the service of phases 2 and 3")?;

    eprintln!(
        "phase 4/4: restart with {} events in the log…",
        args.restart_events
    );
    let config = log::fresh_topic(&base).await?;
    let mut workload = Workload::new("restart", args.users, args.payload_bytes)?;
    let written = write_events(&config, &args, &mut workload, args.restart_events).await?;
    eprintln!(
        "  written in {:.1} s; starting command-service (no snapshot yet)…",
        written.elapsed.as_secs_f64()
    );
    let snapshots = service::Snapshots::connect(&args.database_url).await?;
    let (cold, full_start) =
        InProcess::start(snapshots.settings(config.clone()), &client, ready_timeout).await?;
    eprintln!(
        "  ready after {:.1} s; waiting for its snapshots…",
        full_start.as_secs_f64()
    );
    let snapshotted = snapshots
        .wait_until_covered(&config.topic, args.restart_events as i64, ready_timeout)
        .await?;
    cold.stop()
        .await
        .context("stop the service that read the whole log")?;
    let after = write_events(&config, &args, &mut workload, args.restart_tail_events).await?;
    eprintln!(
        "  snapshots taken in {:.1} s, {} more events written; starting command-service again…",
        snapshotted.as_secs_f64(),
        args.restart_tail_events
    );
    let (warm, snapshot_start) =
        InProcess::start(snapshots.settings(config.clone()), &client, ready_timeout).await?;
    warm.stop()
        .await
        .context("stop the service started from snapshots")?;
    println!(
        "{}",
        restart_report(
            &args,
            &written,
            &after,
            Starts {
                empty: empty_start,
                full: full_start,
                snapshot: snapshot_start,
            }
        )
    );
    Ok(())
}

fn print_parameters(args: &Args) {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    println!("taskstream-bench commands");
    let mix = Op::ALL
        .iter()
        .map(|op| format!("{} {} %", op.label(), op.percent()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = [
        ("brokers", args.brokers.clone()),
        ("cores", cores.to_string()),
        ("librdkafka", librdkafka),
        ("partitions", args.partitions.to_string()),
        (
            "raw produce",
            format!(
                "{} records of {} bytes (+{} untimed warm-up), {} in flight",
                args.raw_records,
                args.payload_bytes,
                log::WARMUP_RECORDS,
                args.raw_concurrency
            ),
        ),
        (
            "closed loop",
            format!(
                "{} connections x {} s, {} users, {} pool tasks, seed {}",
                args.connections, args.duration_secs, args.users, args.pool_tasks, args.seed
            ),
        ),
        ("mix", mix),
        (
            "open loop",
            format!("{} s at half of the closed loop's rate", args.duration_secs),
        ),
        (
            "restart",
            format!(
                "{} events of {} bytes, {} users; {} more after the snapshots",
                args.restart_events, args.payload_bytes, args.users, args.restart_tail_events
            ),
        ),
    ];
    for (name, value) in rows {
        println!("  {name:<12} {value}");
    }
}

/// A table with a row for all commands and one per operation.
fn command_table(label: &str, run: &Run) -> Result<Table> {
    let mut table = Table::of("commands");
    table.push(format!("{label}: all"), run.stats.all(run.elapsed)?);
    for op in Op::ALL {
        table.push(format!("  {}", op.label()), run.stats.of(op, run.elapsed));
    }
    Ok(table)
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

fn closed_report(
    args: &Args,
    closed: &Run,
    peak: &Measurement,
    raw: &Measurement,
) -> Result<String> {
    let table = command_table("closed loop", closed)?;
    let percent = 100.0 * peak.throughput() / raw.throughput();
    Ok(format!(
        "2. command-service, closed loop: {} connections, {} s (2xx answers only)\n{}\
         answers other than 2xx (by operation and status):\n{}\
         drawn as update/complete/delete without a target, sent as create: {}\n\
         command-service / raw produce throughput: {:.0} / {:.0} = {percent:.1} %\n\
         \x20 target: >= {TARGET_PERCENT:.0} % of raw produce throughput  {}\n\
         \x20 stretch: >= {STRETCH_PERCENT:.0} % of raw produce throughput {}\n",
        args.connections,
        args.duration_secs,
        table.render(),
        closed.stats.failure_report(),
        closed.stats.fell_back(),
        peak.throughput(),
        raw.throughput(),
        verdict(percent >= TARGET_PERCENT),
        verdict(percent >= STRETCH_PERCENT),
    ))
}

fn open_report(open: &load::OpenRun, rate: f64) -> Result<String> {
    let table = command_table("open loop", &open.run)?;
    let all = open.run.stats.all(open.run.elapsed)?;
    let p99 = all.latencies.quantile_ms(0.99);
    Ok(format!(
        "3. command-service, open loop: {rate:.0} commands/s offered (half of the closed-loop \
         peak), {} arrivals; latency from each command's due time\n{}\
         answers other than 2xx (by operation and status):\n{}\
         drawn as update/complete/delete without a target, sent as create: {}\n\
         generator's largest lag behind schedule: {:.1} ms\n\
         p50 {:.2} ms, p99 {p99:.2} ms\n\
         target: p99 <= {TARGET_P99_MS:.0} ms at half of peak (and every answer 2xx) {}\n",
        open.arrivals,
        table.render(),
        open.run.stats.failure_report(),
        open.run.stats.fell_back(),
        open.max_send_lag.as_secs_f64() * 1_000.0,
        all.latencies.quantile_ms(0.50),
        verdict(p99 <= TARGET_P99_MS && open.run.stats.failed() == 0),
    ))
}

/// Appends `count` commits of `workload` (one event each) to `config`'s topic, built as they are
/// sent so that a million need no memory to speak of.
async fn write_events(
    config: &LogConfig,
    args: &Args,
    workload: &mut Workload,
    count: u64,
) -> Result<Measurement> {
    let appender = Appender::connect(config)
        .await
        .with_context(|| format!("connect an appender to {}", config.topic))?;
    let commits = (0..count).map(|_| workload.next_commit());
    let appender = &appender;
    run_concurrently(
        commits,
        args.raw_concurrency,
        |commit: Result<Commit>| async move { log::append(appender, &commit?).await },
    )
    .await
}

/// How long each start took until `/ready` answered 200.
struct Starts {
    /// On an empty topic (phase 2).
    empty: Duration,
    /// With `--restart-events` events and no snapshot: the whole log read.
    full: Duration,
    /// From the snapshots the full start took, and the `--restart-tail-events` written after.
    snapshot: Duration,
}

fn restart_report(
    args: &Args,
    written: &Measurement,
    after: &Measurement,
    starts: Starts,
) -> String {
    let events = args.restart_events;
    let empty = starts.empty.as_secs_f64();
    let full = starts.full.as_secs_f64();
    let snapshot = starts.snapshot.as_secs_f64();
    let total = events + args.restart_tail_events;
    // What the events added to the start-up of a service on an empty topic.
    let rebuild = (full - empty).max(f64::EPSILON);
    let restore = (snapshot - empty).max(f64::EPSILON);
    let scaled = |extra: f64, of: u64| -> (f64, String) {
        if of == TARGET_EVENTS {
            (empty + extra, "measured".to_owned())
        } else {
            (
                empty + extra * TARGET_EVENTS as f64 / of as f64,
                format!(
                    "{}: {empty:.2} s + {extra:.2} s x {TARGET_EVENTS} / {of}",
                    if of > TARGET_EVENTS {
                        "scaled down linearly"
                    } else {
                        "EXTRAPOLATED, not measured"
                    }
                ),
            )
        }
    };
    let (full_target, full_how) = scaled(rebuild, events);
    let (snapshot_target, snapshot_how) = scaled(restore, total);
    let rows = [
        (
            "events written first".to_owned(),
            format!(
                "{events} in {:.1} s ({:.0} events/s, Appender::append)",
                written.elapsed.as_secs_f64(),
                written.throughput()
            ),
        ),
        (
            "start on an empty topic".to_owned(),
            format!("{empty:.2} s (measured, phase 2)"),
        ),
        (
            format!("start with {events} events, no snapshot"),
            format!(
                "{full:.2} s (measured): {:.0} events/s beyond the empty start",
                events as f64 / rebuild
            ),
        ),
        (
            format!("  with {TARGET_EVENTS} events"),
            format!("{full_target:.1} s ({full_how})"),
        ),
        (
            format!(
                "start from snapshots + {} later events",
                args.restart_tail_events
            ),
            format!(
                "{snapshot:.2} s (measured; {total} events in the log, {} written after the \
                 snapshots at {:.0} events/s)",
                args.restart_tail_events,
                after.throughput()
            ),
        ),
        (
            format!("  with {TARGET_EVENTS} events"),
            format!("{snapshot_target:.1} s ({snapshot_how})"),
        ),
    ];
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut report = format!(
        "4. restart: command-service from build until /ready is 200 (polled every {} ms): first \
         with no snapshot (the whole log read), then from the snapshots that start took\n",
        service::READY_POLL.as_millis()
    );
    for (label, value) in rows {
        report.push_str(&format!("  {label:<width$}  {value}\n"));
    }
    report.push_str(&format!(
        "target: serving again <= {TARGET_RESTART_SECS:.0} s with {TARGET_EVENTS} events (from \
         snapshots) {}\n",
        verdict(snapshot_target <= TARGET_RESTART_SECS)
    ));
    report
}
