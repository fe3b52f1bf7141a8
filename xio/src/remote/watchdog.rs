//! One thread (`remote-watchdog`) watches every [`super::client::RemoteClient`] of the process
//! for requests without progress (a hundred idle secondaries had a hundred watchdog threads,
//! each waking ten times a second). It holds only weak references: a dropped client leaves.

use parking_lot::Mutex;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Something checked periodically.
pub(super) trait Watch: Send + Sync + 'static {
    /// How often to check.
    fn tick(&self) -> Duration;
    /// Check once (on the watchdog thread, without its lock: it may run callbacks).
    fn check(&self);
}

type Entry = (Weak<dyn Watch>, Instant);

/// The longest the thread sleeps (it also bounds how late a newly watched client is first
/// checked).
const MAX_SLEEP: Duration = Duration::from_millis(100);

static WATCHES: OnceLock<Mutex<Vec<Entry>>> = OnceLock::new();

/// Check `w` every `w.tick()` from now on, until it is dropped.
pub(super) fn watch(w: &Arc<dyn Watch>) {
    let list = WATCHES.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("remote-watchdog".into())
            .spawn(run);
        if let Err(e) = spawned {
            tracing::error!("cannot start the remote watchdog thread: {e}; requests without progress are not timed out");
        }
        Mutex::new(Vec::new())
    });
    list.lock()
        .push((Arc::downgrade(w), Instant::now() + w.tick()));
}

fn run() {
    let Some(list) = WATCHES.get() else { return };
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        let wake = {
            let mut l = list.lock();
            l.retain(|(w, _)| w.strong_count() > 0);
            for (w, next) in l.iter_mut() {
                if *next <= now {
                    if let Some(w) = w.upgrade() {
                        *next = now + w.tick();
                        due.push(w);
                    }
                }
            }
            l.iter().map(|(_, n)| *n).min().unwrap_or(now + MAX_SLEEP)
        };
        for w in due {
            w.check();
        }
        let sleep = wake
            .saturating_duration_since(Instant::now())
            .min(MAX_SLEEP);
        std::thread::sleep(sleep.max(Duration::from_millis(1)));
    }
}
