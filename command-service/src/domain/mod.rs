//! The pure core of the write side: which events a command produces for a task, and how events
//! change a task. No I/O here (no tokio, axum, sqlx or rdkafka), so every rule is tested
//! given/when/then without a broker.
//!
//! - [`validate`]: turning client input into checked values, listing every invalid field.
//! - [`task`]: the task aggregate — `handle(command) -> events`, `apply(event)`.

pub mod task;
pub mod validate;

pub use task::{Command, DomainError, Task, TaskStatus};
pub use validate::{FieldError, TaskFields, TaskPatch};
