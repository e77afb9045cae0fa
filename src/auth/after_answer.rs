//! Per-address work that runs after the answer (API.md 15.10). A password-reset or
//! verify-resend request is answered once it is parsed and limited, which costs the same for
//! every address; only then does a task look the address up, issue a token and queue mail.
//! The tasks are bounded here, so a flood cannot grow memory, and a graceful shutdown lets
//! the accepted ones finish.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::AuthError;

/// Jobs accepted and not yet finished. With every place taken, a request is refused
/// (`Overloaded`) before its answer, which says nothing about its address.
const QUEUED_JOBS: u32 = 1024;
/// Jobs that run at once: each is one store write, and the store takes one writer at a time.
const RUNNING_JOBS: u32 = 4;

/// The bounded set of per-address jobs. One per `App`.
#[derive(Debug)]
pub struct AfterAnswer {
    queued: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

/// Holds every job back while it lives; see `AfterAnswer::hold`.
#[derive(Debug)]
pub struct HeldJobs {
    _running: Option<OwnedSemaphorePermit>,
}

impl Default for AfterAnswer {
    fn default() -> AfterAnswer {
        AfterAnswer::new()
    }
}

impl AfterAnswer {
    pub fn new() -> AfterAnswer {
        AfterAnswer {
            queued: Arc::new(Semaphore::new(QUEUED_JOBS as usize)),
            running: Arc::new(Semaphore::new(RUNNING_JOBS as usize)),
        }
    }

    /// Accepts `job` to run once the caller has answered; `Overloaded` when every place is
    /// taken. Never waits.
    pub fn spawn(&self, job: impl Future<Output = ()> + Send + 'static) -> Result<(), AuthError> {
        let place = Arc::clone(&self.queued)
            .try_acquire_owned()
            .map_err(|_| AuthError::Overloaded)?;
        let running = Arc::clone(&self.running);
        tokio::spawn(async move {
            let _place = place;
            let Ok(_turn) = running.acquire_owned().await else {
                return;
            };
            job.await;
        });
        Ok(())
    }

    /// Waits until every accepted job has finished.
    pub async fn finished(&self) {
        let _ = self.queued.acquire_many(QUEUED_JOBS).await;
    }

    /// Holds every job back until the returned guard drops; accepting goes on. The tests use
    /// it to show that an answer never waits for per-address work.
    pub async fn hold(&self) -> HeldJobs {
        HeldJobs {
            _running: Arc::clone(&self.running)
                .acquire_many_owned(RUNNING_JOBS)
                .await
                .ok(),
        }
    }
}
