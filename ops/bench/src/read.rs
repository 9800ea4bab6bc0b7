//! The `read` benchmark: how fast the read side catches up, how fresh it stays, and how fast it
//! answers.
//!
//! Three phases in one run, each on its own fresh topic `bench.<uuid>` (left in place, see
//! [`log::fresh_topic`]) and its own fresh database `bench_<uuid>` on the Postgres server
//! (dropped afterwards unless `--keep-databases`):
//!
//! 1. **Catch-up** ([`catchup`]): `--records` records of the event store's deterministic
//!    workload are appended, then `projection_service::rebuild::rebuild` projects them from
//!    offset 0 into a new generation and switches to it. The yardstick is Postgres' own insert
//!    rate for the very rows the rebuild produced: `INSERT INTO <new generation>.t SELECT … FROM
//!    <built generation>.t` for every table in one transaction, timed server-side; target "rebuild
//!    events/s ≥ 80 % of that". Reading the same records from the broker alone, and decoding and
//!    planning them alone (CPU), are timed too, to show where the time goes.
//! 2. **Freshness** ([`freshness`]): projection-service runs in this process; records are
//!    appended open-loop at `--rate` for `--freshness-secs`, and each is timed from its append
//!    being acknowledged until the active generation's `projection_offsets.next_offset` of its
//!    partition is past it (the check behind query-service's consistency token), polled every
//!    `--poll-ms`; target "p99 ≤ 50 ms".
//! 3. **Queries** ([`queries`]): the active generation is seeded in SQL with `--tasks` tasks of
//!    `--task-users` users (titles from a word list, priorities, tags, due dates, statuses), then
//!    query-service runs in this process and answers a plain list, a filtered and sorted list
//!    and a search for random users, in a closed loop at `--concurrency` (the peak rate), then in
//!    an open loop at half of that rate; target "p99 ≤ 10 ms" each, at half of the peak. The same
//!    queries through query-service's store alone (no HTTP, no JWT, no JSON) are timed too.
//!
//! The defaults are scaled down to finish in a few minutes on two cores; `--full` runs the sizes
//! the targets are stated for. Missing a target is reported, not an error.

mod catchup;
mod freshness;
mod queries;

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use event_store::LogConfig;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, PgPool};
use uuid::Uuid;

use crate::log;

/// Target: rebuild events/s as a share of Postgres' own insert rate for the same rows.
const TARGET_REBUILD_PERCENT: f64 = 80.0;

/// Target: p99 from append acknowledged to projected, in milliseconds.
const TARGET_FRESHNESS_P99_MS: f64 = 50.0;

/// Target: p99 of every query over HTTP, in milliseconds.
const TARGET_QUERY_P99_MS: f64 = 10.0;

/// Sizes of the default (scaled-down) run and of `--full`.
const RECORDS: (u64, u64) = (50_000, 1_000_000);
const TASKS: (u64, u64) = (100_000, 1_000_000);
const TASK_USERS: (u64, u64) = (1_000, 10_000);

