//! Test support: a query-service on a free port over a fresh, migrated database with an active
//! read-model generation, and helpers that seed read-model rows directly (query-service never
//! reads the log, so no broker is needed).

#![allow(dead_code)]

use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use event_store::UserId;
use migrations::generations::{self, Generation};
use reqwest::{Client, RequestBuilder, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use service_kit::auth::Jwt;
use service_kit::database::DatabaseSettings;
use service_kit::settings::HttpSettings;
use sqlx::PgPool;
use uuid::Uuid;

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub jwt: Jwt,
    /// The test's own database.
    pub pool: PgPool,
    pub url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Settings for a test: short waits, an unreachable broker (queries never need one).
pub fn settings(url: &str) -> query_service::Settings {
    query_service::Settings {
        http: HttpSettings::with_port(0),
        database: DatabaseSettings {
            url: SecretString::from(url.to_owned()),
            max_connections: 4,
            ..DatabaseSettings::default()
        },
        kafka: event_store::LogConfig {
            brokers: "127.0.0.1:1".into(),
            ..Default::default()
        },
        query: query_service::QuerySettings {
            consistency_wait_ms: 300,
            generation_refresh_ms: 200,
        },
        ..Default::default()
    }
}

impl TestApp {
    /// A fresh database with generation `rm_1` active, and the service over it.
    pub async fn start() -> (Self, Generation) {
        let (pool, url) = migrations::testing::fresh_database().await;
        let generation = generations::ensure_active(&pool)
            .await
            .expect("activate the first generation");
        let app = Self::start_on(pool, url, |_| {}).await;
        (app, generation)
    }

    /// The service over an existing database, with `tweak`ed settings.
    pub async fn start_on(
        pool: PgPool,
        url: String,
        tweak: impl FnOnce(&mut query_service::Settings),
    ) -> Self {
        service_kit::telemetry::init_for_tests();
        let mut settings = settings(&url);
        tweak(&mut settings);
        let jwt = Jwt::new(&settings.auth);
        let app = query_service::build(settings).await.expect("build");
        let base = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            client: Client::new(),
            jwt,
            pool,
            url,
            _stop: stop,
        }
    }

    pub fn token(&self, user: &str) -> String {
        self.jwt.mint(
            &UserId::parse(user).expect("valid user"),
            Duration::from_secs(600),
        )
    }

    /// `GET /api/{user}{path}` with `user`'s token.
    pub fn get(&self, user: &str, path: &str) -> RequestBuilder {
        self.get_as(user, user, path)
    }

    /// `GET /api/{user}{path}` with `token_user`'s token.
    pub fn get_as(&self, token_user: &str, user: &str, path: &str) -> RequestBuilder {
        self.client
            .get(format!("{}/api/{user}{path}", self.base))
            .bearer_auth(self.token(token_user))
    }

    pub async fn json(&self, user: &str, path: &str) -> (StatusCode, Value) {
        send(self.get(user, path)).await
    }

    /// Walks every page of a cursor-paginated list; fails on a repeated id.
    pub async fn walk(&self, user: &str, path: &str) -> Vec<Uuid> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1_000 {
            let url = match &cursor {
                Some(c) => format!("{path}{separator}cursor={c}"),
                None => path.to_owned(),
            };
            let (status, page) = self.json(user, &url).await;
            assert_eq!(status, StatusCode::OK, "{url}: {page}");
            let items = page["items"].as_array().expect("items");
            for item in items {
                let id: Uuid = item["id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("id");
                assert!(!ids.contains(&id), "{path}: {id} on two pages");
                ids.push(id);
            }
            match page["next_cursor"].as_str() {
                Some(next) => {
                    assert!(!items.is_empty(), "{path}: an empty page with a cursor");
                    cursor = Some(next.to_owned());
                }
                None => return ids,
            }
        }
        panic!("{path}: too many pages");
    }
}

pub async fn send(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A deterministic pseudo-random sequence (an LCG), so seeded data is the same on every run.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn uuid(&mut self) -> Uuid {
        let high = (self.next() << 31) ^ self.next();
        let low = (self.next() << 31) ^ self.next();
        Uuid::from_u64_pair(high, low)
    }
}

