//! The HTTP load of the `commands` benchmark: a seeded mix of create, update, complete and
//! delete commands, each aimed at a task whose state makes a 2xx answer the expected outcome.
//!
//! - [`Pool`]: the tasks a load may target, split into open and completed ones. A target is
//!   taken out of the pool while its command is in flight, so no two commands race for one task
//!   and a delete never overtakes an update of the same task.
//! - [`Api`]: the service's command routes over HTTP/1.1 with a bearer token per user.
//! - [`precreate`], [`closed_loop`], [`open_loop`]: the three ways the load runs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use event_store::UserId;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Client, Method, Response};
use serde::Deserialize;
use serde_json::json;
use service_kit::auth::Jwt;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::measure::{Latencies, Measurement, schedule};

/// How long the benchmark's tokens stay valid.
const TOKEN_TTL: Duration = Duration::from_secs(3_600);

/// How long one HTTP request may take before it counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest answer body kept as an example of a failure.
const EXAMPLE_CHARS: usize = 200;

/// A kind of command, in the order of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Create,
    Update,
    Complete,
    Delete,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Create, Op::Update, Op::Complete, Op::Delete];

    /// The operation's share of the mix, in percent (they add up to 100).
    pub const fn percent(self) -> u64 {
        match self {
            Op::Create => 40,
            Op::Update => 30,
            Op::Complete => 20,
            Op::Delete => 10,
        }
    }

    /// The operation's name and route.
    pub const fn label(self) -> &'static str {
        match self {
            Op::Create => "create (POST /tasks)",
            Op::Update => "update (PATCH /tasks/{id})",
            Op::Complete => "complete (POST /tasks/{id}/complete)",
            Op::Delete => "delete (DELETE /tasks/{id})",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }

    /// The operation a roll in `0..100` draws.
    fn drawn(roll: u64) -> Op {
        let mut bound = 0;
        for op in Op::ALL {
            bound += op.percent();
            if roll < bound {
                return op;
            }
        }
        Op::Delete
    }
}

