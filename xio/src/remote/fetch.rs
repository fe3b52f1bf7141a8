//! Log fetch: an append-only copy of a peer's growing log file into the local log directory,
//! from the local size to the remote size, following growth until the remote log is finished.
//!
//! - **Resume**: the local file's length is the restart position. After a cut (or a restart of
//!   the process) fetching continues from what is already local; nothing is fetched twice and
//!   no hole is ever left (pieces are appended strictly in order).
//! - **Pipelining**: up to `window` reads of `chunk` bytes are in flight inside the known remote
//!   size; at the end of a growing log one long-poll read waits for new bytes.
//! - **Verification**: an optional [`VerifyFn`] is called after every append with the new local
//!   size and returns how far the file verifies (e.g. by scanning records with the log
//!   scanner); a failure stops the fetch with [`RemoteError::Verify`].
//! - Transient failures (timeouts while the link is down) are retried with backoff until
//!   `give_up` passes without progress.

use super::client::RemoteClient;
use super::error::{RemoteError, Result};
use super::proto::{RemoteReply, RemoteReq, Target};
use mars_net::Backoff;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Checks the local log incrementally: `(path, verified_up_to, local_size)` → new verified
/// offset (≤ local size; the rest is an incomplete record waiting for more bytes) or a reason.
pub type VerifyFn =
    Arc<dyn Fn(&std::path::Path, u64, u64) -> std::result::Result<u64, String> + Send + Sync>;

/// Settings of one fetch.
#[derive(Clone)]
pub struct FetchConfig {
    /// Where the local copy lives (created if missing).
    pub local_path: PathBuf,
    /// Remote log name.
    pub name: String,
    /// Bytes per read request.
    pub chunk: u32,
    /// Reads in flight.
    pub window: usize,
    /// How long one read at the end of a growing log waits for new bytes (ms).
    pub follow_wait_ms: u32,
    /// Start a background `fdatasync` of the local file after this many new bytes (the fetch
    /// does not wait for it); the end of a fetch always syncs synchronously.
    pub sync_every: u64,
    /// Stop with the last error after this long without progress (`None`: never give up).
    pub give_up: Option<Duration>,
    /// Optional record verification.
    pub verify: Option<VerifyFn>,
}

impl FetchConfig {
    /// Defaults: 1 MiB chunks, 8 in flight, 500 ms follow wait, sync every 32 MiB.
    pub fn new(local_path: impl Into<PathBuf>, name: impl Into<String>) -> FetchConfig {
        FetchConfig {
            local_path: local_path.into(),
            name: name.into(),
            chunk: 1 << 20,
            window: 8,
            follow_wait_ms: 500,
            sync_every: 32 << 20,
            give_up: None,
            verify: None,
        }
    }
}

/// Where a fetch stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchProgress {
    /// Bytes present locally.
    pub local: u64,
    /// Remote size as last seen.
    pub remote: u64,
    /// Whether the remote log is finished.
    pub finished: bool,
    /// Local bytes that passed verification (equals `local` without a verifier).
    pub verified: u64,
    /// Times the fetch restarted from the local size after an error.
    pub restarts: u64,
}

/// A running (or runnable) log fetch.
pub struct LogFetch {
    client: Arc<RemoteClient>,
    cfg: FetchConfig,
    progress: Mutex<FetchProgress>,
    stop: AtomicBool,
}

impl LogFetch {
    /// A fetch of `cfg.name` through `client` (whose target must be `Target::Log(cfg.name)`).
    pub fn new(client: Arc<RemoteClient>, cfg: FetchConfig) -> Arc<LogFetch> {
        Arc::new(LogFetch {
            client,
            cfg,
            progress: Mutex::new(FetchProgress::default()),
            stop: AtomicBool::new(false),
        })
    }

    /// Current progress.
    pub fn progress(&self) -> FetchProgress {
        *self.progress.lock()
    }

