//! The whole system in one process: commands on the same port as queries, read-your-writes
//! through the consistency token, history, isolation between users, and queries answering during
//! a rebuild that ends in the same read models.

use std::sync::Arc;
use std::time::Duration;

use e2e::{Running, Stack};
use serde_json::{Value, json};
use service_kit::auth::Jwt;
use tokio_util::sync::CancellationToken;

struct App {
    running: Running,
    jwt: Jwt,
    stack: Stack,
    _cancel: tokio_util::sync::DropGuard,
}

impl App {
    async fn start() -> Self {
        let stack = Stack::new().await;
        let settings = stack.all_in_one();
        let jwt = Jwt::new(&settings.auth);
        let cancel = CancellationToken::new();
        let app = all_in_one::build(settings, cancel.clone())
            .await
            .expect("starts");
        let app = Self {
            running: Running::start(app),
            jwt,
            stack,
            _cancel: cancel.drop_guard(),
        };
        for _ in 0..300 {
            if app.running.get("/ready").await.status() == 200 {
                return app;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "not ready: {}",
            app.running.get("/ready").await.text().await.unwrap()
        );
    }

    fn request(&self, method: reqwest::Method, user: &str, path: &str) -> reqwest::RequestBuilder {
        let token = self.jwt.mint(
            &event_store::UserId::parse(user).unwrap(),
            Duration::from_secs(600),
        );
        self.running
            .client
            .request(
                method,
                format!("{}/api/{user}{path}", self.running.base_url),
            )
            .bearer_auth(token)
    }

    /// Sends a command; returns its body and consistency token.
    async fn command(
        &self,
        method: reqwest::Method,
        user: &str,
        path: &str,
        body: Value,
    ) -> (Value, String) {
        let response = self
            .request(method, user, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
        let token = response.headers()["x-consistency-token"]
            .to_str()
            .unwrap()
            .to_owned();
        (response.json().await.unwrap(), token)
    }

    async fn query(&self, user: &str, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.request(reqwest::Method::GET, user, path);
        if let Some(token) = token {
            request = request.header("x-consistency-token", token);
        }
        request.send().await.unwrap()
    }
}

#[tokio::test]
async fn a_query_with_the_consistency_token_sees_the_write_and_its_history() {
    let app = App::start().await;
    let (created, token) = app
        .command(
            reqwest::Method::POST,
            "ann",
            "/tasks",
            json!({"title": "Buy groceries", "priority": "high", "tags": ["Home"]}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();

    // Read your write: visible at once with the token.
    let response = app
        .query("ann", &format!("/tasks/{id}"), Some(&token))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let task: Value = response.json().await.unwrap();
    assert_eq!(task["title"], "Buy groceries");
    assert_eq!(task["priority"], "high");

    let (_, token) = app
        .command(
            reqwest::Method::POST,
            "ann",
            &format!("/tasks/{id}/complete"),
            json!({}),
        )
        .await;
    let list: Value = app
        .query("ann", "/tasks?status=completed&q=grocer", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let tags: Value = app
        .query("ann", "/tags", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["items"][0]["tag"], "Home", "{tags}");
    assert_eq!(tags["items"][0]["open_count"], 0, "{tags}");

    let history: Value = app
        .query("ann", &format!("/tasks/{id}/history"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["task.created", "task.completed"]);
    assert_eq!(history["items"][0]["actor"], "user");

    // Another user sees none of it, by any route.
    assert_eq!(
        app.query("bob", &format!("/tasks/{id}"), None)
            .await
            .status(),
        404
    );
    assert_eq!(
        app.query("bob", &format!("/tasks/{id}/history"), None)
            .await
            .status(),
        404
    );
    let list: Value = app
        .query("bob", "/tasks?status=all", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(list["items"].as_array().unwrap().is_empty());
    let feed: Value = app
        .query("bob", "/events", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(feed["items"].as_array().unwrap().is_empty());
    let token_for_bob = app.jwt.mint(
        &event_store::UserId::parse("bob").unwrap(),
        Duration::from_secs(60),
    );
    let forbidden = app
        .running
        .client
        .get(format!("{}/api/ann/tasks", app.running.base_url))
        .bearer_auth(token_for_bob)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
}

#[tokio::test]
async fn queries_keep_answering_during_a_rebuild_that_ends_in_the_same_read_models() {
    let app = Arc::new(App::start().await);
    let mut token = String::new();
    for i in 0..40 {
        let (_, t) = app
            .command(
                reqwest::Method::POST,
                "cy",
                "/tasks",
                json!({"title": format!("task {i}"), "tags": [format!("t{}", i % 3)]}),
            )
            .await;
        token = t;
    }
    let before: Value = app
        .query("cy", "/tasks?limit=200", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(before["items"].as_array().unwrap().len(), 40);

    let pool = app.stack.pool().await;
    let old = migrations::generations::active(&pool)
        .await
        .unwrap()
        .unwrap();
    let querying = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let mut answered = 0;
            for _ in 0..200 {
                let response = app.query("cy", "/tasks?limit=200", None).await;
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["items"].as_array().unwrap().len(), 40);
                answered += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            answered
        })
    };
    let sink = Arc::new(
        projection_service::dead_letters::DeadLetterTopic::connect(&app.stack.kafka)
            .await
            .unwrap(),
    );
    let report = projection_service::rebuild::rebuild(
        &pool,
        &app.stack.kafka,
        sink,
        &projection_service::rebuild::RebuildOptions::default(),
    )
    .await
    .unwrap();
    assert!(report.switched);
    assert_eq!(querying.await.unwrap(), 200);

    let new = migrations::generations::active(&pool)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(new.number, old.number);
    let (a, b) = (
        projection_service::store::contents(&pool, &old)
            .await
            .unwrap(),
        projection_service::store::contents(&pool, &new)
            .await
            .unwrap(),
    );
    assert_eq!(a, b, "the rebuilt generation equals the one it replaced");
    // Queries follow the switch (NOTIFY) and still see the same tasks.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after: Value = app
        .query("cy", "/tasks?limit=200", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["items"], before["items"]);
}