/// A small seeded generator (xorshift64, seeded through splitmix64): reproducible operation
/// mixes without a `rand` dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // xorshift never leaves 0.
        Self(if z == 0 { 0x9E37_79B9_7F4A_7C15 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n > 0`; the modulo bias is negligible for the small `n` used here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// A task of the pool: its owner (an index into [`Api`]'s users) and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRef {
    pub user: usize,
    pub id: Uuid,
}

/// A task taken out of the pool as a command's target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    task: TaskRef,
    completed: bool,
}

/// Tasks that exist and are not deleted, by status; see the module docs.
#[derive(Debug, Default)]
pub struct Pool {
    open: Vec<TaskRef>,
    completed: Vec<TaskRef>,
}

impl Pool {
    /// Tasks in the pool (not counting those taken by commands in flight).
    pub fn len(&self) -> usize {
        self.open.len() + self.completed.len()
    }

    /// Moves every task of `other` into this pool.
    pub fn absorb(&mut self, other: Pool) {
        self.open.extend(other.open);
        self.completed.extend(other.completed);
    }

    /// Takes a random target for `op` out of the pool: an open task to complete, any task to
    /// update or delete. `None` for a create, or if no task fits.
    fn take(&mut self, op: Op, rng: &mut Rng) -> Option<Target> {
        let candidates = match op {
            Op::Create => return None,
            Op::Complete => self.open.len(),
            Op::Update | Op::Delete => self.len(),
        };
        if candidates == 0 {
            return None;
        }
        let i = rng.below(candidates);
        Some(if i < self.open.len() {
            Target {
                task: self.open.swap_remove(i),
                completed: false,
            }
        } else {
            Target {
                task: self.completed.swap_remove(i - self.open.len()),
                completed: true,
            }
        })
    }

    /// Puts a command's target (or the task it created) back as the answer left it. After a
    /// failure the task's state is unknown, so it leaves the pool.
    fn settle(&mut self, plan: &Plan, answer: &Answer) {
        match (plan, answer) {
            (Plan::Create { user }, Answer::Done(Some(id))) => self.open.push(TaskRef {
                user: *user,
                id: *id,
            }),
            (Plan::Update(target), Answer::Done(_)) if target.completed => {
                self.completed.push(target.task);
            }
            (Plan::Update(target), Answer::Done(_)) => self.open.push(target.task),
            (Plan::Complete(target), Answer::Done(_)) => self.completed.push(target.task),
            _ => {}
        }
    }
}

/// One command to send.
#[derive(Debug, Clone, Copy)]
enum Plan {
    Create { user: usize },
    Update(Target),
    Complete(Target),
    Delete(Target),
}

impl Plan {
    /// The next command of the mix. An update, complete or delete without a fitting task in
    /// `pool` runs as a create instead; the second value says so.
    fn draw(
        pool: &mut Pool,
        rng: &mut Rng,
        create_for: impl FnOnce(&mut Rng) -> usize,
    ) -> (Self, bool) {
        let op = Op::drawn(rng.below(100) as u64);
        let plan = match (op, pool.take(op, rng)) {
            (Op::Update, Some(target)) => Plan::Update(target),
            (Op::Complete, Some(target)) => Plan::Complete(target),
            (Op::Delete, Some(target)) => Plan::Delete(target),
            _ => Plan::Create {
                user: create_for(rng),
            },
        };
        let fell_back = op != Op::Create && plan.op() == Op::Create;
        (plan, fell_back)
    }

    fn op(&self) -> Op {
        match self {
            Plan::Create { .. } => Op::Create,
            Plan::Update(_) => Op::Update,
            Plan::Complete(_) => Op::Complete,
            Plan::Delete(_) => Op::Delete,
        }
    }
}

/// How a command ended.
#[derive(Debug)]
enum Answer {
    /// 2xx, with the new task's id for a create.
    Done(Option<Uuid>),
    /// Anything else: the status code (or `transport error`) and a sample of what came back.
    Failed { kind: String, example: String },
}

#[derive(Debug)]
struct User {
    name: String,
    bearer: HeaderValue,
}

/// command-service's command routes for `users` users `bench-0`, `bench-1`, ….
#[derive(Debug, Clone)]
pub struct Api {
    client: Client,
    base: String,
    users: Arc<[User]>,
}

impl Api {
    pub fn new(base: String, users: usize, jwt: &Jwt) -> Result<Self> {
        let client = Client::builder()
            .tcp_nodelay(true)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("build the HTTP client")?;
        let users = (0..users)
            .map(|n| {
                let name = format!("bench-{n}");
                let id = UserId::parse(name.as_str()).with_context(|| format!("user id {name}"))?;
                let bearer = HeaderValue::from_str(&format!("Bearer {}", jwt.mint(&id, TOKEN_TTL)))
                    .with_context(|| format!("the bearer token of {name}"))?;
                Ok(User { name, bearer })
            })
            .collect::<Result<Arc<[User]>>>()?;
        Ok(Self {
            client,
            base,
            users,
        })
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Sends `plan` (with `title` for a create or update) and reads the whole answer.
    async fn send(&self, plan: &Plan, title: &str) -> Answer {
        let (user, method, path) = match plan {
            Plan::Create { user } => (*user, Method::POST, "/tasks".to_owned()),
            Plan::Update(t) => (t.task.user, Method::PATCH, format!("/tasks/{}", t.task.id)),
            Plan::Complete(t) => (
                t.task.user,
                Method::POST,
                format!("/tasks/{}/complete", t.task.id),
            ),
            Plan::Delete(t) => (t.task.user, Method::DELETE, format!("/tasks/{}", t.task.id)),
        };
        let Some(user) = self.users.get(user) else {
            return Answer::Failed {
                kind: "no such benchmark user".into(),
                example: format!("user #{user}"),
            };
        };
        let mut request = self
            .client
            .request(method, format!("{}/api/{}{path}", self.base, user.name))
            .header(AUTHORIZATION, user.bearer.clone());
        if matches!(plan, Plan::Create { .. } | Plan::Update(_)) {
            request = request.json(&json!({ "title": title }));
        }
        match request.send().await {
            Ok(response) => read_answer(plan, response).await,
            Err(error) => transport_error(&error),
        }
    }
}

/// The answer in `response`, read to its end so that the connection can be reused.
async fn read_answer(plan: &Plan, response: Response) -> Answer {
    /// What a create answers, as far as the benchmark cares.
    #[derive(Deserialize)]
    struct Created {
        id: Uuid,
    }

    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Answer::Failed {
            kind: status.as_u16().to_string(),
            example: body.chars().take(EXAMPLE_CHARS).collect(),
        };
    }
    if let Plan::Create { .. } = plan {
        return match response.json::<Created>().await {
            Ok(created) => Answer::Done(Some(created.id)),
            Err(error) => Answer::Failed {
                kind: format!("{} without a task id", status.as_u16()),
                example: error.to_string(),
            },
        };
    }
    match response.bytes().await {
        Ok(_) => Answer::Done(None),
        Err(error) => transport_error(&error),
    }
}

fn transport_error(error: &reqwest::Error) -> Answer {
    Answer::Failed {
        kind: "transport error".into(),
        example: format!("{error:#}"),
    }
}

/// What a load run recorded: latencies of the 2xx answers by operation, every other answer
/// counted by operation and status.
#[derive(Debug, Clone)]
pub struct Stats {
    latencies: Vec<Latencies>,
    failures: BTreeMap<(Op, String), u64>,
    examples: BTreeMap<String, String>,
    fell_back: u64,
}

impl Stats {
    pub fn new() -> Result<Self> {
        Ok(Self {
            latencies: Op::ALL
                .iter()
                .map(|_| Latencies::new())
                .collect::<Result<_>>()?,
            failures: BTreeMap::new(),
            examples: BTreeMap::new(),
            fell_back: 0,
        })
    }

    fn record(&mut self, op: Op, latency: Duration, answer: Answer) {
        match answer {
            Answer::Done(_) => self.latencies[op.index()].record(latency),
            Answer::Failed { kind, example } => {
                *self.failures.entry((op, kind.clone())).or_default() += 1;
                self.examples.entry(kind).or_insert(example);
            }
        }
    }

    pub fn merge(&mut self, other: &Stats) -> Result<()> {
        for (mine, theirs) in self.latencies.iter_mut().zip(&other.latencies) {
            mine.merge(theirs)?;
        }
        for (key, count) in &other.failures {
            *self.failures.entry(key.clone()).or_default() += count;
        }
        for (kind, example) in &other.examples {
            self.examples
                .entry(kind.clone())
                .or_insert_with(|| example.clone());
        }
        self.fell_back += other.fell_back;
        Ok(())
    }

    /// The 2xx answers of `op` over `elapsed`.
    pub fn of(&self, op: Op, elapsed: Duration) -> Measurement {
        let latencies = self.latencies[op.index()].clone();
        Measurement {
            operations: latencies.count(),
            elapsed,
            latencies,
        }
    }

    /// The 2xx answers of every operation over `elapsed`.
    pub fn all(&self, elapsed: Duration) -> Result<Measurement> {
        let mut latencies = Latencies::new()?;
        for of_op in &self.latencies {
            latencies.merge(of_op)?;
        }
        Ok(Measurement {
            operations: latencies.count(),
            elapsed,
            latencies,
        })
    }

    /// Answers other than 2xx.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Commands drawn as update, complete or delete that ran as a create because the pool held
    /// no fitting task.
    pub fn fell_back(&self) -> u64 {
        self.fell_back
    }

    /// One line per operation and status of the answers other than 2xx, with an example of each
    /// status; `none` if every answer was 2xx.
    pub fn failure_report(&self) -> String {
        if self.failures.is_empty() {
            return "  none\n".to_owned();
        }
        let mut out = String::new();
        for ((op, kind), count) in &self.failures {
            out.push_str(&format!("  {:<38} {kind:<16} {count}\n", op.label()));
        }
        for (kind, example) in &self.examples {
            out.push_str(&format!("  example of {kind}: {example}\n"));
        }
        out
    }
}

/// What a closed or open loop left: its statistics, its wall time (from the first command's
/// start, or the first arrival, to the last answer) and the pool of tasks it ended with.
#[derive(Debug)]
pub struct Run {
    pub stats: Stats,
    pub elapsed: Duration,
    pub pool: Pool,
}

/// The users of worker `worker` out of `workers`: every `workers`-th one, so no two workers
/// share a user (and a user's lock in the service is never contended in a closed loop).
fn users_of(worker: usize, workers: usize, users: usize) -> Vec<usize> {
    (worker..users).step_by(workers.max(1)).collect()
}

/// Creates `per_worker` tasks for each of `workers` workers (one command at a time per worker,
/// over the worker's own users); returns each worker's pool. Any answer but 201 is an error.
pub async fn precreate(api: &Api, workers: usize, per_worker: usize) -> Result<Vec<Pool>> {
    ensure!(
        api.users() >= workers,
        "need at least one user per connection ({} users, {workers} connections)",
        api.users()
    );
    let fill = |worker: usize| async move {
        let users = users_of(worker, workers, api.users());
        let mut pool = Pool::default();
        for n in 0..per_worker {
            let plan = Plan::Create {
                user: users[n % users.len()],
            };
            match api.send(&plan, &format!("pool w{worker}-{n}")).await {
                Answer::Done(Some(id)) => pool.open.push(TaskRef {
                    user: users[n % users.len()],
                    id,
                }),
                Answer::Done(None) => bail!("a create answered without a task id"),
                Answer::Failed { kind, example } => {
                    bail!("creating the task pool failed: {kind}: {example}")
                }
            }
        }
        Ok(pool)
    };
    futures::future::try_join_all((0..workers).map(fill)).await
}

/// Runs the mix with one worker per pool, each sending one command at a time (waiting for the
/// answer before the next) until `duration` has passed. Worker `w` creates tasks for its own
/// users and targets only tasks of its own pool; its operations come from a generator seeded
/// with `seed` and `w`.
pub async fn closed_loop(
    api: &Api,
    pools: Vec<Pool>,
    duration: Duration,
    seed: u64,
) -> Result<Run> {
    let workers = pools.len();
    let started = Instant::now();
    let deadline = started + duration;
    let work = |(worker, mut pool): (usize, Pool)| async move {
        let users = users_of(worker, workers, api.users());
        let mut rng = Rng::seeded(seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut stats = Stats::new()?;
        let mut sent = 0_u64;
        while Instant::now() < deadline {
            let (plan, fell_back) =
                Plan::draw(&mut pool, &mut rng, |rng| users[rng.below(users.len())]);
            stats.fell_back += u64::from(fell_back);
            let command_started = Instant::now();
            let answer = api.send(&plan, &format!("closed w{worker}-{sent}")).await;
            let latency = command_started.elapsed();
            pool.settle(&plan, &answer);
            stats.record(plan.op(), latency, answer);
            sent += 1;
        }
        anyhow::Ok((stats, pool))
    };
    let results = futures::future::try_join_all(pools.into_iter().enumerate().map(work)).await?;
    let elapsed = started.elapsed();
    let mut stats = Stats::new()?;
    let mut pool = Pool::default();
    for (worker_stats, worker_pool) in results {
        stats.merge(&worker_stats)?;
        pool.absorb(worker_pool);
    }
    Ok(Run {
        stats,
        elapsed,
        pool,
    })
}

/// What an open loop measured beyond a [`Run`].
#[derive(Debug)]
pub struct OpenRun {
    pub run: Run,
    /// Commands scheduled (and sent).
    pub arrivals: u64,
    /// The furthest the generator fell behind its schedule when sending a command (already part
    /// of that command's latency).
    pub max_send_lag: Duration,
}

/// Runs the mix on a fixed schedule: command `k` is due at `k / rate` seconds and is sent then,
/// whether or not earlier commands were answered, for `duration`. Each latency runs from the
/// command's due time (so a generator falling behind cannot hide queueing) to its answer.
/// Targets come from one shared pool, creates go to random users.
pub async fn open_loop(
    api: &Api,
    pool: Pool,
    rate: f64,
    duration: Duration,
    seed: u64,
) -> Result<OpenRun> {
    ensure!(
        rate.is_finite() && rate > 0.0,
        "the open loop needs a positive rate, not {rate}"
    );
    let arrivals = (rate * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let pool = Arc::new(Mutex::new(pool));
    let stats = Arc::new(Mutex::new(Stats::new()?));
    let mut rng = Rng::seeded(seed ^ 0x0123_4567_89AB_CDEF);
    let mut in_flight = JoinSet::new();
    let mut max_send_lag = Duration::ZERO;
    let users = api.users();

    let start = Instant::now();
    let mut due_times = schedule(interval, arrivals);
    let mut k = 0_u64;
    while let Some(due) = due_times.recv().await {
        max_send_lag = max_send_lag.max(due.elapsed());
        let (plan, fell_back) = {
            let mut pool = pool.lock().unwrap_or_else(PoisonError::into_inner);
            Plan::draw(&mut pool, &mut rng, |rng| rng.below(users))
        };
        let (api, pool, stats) = (api.clone(), Arc::clone(&pool), Arc::clone(&stats));
        in_flight.spawn(async move {
            let answer = api.send(&plan, &format!("open {k}")).await;
            let latency = due.elapsed();
            pool.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .settle(&plan, &answer);
            let mut stats = stats.lock().unwrap_or_else(PoisonError::into_inner);
            stats.fell_back += u64::from(fell_back);
            stats.record(plan.op(), latency, answer);
        });
        // Collect finished commands as we go, so the set stays small.
        while let Some(done) = in_flight.try_join_next() {
            done.context("an open-loop command panicked")?;
        }
        k += 1;
    }
    while let Some(done) = in_flight.join_next().await {
        done.context("an open-loop command panicked")?;
    }
    let elapsed = start.elapsed();
    let stats = stats.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let pool = std::mem::take(&mut *pool.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(OpenRun {
        run: Run {
            stats,
            elapsed,
            pool,
        },
        arrivals,
        max_send_lag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_follows_the_shares() {
        let mut rng = Rng::seeded(7);
        let mut counts = [0_u64; 4];
        for _ in 0..100_000 {
            counts[Op::drawn(rng.below(100) as u64).index()] += 1;
        }
        for op in Op::ALL {
            let share = counts[op.index()] as f64 / 1_000.0;
            assert!(
                (share - op.percent() as f64).abs() < 1.0,
                "{op:?}: {share} %"
            );
        }
        assert_eq!(Op::ALL.iter().map(|op| op.percent()).sum::<u64>(), 100);
    }

    #[test]
    fn seeds_reproduce_and_differ() {
        let draw = |seed| {
            let mut rng = Rng::seeded(seed);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        assert_ne!(Rng::seeded(0).next_u64(), 0);
    }

    fn task(n: u128) -> TaskRef {
        TaskRef {
            user: 0,
            id: Uuid::from_u128(n),
        }
    }

    #[test]
    fn targets_follow_the_task_state() {
        let mut pool = Pool::default();
        let mut rng = Rng::seeded(3);
        assert!(pool.take(Op::Update, &mut rng).is_none(), "empty pool");
        pool.open.push(task(1));

        // Completing moves the task to the completed ones, which cannot be completed again.
        let target = pool.take(Op::Complete, &mut rng).expect("an open task");
        assert_eq!(pool.len(), 0, "a target leaves the pool while in flight");
        pool.settle(&Plan::Complete(target), &Answer::Done(None));
        assert!(pool.take(Op::Complete, &mut rng).is_none());

        // Updating a completed task keeps it completed.
        let target = pool.take(Op::Update, &mut rng).expect("a task");
        assert!(target.completed);
        pool.settle(&Plan::Update(target), &Answer::Done(None));
        assert_eq!(pool.completed, [task(1)]);

        // Deleting removes it for good; so does a failure.
        let target = pool.take(Op::Delete, &mut rng).expect("a task");
        pool.settle(&Plan::Delete(target), &Answer::Done(None));
        assert_eq!(pool.len(), 0);
        pool.open.push(task(2));
        let target = pool.take(Op::Update, &mut rng).expect("a task");
        let failed = Answer::Failed {
            kind: "409".into(),
            example: String::new(),
        };
        pool.settle(&Plan::Update(target), &failed);
        assert_eq!(pool.len(), 0);

        // A create adds an open task.
        pool.settle(&Plan::Create { user: 0 }, &Answer::Done(Some(task(3).id)));
        assert_eq!(pool.open, [task(3)]);
    }

    #[test]
    fn draws_without_a_target_fall_back_to_create() {
        let mut pool = Pool::default();
        let mut rng = Rng::seeded(5);
        let mut fell_back = 0;
        for _ in 0..1_000 {
            let (plan, fallback) = Plan::draw(&mut pool, &mut rng, |_| 0);
            assert_eq!(plan.op(), Op::Create);
            fell_back += u64::from(fallback);
        }
        assert!((500..700).contains(&fell_back), "{fell_back}");
    }

    #[test]
    fn workers_share_no_user() {
        let all: Vec<usize> = (0..64).flat_map(|w| users_of(w, 64, 1_000)).collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 1_000);
        assert_eq!(all.len(), 1_000);
    }

    #[test]
    fn failures_are_counted_by_operation_and_status() {
        let mut stats = Stats::new().expect("stats");
        stats.record(Op::Create, Duration::from_millis(3), Answer::Done(None));
        for _ in 0..2 {
            stats.record(
                Op::Complete,
                Duration::from_millis(3),
                Answer::Failed {
                    kind: "409".into(),
                    example: "already completed".into(),
                },
            );
        }
        assert_eq!(stats.failed(), 2);
        assert_eq!(stats.of(Op::Create, Duration::from_secs(1)).operations, 1);
        assert_eq!(stats.of(Op::Complete, Duration::from_secs(1)).operations, 0);
        let report = stats.failure_report();
        assert!(report.contains("409"), "{report}");
        assert!(report.contains("already completed"), "{report}");
    }
}