/// Options of `taskstream-bench read`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bootstrap servers of the broker under test.
    #[arg(
        long,
        env = "TASKSTREAM_KAFKA__BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,

    /// The Postgres server: every phase creates a database `bench_<uuid>` on it (the URL's own
    /// database is only used to create and drop those).
    #[arg(
        long,
        env = "TASKSTREAM_DATABASE__URL",
        default_value = "postgres://taskstream:taskstream@127.0.0.1:5432/taskstream"
    )]
    database_url: String,

    /// Run the sizes the targets are stated for (1,000,000 records; 1,000,000 tasks of 10,000
    /// users) unless a size is given explicitly.
    #[arg(long)]
    full: bool,

    /// The phases to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "catchup,freshness,queries"
    )]
    phases: Vec<Phase>,

    /// Partitions of every benchmark topic.
    #[arg(long, default_value_t = 12)]
    partitions: i32,

    /// Users of the appended workload (phases 1 and 2).
    #[arg(long, default_value_t = 1_000)]
    users: usize,

    /// Seed of the workload, the seeded tasks and the query mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Records appended and rebuilt in phase 1 [default: 50,000; 1,000,000 with --full].
    #[arg(long)]
    records: Option<u64>,

    /// Appends in flight at once while filling phase 1's topic.
    #[arg(long, default_value_t = 512)]
    append_concurrency: usize,

    /// Records appended per second in phase 2 (open loop).
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,

    /// Length of phase 2's open loop, in seconds.
    #[arg(long, default_value_t = 10)]
    freshness_secs: u64,

    /// How often phase 2 reads the projected offsets, in milliseconds.
    #[arg(long, default_value_t = 1)]
    poll_ms: u64,

    /// The readers' `fetch.wait.max.ms` (`TASKSTREAM_KAFKA__FETCH_WAIT_MS`; the service default).
    #[arg(long, default_value_t = LogConfig::default().fetch_wait_ms)]
    fetch_wait_ms: u64,

    /// Tasks seeded in phase 3 [default: 100,000; 1,000,000 with --full].
    #[arg(long)]
    tasks: Option<u64>,

    /// Users the seeded tasks belong to [default: 1,000; 10,000 with --full].
    #[arg(long)]
    task_users: Option<u64>,

    /// Queries in flight at once in phase 3.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,

    /// Timed requests of each query and load in phase 3 (a closed loop, then an open loop at
    /// half of its rate).
    #[arg(long, default_value_t = 5_000)]
    requests: usize,

    /// Untimed requests of each query before its timed ones.
    #[arg(long, default_value_t = 200)]
    warmup_requests: usize,

    /// Leave the benchmark databases in place (to look at them afterwards).
    #[arg(long)]
    keep_databases: bool,
}

/// A phase of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    CatchUp,
    Freshness,
    Queries,
}

impl FromStr for Phase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "catchup" | "catch-up" | "rebuild" => Ok(Self::CatchUp),
            "freshness" => Ok(Self::Freshness),
            "queries" => Ok(Self::Queries),
            other => Err(format!(
                "{other:?} is not a phase (catchup, freshness, queries)"
            )),
        }
    }
}

/// The sizes of this run, with `--full` and the explicit flags applied.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    records: u64,
    tasks: u64,
    task_users: u64,
}

impl Sizes {
    fn of(args: &Args) -> Self {
        let pick = |explicit: Option<u64>, (small, full): (u64, u64)| {
            explicit.unwrap_or(if args.full { full } else { small })
        };
        Self {
            records: pick(args.records, RECORDS),
            tasks: pick(args.tasks, TASKS),
            task_users: pick(args.task_users, TASK_USERS),
        }
    }
}

/// Runs the benchmark and prints its results.
pub async fn run(args: Args) -> Result<()> {
    let sizes = Sizes::of(&args);
    ensure!(sizes.records > 0, "--records must be positive");
    ensure!(sizes.tasks > 0, "--tasks must be positive");
    ensure!(sizes.task_users > 0, "--task-users must be positive");
    ensure!(args.partitions > 0, "--partitions must be positive");
    ensure!(args.users > 0, "--users must be positive");
    ensure!(
        args.append_concurrency > 0,
        "--append-concurrency must be positive"
    );
    ensure!(
        args.rate.is_finite() && args.rate > 0.0,
        "--rate must be positive"
    );
    ensure!(args.freshness_secs > 0, "--freshness-secs must be positive");
    ensure!(args.poll_ms > 0, "--poll-ms must be positive");
    ensure!(args.concurrency > 0, "--concurrency must be positive");
    ensure!(args.requests > 0, "--requests must be positive");
    ensure!(!args.phases.is_empty(), "--phases names no phase");

    let base = LogConfig {
        brokers: args.brokers.clone(),
        partitions: args.partitions,
        client_id: "taskstream-bench".into(),
        fetch_wait_ms: args.fetch_wait_ms,
        ..LogConfig::default()
    };
    let server = Server::new(&args.database_url, args.keep_databases)?;
    print_parameters(&args, sizes);
    let mut summary = Summary::default();
    let total = args.phases.len();

    for (n, phase) in args.phases.iter().enumerate() {
        let step = format!("phase {}/{total}", n + 1);
        match phase {
            Phase::CatchUp => {
                eprintln!("{step}: catch-up of {} records…", sizes.records);
                let options = catchup::Options {
                    records: sizes.records,
                    users: args.users,
                    seed: args.seed,
                    append_concurrency: args.append_concurrency,
                };
                let measured = catchup::run(&options, &base, &server).await?;
                println!("\n{}", measured.report());
                measured.summarise(&mut summary);
            }
            Phase::Freshness => {
                eprintln!(
                    "{step}: freshness at {:.0} records/s for {} s…",
                    args.rate, args.freshness_secs
                );
                let options = freshness::Options {
                    rate: args.rate,
                    duration: Duration::from_secs(args.freshness_secs),
                    poll: Duration::from_millis(args.poll_ms),
                    users: args.users,
                    seed: args.seed,
                };
                let measured = freshness::run(&options, &base, &server).await?;
                println!("\n{}", measured.report());
                measured.summarise(&mut summary);
            }
            Phase::Queries => {
                eprintln!(
                    "{step}: queries over {} tasks of {} users…",
                    sizes.tasks, sizes.task_users
                );
                let options = queries::Options {
                    tasks: sizes.tasks,
                    users: sizes.task_users,
                    seed: args.seed,
                    concurrency: args.concurrency,
                    requests: args.requests,
                    warmup_requests: args.warmup_requests,
                    brokers: args.brokers.clone(),
                };
                let measured = queries::run(&options, &server).await?;
                println!("\n{}", measured.report());
                measured.summarise(&mut summary);
            }
        }
    }
    println!("{}", summary.render(args.full));
    Ok(())
}

