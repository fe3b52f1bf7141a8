//! The secondary pipeline's workers. Each runs on a thread of its own; the owner polls its
//! state and stops it (a stopped worker keeps nothing half-done: fetch appends whole pieces,
//! replay persists a position only after the device flush, sync persists its restart point).

use crate::copy::{Copy, CopyConfig, CopySource};
use crate::log::{LogName, LogPos};
use crate::logger::{replay_store, FsLogStore, LogState, LogStore, ReplayOptions};
use crate::remote::{log_verifier, ClientConfig, FetchConfig, LogFetch, RemoteClient};
use brick_core::Output;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// How far a local log file verifies (record checks from the start; a record-aligned prefix).
/// A damaged record leaves the prefix before it (so that only the rest is fetched again).
pub fn verified_prefix(path: &Path, log: &LogName) -> u64 {
    crate::remote::verify::verified_len(path, Some(log.seq))
}

/// Where a fetch stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchState {
    /// Bytes here.
    pub local: u64,
    /// Bytes that verified.
    pub verified: u64,
    /// The fetch returned: the remote log is finished and all of it is here.
    pub done: bool,
    /// It stopped with this error.
    pub failed: Option<String>,
    /// It stopped because the bytes after this offset do not verify (a corrupt record): the
    /// local copy should be cut back to it before fetching again.
    pub corrupt_at: Option<u64>,
}

/// A log fetch on a thread: `log` from a peer into `local_path`, following its growth.
pub struct FetchWorker {
    fetch: Arc<LogFetch>,
    client: Arc<RemoteClient>,
    state: Arc<Mutex<FetchState>>,
    thread: Option<JoinHandle<()>>,
}

impl FetchWorker {
    /// Start fetching. `client` must target the remote log (`Target::Log(remote_name)`).
    pub fn start(
        log: &LogName,
        remote_name: &str,
        local_path: PathBuf,
        client: ClientConfig,
    ) -> FetchWorker {
        let client = RemoteClient::start(format!("{log}@{}", client.peer), client);
        let mut fc = FetchConfig::new(local_path, remote_name);
        fc.follow_wait_ms = 200;
        fc.verify = Some(log_verifier(Some(log.seq)));
        let fetch = LogFetch::new(client.clone(), fc);
        let state = Arc::new(Mutex::new(FetchState::default()));
        let (f2, s2) = (fetch.clone(), state.clone());
        let name = log.to_string();
        let thread = std::thread::Builder::new()
            .name("replica-fetch".into())
            .spawn(move || {
                let r = f2.run();
                let mut s = s2.lock();
                match r {
                    Ok(p) => s.done = p.finished && p.local == p.remote,
                    Err(e) => {
                        tracing::warn!(log = %name, "log fetch failed: {e}");
                        if let crate::remote::RemoteError::Verify { pos, .. } = &e {
                            s.corrupt_at = Some(*pos);
                        }
                        s.failed = Some(e.to_string());
                    }
                }
            })
            .expect("spawning a thread");
        FetchWorker {
            fetch,
            client,
            state,
            thread: Some(thread),
        }
    }

    /// The state now.
    pub fn state(&self) -> FetchState {
        let p = self.fetch.progress();
        let mut s = self.state.lock().clone();
        s.local = p.local;
        s.verified = p.verified;
        s
    }

