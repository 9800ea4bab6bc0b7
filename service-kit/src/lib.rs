//! What every Taskstream service shares.
//!
//! # Layout
//!
//! - [`settings`]: typed, layered settings (defaults → optional file → `TASKSTREAM_…` variables).
//! - [`telemetry`]: `tracing` subscriber (JSON or pretty) and the W3C trace-context propagator.
//! - [`http`]: the ops endpoints (`/health`, `/ready`, `/metrics`), request metrics, serving with
//!   graceful shutdown.
//! - [`problem`]: RFC 9457 `application/problem+json` errors.
//! - [`openapi`]: the problem body and bearer scheme every OpenAPI document shares.
//! - [`database`]: the Postgres pool.
//! - [`auth`]: JWT verification and the [`auth::AuthUser`] extractor.

pub mod auth;
pub mod database;
pub mod http;
pub mod openapi;
pub mod problem;
pub mod replica;
pub mod settings;
pub mod telemetry;
