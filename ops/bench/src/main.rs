//! `taskstream-bench`: benchmarks of Taskstream against a real broker.
//!
//! One subcommand per benchmark, each in its own module:
//!
//! - `log` ([`log`]): raw rdkafka produce vs. the event store's `Appender::append`, and the
//!   append-then-confirm latency of a `Writer`.
//! - `commands` ([`commands`]): command-service over HTTP in this process — closed-loop peak
//!   throughput against raw produce, open-loop latency at half of the peak, and the restart time
//!   with a long log.
//! - `read` ([`read`]): the read side — rebuild rate against Postgres' own insert rate,
//!   freshness of projection-service in this process, and query-service latency over many tasks.
//!
//! Shared pieces: [`measure`] (driving operations with bounded concurrency, latency histograms,
//! the results table) and [`workload`] (realistic commits of many users).
//!
//! Run in release mode: `cargo run --release -p taskstream-bench -- log` (or `-- commands`,
//! `-- read`).

mod commands;
mod log;
mod measure;
mod read;
mod workload;

use clap::{Parser, Subcommand};

/// Benchmarks of Taskstream against a real broker.
#[derive(Debug, Parser)]
#[command(name = "taskstream-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Append throughput and latency: raw rdkafka produce vs. event-store appends, and
    /// append-then-confirm latency of a writer.
    Log(log::Args),
    /// command-service over HTTP: closed-loop throughput vs. raw produce, open-loop latency at
    /// half of the peak, and restart time.
    Commands(commands::Args),
    /// The read side: rebuild rate vs. Postgres' own insert rate, freshness (append
    /// acknowledged → projected), and query-service latency over many tasks.
    Read(read::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Log(args) => log::run(args).await,
        Command::Commands(args) => commands::run(args).await,
        Command::Read(args) => read::run(args).await,
    }
}
