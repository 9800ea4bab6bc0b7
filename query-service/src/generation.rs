//! The active read-model generation, cached.
//!
//! Every query reads the schema of the active generation. Looking it up per request would cost a
//! round trip, so it is cached here and kept current two ways: a `LISTEN` on
//! `read_model_switched` (which a switch-over notifies at commit) and, in case a notification is
//! missed while the listening connection is down, a re-read every `generation_refresh_ms`.
//! While no generation is known, each request looks again before answering `503`.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use migrations::generations::{self, Generation};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::time::MissedTickBehavior;

use crate::error::AppError;

/// The channel a switch-over notifies.
pub const CHANNEL: &str = "read_model_switched";

/// A shared handle on the cached active generation.
#[derive(Clone, Debug)]
pub struct ActiveGeneration {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    current: RwLock<Option<Generation>>,
}

impl ActiveGeneration {
    /// A cache over `pool`; nothing is known until [`refresh`](Self::refresh) or
    /// [`follow`](Self::follow).
    pub fn new(pool: PgPool) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                current: RwLock::new(None),
            }),
        }
    }

    /// A cache that follows switch-overs in the background until every handle is dropped.
    /// Must be called inside a Tokio runtime.
    pub fn follow(pool: PgPool, every: Duration) -> Self {
        let this = Self::new(pool.clone());
        tokio::spawn(watch(Arc::downgrade(&this.inner), pool, every));
        this
    }

    /// The cached generation, without asking the database.
    pub fn cached(&self) -> Option<Generation> {
        self.inner
            .current
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Re-reads the active generation from the database and caches it.
    pub async fn refresh(&self) -> sqlx::Result<Option<Generation>> {
        let generation = generations::active(&self.inner.pool).await?;
        self.inner.store(generation.clone());
        Ok(generation)
    }

    /// The generation to query: the cached one, else a fresh look; `503` when none is active.
    pub async fn current(&self) -> Result<Generation, AppError> {
        if let Some(generation) = self.cached() {
            return Ok(generation);
        }
        self.refresh().await?.ok_or(AppError::NoActiveGeneration)
    }
}

impl Inner {
    fn store(&self, generation: Option<Generation>) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = current.as_ref().map(|g| g.number);
        let after = generation.as_ref().map(|g| g.number);
        if before != after {
            tracing::info!(?before, ?after, "active read-model generation changed");
        }
        *current = generation;
    }
}

/// Keeps the cache current until the last handle is dropped.
async fn watch(inner: Weak<Inner>, pool: PgPool, every: Duration) {
    let mut listener: Option<PgListener> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        if listener.is_none() {
            listener = listen(&pool).await;
        }
        let lost = match listener.as_mut() {
            Some(l) => tokio::select! {
                received = l.recv() => received.is_err(),
                _ = tick.tick() => false,
            },
            None => {
                tick.tick().await;
                false
            }
        };
        if lost {
            tracing::debug!("lost the read_model_switched listener; reconnecting");
            listener = None;
        }
        // Hold the cache only while refreshing, so dropping the service ends this task.
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match generations::active(&inner.pool).await {
            Ok(generation) => inner.store(generation),
            Err(error) => tracing::debug!(%error, "cannot re-read the active generation"),
        }
    }
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::debug!(%error, "cannot listen for read-model switch-overs yet");
            return None;
        }
    };
    match listener.listen(CHANNEL).await {
        Ok(()) => Some(listener),
        Err(error) => {
            tracing::debug!(%error, "cannot listen for read-model switch-overs yet");
            None
        }
    }
}
