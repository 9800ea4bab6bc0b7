//! The `projection-service` binary: `serve` (the default) runs the projector; the other
//! subcommands are operator tools over the same settings.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use event_store::LogPosition;
use projection_service::dead_letters::{self, DeadLetterTopic};
use projection_service::rebuild::{RebuildOptions, rebuild};
use projection_service::{SERVICE, Settings, audit, build_with};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    version,
    about = "Taskstream's projector: event log → Postgres read models"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the projector and its ops endpoints (the default).
    Serve,
    /// Rebuild every read model from offset 0 into a new generation while the active one keeps
    /// serving, then switch over atomically. Run it again to resume an interrupted rebuild.
    Rebuild {
        /// Records per batch (one transaction each).
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// Switch over once at most this many records are left to apply.
        #[arg(long, default_value_t = 2_000)]
        switch_lag: i64,
        /// Build, but leave the switch-over to a later run.
        #[arg(long)]
        no_switch: bool,
    },
    /// List the read-model generations.
    Generations,
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Records the projector could not decode or apply.
    DeadLetters {
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print a user's or a task's events straight from the log.
    Show {
        /// The user whose events to show (reads only that user's partition).
        #[arg(long)]
        user: Option<String>,
        /// Only this task's events.
        #[arg(long)]
        task: Option<Uuid>,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check that the projected audit trail matches the log; exits 1 if not.
    Verify {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        task: Option<Uuid>,
    },
}

#[derive(Subcommand)]
enum DeadLetterCommand {
    /// List dead letters (pending ones unless --all).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Apply pending dead letters again (after a fix), all or the one at PARTITION@OFFSET.
    Redrive {
        #[arg(long)]
        at: Option<LogPosition>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: Settings = service_kit::settings::load()?;
    service_kit::telemetry::init(&settings.telemetry);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Rebuild {
            batch,
            switch_lag,
            no_switch,
        } => {
            let pool = pool(&settings).await?;
            let sink = Arc::new(DeadLetterTopic::connect(&settings.kafka).await?);
            let options = RebuildOptions {
                batch_max: batch,
                switch_lag,
                no_switch,
                progress: std::io::stderr().is_terminal(),
                stop_after: None,
            };
            let report = rebuild(&pool, &settings.kafka, sink, &options).await?;
            println!(
                "generation {}: {} records, {} events in {:.1} s ({:.0} records/s); {}",
                report.generation,
                report.records,
                report.events,
                report.seconds,
                report.records_per_second(),
                match (report.switched, report.replaced) {
                    (true, Some(old)) => format!("now active, replacing generation {old}"),
                    (true, None) => "now active".to_owned(),
                    (false, _) => "built, not switched".to_owned(),
                }
            );
            Ok(())
        }
        Command::Generations => {
            let pool = pool(&settings).await?;
            for g in migrations::generations::list(&pool).await? {
                println!(
                    "{:>4}  {:<10} {:<9} ddl v{}",
                    g.number, g.schema, g.state, g.ddl_version
                );
            }
            Ok(())
        }
        Command::Audit { command } => match command {
            AuditCommand::Show { user, task, json } => {
                anyhow::ensure!(
                    user.is_some() || task.is_some(),
                    "give --user, --task or both"
                );
                let rows = audit::from_log(&settings.kafka, &audit::Filter { user, task }).await?;
                if json {
                    for row in &rows {
                        println!("{}", serde_json::to_string(row)?);
                    }
                } else {
                    print!("{}", audit::pretty(&rows));
                    println!("{} events", rows.len());
                }
                Ok(())
            }
            AuditCommand::Verify { user, task } => {
                let pool = pool(&settings).await?;
                let result =
                    audit::verify(&pool, &settings.kafka, &audit::Filter { user, task }).await?;
                println!("{}", serde_json::to_string_pretty(&result)?);
                if !result.matches() {
                    std::process::exit(1);
                }
                Ok(())
            }
        },
        Command::DeadLetters { command } => {
            let pool = pool(&settings).await?;
            match command {
                DeadLetterCommand::List { all, json } => {
                    let listed = dead_letters::list(&pool, &settings.kafka.topic, !all).await?;
                    for d in &listed {
                        if json {
                            println!("{}", serde_json::to_string(d)?);
                        } else {
                            println!(
                                "{}@{}  {}  {} bytes  {}{}",
                                d.partition,
                                d.offset,
                                d.dead_at.to_rfc3339(),
                                d.bytes,
                                d.error,
                                d.redriven_at
                                    .map(|t| format!("  (re-driven {})", t.to_rfc3339()))
                                    .unwrap_or_default()
                            );
                        }
                    }
                    if !json {
                        println!("{} dead letters", listed.len());
                    }
                    Ok(())
                }
                DeadLetterCommand::Redrive { at } => {
                    let results = dead_letters::redrive(&pool, &settings.kafka.topic, at).await?;
                    let failed = results.iter().filter(|r| r.error.is_some()).count();
                    for r in &results {
                        match &r.error {
                            None => println!("{}  applied", r.position),
                            Some(e) => println!("{}  still failing: {e}", r.position),
                        }
                    }
                    println!(
                        "{} re-driven, {failed} still failing",
                        results.len() - failed
                    );
                    if failed > 0 {
                        std::process::exit(1);
                    }
                    Ok(())
                }
            }
        }
    }
}

async fn pool(settings: &Settings) -> anyhow::Result<sqlx::PgPool> {
    let pool = settings.database.pool()?;
    migrations::run(&pool)
        .await
        .context("applying migrations")?;
    Ok(pool)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let app = build_with(settings, cancel.clone()).await?;
    tracing::info!(service = SERVICE, port = app.port(), "listening");
    let result = app.run(service_kit::http::shutdown_signal()).await;
    cancel.cancel();
    result
}
