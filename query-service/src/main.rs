//! The `query-service` binary: settings → telemetry → build → run.

use query_service::{SERVICE, Settings, build};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = service_kit::settings::load()?;
    service_kit::telemetry::init(&settings.telemetry);
    let app = build(settings).await?;
    tracing::info!(service = SERVICE, port = app.port(), "listening");
    app.run(service_kit::http::shutdown_signal()).await
}
