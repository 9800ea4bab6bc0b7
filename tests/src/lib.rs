//! End-to-end test support: start any service in-process on a free port against the real
//! Postgres and broker, each test with its own database and topic.
//!
//! # Layout
//!
//! - [`Stack`]: a fresh topic (and database) for one test, and settings for every service.
//! - [`Running`]: a started service with typed request helpers.

use event_store::LogConfig;
use secrecy::SecretString;
use service_kit::database::DatabaseSettings;
use service_kit::http::HttpApp;
use service_kit::settings::HttpSettings;

/// One test's infrastructure: its own topic on the shared broker and its own database.
#[derive(Debug, Clone)]
pub struct Stack {
    pub kafka: LogConfig,
    pub database_url: String,
}

impl Stack {
    pub async fn new() -> Self {
        service_kit::telemetry::init_for_tests();
        let kafka =
            event_store::testing::fresh_topic(&event_store::testing::shared_brokers(), 3).await;
        let (_, database_url) = migrations::testing::fresh_database().await;
        Self {
            kafka,
            database_url,
        }
    }

    /// A pool on this test's database.
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.database_url)
            .await
            .expect("connect to the test database")
    }

    pub fn database(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: SecretString::from(self.database_url.clone()),
            ..DatabaseSettings::default()
        }
    }

    pub fn command_service(&self) -> command_service::Settings {
        command_service::Settings {
            http: HttpSettings::with_port(0),
            kafka: self.kafka.clone(),
            database: self.database(),
            ..Default::default()
        }
    }

    pub fn query_service(&self) -> query_service::Settings {
        query_service::Settings {
            http: HttpSettings::with_port(0),
            kafka: self.kafka.clone(),
            database: self.database(),
            ..Default::default()
        }
    }

    pub fn projection_service(&self) -> projection_service::Settings {
        projection_service::Settings {
            http: HttpSettings::with_port(0),
            kafka: self.kafka.clone(),
            database: self.database(),
            ..Default::default()
        }
    }

    pub fn all_in_one(&self) -> all_in_one::Settings {
        all_in_one::Settings {
            http: HttpSettings::with_port(0),
            kafka: self.kafka.clone(),
            database: self.database(),
            ..Default::default()
        }
    }

    pub fn scheduler(&self) -> scheduler::Settings {
        scheduler::Settings {
            http: HttpSettings::with_port(0),
            kafka: self.kafka.clone(),
            database: self.database(),
            ..Default::default()
        }
    }
}

/// A service running in this test process until dropped.
#[derive(Debug)]
pub struct Running {
    pub base_url: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    /// Runs a built service in the background.
    pub fn start(app: HttpApp) -> Self {
        let base_url = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        Self {
            base_url,
            client: reqwest::Client::new(),
            stop: Some(stop),
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .expect("request")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
