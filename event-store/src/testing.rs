//! Helpers for tests against the real broker (feature `test-support`): fresh topics, private
//! brokers that a test may stop and restart, and the golden sample files.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::envelope::RawEnvelope;
use crate::log::{LogConfig, admin};

/// The broker the local stack runs (`TASKSTREAM_KAFKA__BROKERS`, default `127.0.0.1:9092`).
pub fn shared_brokers() -> String {
    std::env::var("TASKSTREAM_KAFKA__BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A config for a new, uniquely named topic with `partitions` partitions on `brokers`, created.
pub async fn fresh_topic(brokers: &str, partitions: i32) -> LogConfig {
    let config = LogConfig {
        brokers: brokers.to_owned(),
        topic: format!("test.{}", uuid::Uuid::new_v4().simple()),
        partitions,
        client_id: "taskstream-test".into(),
        ..LogConfig::default()
    };
    admin::ensure_topic(&config, &config.topic, partitions)
        .await
        .expect("create test topic");
    config
}

/// The `tansu` binary: `TASKSTREAM_TANSU_BIN`, else `tansu` on `PATH`, else `~/.cargo/bin/tansu`.
pub fn tansu_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("TASKSTREAM_TANSU_BIN") {
        return bin.into();
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("tansu"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        Path::new(&std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
            .join(".cargo/bin/tansu")
    })
}

/// A tansu broker of the test's own, on a free loopback port, keeping its log in a SQLite file
/// in a temporary directory, so the test can kill and restart it without disturbing others.
#[derive(Debug)]
pub struct PrivateBroker {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl PrivateBroker {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        let port = free_port();
        let mut broker = Self {
            dir,
            port,
            child: None,
        };
        broker.spawn().await;
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .expect("broker log file");
        let child = Command::new(tansu_binary())
            .current_dir(self.dir.path())
            .arg("broker")
            .args(["--storage-engine", "sqlite://data/tansu.db"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", tansu_binary().display()));
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private broker did not listen on {}", self.port);
    }

    /// Kills the broker process (SIGKILL): acknowledged records must survive.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and storage (after [`kill`](Self::kill)).
    pub async fn start_again(&mut self) {
        if self.child.is_none() {
            self.spawn().await;
        }
    }

    /// Waits until the broker answers for `kafka`'s topic, restarting it (on the same storage)
    /// when it does not within 5 s: after a SIGKILL, tansu 0.6 sometimes comes back with its
    /// storage task gone, keeping its port open but answering every request with
    /// `Storage(UnableToSend)` until it is restarted. Panics if three restarts do not help.
    pub async fn wait_serving(&mut self, kafka: &crate::LogConfig) {
        for attempt in 0..=3 {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while tokio::time::Instant::now() < deadline {
                if crate::log::admin::ping(kafka).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            if attempt < 3 {
                eprintln!(
                    "private broker on port {} does not answer; restarting it",
                    self.port
                );
                self.kill();
                self.spawn().await;
            }
        }
        panic!(
            "private broker on port {} does not answer after three restarts",
            self.port
        );
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let exited = self
            .child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten());
        self.kill();
        if std::thread::panicking() {
            // The test failed: what the broker said goes with it (the directory is removed).
            let log =
                std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "private broker on port {} ({}); the last lines of its log:\n{}",
                self.port,
                exited.map_or_else(|| "running".to_owned(), |s| format!("it had exited: {s}")),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A golden sample: an envelope as some past or present writer stored it.
#[derive(Debug, Clone)]
pub struct GoldenSample {
    pub path: PathBuf,
    pub event_type: String,
    pub schema_version: u32,
    pub raw: RawEnvelope,
    pub json: serde_json::Value,
}

/// The directory of golden samples: `golden/<event_type>/v<N>.json`.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

/// Every golden sample file, sorted by path.
pub fn golden_samples() -> Vec<GoldenSample> {
    let mut samples = Vec::new();
    for type_dir in std::fs::read_dir(golden_dir()).expect("golden dir") {
        let type_dir = type_dir.expect("dir entry").path();
        let event_type = type_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name")
            .to_owned();
        for file in std::fs::read_dir(&type_dir).expect("type dir") {
            let path = file.expect("dir entry").path();
            let version = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.strip_prefix('v'))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{} is not named v<N>.json", path.display()));
            let text = std::fs::read_to_string(&path).expect("read golden sample");
            let json: serde_json::Value = serde_json::from_str(&text).expect("golden JSON");
            let raw: RawEnvelope = serde_json::from_value(json.clone())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            samples.push(GoldenSample {
                path,
                event_type: event_type.clone(),
                schema_version: version,
                raw,
                json,
            });
        }
    }
    samples.sort_by(|a, b| a.path.cmp(&b.path));
    samples
}

/// Wraps a stored envelope (any schema version) into a commit record, as a writer of its time
/// would have appended it.
pub fn raw_commit_record(raw: &RawEnvelope) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "format": crate::commit::COMMIT_FORMAT,
        "commit_id": uuid::Uuid::new_v4(),
        "events": [raw],
    }))
    .expect("serialize")
}
