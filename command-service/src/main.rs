//! The `command-service` binary: settings → telemetry → build → run; `token` mints dev tokens.

use std::time::Duration;

use clap::{Parser, Subcommand};
use command_service::{SERVICE, Settings, build};
use event_store::UserId;
use service_kit::auth::Jwt;

#[derive(Parser)]
#[command(version, about = "Taskstream's command side")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the REST API (the default).
    Serve,
    /// Print a JWT for a user, signed with the configured secret (for development).
    Token {
        /// The user id (the token's `sub`).
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: Settings = service_kit::settings::load()?;
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Token { user, ttl } => {
            let user = UserId::parse(user)?;
            println!(
                "{}",
                Jwt::new(&settings.auth).mint(&user, Duration::from_secs(ttl))
            );
            Ok(())
        }
        Cmd::Serve => {
            service_kit::telemetry::init(&settings.telemetry);
            let app = build(settings).await?;
            tracing::info!(service = SERVICE, port = app.port(), "listening");
            app.run(service_kit::http::shutdown_signal()).await
        }
    }
}
