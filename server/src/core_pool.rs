//! A few dedicated threads that run the relay core's work for the sync
//! connections, in the order it arrives.
//!
//! Frames and announcements used to go through `web::block`, actix's large
//! blocking pool: under load hundreds of its threads woke up only to queue
//! on the relay lock, and the thread switches and futex waits cost more
//! CPU than the core's own work (BENCHMARKS.md, 2026-12-03). Here a queue
//! feeds as many threads as there are cores: each takes the next job as
//! soon as it finishes one, so under load jobs run back to back without a
//! thread switch per frame, and there is never a crowd waiting on the lock.
//! The work still runs off the async executor.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The threads and the queue that feeds them.
pub struct CorePool {
    queue: Mutex<mpsc::Sender<Job>>,
}

impl CorePool {
    /// Starts `threads` threads (at least one), named `relay-core`. A
    /// thread the system refuses is logged; with none at all every job
    /// answers `None` ("relay busy") instead of waiting for ever.
    pub fn new(threads: usize) -> CorePool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name("relay-core".into())
                .spawn(move || loop {
                    // The queue lock is held only to take one job; a
                    // poisoned one still hands out jobs.
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(job) = job else {
                        return;
                    };
                    // A job that panics loses its answer (its connection
                    // closes with "relay busy"), not the thread.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a relay core thread");
            }
        }
        CorePool {
            queue: Mutex::new(tx),
        }
    }

    /// Runs `f` on one of the threads and returns its result, or `None` if
    /// it panicked or the pool is gone.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .ok()?;
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn jobs_run_and_a_panic_loses_only_its_own_answer() {
        let pool = CorePool::new(1);
        assert_eq!(pool.run(|| 2 + 2).await, Some(4));
        let lost: Option<()> = pool.run(|| panic!("a bad job")).await;
        assert_eq!(lost, None);
        // The one thread survived the panic.
        assert_eq!(pool.run(|| "still here").await, Some("still here"));
    }
}
