//! Measuring: running operations with a bounded number in flight or on a fixed schedule, latency
//! histograms with microsecond resolution, and the aligned results table every benchmark prints.

use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::stream::FuturesUnordered;
use futures::{StreamExt, stream};
use hdrhistogram::Histogram;

/// The longest latency a histogram tracks exactly (one hour); longer ones saturate.
const MAX_TRACKED_MICROS: u64 = 3_600_000_000;

/// Latencies in microseconds (three significant digits), reported in milliseconds.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Latencies {
    pub fn new() -> Result<Self> {
        Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3)
            .map(Self)
            .context("create a latency histogram")
    }

    /// Records one operation's latency (at least 1 µs; saturating beyond an hour).
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    /// The latency at `quantile` (0.0..=1.0), in milliseconds.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        micros_to_ms(self.0.value_at_quantile(quantile))
    }

    /// The largest latency recorded, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        micros_to_ms(self.0.max())
    }

    /// Adds every latency recorded in `other`.
    pub fn merge(&mut self, other: &Self) -> Result<()> {
        self.0.add(&other.0).context("merge latency histograms")
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }
}

fn micros_to_ms(micros: u64) -> f64 {
    micros as f64 / 1_000.0
}

/// What one timed run of operations produced.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Operations completed.
    pub operations: u64,
    /// Wall time from the first operation's start to the last one's completion.
    pub elapsed: Duration,
    /// Each operation's latency, from its start to its completion.
    pub latencies: Latencies,
}

impl Measurement {
    /// Operations completed per second of wall time.
    pub fn throughput(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.operations as f64 / seconds
        } else {
            0.0
        }
    }
}

/// Runs `op` on every item with up to `concurrency` operations in flight, timing each from its
/// first poll to its completion. Stops at the first error.
pub async fn run_concurrently<I, F, Fut>(
    items: I,
    concurrency: usize,
    mut op: F,
) -> Result<Measurement>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut latencies = Latencies::new()?;
    let mut operations = 0;
    let started = Instant::now();
    let mut in_flight = stream::iter(items)
        .map(|item| {
            let operation = op(item);
            async move {
                let started = Instant::now();
                operation.await.map(|()| started.elapsed())
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(latency) = in_flight.next().await {
        latencies.record(latency?);
        operations += 1;
    }
    Ok(Measurement {
        operations,
        elapsed: started.elapsed(),
        latencies,
    })
}

/// Due times `interval` apart from about now, `count` of them, each sent when it comes. A thread
/// of its own sleeps to each one: tokio's timer only has millisecond resolution and wakes up to
/// two milliseconds late, which an open loop would count as latency at every request.
pub fn schedule(interval: Duration, count: u64) -> tokio::sync::mpsc::UnboundedReceiver<Instant> {
    let (due_times, received) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let start = Instant::now() + Duration::from_millis(1);
        for k in 0..count {
            let due = start + interval.mul_f64(k as f64);
            if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(ahead);
            }
            if due_times.send(due).is_err() {
                // The receiving side is gone: nothing is waiting for the rest.
                return;
            }
        }
    });
    received
}

/// Runs `op` on every item on a fixed schedule (an open loop): item `k` is started `k / rate`
/// seconds after the first, whether or not the earlier ones have finished, and timed from that
/// due time to its completion, so a service falling behind shows as latency instead of slowing
/// the schedule down. Stops at the first error.
pub async fn run_at_rate<I, F, Fut>(items: I, rate: f64, mut op: F) -> Result<Measurement>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    ensure!(
        rate.is_finite() && rate > 0.0,
        "an open loop needs a positive rate, not {rate}"
    );
    let items: Vec<I::Item> = items.into_iter().collect();
    let mut due_times = schedule(Duration::from_secs_f64(1.0 / rate), items.len() as u64);
    let mut items = items.into_iter();
    let mut latencies = Latencies::new()?;
    let mut operations = 0;
    let mut in_flight = FuturesUnordered::new();
    let started = Instant::now();
    let mut scheduling = true;
    while scheduling || !in_flight.is_empty() {
        tokio::select! {
            // Starting on time comes first: a completion can wait the few microseconds.
            biased;
            due = due_times.recv(), if scheduling => match (due, items.next()) {
                (Some(due), Some(item)) => {
                    let operation = op(item);
                    in_flight.push(async move { operation.await.map(|()| due.elapsed()) });
                }
                _ => scheduling = false,
            },
            Some(done) = in_flight.next() => {
                latencies.record(done?);
                operations += 1;
            }
        }
    }
    Ok(Measurement {
        operations,
        elapsed: started.elapsed(),
        latencies,
    })
}

/// An aligned table of measurements: one row per run.
#[derive(Debug)]
pub struct Table {
    /// What an operation is called in the column headers (`records`, `records/s`).
    unit: &'static str,
    rows: Vec<(String, Measurement)>,
}

impl Default for Table {
    /// A table of records.
    fn default() -> Self {
        Self::of("records")
    }
}

