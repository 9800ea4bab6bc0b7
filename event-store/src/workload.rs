//! A deterministic, realistic stream of commits for tests and benchmarks (feature
//! `test-support`): many users creating, editing, tagging, completing and deleting tasks, with
//! due dates and reminders, a few lost races (commits against a stale version) and the odd
//! duplicate record.

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

use crate::commit::Commit;
use crate::envelope::{Cause, Event};
use crate::events::{
    Due, DueCleared, DueSet, EventPayload, Priority, ReminderAdded, ReminderFired, ReminderTime,
    TagChanged, TaskCompleted, TaskCreated, TaskDeleted, TaskReopened, TaskUpdated,
};
use crate::ids::{Actor, UserId};

/// One record to append: the commit's user (the key) and its bytes.
#[derive(Clone, Debug)]
pub struct Record {
    pub user: String,
    pub payload: Vec<u8>,
    /// Events in the commit.
    pub events: usize,
}

#[derive(Clone, Debug)]
struct TaskState {
    id: Uuid,
    version: u64,
    deleted: bool,
    completed: bool,
    tags: Vec<String>,
    reminders: Vec<Uuid>,
    has_due: bool,
}

/// Generates commits for `users` users, reproducibly from `seed`.
#[derive(Debug)]
pub struct Workload {
    rng: u64,
    users: Vec<String>,
    tasks: HashMap<usize, Vec<TaskState>>,
    numbers: HashMap<usize, u64>,
    clock: DateTime<Utc>,
    /// Share (per mille) of commits written against a stale version.
    pub lost_race_per_mille: u64,
    /// Share (per mille) of records appended twice.
    pub duplicate_per_mille: u64,
}

/// The words task titles are made of (benchmarks search for them).
pub const WORDS: &[&str] = &[
    "groceries",
    "report",
    "dentist",
    "invoice",
    "garden",
    "birthday",
    "meeting",
    "laundry",
    "taxes",
    "flight",
    "review",
    "budget",
    "email",
    "call",
    "plan",
    "fix",
    "bike",
    "book",
];
/// The tags tasks get, as written.
pub const TAGS: [&str; 8] = [
    "home", "work", "Urgent", "errands", "health", "finance", "travel", "Family",
];

impl Workload {
    pub fn new(users: usize, seed: u64) -> Self {
        Self::with_prefix(users, seed, "user")
    }

    /// Users are named `<prefix>-<n>`.
    pub fn with_prefix(users: usize, seed: u64, prefix: &str) -> Self {
        Self {
            rng: seed.max(1),
            users: (0..users).map(|i| format!("{prefix}-{i}")).collect(),
            tasks: HashMap::new(),
            numbers: HashMap::new(),
            clock: Utc.with_ymd_and_hms(2026, 1, 1, 8, 0, 0).unwrap(),
            lost_race_per_mille: 5,
            duplicate_per_mille: 5,
        }
    }

