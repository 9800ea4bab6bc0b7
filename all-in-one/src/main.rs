//! The `taskstream` binary: settings → telemetry → build → run.

use all_in_one::{SERVICE, Settings, build};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = service_kit::settings::load()?;
    service_kit::telemetry::init(&settings.telemetry);
    let cancel = CancellationToken::new();
    let app = build(settings, cancel.clone()).await?;
    tracing::info!(service = SERVICE, port = app.port(), "listening");
    let result = app.run(service_kit::http::shutdown_signal()).await;
    cancel.cancel();
    result
}
