//! The command API, black-box, against the real broker.

use std::time::Duration;

use command_service::snapshot::SnapshotSettings;
use event_store::testing::{PrivateBroker, fresh_topic, shared_brokers};
use event_store::{Arbiter, LogConfig, LogReader, StartAt};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use service_kit::auth::AuthSettings;
use service_kit::settings::HttpSettings;

mod support;

/// The service on its topic, which tests read and restart it on.
struct TestApp {
    service: support::Service,
    kafka: LogConfig,
}

impl std::ops::Deref for TestApp {
    type Target = support::Service;

    fn deref(&self) -> &support::Service {
        &self.service
    }
}

impl TestApp {
    async fn start(kafka: LogConfig) -> Self {
        let settings = command_service::Settings {
            http: HttpSettings::with_port(0),
            kafka: kafka.clone(),
            // Every start here rebuilds from the log alone; tests/snapshots.rs covers snapshots.
            snapshots: SnapshotSettings {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        };
        Self {
            service: support::Service::start(settings).await,
            kafka,
        }
    }

    async fn on_fresh_topic() -> Self {
        Self::start(fresh_topic(&shared_brokers(), 3).await).await
    }

    async fn send(
        &self,
        method: Method,
        user: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.send_with(method, user, path, &[], body).await
    }

    async fn create(&self, user: &str, body: Value) -> Value {
        let (status, task) = self.send(Method::POST, user, "/tasks", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        task
    }

    /// `taskstream_commands_total{command, outcome}` in `/metrics` (0 before the first). The
    /// registry is the test process's, shared by every test in it.
    async fn commands_counted(&self, command: &str, outcome: &str) -> u64 {
        let text = self.metrics().await;
        let labels = [
            format!("command=\"{command}\""),
            format!("outcome=\"{outcome}\""),
        ];
        text.lines()
            .filter(|line| line.starts_with("taskstream_commands_total{"))
            .find(|line| labels.iter().all(|label| line.contains(label.as_str())))
            .and_then(|line| line.rsplit(' ').next())
            .map_or(0, |count| count.parse().expect("a count"))
    }

    /// Commits (accepted, lost) in the log per aggregate id.
    async fn commits(&self) -> std::collections::HashMap<String, (usize, usize)> {
        let mut arbiter = Arbiter::new();
        let mut counts = std::collections::HashMap::new();
        let records = self.read_log().await;
        for record in records {
            let commit = record.decode().expect("valid");
            let verdict = arbiter.judge(&commit);
            let entry: &mut (usize, usize) =
                counts.entry(commit.aggregate_id().to_string()).or_default();
            if verdict.is_accepted() {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
        counts
    }

    /// Every record in the log. A broker that a test restarted may take a while to answer on a
    /// loaded machine: an unavailable broker is retried for up to 30 s.
    async fn read_log(&self) -> Vec<event_store::LogRecord> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let read = async {
                LogReader::assign_all(&self.kafka, &self.kafka.topic, StartAt::Beginning)
                    .await?
                    .read_to_end(Duration::from_secs(10))
                    .await
            };
            match read.await {
                Ok(records) => return records,
                Err(error) if error.is_transient() && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => panic!("reading the log: {error}"),
            }
        }
    }

    /// Commits (accepted, lost) in the log for one aggregate.
    async fn commits_of(&self, task_id: &str) -> (usize, usize) {
        self.commits()
            .await
            .get(task_id)
            .copied()
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_returns_201_with_etag_location_number_and_consistency_token() {
    let app = TestApp::on_fresh_topic().await;
    let response = app
        .request(Method::POST, "alice", "/tasks")
        .json(&json!({ "title": "Buy milk", "tags": ["home"], "priority": "high", "due": "2026-12-24" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let token = response.headers()["x-consistency-token"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let task: Value = response.json().await.expect("json");
    assert_eq!(task["number"], 1);
    assert_eq!(task["version"], 1);
    assert_eq!(task["priority"], "high");
    assert_eq!(task["due"], json!({ "kind": "date", "date": "2026-12-24" }));
    assert_eq!(task["consistency_token"], token.as_str());
    assert!(
        location.ends_with(task["id"].as_str().expect("id")),
        "{location}"
    );
    let second = app.create("alice", json!({ "title": "Second" })).await;
    assert_eq!(second["number"], 2);
    let bob = app.create("bob", json!({ "title": "Bob's first" })).await;
    assert_eq!(bob["number"], 1, "numbers are per user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_is_422_listing_every_field_and_bad_json_is_400() {
    let app = TestApp::on_fresh_topic().await;
    let (status, problem) = app
        .send(
            Method::POST,
            "alice",
            "/tasks",
            Some(json!({ "title": "", "priority": "soon", "tags": vec!["x"; 21], "extra": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["code"], "validation_failed");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect();
    for expected in ["title", "priority", "tags", "extra"] {
        assert!(fields.contains(&expected), "{expected} in {fields:?}");
    }
    let response = app
        .request(Method::POST, "alice", "/tasks")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let (status, _) = app
        .send(Method::POST, "alice", "/tasks", Some(json!([1, 2])))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Control characters (U+0000 above all, which no Postgres text can hold) never reach the log.
    let (status, problem) = app
        .send(
            Method::POST,
            "alice",
            "/tasks",
            Some(
                json!({ "title": "nul\u{0}", "description": "bell\u{7}", "tags": ["\u{1b}[31m"] }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let codes: Vec<(&str, &str)> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [
            ("title", "control_character"),
            ("description", "control_character"),
            ("tags[0]", "control_character")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_on_every_route() {
    let app = TestApp::on_fresh_topic().await;
    let task = app.create("alice", json!({ "title": "mine" })).await;
    let id = task["id"].as_str().expect("id");
    let routes = [
        (Method::POST, "/tasks".to_owned()),
        (Method::PUT, format!("/tasks/{id}")),
        (Method::PATCH, format!("/tasks/{id}")),
        (Method::DELETE, format!("/tasks/{id}")),
        (Method::PATCH, format!("/tasks/{id}/complete")),
        (Method::POST, format!("/tasks/{id}/complete")),
        (Method::POST, format!("/tasks/{id}/reopen")),
        (Method::POST, format!("/tasks/{id}/tags")),
        (Method::DELETE, format!("/tasks/{id}/tags/home")),
        (Method::PUT, format!("/tasks/{id}/recurrence")),
        (Method::DELETE, format!("/tasks/{id}/recurrence")),
        (Method::POST, "/reminders".to_owned()),
        (Method::DELETE, format!("/reminders/{id}")),
    ];
    let expired = {
        let settings = AuthSettings::default();
        let claims = json!({ "sub": "alice", "exp": 1 });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(
                secrecy::ExposeSecret::expose_secret(&settings.jwt_secret).as_bytes(),
            ),
        )
        .expect("encode")
    };
    for (method, path) in routes {
        let url = format!("{}/api/alice{path}", app.base);
        let none = app
            .client
            .request(method.clone(), &url)
            .send()
            .await
            .expect("send");
        assert_eq!(
            none.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} without token"
        );
        let bad = app
            .client
            .request(method.clone(), &url)
            .bearer_auth("x.y.z")
            .send()
            .await
            .expect("send");
        assert_eq!(
            bad.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} bad token"
        );
        let old = app
            .client
            .request(method.clone(), &url)
            .bearer_auth(&expired)
            .send()
            .await
            .expect("send");
        assert_eq!(
            old.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} expired token"
        );
        let other = app
            .client
            .request(method.clone(), &url)
            .bearer_auth(app.token("mallory"))
            .json(&json!({ "title": "x" }))
            .send()
            .await
            .expect("send");
        assert_eq!(
            other.status(),
            StatusCode::FORBIDDEN,
            "{method} {path} other user"
        );
    }
    // Bob cannot reach Alice's task through his own path either: it does not exist for him.
    let (status, _) = app
        .send(
            Method::PATCH,
            "bob",
            &format!("/tasks/{id}"),
            Some(json!({ "title": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .send(Method::POST, "bob", &format!("/tasks/{id}/complete"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_turned_away_before_the_pipeline_are_counted_as_commands() {
    let app = TestApp::on_fresh_topic().await;
    // Other tests in this process add to the 401s of every route, so that count is only checked
    // to grow; no other test sends these 422s and 404s, so their counts are exact.
    let unauthorized = app.commands_counted("add_tag", "unauthorized").await;
    let invalid = app.commands_counted("set_recurrence", "invalid").await;
    let not_found = app.commands_counted("remove_reminder", "not_found").await;

    let response = app
        .client
        .post(format!("{}/api/alice/tasks/1/tags", app.base))
        .json(&json!({ "tag": "home" }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, problem) = app
        .send(
            Method::PUT,
            "alice",
            "/tasks/1/recurrence",
            Some(json!({ "rrule": "FREQ=MONTHLY;BYMONTHDAY=32" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["code"], "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "recurrence.rrule");
    // Reaches the pipeline, which counts it: once.
    let (status, _) = app
        .send(
            Method::DELETE,
            "alice",
            &format!("/reminders/{}", uuid::Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert!(app.commands_counted("add_tag", "unauthorized").await > unauthorized);
    assert_eq!(
        app.commands_counted("set_recurrence", "invalid").await,
        invalid + 1
    );
    assert_eq!(
        app.commands_counted("remove_reminder", "not_found").await,
        not_found + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_patches_with_one_if_match_make_one_change() {
    let app = TestApp::on_fresh_topic().await;
    let task = app.create("alice", json!({ "title": "contended" })).await;
    let id = task["id"].as_str().expect("id").to_owned();
    let patches = (0..50).map(|i| {
        app.request(Method::PATCH, "alice", &format!("/tasks/{id}"))
            .header("if-match", "\"1\"")
            .json(&json!({ "title": format!("title {i}") }))
            .send()
    });
    let responses = join_all(patches).await;
    let mut statuses: Vec<u16> = responses
        .iter()
        .map(|r| r.as_ref().expect("sent").status().as_u16())
        .collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        49,
        "{statuses:?}"
    );
    assert_eq!(
        app.commits_of(&id).await,
        (2, 0),
        "create + one update, no stray commits"
    );

    let (status, problem) = app
        .send(
            Method::PATCH,
            "alice",
            &format!("/tasks/{id}"),
            Some(json!({ "priority": "low" })),
        )
        .await;
    assert_eq!(status, 200, "{problem}");
    let stale = app
        .request(Method::PATCH, "alice", &format!("/tasks/{id}"))
        .header("if-match", "\"1\"")
        .json(&json!({ "title": "late" }))
        .send()
        .await
        .expect("send");
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let problem: Value = stale.json().await.expect("json");
    assert_eq!(problem["code"], "version_mismatch");
    assert_eq!(problem["current_version"], 3);
    let since = problem["events_since"].as_array().expect("events");
    assert_eq!(since.len(), 2);
    assert_eq!(since[0]["event_type"], "task.updated");
    assert_eq!(since[1]["payload"], json!({ "priority": "low" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_sent_twenty_times_appends_once() {
    let app = TestApp::on_fresh_topic().await;
    let sends = (0..20).map(|_| {
        app.request(Method::POST, "alice", "/tasks")
            .header("idempotency-key", "create-once")
            .json(&json!({ "title": "only once" }))
            .send()
    });
    let mut ids = Vec::new();
    for response in join_all(sends).await {
        let response = response.expect("sent");
        assert_eq!(response.status(), StatusCode::CREATED);
        let task: Value = response.json().await.expect("json");
        ids.push(task["id"].as_str().expect("id").to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every retry answers the first result");
    assert_eq!(app.commits_of(&ids[0]).await, (1, 0));
    let other_body = app
        .request(Method::POST, "alice", "/tasks")
        .header("idempotency-key", "create-once")
        .json(&json!({ "title": "something else" }))
        .send()
        .await
        .expect("send");
    assert_eq!(other_body.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = other_body.json().await.expect("json");
    assert_eq!(problem["code"], "idempotency_key_reused");

    // A new process recognises the key from the log.
    let restarted = TestApp::start(app.kafka.clone()).await;
    let replay = restarted
        .request(Method::POST, "alice", "/tasks")
        .header("idempotency-key", "create-once")
        .json(&json!({ "title": "only once" }))
        .send()
        .await
        .expect("send");
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let task: Value = replay.json().await.expect("json");
    assert_eq!(task["id"], ids[0].as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_lifecycle_by_number_with_tags_reminders_and_recurrence() {
    let app = TestApp::on_fresh_topic().await;
    app.create(
        "alice",
        json!({ "title": "Water plants", "due": "2026-12-01T08:00:00Z" }),
    )
    .await;
    let (s, t) = app
        .send(Method::PATCH, "alice", "/tasks/1/complete", None)
        .await;
    assert_eq!(
        (s, t["status"].clone(), t["completed"].clone()),
        (StatusCode::OK, json!("completed"), json!(true))
    );
    let (s, _) = app
        .send(Method::POST, "alice", "/tasks/1/complete", None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, t) = app
        .send(Method::PATCH, "alice", "/tasks/1/complete", None)
        .await;
    assert_eq!((s, t["status"].clone()), (StatusCode::OK, json!("open")));
    let (s, t) = app
        .send(
            Method::POST,
            "alice",
            "/tasks/1/tags",
            Some(json!({ "tag": "Garden" })),
        )
        .await;
    assert_eq!((s, t["tags"].clone()), (StatusCode::OK, json!(["Garden"])));
    let (s, p) = app
        .send(
            Method::POST,
            "alice",
            "/tasks/1/tags",
            Some(json!({ "tag": "garden" })),
        )
        .await;
    assert_eq!(
        (s, p["code"].clone()),
        (StatusCode::CONFLICT, json!("duplicate_tag"))
    );
    let (s, t) = app
        .send(Method::DELETE, "alice", "/tasks/1/tags/GARDEN", None)
        .await;
    assert_eq!((s, t["tags"].clone()), (StatusCode::OK, json!([])));
    let (s, t) = app
        .send(
            Method::POST,
            "alice",
            "/reminders",
            Some(json!({ "task_id": 1, "before_due_seconds": 3600 })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let reminder = t["reminders"][0]["id"]
        .as_str()
        .expect("reminder id")
        .to_owned();
    let (s, p) = app
        .send(
            Method::PATCH,
            "alice",
            "/tasks/1",
            Some(json!({ "due": null })),
        )
        .await;
    assert_eq!(
        (s, p["code"].clone()),
        (StatusCode::CONFLICT, json!("reminder_needs_due"))
    );
    let (s, t) = app
        .send(
            Method::DELETE,
            "alice",
            &format!("/reminders/{reminder}"),
            None,
        )
        .await;
    assert_eq!((s, t["reminders"].clone()), (StatusCode::OK, json!([])));
    let (s, t) = app
        .send(
            Method::PUT,
            "alice",
            "/tasks/1/recurrence",
            Some(json!({ "rrule": "FREQ=WEEKLY;BYDAY=MO" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["recurrence"]["basis"], "due_date");
    let (s, t) = app
        .send(Method::DELETE, "alice", "/tasks/1/recurrence", None)
        .await;
    assert_eq!((s, t["recurrence"].clone()), (StatusCode::OK, Value::Null));
    let (s, t) = app.send(Method::DELETE, "alice", "/tasks/1", None).await;
    assert_eq!((s, t["status"].clone()), (StatusCode::OK, json!("deleted")));
    let (s, p) = app
        .send(
            Method::PATCH,
            "alice",
            "/tasks/1",
            Some(json!({ "title": "x" })),
        )
        .await;
    assert_eq!(
        (s, p["code"].clone()),
        (StatusCode::CONFLICT, json!("task_deleted"))
    );
    let (s, p) = app
        .send(
            Method::PATCH,
            "alice",
            "/tasks/99",
            Some(json!({ "title": "x" })),
        )
        .await;
    assert_eq!(
        (s, p["code"].clone()),
        (StatusCode::NOT_FOUND, json!("task_not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_service_continues_versions_and_numbers() {
    let app = TestApp::on_fresh_topic().await;
    let task = app.create("alice", json!({ "title": "v1" })).await;
    let id = task["id"].as_str().expect("id").to_owned();
    let (s, _) = app
        .send(
            Method::PATCH,
            "alice",
            &format!("/tasks/{id}"),
            Some(json!({ "title": "v2" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let kafka = app.kafka.clone();
    drop(app);
    let restarted = TestApp::start(kafka).await;
    let response = restarted
        .request(Method::PATCH, "alice", &format!("/tasks/{id}"))
        .header("if-match", "\"2\"")
        .json(&json!({ "title": "v3" }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"3\"");
    let next = restarted.create("alice", json!({ "title": "next" })).await;
    assert_eq!(next["number"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_is_503_with_retry_after_and_recovers() {
    let mut broker = PrivateBroker::start().await;
    let mut kafka = fresh_topic(&broker.brokers(), 1).await;
    kafka.append_timeout_ms = 1_500;
    let app = TestApp::start(kafka).await;
    let task = app.create("alice", json!({ "title": "before" })).await;
    let id = task["id"].as_str().expect("id").to_owned();

    broker.kill();
    let response = app
        .request(Method::PATCH, "alice", &format!("/tasks/{id}"))
        .json(&json!({ "title": "while down" }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["code"], "unavailable");

    broker.start_again().await;
    broker.wait_serving(&app.kafka).await;
    let mut recovered = None;
    for _ in 0..40 {
        let (status, body) = app
            .send(
                Method::PATCH,
                "alice",
                &format!("/tasks/{id}"),
                Some(json!({ "title": "after" })),
            )
            .await;
        if status == StatusCode::OK {
            recovered = Some(body);
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let task = recovered.expect("the service recovers once the broker is back");
    assert_eq!(task["title"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_and_the_docs_ui_is_served() {
    let app = TestApp::on_fresh_topic().await;
    let doc: Value = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/{user_id}/tasks", &["post"][..]),
        ("/api/{user_id}/tasks/{id}", &["put", "patch", "delete"][..]),
        ("/api/{user_id}/tasks/{id}/complete", &["patch", "post"][..]),
        ("/api/{user_id}/tasks/{id}/reopen", &["post"][..]),
        ("/api/{user_id}/tasks/{id}/tags", &["post"][..]),
        ("/api/{user_id}/tasks/{id}/tags/{tag}", &["delete"][..]),
        (
            "/api/{user_id}/tasks/{id}/recurrence",
            &["put", "delete"][..],
        ),
        ("/api/{user_id}/reminders", &["post"][..]),
        ("/api/{user_id}/reminders/{reminder_id}", &["delete"][..]),
    ] {
        for method in methods {
            assert!(
                paths[path][method].is_object(),
                "{method} {path} is documented"
            );
        }
    }
    assert!(doc["components"]["schemas"]["CommandAnswer"].is_object());
    let patch = &paths["/api/{user_id}/tasks/{id}"]["patch"];
    let params: Vec<&str> = patch["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    for name in ["user_id", "id", "If-Match", "Idempotency-Key"] {
        assert!(params.contains(&name), "{name} in {params:?}");
    }
    assert!(
        patch["responses"]["412"]["content"]["application/problem+json"].is_object(),
        "{}",
        patch["responses"]
    );
    let docs = app
        .client
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .expect("send");
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.text().await.expect("text").contains("openapi"),
        "the UI loads the document"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_stopped_mid_load_gives_only_201_or_503_and_every_201_is_in_the_log() {
    let mut broker = PrivateBroker::start().await;
    let mut kafka = fresh_topic(&broker.brokers(), 2).await;
    kafka.append_timeout_ms = 1_500;
    kafka.confirm_timeout_ms = 3_000;
    let app = std::sync::Arc::new(TestApp::start(kafka).await);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let app = std::sync::Arc::clone(&app);
            let stop = std::sync::Arc::clone(&stop);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let user = format!("user-{w}");
                    let (status, body) = app
                        .send(
                            Method::POST,
                            &user,
                            "/tasks",
                            Some(json!({ "title": format!("t{i}") })),
                        )
                        .await;
                    seen.push((status, body["id"].as_str().map(str::to_owned)));
                    i += 1;
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    broker.kill();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    broker.start_again().await;
    tokio::time::sleep(Duration::from_millis(10_000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut created = Vec::new();
    let mut unavailable = 0;
    for worker in workers {
        for (status, id) in worker.await.expect("worker") {
            match status {
                StatusCode::CREATED => created.push(id.expect("a created task has an id")),
                StatusCode::SERVICE_UNAVAILABLE => unavailable += 1,
                other => panic!("only 201 or 503 while the broker comes and goes, got {other}"),
            }
        }
    }
    assert!(unavailable > 0, "the outage was noticed");
    assert!(!created.is_empty());
    // What was acknowledged must be in the log however often the broker restarts; a broker that
    // came back unable to serve (a tansu fault) is restarted once more before the log is read.
    broker.wait_serving(&app.kafka).await;
    let in_log = app.commits().await;
    for id in &created {
        assert_eq!(
            in_log.get(id).map(|c| c.0),
            Some(1),
            "acknowledged task {id} is in the log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_traceparent_travels_into_the_commit_headers() {
    service_kit::telemetry::init_propagator();
    let app = TestApp::on_fresh_topic().await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let response = app
        .request(Method::POST, "alice", "/tasks")
        .header("traceparent", traceparent)
        .json(&json!({ "title": "traced" }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);
    let mut reader = LogReader::assign_all(&app.kafka, &app.kafka.topic, StartAt::Beginning)
        .await
        .expect("reader");
    let records = reader
        .read_to_end(Duration::from_secs(10))
        .await
        .expect("read");
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].header(event_store::log::headers::TRACEPARENT),
        Some(traceparent)
    );
    assert_eq!(
        records[0].header(event_store::log::headers::EVENT_TYPE),
        Some("task.created")
    );
}