impl Table {
    /// A table whose operations are called `unit` (at most 8 characters line up).
    pub fn of(unit: &'static str) -> Self {
        Self {
            unit,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, label: impl Into<String>, measurement: Measurement) {
        self.rows.push((label.into(), measurement));
    }

    /// The table as text, one line per row after the header, each ending in a newline.
    pub fn render(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|(label, _)| label.len())
            .chain([HEADER_LABEL.len()])
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{HEADER_LABEL:<width$}  {:>8}  {:>7}  {:>10}  {:>8}  {:>8}  {:>8}",
            self.unit,
            "secs",
            format!("{}/s", self.unit),
            "p50 ms",
            "p99 ms",
            "max ms"
        );
        let _ = writeln!(
            out,
            "{}",
            "-".repeat(width + 2 + 8 + 2 + 7 + 2 + 10 + 3 * 10)
        );
        for (label, m) in &self.rows {
            let _ = writeln!(
                out,
                "{label:<width$}  {:>8}  {:>7.2}  {:>10.0}  {:>8.2}  {:>8.2}  {:>8.2}",
                m.operations,
                m.elapsed.as_secs_f64(),
                m.throughput(),
                m.latencies.quantile_ms(0.50),
                m.latencies.quantile_ms(0.99),
                m.latencies.max_ms(),
            );
        }
        out
    }
}

const HEADER_LABEL: &str = "phase";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_reported_in_milliseconds() {
        let mut latencies = Latencies::new().expect("histogram");
        for ms in 1..=100 {
            latencies.record(Duration::from_millis(ms));
        }
        assert!((latencies.quantile_ms(0.5) - 50.0).abs() < 0.1);
        assert!((latencies.quantile_ms(0.99) - 99.0).abs() < 0.1);
        assert!((latencies.max_ms() - 100.0).abs() < 0.1);
    }

    #[test]
    fn merged_latencies_hold_both_sets() {
        let mut fast = Latencies::new().expect("histogram");
        let mut slow = Latencies::new().expect("histogram");
        for _ in 0..99 {
            fast.record(Duration::from_millis(1));
        }
        slow.record(Duration::from_millis(500));
        fast.merge(&slow).expect("merge");
        assert_eq!(fast.count(), 100);
        assert!((fast.quantile_ms(0.5) - 1.0).abs() < 0.01);
        assert!((fast.max_ms() - 500.0).abs() < 0.5);
    }

    #[tokio::test]
    async fn runs_every_item_and_stops_at_the_first_error() {
        let m = run_concurrently(0..10, 3, |_| async { Ok(()) })
            .await
            .expect("no error");
        assert_eq!(m.operations, 10);
        let failed = run_concurrently(0..10, 3, |i| async move {
            anyhow::ensure!(i != 4, "item {i} failed");
            Ok(())
        })
        .await;
        assert!(failed.is_err());
    }

    #[tokio::test]
    async fn an_open_loop_starts_each_item_on_schedule_whatever_the_earlier_ones_take() {
        // 10 items due 10 ms apart, each taking 100 ms: on schedule they all overlap and the
        // run takes ~190 ms; one at a time would take a second.
        let m = run_at_rate(0..10, 100.0, |_| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(())
        })
        .await
        .expect("no error");
        assert_eq!(m.operations, 10);
        assert!(m.elapsed < Duration::from_millis(600), "{:?}", m.elapsed);
        assert!(m.latencies.quantile_ms(0.0) >= 100.0, "{m:?}");
        let failed = run_at_rate(0..10, 1_000.0, |i| async move {
            anyhow::ensure!(i != 4, "item {i} failed");
            Ok(())
        })
        .await;
        assert!(failed.is_err());
        assert!(run_at_rate(0..1, 0.0, |_| async { Ok(()) }).await.is_err());
    }

    #[tokio::test]
    async fn an_open_loop_times_from_the_due_time() {
        // Items due every 10 ms that each take 30 ms with at most one running: the queue
        // behind the lock grows, and the latencies grow with it (the last one waited ~9 × 20 ms).
        let lock = tokio::sync::Mutex::new(());
        let m = run_at_rate(0..10, 100.0, |_| async {
            let _held = lock.lock().await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok(())
        })
        .await
        .expect("no error");
        assert!(m.latencies.max_ms() >= 180.0, "{m:?}");
    }

    #[test]
    fn table_rows_line_up() {
        let mut table = Table::default();
        let m = Measurement {
            operations: 5,
            elapsed: Duration::from_secs(1),
            latencies: Latencies::new().expect("histogram"),
        };
        table.push("short", m.clone());
        table.push("a much longer label", m);
        let text = table.render();
        let lengths: Vec<usize> = text
            .lines()
            .filter(|l| !l.starts_with('-'))
            .map(str::len)
            .collect();
        assert_eq!(lengths.len(), 3);
        assert!(lengths.iter().all(|l| *l == lengths[0]), "{text}");
    }

    #[test]
    fn table_headers_name_the_unit() {
        let mut table = Table::of("commands");
        table.push(
            "create",
            Measurement {
                operations: 5,
                elapsed: Duration::from_secs(1),
                latencies: Latencies::new().expect("histogram"),
            },
        );
        let text = table.render();
        assert!(text.contains("commands/s"), "{text}");
        let lengths: Vec<usize> = text
            .lines()
            .filter(|l| !l.starts_with('-'))
            .map(str::len)
            .collect();
        assert!(lengths.iter().all(|l| *l == lengths[0]), "{text}");
    }
}
