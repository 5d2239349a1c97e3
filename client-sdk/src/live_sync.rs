//! A live sync on its own thread that an app starts, observes and stops.
//!
//! Apps (and the uniffi bindings) have no async runtime of ours: the handle
//! owns a thread running a single-threaded tokio runtime, so the app's own
//! threads never block on the network and stopping is one call.

use crate::device::Device;
use crate::live::LiveEvent;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::Notify;

/// A running live sync (see [`Device::start_live`]). Stopping it, or
/// dropping it, closes the connection and ends its thread; the last event
/// the observer receives is [`LiveEvent::Stopped`].
pub struct LiveSync {
    stop: Arc<Notify>,
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Device {
    /// Starts [`Device::run_live`] on a thread of its own and returns at
    /// once. `on_event` is called on that thread for every [`LiveEvent`];
    /// it should hand the event to the app's UI thread rather than do slow
    /// work, and must not call [`LiveSync::stop`] itself (stop waits for
    /// this very thread). Fails only if the OS refuses a thread or a
    /// runtime.
    pub fn start_live(
        &self,
        mut on_event: impl FnMut(LiveEvent) + Send + 'static,
    ) -> std::io::Result<LiveSync> {
        let stop = Arc::new(Notify::new());
        let running = Arc::new(AtomicBool::new(true));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let device = self.clone();
        let (stopped, still) = (stop.clone(), running.clone());
        let thread = std::thread::Builder::new()
            .name("aftercase-live".into())
            .spawn(move || {
                // Marked not running before the last event is delivered, so
                // an observer that asks on `Stopped` gets the right answer.
                let mut deliver = |e: LiveEvent| {
                    if matches!(e, LiveEvent::Stopped { .. }) {
                        still.store(false, Ordering::SeqCst);
                    }
                    on_event(e)
                };
                rt.block_on(async {
                    tokio::select! {
                        // run_live reports its own Stopped event before it
                        // returns.
                        _ = device.run_live(&mut deliver) => {}
                        _ = stopped.notified() => {}
                    }
                });
                if still.load(Ordering::SeqCst) {
                    deliver(LiveEvent::Stopped {
                        code: "stopped".into(),
                        reason: "the app stopped the live sync".into(),
                    });
                }
            })?;
        Ok(LiveSync {
            stop,
            running,
            thread: Some(thread),
        })
    }
}

impl LiveSync {
    /// Whether the sync still runs: false from its [`LiveEvent::Stopped`]
    /// on (a rejected, expired or revoked token, or [`LiveSync::stop`]).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Stops the sync and waits for its thread to end (the connection is
    /// dropped at once; local edits stay saved and go with the next sync).
    pub fn stop(&mut self) {
        // notify_one keeps a permit if the thread is not waiting yet, so a
        // stop right after start is not lost.
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            // A panic in the observer ends only that thread; there is
            // nothing left to clean up for it.
            let _ = t.join();
        }
    }
}

impl Drop for LiveSync {
    fn drop(&mut self) {
        self.stop();
    }
}
