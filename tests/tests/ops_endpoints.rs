//! Every service serves `/health`, `/ready` (its broker and database answer) and `/metrics`, and
//! answers unknown routes and unreachable dependencies with problem+json.

use e2e::{Running, Stack};
use service_kit::http::HttpApp;

async fn all_services(stack: &Stack) -> Vec<(&'static str, HttpApp)> {
    vec![
        (
            command_service::SERVICE,
            command_service::build(stack.command_service())
                .await
                .expect("build"),
        ),
        (
            query_service::SERVICE,
            query_service::build(stack.query_service())
                .await
                .expect("build"),
        ),
        (
            projection_service::SERVICE,
            projection_service::build(stack.projection_service())
                .await
                .expect("build"),
        ),
        (
            scheduler::SERVICE,
            scheduler::build(stack.scheduler()).await.expect("build"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_is_healthy_ready_and_exports_metrics() {
    let stack = Stack::new().await;
    for (name, app) in all_services(&stack).await {
        let service = Running::start(app);
        let health = service.get("/health").await;
        assert_eq!(health.status(), 200, "{name} /health");

        let ready = service.get("/ready").await;
        assert_eq!(ready.status(), 200, "{name} /ready");
        let body: serde_json::Value = ready.json().await.expect("json");
        assert_eq!(body["checks"]["broker"], "ok", "{name}: {body}");

        let missing = service.get("/no/such/route").await;
        assert_eq!(missing.status(), 404);
        assert_eq!(
            missing.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
        let problem: serde_json::Value = missing.json().await.expect("json");
        assert_eq!(problem["code"], "not_found");

        let wrong_method = service
            .client
            .delete(format!("{}/health", service.base_url))
            .send()
            .await
            .expect("request");
        assert_eq!(wrong_method.status(), 405, "{name}");
        assert_eq!(
            wrong_method.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );

        let metrics = service.get("/metrics").await;
        assert_eq!(metrics.status(), 200);
        let text = metrics.text().await.expect("text");
        assert!(
            text.contains(&format!("taskstream_http_requests_total{{method=\"GET\",route=\"/health\",service=\"{name}\",status=\"200\"}}")),
            "{name} counts its requests:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_with_retry_after_when_the_broker_or_database_is_unreachable() {
    let mut stack = Stack::new().await;
    stack.kafka.brokers = "127.0.0.1:1".into();
    stack.database_url = "postgres://taskstream:taskstream@127.0.0.1:1/nowhere".into();
    let query = Running::start(
        query_service::build(stack.query_service())
            .await
            .expect("build"),
    );
    let ready = query.get("/ready").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers()["retry-after"], "1");
    let problem: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(problem["code"], "unavailable");
    assert_ne!(problem["checks"]["broker"], "ok");
    assert_ne!(problem["checks"]["database"], "ok");
    // Liveness does not depend on them.
    assert_eq!(query.get("/health").await.status(), 200);
}
