//! `taskstream-log`: provision the event topic and inspect the log.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use event_store::log::admin;
use event_store::{LogConfig, LogReader, StartAt};

#[derive(Parser)]
#[command(version, about = "Provision and inspect Taskstream's event log")]
struct Cli {
    /// Bootstrap servers.
    #[arg(
        long,
        env = "TASKSTREAM_KAFKA__BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,
    /// The event topic.
    #[arg(
        long,
        env = "TASKSTREAM_KAFKA__TOPIC",
        default_value = "taskstream.events"
    )]
    topic: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the event topic and its dead-letter topic (infinite retention) unless they exist.
    Ensure {
        #[arg(long, env = "TASKSTREAM_KAFKA__PARTITIONS", default_value_t = 12)]
        partitions: i32,
        /// Replicas of each partition (3 in production).
        #[arg(
            long,
            env = "TASKSTREAM_KAFKA__REPLICATION_FACTOR",
            default_value_t = 1
        )]
        replication_factor: i16,
    },
    /// Print each partition's first and next offsets.
    Describe,
    /// Print every commit in the log as JSON lines, from the beginning.
    Dump {
        /// Only this user's commits.
        #[arg(long)]
        user: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = LogConfig {
        brokers: cli.brokers,
        topic: cli.topic,
        ..LogConfig::default()
    };
    match cli.command {
        Command::Ensure {
            partitions,
            replication_factor,
        } => {
            config.replication_factor = replication_factor;
            for topic in [config.topic.clone(), config.dead_letter_topic()] {
                let state = admin::ensure_topic(&config, &topic, partitions)
                    .await
                    .with_context(|| format!("ensuring topic {topic}"))?;
                println!("{topic}: {state:?} ({partitions} partitions, retention.ms=-1)");
            }
        }
        Command::Describe => {
            for (p, low, high) in admin::watermarks(&config, &config.topic).await? {
                println!("{}[{p}]: first {low}, next {high}", config.topic);
            }
        }
        Command::Dump { user } => {
            let mut reader =
                LogReader::assign_all(&config, &config.topic, StartAt::Beginning).await?;
            loop {
                let batch = reader.next_batch(1_000, Duration::from_secs(2)).await?;
                if batch.is_empty() {
                    break;
                }
                for record in batch {
                    match record.decode() {
                        Ok(commit) => {
                            if user
                                .as_deref()
                                .is_some_and(|u| u != commit.user_id().as_str())
                            {
                                continue;
                            }
                            for event in commit.events() {
                                let raw = event_store::registry::encode(event);
                                println!(
                                    "{}",
                                    serde_json::json!({
                                        "position": record.position().to_string(),
                                        "commit_id": commit.commit_id,
                                        "event": raw,
                                    })
                                );
                            }
                        }
                        Err(error) => eprintln!("{error}"),
                    }
                }
            }
        }
    }
    Ok(())
}