    /// Ask a running [`LogFetch::run`] to return soon.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Fetch until the remote log is finished and fully local (or `stop`). Returns the final
    /// progress. Safe to call again after an error: it resumes from the local size.
    pub fn run(&self) -> Result<FetchProgress> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&self.cfg.local_path)
            .map_err(|e| self.local_err(e))?;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut last_progress = Instant::now();
        let mut last_local = u64::MAX;
        loop {
            match self.session(&file) {
                Ok(p) => return Ok(p),
                Err(e) if e.is_retryable() => {
                    let local = self.progress().local;
                    if local != last_local {
                        last_local = local;
                        last_progress = Instant::now();
                    }
                    if self
                        .cfg
                        .give_up
                        .is_some_and(|g| last_progress.elapsed() >= g)
                    {
                        return Err(e);
                    }
                    self.progress.lock().restarts += 1;
                    tracing::info!(log = %self.cfg.name, local, "log fetch interrupted ({e}); resuming from the local size");
                    let d = backoff.next_delay();
                    let end = Instant::now() + d;
                    while Instant::now() < end && !self.stop.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    if self.stop.load(Ordering::Acquire) {
                        return Ok(self.progress());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt: from the local size until finished, the first error, or stop.
    fn session(&self, file: &File) -> Result<FetchProgress> {
        let mut local = file.metadata().map_err(|e| self.local_err(e))?.len();
        let mut unsynced = 0u64;
        let bg = BackgroundSync::start(file, &self.cfg.local_path)?;
        let (mut remote, mut finished) = self.client.stat()?;
        {
            let mut p = self.progress.lock();
            p.local = local;
            p.remote = remote;
            p.finished = finished;
            if self.cfg.verify.is_none() {
                p.verified = local;
            }
        }
        let target = Target::Log(self.cfg.name.clone());
        // A fresh channel per session: replies of an abandoned session go nowhere.
        let (tx, rx) = crossbeam_channel::unbounded::<(u64, Result<(RemoteReply, Vec<u8>)>)>();
        // pos → (requested length, whether it is a long poll, data once arrived)
        let mut inflight: BTreeMap<u64, (u32, bool, Option<Vec<u8>>)> = BTreeMap::new();
        let mut next = local;
        loop {
            if self.stop.load(Ordering::Acquire) {
                self.sync(file)?;
                return Ok(self.progress());
            }
            if local > remote {
                return Err(RemoteError::Diverged {
                    name: self.cfg.name.clone(),
                    local,
                    remote,
                });
            }
            if local == remote && finished && inflight.is_empty() {
                let verified = self.verify(local)?;
                self.progress.lock().verified = verified;
                self.sync(file)?;
                return Ok(self.progress());
            }
            // Issue reads: within the known size, up to the window; at the end, one long poll.
            while inflight.len() < self.cfg.window.max(1) && (next < remote || inflight.is_empty())
            {
                let (len, wait) = if next < remote {
                    ((remote - next).min(self.cfg.chunk as u64) as u32, 0)
                } else {
                    (self.cfg.chunk, self.cfg.follow_wait_ms)
                };
                let tx = tx.clone();
                let pos = next;
                self.client.start_request(
                    &RemoteReq::Read {
                        target: target.clone(),
                        pos,
                        len,
                        wait_ms: wait,
                    },
                    Box::new(move |r| {
                        let _ = tx.send((pos, r));
                    }),
                )?;
                inflight.insert(pos, (len, wait > 0, None));
                if next < remote {
                    next += len as u64;
                } else {
                    break;
                }
            }
            let (pos, r) = rx
                .recv()
                .map_err(|_| RemoteError::Off("log fetch".into()))?;
            let (size, fin, data) = match r? {
                (RemoteReply::Data { size, finished }, data) => (size, finished, data),
                (other, _) => {
                    return Err(RemoteError::Protocol {
                        peer: "log server".into(),
                        what: format!("unexpected reply {other:?} to a log read"),
                    })
                }
            };
            if size > remote || (fin && !finished) {
                remote = remote.max(size);
                finished |= fin;
            }
            if let Some(e) = inflight.get_mut(&pos) {
                e.2 = Some(data);
            }
            // Append every piece that is next in line.
            while let Some(entry) = inflight.first_entry() {
                if *entry.key() != local {
                    // Only pieces at or after `local` are ever issued.
                    break;
                }
                if entry.get().2.is_none() {
                    break;
                }
                let (want, follow, data) = entry.remove();
                let data = data.unwrap_or_default();
                if !follow && data.len() != want as usize {
                    // Inside the known size a log read is always complete: the remote file
                    // shrank or was replaced.
                    return Err(RemoteError::Verify {
                        name: self.cfg.name.clone(),
                        pos: local,
                        reason: format!(
                            "the remote log returned {} of {want} bytes inside its known size: it shrank or was replaced",
                            data.len()
                        ),
                    });
                }
                if data.is_empty() {
                    // The long poll found no growth: poll again.
                    continue;
                }
                file.write_all_at(&data, local)
                    .map_err(|e| self.local_err(e))?;
                local += data.len() as u64;
                unsynced += data.len() as u64;
                if unsynced >= self.cfg.sync_every {
                    bg.kick()?;
                    unsynced = 0;
                }
                next = next.max(local);
            }
            let verified = if self.progress().local == local {
                self.progress().verified
            } else {
                self.verify(local)?
            };
            let mut p = self.progress.lock();
            p.local = local;
            p.remote = remote;
            p.finished = finished;
            p.verified = verified;
        }
    }

    /// Run the verifier from the last verified offset up to `local`.
    fn verify(&self, local: u64) -> Result<u64> {
        let Some(v) = &self.cfg.verify else {
            return Ok(local);
        };
        let from = self.progress().verified;
        if from >= local {
            return Ok(from);
        }
        v(&self.cfg.local_path, from, local).map_err(|reason| RemoteError::Verify {
            name: self.cfg.name.clone(),
            pos: from,
            reason,
        })
    }

    fn sync(&self, file: &File) -> Result<()> {
        // Pending background syncs are covered by this one.
        file.sync_data().map_err(|e| self.local_err(e))
    }

    fn local_err(&self, source: std::io::Error) -> RemoteError {
        RemoteError::Local {
            path: self.cfg.local_path.display().to_string(),
            source,
        }
    }
}

/// A thread that runs `fdatasync` on request, so that appending never waits for the disk;
/// requests queued while one runs are merged into one. Its first error is reported by the next
/// [`BackgroundSync::kick`]. The thread ends after 10 s without a request (a secondary that
/// follows an idle primary has nothing to sync) and the next request starts it again; dropping
/// waits for the queued syncs.
struct BackgroundSync {
    worker: brick_core::IdleWorker<()>,
    error: Arc<Mutex<Option<std::io::Error>>>,
    /// For syncing inline when the thread cannot start.
    file: File,
    path: PathBuf,
}

impl BackgroundSync {
    fn start(file: &File, path: &std::path::Path) -> Result<BackgroundSync> {
        let local = |source| RemoteError::Local {
            path: path.display().to_string(),
            source,
        };
        let f = file.try_clone().map_err(local)?;
        let error = Arc::new(Mutex::new(None));
        let e2 = error.clone();
        let worker = brick_core::IdleWorker::new(
            "log-fetch-sync",
            Duration::from_secs(10),
            move |_merged: Vec<()>| {
                if let Err(e) = f.sync_data() {
                    e2.lock().get_or_insert(e);
                }
            },
        );
        Ok(BackgroundSync {
            worker,
            error,
            file: file.try_clone().map_err(local)?,
            path: path.to_path_buf(),
        })
    }

    fn kick(&self) -> Result<()> {
        let local = |source| RemoteError::Local {
            path: self.path.display().to_string(),
            source,
        };
        if let Some(e) = self.error.lock().take() {
            return Err(local(e));
        }
        if self.worker.submit(()).is_err() {
            self.file.sync_data().map_err(local)?;
        }
        Ok(())
    }
}