/// A row of `tasks`, as seeded.
#[derive(Clone, Debug)]
pub struct Task {
    pub id: Uuid,
    pub user: String,
    pub number: i64,
    pub title: String,
    pub description: Option<String>,
    pub priority: i16,
    pub due: Option<Value>,
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub status: &'static str,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Task {
    pub fn new(user: &str, number: i64, title: &str) -> Self {
        let created = Utc
            .with_ymd_and_hms(2026, 1, 1, 9, 0, 0)
            .single()
            .expect("valid");
        Self {
            id: Uuid::now_v7(),
            user: user.to_owned(),
            number,
            title: title.to_owned(),
            description: None,
            priority: 1,
            due: None,
            due_at: None,
            tags: Vec::new(),
            status: "open",
            version: 1,
            created_at: created,
            updated_at: created,
            completed_at: None,
        }
    }

    /// Due on a whole day: due by the midnight (UTC) that ends it.
    pub fn due_on(mut self, date: NaiveDate) -> Self {
        self.due = Some(json!({ "kind": "date", "date": date }));
        self.due_at = Some(
            date.checked_add_days(Days::new(1))
                .expect("date")
                .and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc(),
        );
        self
    }

    pub fn due_at(mut self, at: DateTime<Utc>) -> Self {
        self.due = Some(json!({ "kind": "at", "at": at }));
        self.due_at = Some(at);
        self
    }

    pub fn tag_keys(&self) -> Vec<String> {
        self.tags.iter().map(|t| t.to_lowercase()).collect()
    }
}

pub async fn insert_tasks(pool: &PgPool, generation: &Generation, tasks: &[Task]) {
    let sql = format!(
        r#"INSERT INTO {} (task_id, user_id, task_number, title, description, priority, due, due_at,
              tags, tag_keys, status, version, created_at, updated_at, completed_at, deleted_at,
              "partition", "offset")
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                   CASE WHEN $11 = 'deleted' THEN $14 END, 0, $12)"#,
        generation.table("tasks")
    );
    let mut tx = pool.begin().await.expect("begin");
    for t in tasks {
        sqlx::query(&sql)
            .bind(t.id)
            .bind(&t.user)
            .bind(t.number)
            .bind(&t.title)
            .bind(&t.description)
            .bind(t.priority)
            .bind(&t.due)
            .bind(t.due_at)
            .bind(&t.tags)
            .bind(t.tag_keys())
            .bind(t.status)
            .bind(t.version)
            .bind(t.created_at)
            .bind(t.updated_at)
            .bind(t.completed_at)
            .execute(&mut *tx)
            .await
            .expect("insert task");
    }
    tx.commit().await.expect("commit");
}

/// One event of `audit_events`.
#[derive(Clone, Debug)]
pub struct Audit {
    pub event_id: Uuid,
    pub user: String,
    pub task: Uuid,
    pub version: i64,
    pub event_type: &'static str,
    pub offset: i64,
    pub commit: Uuid,
}

pub async fn insert_audit(pool: &PgPool, generation: &Generation, events: &[Audit]) {
    let sql = format!(
        r#"INSERT INTO {} (event_id, user_id, aggregate_type, aggregate_id, aggregate_version,
              event_type, schema_version, occurred_at, actor, correlation_id, causation_id,
              commit_id, payload, "partition", "offset")
           VALUES ($1, $2, 'task', $3, $4, $5, 1, $6, 'user', $7, $7, $7, $8, 0, $9)"#,
        generation.table("audit_events")
    );
    for e in events {
        let occurred = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid")
            + chrono::Duration::seconds(e.offset);
        sqlx::query(&sql)
            .bind(e.event_id)
            .bind(&e.user)
            .bind(e.task)
            .bind(e.version)
            .bind(e.event_type)
            .bind(occurred)
            .bind(e.commit)
            .bind(json!({ "n": e.version }))
            .bind(e.offset)
            .execute(pool)
            .await
            .expect("insert audit event");
    }
}

pub async fn set_projected(pool: &PgPool, generation: &Generation, partition: i32, next: i64) {
    let sql = format!(
        r#"INSERT INTO {} ("partition", next_offset) VALUES ($1, $2)
           ON CONFLICT ("partition") DO UPDATE SET next_offset = $2, updated_at = now()"#,
        generation.table("projection_offsets")
    );
    sqlx::query(&sql)
        .bind(partition)
        .bind(next)
        .execute(pool)
        .await
        .expect("set projection offset");
}

pub fn ids(value: &Value) -> Vec<Uuid> {
    value["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_str().and_then(|s| s.parse().ok()).expect("id"))
        .collect()
}