fn print_parameters(args: &Args, sizes: Sizes) {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    let scale = if args.full {
        "full (--full)"
    } else {
        "scaled down (run with --full for the target sizes)"
    };
    println!("taskstream-bench read");
    let rows = [
        ("brokers", args.brokers.clone()),
        ("postgres", redacted(&args.database_url)),
        ("cores", cores.to_string()),
        ("librdkafka", librdkafka),
        ("sizes", scale.to_owned()),
        ("partitions", args.partitions.to_string()),
        (
            "1 catch-up",
            format!(
                "{} records of the event-store workload ({} users, seed {}), appended {} in \
                 flight",
                sizes.records, args.users, args.seed, args.append_concurrency
            ),
        ),
        (
            "2 freshness",
            format!(
                "{:.0} records/s open loop for {} s, offsets polled every {} ms",
                args.rate, args.freshness_secs, args.poll_ms
            ),
        ),
        (
            "3 queries",
            format!(
                "{} tasks of {} users; {} requests per query (+{} warm-up) at concurrency {}",
                sizes.tasks,
                sizes.task_users,
                args.requests,
                args.warmup_requests,
                args.concurrency
            ),
        ),
    ];
    for (name, value) in rows {
        println!("  {name:<12} {value}");
    }
}

/// The URL without its password.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((credentials, host))) => {
            let user = credentials
                .split_once("://")
                .map_or(credentials, |(_, c)| c)
                .split(':')
                .next()
                .unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        _ => url.to_owned(),
    }
}

/// The Postgres server the phases create their databases on.
#[derive(Debug, Clone)]
pub struct Server {
    url: String,
    options: PgConnectOptions,
    keep: bool,
}

impl Server {
    fn new(url: &str, keep: bool) -> Result<Self> {
        let options: PgConnectOptions = url
            .parse()
            .with_context(|| format!("parse the database URL {}", redacted(url)))?;
        Ok(Self {
            url: url.to_owned(),
            options,
            keep,
        })
    }

    /// Creates a database `bench_<uuid>` and applies the migrations; returns it with a pool of
    /// at most `max_connections`.
    pub async fn fresh_database(&self, max_connections: u32) -> Result<Database> {
        let name = format!("bench_{}", Uuid::new_v4().simple());
        let mut admin = self
            .options
            .connect()
            .await
            .with_context(|| format!("connect to Postgres at {}", redacted(&self.url)))?;
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .with_context(|| format!("create database {name}"))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(self.options.clone().database(&name))
            .await
            .with_context(|| format!("connect to database {name}"))?;
        migrations::run(&pool)
            .await
            .with_context(|| format!("migrate database {name}"))?;
        let (path, query) = match self.url.split_once('?') {
            Some((path, query)) => (path, format!("?{query}")),
            None => (self.url.as_str(), String::new()),
        };
        let (server, _) = path
            .rsplit_once('/')
            .context("the database URL names no database")?;
        eprintln!("  on database {name}");
        Ok(Database {
            url: format!("{server}/{name}{query}"),
            name,
            pool,
        })
    }

