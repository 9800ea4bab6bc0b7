//! A command-service started inside the test process on a free port, and requests to it with
//! a valid token for the path's user.

use std::time::Duration;

use command_service::{Settings, build};
use event_store::UserId;
use reqwest::{Client, Method, RequestBuilder};
use service_kit::auth::Jwt;

/// How long a start may take to answer `/ready` with 200.
const READY_WITHIN: Duration = Duration::from_secs(20);

pub struct Service {
    pub base: String,
    pub client: Client,
    pub jwt: Jwt,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Service {
    /// Builds and runs the service with `settings`, once it is ready (it stops when dropped).
    pub async fn start(settings: Settings) -> Self {
        service_kit::telemetry::init_for_tests();
        let jwt = Jwt::new(&settings.auth);
        let app = build(settings).await.expect("build");
        let base = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        let client = Client::new();
        let started = tokio::time::Instant::now();
        loop {
            let ready = client.get(format!("{base}/ready")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(
                started.elapsed() < READY_WITHIN,
                "the service was not ready within {READY_WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            base,
            client,
            jwt,
            _stop: stop,
        }
    }

    /// A token for `user`, valid for ten minutes.
    pub fn token(&self, user: &str) -> String {
        self.jwt.mint(
            &UserId::parse(user).expect("valid"),
            Duration::from_secs(600),
        )
    }

    /// A request to `/api/{user}{path}` with `user`'s token.
    pub fn request(&self, method: Method, user: &str, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}/api/{user}{path}", self.base))
            .bearer_auth(self.token(user))
    }
}

impl Service {
    /// Sends `body` (if any) with `headers` to `/api/{user}{path}`: the status and the JSON
    /// answer (`null` when it has none).
    pub async fn send_with(
        &self,
        method: Method,
        user: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut request = self.request(method, user, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }
    /// The text of `/metrics` (the registry is the test process's, shared by its tests).
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }
}