    pub fn users(&self) -> &[String] {
        &self.users
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn title(&mut self) -> String {
        let n = 1 + self.below(3);
        (0..n)
            .map(|_| self.pick(WORDS))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The next record(s): usually one, two when a record is duplicated.
    pub fn next_records(&mut self) -> Vec<Record> {
        let user_index = self.below(self.users.len() as u64) as usize;
        let user = self.users[user_index].clone();
        let step = 1 + self.below(600) as i64;
        self.clock += Duration::seconds(step);
        let cause = Cause {
            user_id: UserId::parse(user.clone()).expect("valid user"),
            actor: if self.below(10) == 0 {
                Actor::Chat
            } else {
                Actor::User
            },
            correlation_id: self.uuid(),
            causation_id: self.uuid(),
            occurred_at: self.clock,
        };
        let live: Vec<usize> = self
            .tasks
            .get(&user_index)
            .map(|ts| (0..ts.len()).filter(|i| !ts[*i].deleted).collect())
            .unwrap_or_default();
        let roll = self.below(100);
        let (task_index, payloads) = if live.is_empty() || roll < 35 {
            (None, self.create(user_index))
        } else {
            let i = live[self.below(live.len() as u64) as usize];
            let payloads = self.change(user_index, i);
            (Some(i), payloads)
        };
        let (task_id, from) = match task_index {
            None => {
                let t = self
                    .tasks
                    .get(&user_index)
                    .and_then(|t| t.last())
                    .expect("created");
                (t.id, 1)
            }
            Some(i) => {
                let t = &self.tasks[&user_index][i];
                (t.id, t.version + 1)
            }
        };
        let events: Vec<Event> = payloads
            .into_iter()
            .enumerate()
            .map(|(k, p)| {
                let id = self.uuid();
                cause.event_with_id(id, task_id, from + k as u64, p)
            })
            .collect();
        let count = events.len();
        let commit = Commit::new(self.uuid(), events, None).expect("valid commit");
        let task = self
            .tasks
            .get_mut(&user_index)
            .and_then(|ts| ts.iter_mut().find(|t| t.id == task_id))
            .expect("task exists");
        task.version = from + count as u64 - 1;
        let mut records = vec![Record {
            user: user.clone(),
            payload: commit.encode(),
            events: count,
        }];
        if self.below(1000) < self.duplicate_per_mille {
            records.push(records[0].clone());
        }
        if from > 1 && self.below(1000) < self.lost_race_per_mille {
            // A writer that read the task one version earlier and wrote late.
            let stale = cause.event_with_id(
                self.uuid(),
                task_id,
                from,
                EventPayload::TaskUpdated(TaskUpdated {
                    title: Some("a write that lost its race".into()),
                    ..TaskUpdated::default()
                }),
            );
            let commit = Commit::new(self.uuid(), vec![stale], None).expect("valid commit");
            records.push(Record {
                user,
                payload: commit.encode(),
                events: 1,
            });
        }
        records
    }

    fn uuid(&mut self) -> Uuid {
        let hi = u128::from(self.next());
        let lo = u128::from(self.next());
        uuid::Builder::from_random_bytes(((hi << 64) | lo).to_le_bytes()).into_uuid()
    }

    fn create(&mut self, user: usize) -> Vec<EventPayload> {
        let number = {
            let n = self.numbers.entry(user).or_insert(0);
            *n += 1;
            *n
        };
        let tags: Vec<String> = (0..self.below(3))
            .map(|_| self.pick(&TAGS).to_owned())
            .collect();
        let mut unique: Vec<String> = Vec::new();
        for t in tags {
            if !unique.iter().any(|u| u.eq_ignore_ascii_case(&t)) {
                unique.push(t);
            }
        }
        let due = (self.below(2) == 0).then(|| self.due());
        let title = self.title();
        let description =
            (self.below(3) == 0).then(|| format!("remember the {}", self.pick(WORDS)));
        let priority = [
            Priority::Low,
            Priority::Medium,
            Priority::High,
            Priority::Urgent,
        ][self.below(4) as usize];
        let mut payloads = vec![EventPayload::TaskCreated(TaskCreated {
            task_number: number,
            title,
            description,
            priority,
            due: due.clone(),
            tags: unique.clone(),
            recurrence: None,
            occurrence_of: None,
        })];
        let mut reminders = Vec::new();
        if due.is_some() && self.below(3) == 0 {
            let id = self.uuid();
            reminders.push(id);
            payloads.push(EventPayload::ReminderAdded(ReminderAdded {
                reminder_id: id,
                time: ReminderTime::BeforeDue { seconds: 3600 },
            }));
        }
        let id = self.uuid();
        self.tasks.entry(user).or_default().push(TaskState {
            id,
            version: 0,
            deleted: false,
            completed: false,
            tags: unique,
            reminders,
            has_due: due.is_some(),
        });
        payloads
    }

    fn due(&mut self) -> Due {
        if self.below(2) == 0 {
            Due::Date {
                date: (self.clock + Duration::days(self.below(30) as i64 - 5)).date_naive(),
            }
        } else {
            Due::At {
                at: self.clock + Duration::hours(self.below(24 * 20) as i64 - 48),
                tz: Some("Europe/Berlin".into()),
            }
        }
    }

    fn change(&mut self, user: usize, i: usize) -> Vec<EventPayload> {
        let roll = self.below(100);
        let title = self.title();
        let tag = self.pick(&TAGS).to_owned();
        let due = self.due();
        let reminder = self.uuid();
        let fire_at = self.clock;
        let t = &mut self.tasks.get_mut(&user).expect("user has tasks")[i];
        match roll {
            0..30 => vec![EventPayload::TaskUpdated(TaskUpdated {
                title: Some(title),
                description: None,
                priority: None,
            })],
            30..50 => {
                if t.completed {
                    t.completed = false;
                    vec![EventPayload::TaskReopened(TaskReopened {})]
                } else {
                    t.completed = true;
                    vec![EventPayload::TaskCompleted(TaskCompleted {})]
                }
            }
            50..60 => {
                t.deleted = true;
                vec![EventPayload::TaskDeleted(TaskDeleted {})]
            }
            60..72 => {
                if let Some(pos) = t.tags.iter().position(|x| x.eq_ignore_ascii_case(&tag)) {
                    t.tags.remove(pos);
                    vec![EventPayload::TagRemoved(TagChanged { tag })]
                } else if t.tags.len() < 20 {
                    t.tags.push(tag.clone());
                    vec![EventPayload::TagAdded(TagChanged { tag })]
                } else {
                    vec![EventPayload::TaskUpdated(TaskUpdated::default())]
                }
            }
            72..84 => {
                if t.has_due && roll % 2 == 0 && t.reminders.is_empty() {
                    t.has_due = false;
                    vec![EventPayload::DueCleared(DueCleared {})]
                } else {
                    t.has_due = true;
                    vec![EventPayload::DueSet(DueSet { due })]
                }
            }
            84..92 => {
                t.reminders.push(reminder);
                vec![EventPayload::ReminderAdded(ReminderAdded {
                    reminder_id: reminder,
                    time: ReminderTime::At {
                        at: fire_at + Duration::hours(2),
                    },
                })]
            }
            _ => match t.reminders.pop() {
                Some(reminder_id) => vec![EventPayload::ReminderFired(ReminderFired {
                    reminder_id,
                    scheduled_for: fire_at,
                })],
                None => vec![EventPayload::TaskUpdated(TaskUpdated {
                    title: None,
                    description: Some(None),
                    priority: Some(Priority::High),
                })],
            },
        }
    }
}