    /// Closes `database`'s pool and drops it (ending any other connection to it), unless
    /// `--keep-databases`.
    pub async fn finish(&self, database: Database) -> Result<()> {
        database.pool.close().await;
        if self.keep {
            eprintln!("  kept database {}", database.name);
            return Ok(());
        }
        let mut admin = self
            .options
            .connect()
            .await
            .with_context(|| format!("connect to Postgres at {}", redacted(&self.url)))?;
        admin
            .execute(
                format!(
                    r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#,
                    database.name
                )
                .as_str(),
            )
            .await
            .with_context(|| format!("drop database {}", database.name))?;
        Ok(())
    }
}

/// A database of one phase.
#[derive(Debug)]
pub struct Database {
    pub name: String,
    /// Its URL, for services started in this process.
    pub url: String,
    pub pool: PgPool,
}

/// "PASS", "FAIL", or "-" for figures without a target.
fn verdict(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "-",
    }
}

/// The closing table: every headline figure next to its target.
#[derive(Debug, Default)]
pub struct Summary {
    rows: Vec<SummaryRow>,
}

#[derive(Debug)]
struct SummaryRow {
    figure: String,
    measured: String,
    target: String,
    pass: Option<bool>,
}

impl Summary {
    /// Adds a figure; `pass` is `None` for figures without a target.
    pub fn push(
        &mut self,
        figure: impl Into<String>,
        measured: impl Into<String>,
        target: impl Into<String>,
        pass: Option<bool>,
    ) {
        self.rows.push(SummaryRow {
            figure: figure.into(),
            measured: measured.into(),
            target: target.into(),
            pass,
        });
    }

    fn render(&self, full: bool) -> String {
        let headers = ("figure", "measured", "target");
        let width = |f: fn(&SummaryRow) -> &str, header: &str| {
            self.rows
                .iter()
                .map(|r| f(r).chars().count())
                .chain([header.len()])
                .max()
                .unwrap_or(0)
        };
        let (w1, w2, w3) = (
            width(|r| &r.figure, headers.0),
            width(|r| &r.measured, headers.1),
            width(|r| &r.target, headers.2),
        );
        let mut out = format!(
            "summary ({})\n",
            if full {
                "full sizes"
            } else {
                "scaled-down sizes; --full runs the target sizes"
            }
        );
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{:<w1$}  {:<w2$}  {:<w3$}  verdict",
            headers.0, headers.1, headers.2
        );
        let _ = writeln!(out, "{}", "-".repeat(w1 + w2 + w3 + 6 + 7));
        for row in &self.rows {
            let _ = writeln!(
                out,
                "{:<w1$}  {:<w2$}  {:<w3$}  {}",
                row.figure,
                row.measured,
                row.target,
                verdict(row.pass)
            );
        }
        out
    }
}

/// Aligned `label  value` lines, each indented by two spaces.
fn key_values(rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, value) in rows {
        let _ = writeln!(out, "  {label:<width$}  {value}");
    }
    out
}

/// `count / seconds`, or 0 for no time.
fn per_second(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { count / seconds } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redacted("postgres://taskstream:secret@127.0.0.1:5432/taskstream"),
            "postgres://taskstream@127.0.0.1:5432/taskstream"
        );
        assert_eq!(redacted("postgres://localhost/x"), "postgres://localhost/x");
    }

    #[test]
    fn phases_parse_by_name() {
        assert_eq!("catchup".parse::<Phase>(), Ok(Phase::CatchUp));
        assert_eq!(" queries".parse::<Phase>(), Ok(Phase::Queries));
        assert!("everything".parse::<Phase>().is_err());
    }

    #[test]
    fn summary_rows_line_up() {
        let mut summary = Summary::default();
        summary.push("a", "1 ms", "<= 10 ms", Some(true));
        summary.push("a longer figure", "123.4 ms", "<= 10 ms", Some(false));
        summary.push("rate", "998 records/s", "1000 offered", None);
        let text = summary.render(false);
        let starts: Vec<usize> = text
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with('-'))
            .map(|l| l.rfind("  ").expect("columns"))
            .collect();
        assert!(starts.iter().all(|s| *s == starts[0]), "{text}");
    }
}
