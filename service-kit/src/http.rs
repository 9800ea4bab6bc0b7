//! The ops endpoints every service serves, request metrics, and serving with graceful shutdown.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use prometheus::{Encoder, HistogramVec, IntCounterVec, TextEncoder};
use serde_json::json;
use tokio::net::TcpListener;

use crate::problem::Problem;

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "taskstream_http_requests_total",
        "HTTP requests served, by service, method, route and status",
        &["service", "method", "route", "status"]
    )
    .expect("metric registers once")
});

static REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    prometheus::register_histogram_vec!(
        "taskstream_http_request_duration_seconds",
        "HTTP request latency, by service, method and route",
        &["service", "method", "route"],
        vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
        ]
    )
    .expect("metric registers once")
});

/// One readiness check: resolves to `Err(reason)` when the dependency is not usable.
pub type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The named checks `/ready` runs (for example `broker` and `database`).
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.checks.iter().map(|(n, _)| n))
            .finish()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check named `name`.
    pub fn check<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push((
            name,
            Arc::new(move || Box::pin(check()) as BoxFuture<'static, _>),
        ));
        self
    }

    /// Adds `other`'s checks, leaving out names already present (one process serving several
    /// services' routes checks the broker once).
    pub fn merge(mut self, other: Readiness) -> Self {
        for (name, check) in other.checks {
            if !self.checks.iter().any(|(n, _)| *n == name) {
                self.checks.push((name, check));
            }
        }
        self
    }

    /// Runs every check concurrently, each bounded by two seconds.
    pub async fn run(&self) -> Vec<(&'static str, Result<(), String>)> {
        let runs = self.checks.iter().map(|(name, check)| async move {
            let outcome = match tokio::time::timeout(Duration::from_secs(2), check()).await {
                Ok(outcome) => outcome,
                Err(_) => Err("timed out after 2 s".to_owned()),
            };
            (*name, outcome)
        });
        futures::future::join_all(runs).await
    }
}

/// `/health` (the process is alive), `/ready` (its dependencies answer) and `/metrics`.
pub fn ops_routes(readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(readiness))
}

async fn ready(State(readiness): State<Arc<Readiness>>) -> Response {
    let results = readiness.run().await;
    let ok = results.iter().all(|(_, r)| r.is_ok());
    let checks: serde_json::Map<_, _> = results
        .into_iter()
        .map(|(name, r)| {
            let value = match r {
                Ok(()) => json!("ok"),
                Err(reason) => json!(reason),
            };
            (name.to_owned(), value)
        })
        .collect();
    if ok {
        axum::Json(json!({ "status": "ready", "checks": checks })).into_response()
    } else {
        Problem::unavailable("a dependency is not reachable")
            .extension("checks", checks)
            .into_response()
    }
}

async fn metrics() -> Response {
    let mut buffer = Vec::new();
    match TextEncoder::new().encode(&prometheus::gather(), &mut buffer) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], buffer).into_response(),
        Err(error) => {
            tracing::error!(%error, "encoding metrics failed");
            Problem::internal().into_response()
        }
    }
}

/// Adds what every service's router has: request metrics labelled with `service`, a problem+json
/// 404 for unknown routes, and request tracing.
pub fn finish(router: Router, service: &'static str) -> Router {
    router
        .fallback(|| async { Problem::not_found().detail("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            )
            .detail("this route does not take that method")
        })
        .layer(middleware::from_fn(move |req, next| {
            record_metrics(service, req, next)
        }))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

async fn record_metrics(service: &'static str, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    let status = response.status();
    REQUESTS
        .with_label_values(&[service, &method, &route, status.as_str()])
        .inc();
    REQUEST_SECONDS
        .with_label_values(&[service, &method, &route])
        .observe(started.elapsed().as_secs_f64());
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(service, method, route, "request failed with 500");
    }
    response
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}

/// A bound HTTP server: bind first (port 0 picks a free port, which tests read back), run later.
#[derive(Debug)]
pub struct HttpApp {
    listener: TcpListener,
    router: Router,
}

impl HttpApp {
    /// Binds `addr` and finishes `router` (see [`finish`]) for `service`.
    pub async fn bind(
        addr: std::net::SocketAddr,
        router: Router,
        service: &'static str,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("{service} cannot listen on {addr}: {e}"))?;
        Ok(Self {
            listener,
            router: finish(router, service),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        serve(self.listener, self.router, shutdown).await?;
        Ok(())
    }
}

/// A readiness check that the event log's broker answers and the topic exists. It keeps one
/// metadata client across probes (created at the first).
pub fn broker_check(
    config: event_store::LogConfig,
) -> impl Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static {
    let client = Arc::new(tokio::sync::OnceCell::new());
    move || {
        let (config, client) = (config.clone(), Arc::clone(&client));
        Box::pin(async move {
            let client = client
                .get_or_try_init(|| async { event_store::log::admin::MetadataClient::new(&config) })
                .await
                .map_err(|e| e.to_string())?;
            client
                .partition_count(&config.topic)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// A readiness check that Postgres answers.
pub fn database_check(
    pool: sqlx::PgPool,
) -> impl Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static {
    move || {
        let pool = pool.clone();
        Box::pin(async move {
            crate::database::ping(&pool)
                .await
                .map_err(|e| format!("{e:#}"))
        })
    }
}

/// `GET /openapi.json` (the document) and `GET /docs` (its UI).
pub fn openapi_routes(doc: utoipa::openapi::OpenApi) -> Router {
    use utoipa_scalar::{Scalar, Servable};

    let json = doc.clone();
    Router::new()
        .route(
            "/openapi.json",
            axum::routing::get(move || std::future::ready(axum::Json(json.clone()))),
        )
        .merge(Scalar::with_url("/docs", doc))
}