    /// Stop and wait for the thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.fetch.stop();
        self.client.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FetchWorker {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Where a replay step stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayState {
    /// Still running.
    pub running: bool,
    /// It finished: everything before this offset is applied, flushed, and recorded in the
    /// local logger state.
    pub reached: Option<u64>,
    /// It failed with this error (nothing after the first bad record was applied).
    pub failed: Option<String>,
    /// Records applied.
    pub records: u64,
}

/// One replay step on a thread: `log` from `from` to `to` onto `data`.
pub struct ReplayWorker {
    state: Arc<Mutex<ReplayState>>,
    thread: Option<JoinHandle<()>>,
}

impl ReplayWorker {
    /// Start replaying. `to` must be record aligned (what fetch verified).
    pub fn start(
        data: Arc<dyn Output>,
        log_dir: &Path,
        me: &str,
        res: &str,
        log: &LogName,
        from: u64,
        to: u64,
    ) -> ReplayWorker {
        let state = Arc::new(Mutex::new(ReplayState {
            running: true,
            ..ReplayState::default()
        }));
        let (s2, dir, me, res, seq) = (
            state.clone(),
            log_dir.to_path_buf(),
            me.to_string(),
            res.to_string(),
            log.seq,
        );
        let thread = std::thread::Builder::new()
            .name("replica-replay".into())
            .spawn(move || {
                let r = replay_step(&*data, &dir, &me, &res, seq, from, to);
                let mut s = s2.lock();
                s.running = false;
                match r {
                    Ok(records) => {
                        s.reached = Some(to);
                        s.records = records;
                    }
                    Err(e) => s.failed = Some(e),
                }
            })
            .expect("spawning a thread");
        ReplayWorker {
            state,
            thread: Some(thread),
        }
    }

    /// The state now.
    pub fn state(&self) -> ReplayState {
        self.state.lock().clone()
    }

    /// Wait for the step to end.
    pub fn join(mut self) -> ReplayState {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.state()
    }
}

impl Drop for ReplayWorker {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn replay_step(
    data: &dyn Output,
    dir: &Path,
    me: &str,
    res: &str,
    seq: u64,
    from: u64,
    to: u64,
) -> Result<u64, String> {
    let store = FsLogStore::new(dir, me).map_err(|e| e.to_string())?;
    let report = replay_store(
        data,
        &store,
        LogPos::new(seq, from),
        ReplayOptions {
            resource: Some(res.to_string()),
            until: Some(LogPos::new(seq, to)),
            ..ReplayOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    // The device is flushed: a logger opened here later (this node becoming primary)
    // starts its recovery at the new position.
    let state = LogState {
        min_pos: LogPos::new(seq, to),
        hole: None,
    };
    store
        .store_state(&state.encode())
        .map_err(|e| format!("recording the replay position in the log state file: {e}"))?;
    Ok(report.records)
}

/// Where a full sync stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncState {
    /// Restart point: everything below is copied and durable here.
    pub pos: u64,
    /// Bytes that differed and travelled.
    pub transferred: u64,
    /// The copy is complete.
    pub done: bool,
    /// It stopped with this error.
    pub failed: Option<String>,
}

/// A full sync on a thread: the peer's device → the local one, from `from` to `size`.
pub struct SyncWorker {
    copy: Arc<Copy>,
    client: Arc<RemoteClient>,
    state: Arc<Mutex<SyncState>>,
    thread: Option<JoinHandle<()>>,
}

impl SyncWorker {
    /// Start syncing. `client` must target the peer's device; `restart_file` keeps the
    /// restart point across stops and crashes.
    pub fn start(
        name: &str,
        client: ClientConfig,
        data: Arc<dyn Output>,
        from: u64,
        size: u64,
        restart_file: PathBuf,
    ) -> SyncWorker {
        let client = RemoteClient::start(format!("sync {name}"), client);
        let cfg = CopyConfig {
            start: from,
            end: Some(size),
            fast: true,
            restart_file: Some(restart_file),
            ..CopyConfig::new()
        };
        let source: Arc<dyn CopySource> = client.clone();
        let copy = Copy::new(format!("sync {name}"), source, data, cfg);
        let state = Arc::new(Mutex::new(SyncState {
            pos: from,
            ..SyncState::default()
        }));
        let (c2, s2, n2) = (copy.clone(), state.clone(), name.to_string());
        let thread = std::thread::Builder::new()
            .name("replica-sync".into())
            .spawn(move || {
                let r = c2.run();
                let mut s = s2.lock();
                match r {
                    Ok(p) => s.done = p.complete,
                    Err(e) => {
                        tracing::warn!(res = %n2, "full sync stopped: {e}");
                        s.failed = Some(e.to_string());
                    }
                }
            })
            .expect("spawning a thread");
        SyncWorker {
            copy,
            client,
            state,
            thread: Some(thread),
        }
    }

    /// The state now.
    pub fn state(&self) -> SyncState {
        let p = self.copy.progress();
        let mut s = self.state.lock().clone();
        s.pos = s.pos.max(p.restart_pos);
        s.transferred = p.transferred;
        s
    }

    /// Stop and wait (the restart point is kept).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.copy.stop();
        self.client.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SyncWorker {
    fn drop(&mut self) {
        self.halt();
    }
}
