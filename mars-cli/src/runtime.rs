//! The executors of one resource on this node: they own the brick graphs and workers that
//! [`mars_strategy::strategy::derive`]'s actions ask for, and report [`Facts`] back.

use mars_net::{ChannelKind, NetConfig};
use mars_strategy::strategy::{
    Action, Facts, FetchFact, LocalLog, PrimaryFact, Running, Snapshot, SyncFact,
};
use mars_strategy::views::{LogName, ReplayLink, Switch, VersionLink};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xio::csum::CsumDisk;
use xio::file::{self, Backend, FileOptions};
use xio::logger::{FsLogStore, LogStore};
use xio::nbd::NbdServer;
use xio::remote::{ClientConfig, Exports, Target};
use xio::replica::{
    verified_prefix, FetchWorker, LogSizes, PrimaryConfig, PrimaryGraph, ReplayWorker, SyncWorker,
};

mod checksums;
pub use checksums::csum_path;

/// How long a stopping primary waits for its NBD clients' last requests.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// A failed fetch or sync is started again at the earliest after this long.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// A failed replay step is tried again after this long (the error is reported meanwhile).
const REPLAY_RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the executors need from the daemon.
pub struct Env<'a> {
    /// This node.
    pub me: &'a str,
    /// The mars directory.
    pub dir: &'a Path,
    /// Transport settings for fetch and sync clients.
    pub net: &'a NetConfig,
    /// Peer addresses.
    pub addr: &'a dyn Fn(&str) -> Option<SocketAddr>,
    /// The node's log and device server.
    pub exports: &'a Exports,
    /// The shared TCP NBD server (`--nbd-listen`).
    pub tcp_nbd: Option<&'a Arc<NbdServer>>,
    /// The node's memory budget: a primary's logger draws from a share of it.
    pub budget: &'a brick_core::NodeBudget,
    /// The floor of each share (`--mem-floor`).
    pub mem_floor: u64,
    /// `O_DIRECT` on a primary's data device and logs (`--direct-io`).
    pub direct_io: xio::file::DirectIo,
    /// `O_DIRECT` on a primary's log files (`--log-direct-io`; auto: as the data device).
    pub log_direct_io: xio::file::DirectIo,
    /// Deleted log files a primary keeps to reuse (`--log-spares`).
    pub log_spares: usize,
    /// A primary's log file is rotated at this size (`--log-rotate-size`).
    pub log_rotate_size: u64,
    /// Where primaries' loggers publish their durable ends (for the log server).
    pub live_ends: &'a xio::log::LiveEnds,
    /// The node clock (ns).
    pub now: u64,
}

/// Free space in the mars directory and the levels that act on it (upstream's emergency
/// levels 3 and 4).
#[derive(Debug, Clone, Copy, Default)]
pub struct Space {
    /// Free bytes now.
    pub free: Option<u64>,
    /// A secondary deletes the logs it replayed below this.
    pub delete_logs_below: u64,
    /// A secondary stops fetching below this.
    pub stop_fetch_below: u64,
    /// A primary stops logging below this (emergency mode).
    pub emergency_below: u64,
}

/// A metadata write the executors want (relative to `resource-<r>/`; `None` deletes).
pub type LinkWrite = (String, Option<String>);

/// One resource's graphs and workers.
pub struct ResourceRt {
    res: String,
    log_dir: PathBuf,
    primary: Option<PrimaryGraph>,
    /// The secondary's data device, and the checksums in front of it.
    data: Option<(Arc<file::FileBrick>, Arc<CsumDisk>)>,
    /// The checksum file of the data device (outside `log_dir`: `invalidate` keeps it).
    csum_path: PathBuf,
    /// Reads are verified against the checksums (`resource-<r>/verify-reads`).
    verify_reads: bool,
    scrub: Option<checksums::Scrub>,
    /// The last scrub that ended here.
    last_scrub: Option<crate::scrub::ScrubProgress>,
    /// This secondary's part of a `verify` (replay is held while its table is taken).
    verify_hold: Option<crate::verify::VerifyHold>,
    /// Read mismatches last published.
    csum_errors_published: u64,
    fetch: Option<(LogName, String, FetchWorker)>,
    fetch_ended: Option<FetchFact>,
    replay: Option<(LogName, ReplayWorker)>,
    replay_failed: Option<(String, Instant)>,
    fetch_failed_at: Option<Instant>,
    sync_failed_at: Option<Instant>,
    sync: Option<SyncWorker>,
    sync_fact: Option<SyncFact>,
    verified: BTreeMap<LogName, (u64, u64)>,
    /// The log files' valid lengths, read every round (finished logs' headers kept; the file
    /// this node's logger writes up to its durable end).
    log_sizes: LogSizes,
    /// The number of log files and their valid bytes as the last round's facts read them.
    log_totals: Option<(usize, u64)>,
    last_report: Option<String>,
    last_log: Option<(LogName, u64)>,
}

impl ResourceRt {
    /// The executors of `res`, keeping its logs in `DIR/resource-<res>/`; `live`: the durable
    /// ends the loggers of this process publish (its log sizes end the file written there).
    pub fn new(dir: &Path, res: &str, live: &xio::log::LiveEnds) -> ResourceRt {
        ResourceRt {
            res: res.to_string(),
            log_dir: dir.join(format!("resource-{res}")),
            primary: None,
            data: None,
            csum_path: checksums::csum_path(dir, res),
            verify_reads: true,
            scrub: None,
            last_scrub: None,
            verify_hold: None,
            csum_errors_published: 0,
            fetch: None,
            fetch_ended: None,
            replay: None,
            replay_failed: None,
            fetch_failed_at: None,
            sync_failed_at: None,
            sync: None,
            sync_fact: None,
            verified: BTreeMap::new(),
            log_sizes: LogSizes::new().with_live_ends(live.clone()),
            log_totals: None,
            last_report: None,
            last_log: None,
        }
    }

    /// The resource's log directory.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The running primary graph.
    pub fn primary(&self) -> Option<&PrimaryGraph> {
        self.primary.as_ref()
    }

    /// The last message reported.
    pub fn report(&self) -> Option<&str> {
        self.last_report.as_deref()
    }

    /// After a round: a condition reported earlier that no rule reports any more is cleared
    /// (`actual-<me>/msg` = `OK`), so that `view` never shows a stale reason.
    pub fn end_round(&mut self, me: &str, reported: bool) -> Vec<LinkWrite> {
        if reported || self.last_report.take().is_none() {
            return Vec::new();
        }
        vec![(format!("actual-{me}/msg"), Some("OK".into()))]
    }

    /// The local log files and their valid bytes (the metrics ask every second), as the last
    /// round's facts read them: the metrics are rendered right after a round, so they are at
    /// most one round old (a log the round's actions deleted still counts until the next
    /// round). Before this resource's first round, read now.
    pub fn log_totals(&mut self) -> (usize, u64) {
        match self.log_totals {
            Some(t) => t,
            None => totals(self.log_sizes.scan(&self.log_dir).values().copied()),
        }
    }

    /// Whether anything runs.
    pub fn is_idle(&self) -> bool {
        self.primary.is_none()
            && self.fetch.is_none()
            && self.replay.is_none()
            && self.sync.is_none()
    }

    /// Collect finished workers: the links they leave (replay position) and their facts.
    pub fn poll(&mut self, me: &str, now: u64) -> Vec<LinkWrite> {
        let mut links = self.poll_checksums(me);
        let mut replay_failed_in = None;
        if let Some((log, w)) = &self.replay {
            let st = w.state();
            if !st.running {
                if let Some(to) = st.reached {
                    tracing::info!(res = %self.res, "replayed {log} up to {to} ({} records)", st.records);
                    let link = ReplayLink {
                        log: log.clone(),
                        pos: to,
                        len: 0,
                    };
                    links.push((format!("replay-{me}"), Some(link.to_string())));
                    self.replay_failed = None;
                } else if let Some(e) = st.failed {
                    tracing::error!(res = %self.res, log = %log, "replay failed: {e}");
                    self.replay_failed = Some((e, Instant::now()));
                    replay_failed_in = Some(log.clone());
                }
                self.replay = None;
            }
        }
        if let Some(log) = replay_failed_in {
            self.cut_damaged_copy(&log);
        }
        if let Some((log, peer, w)) = &self.fetch {
            let st = w.state();
            if st.done || st.failed.is_some() {
                if st.failed.is_some() {
                    self.fetch_failed_at = Some(Instant::now());
                }
                if let Some(at) = st.corrupt_at {
                    // Cut the copy back to what verified, so that the next fetch gets those
                    // bytes again instead of appending after a corrupt record.
                    let path = self.log_dir.join(log.to_string());
                    tracing::warn!(res = %self.res, log = %log, at, "fetched bytes do not verify: cutting the local copy back to the verified prefix and fetching again");
                    if let Err(e) = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_len(at))
                    {
                        tracing::error!(res = %self.res, "cannot cut {}: {e}", path.display());
                    }
                }
                self.fetch_ended = Some(FetchFact {
                    log: log.clone(),
                    peer: peer.clone(),
                    done: st.done,
                    failed: st.failed.clone(),
                });
                self.verified.insert(log.clone(), (st.local, st.verified));
                self.fetch = None;
            }
        }
        if let Some(w) = &self.sync {
            let st = w.state();
            let f = self.sync_fact.get_or_insert(SyncFact {
                pos: st.pos,
                done_at: None,
                failed: None,
            });
            f.pos = st.pos;
            if st.done && f.done_at.is_none() {
                f.done_at = Some(now);
                if let Some((file, _)) = &self.data {
                    drop_page_cache_after_sync(file.clone());
                }
            }
            if st.done {
                // Finished: its connections and threads go (they stayed for the life of the
                // secondary: 3 threads here and 2 connections on the primary per resource);
                // the fact stays.
                self.sync = None;
            }
            if st.failed.is_some() {
                f.failed = st.failed.clone();
                self.sync = None;
                self.sync_failed_at = Some(Instant::now());
            }
        }
        links
    }

    /// Delete a log file; a primary keeps its own as spares for its later log files
    /// (`--log-spares`), fetched copies go.
    fn delete_log(&self, log: &LogName, env: &Env<'_>) -> Result<(), String> {
        if self.primary.is_none() || log.creator != env.me {
            return std::fs::remove_file(self.log_dir.join(log.to_string()))
                .map_err(|e| e.to_string());
        }
        FsLogStore::new(&self.log_dir, env.me)
            .and_then(|s| {
                s.with_spares(env.log_spares)
                    .with_live_ends(Some(env.live_ends.clone()))
                    .remove(log.seq)
            })
            .map_err(|e| e.to_string())
    }

    /// After a failed replay of `log`: when the local copy no longer verifies (bytes that
    /// verified when fetched were damaged since), cut it back to the prefix that still does,
    /// so that fetch gets the rest again (upstream's `destroy_secondary_logfile`).
    fn cut_damaged_copy(&mut self, log: &LogName) {
        let path = self.log_dir.join(log.to_string());
        let Ok(len) = std::fs::metadata(&path).map(|m| m.len()) else {
            return;
        };
        let good = verified_prefix(&path, log);
        if good >= len {
            return; // the copy is intact: the replay failed for another reason
        }
        if self.fetch.as_ref().is_some_and(|(l, _, _)| l == log) {
            // It appends at its own offset: it must not write after the cut.
            if let Some((_, _, w)) = self.fetch.take() {
                w.stop();
            }
            self.fetch_ended = None;
        }
        tracing::warn!(res = %self.res, log = %log, good, len, "the local copy is damaged after offset {good}: cutting it back there and fetching the rest again");
        if let Err(e) = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(good))
        {
            tracing::error!(res = %self.res, "cannot cut {}: {e}", path.display());
        }
        self.verified.remove(log);
    }

    /// What runs and how far it got.
    pub fn facts(&mut self, s: &Snapshot, now: u64, started: u64, space: &Space) -> Facts {
        let attached = s.mine().is_some_and(|m| m.switch(Switch::Attach));
        let running = if self.primary.is_some() {
            Running::Primary
        } else if !self.is_idle() || (attached && s.mine().is_some()) {
            Running::Secondary
        } else {
            Running::Nothing
        };
        // The logger's status first, the log files after it: the strategy writes the version
        // link of every log this status says the logger has left, with the length read here,
        // and a length read before the status could be that of a log still being written (or
        // of the next log, created ahead and still empty: a lagging secondary then took it
        // for complete at 0 bytes and skipped it).
        let primary = self.primary.as_ref().map(|p| {
            let st = p.logger().status();
            PrimaryFact {
                log: LogName::new(st.durable_end.seq, s.me.clone()),
                end: st.durable_end.offset,
                clients: p.clients(),
                min_seq: st.min_pos.seq,
                bypass: st.mode.is_emergency(),
                hole: st.hole.map(|h| (h.seq, h.offset)),
                writeback_error: st.writeback_error,
                failed: st.error,
            }
        });
        let mut local_logs = BTreeMap::new();
        for (log, len) in self.log_sizes.scan(&self.log_dir) {
            let verified = match &self.fetch {
                Some((l, _, w)) if *l == log => w.state().verified,
                _ if log.creator == s.me && self.primary.is_some() => len,
                _ => match self.verified.get(&log) {
                    Some((l, v)) if *l == len => *v,
                    _ => {
                        let v = verified_prefix(&self.log_dir.join(log.to_string()), &log);
                        self.verified.insert(log.clone(), (len, v));
                        v
                    }
                },
            };
            local_logs.insert(log, LocalLog { len, verified });
        }
        self.log_totals = Some(totals(local_logs.values().map(|l| l.len)));
        let fetch = match &self.fetch {
            Some((log, peer, w)) => {
                let st = w.state();
                Some(FetchFact {
                    log: log.clone(),
                    peer: peer.clone(),
                    done: st.done,
                    failed: st.failed,
                })
            }
            None => self.fetch_ended.clone(),
        };
        if let Some(p) = &primary {
            self.last_log = Some((p.log.clone(), p.end));
        }
        Facts {
            running,
            local_logs,
            fetch,
            replay_busy: self.replay.is_some(),
            replay_failed: self
                .replay_failed
                .as_ref()
                .filter(|(_, at)| at.elapsed() < REPLAY_RETRY_AFTER)
                .map(|(e, _)| e.clone()),
            sync: self.sync_fact.clone(),
            primary,
            now,
            started,
            free_space: space.free,
            delete_logs_below: space.delete_logs_below,
            stop_fetch_below: space.stop_fetch_below,
            emergency_below: space.emergency_below,
        }
    }

    fn data_device(&mut self, s: &Snapshot) -> Result<Arc<dyn brick_core::Output>, String> {
        Ok(self.checked_device(s)?)
    }

    /// The secondary's data device behind its checksums, opened once; after a resize it
    /// sees the new size (the file's size is read again, the checksum file grows).
    fn checked_device(&mut self, s: &Snapshot) -> Result<Arc<CsumDisk>, String> {
        let want = s.size.unwrap_or(0);
        if let Some((file, d)) = &self.data {
            use brick_core::Output;
            if d.info().is_ok_and(|i| i.size < want) {
                file.refresh_size()
                    .and_then(|size| d.grow(size))
                    .map_err(|e| format!("seeing the grown data device: {e}"))?;
            }
            return Ok(d.clone());
        }
        let path = &s.mine().ok_or("not a member")?.data;
        let raw = file::open(path, Backend::IoUring, &FileOptions::default())
            .map_err(|e| format!("opening the data device {path}: {e}"))?;
        let _ = std::fs::create_dir_all(self.csum_path.parent().unwrap_or(Path::new(".")));
        let d =
            CsumDisk::open(raw.clone(), path, &self.csum_path, self.verify_reads).map_err(|e| {
                format!(
                    "opening the checksums of {path} ({}): {e}",
                    self.csum_path.display()
                )
            })?;
        self.data = Some((raw, d.clone()));
        Ok(d)
    }

    fn client(
        &self,
        env: &Env<'_>,
        peer: &str,
        kind: ChannelKind,
        target: Target,
    ) -> Result<ClientConfig, String> {
        let addr = (env.addr)(peer)
            .ok_or_else(|| format!("no address known for node {peer} (ips/ip-{peer})"))?;
        let mut c = ClientConfig::new(env.net.clone(), addr, kind, target);
        c.timeout = Duration::from_secs(10);
        Ok(c)
    }

    fn stop_secondary(&mut self) {
        self.stop_scrub();
        if let Some((_, _, w)) = self.fetch.take() {
            w.stop();
        }
        if let Some((_, w)) = self.replay.take() {
            let _ = w.join();
        }
        if let Some(w) = self.sync.take() {
            w.stop();
        }
        self.fetch_ended = None;
        self.sync_fact = None;
        self.data = None;
    }

    /// Stop everything (daemon shutdown, leave-resource).
    pub fn shutdown(&mut self) {
        self.stop_secondary();
        self.stop_scrub();
        if let Some(p) = self.primary.take() {
            if let Err(e) = p.stop(STOP_TIMEOUT) {
                tracing::error!(res = %self.res, "stopping the primary: {e}");
            }
        }
    }

    /// Execute one action. Link writes it leads to are returned.
    pub fn execute(&mut self, a: &Action, s: &Snapshot, env: &Env<'_>) -> Vec<LinkWrite> {
        let mut links = Vec::new();
        let res = self.res.clone();
        match a {
            Action::SetLink { key, value } => links.push((key.clone(), Some(value.clone()))),
            Action::DeleteLink { key } => links.push((key.clone(), None)),
            Action::Report { msg } => {
                if self.last_report.as_deref() != Some(msg) {
                    tracing::info!(%res, "{msg}");
                    self.last_report = Some(msg.clone());
                    links.push((format!("actual-{}/msg", env.me), Some(msg.clone())));
                }
            }
            Action::StopSecondary => self.stop_secondary(),
            Action::EnterEmergency { reason } => {
                if let Some(p) = &self.primary {
                    tracing::error!(%res, "entering emergency mode: {reason}; writes go straight to the data device, the secondaries become outdated");
                    p.logger().enter_emergency();
                }
            }
            Action::StartPrimary => {
                self.stop_secondary();
                let Some(me) = s.mine() else { return links };
                let mut cfg = PrimaryConfig::new(
                    &res,
                    env.me,
                    Path::new(&me.data),
                    s.size.unwrap_or(0),
                    &self.log_dir,
                    &env.dir.join("nbd").join(format!("{res}.sock")),
                );
                cfg.logger.rotate_size = env.log_rotate_size;
                cfg.logger.budget = Some(memory_share(&res, env));
                cfg.direct = env.direct_io;
                cfg.log_direct = env.log_direct_io;
                cfg.logger.log_spares = env.log_spares;
                cfg.logger.live_ends = Some(env.live_ends.clone());
                let _ = std::fs::create_dir_all(self.csum_path.parent().unwrap_or(Path::new(".")));
                cfg.checksums = Some(self.csum_path.clone());
                cfg.verify_reads = self.verify_reads;
                match PrimaryGraph::start(cfg) {
                    Ok(mut p) => {
                        if let Some(t) = env.tcp_nbd {
                            p.serve_tcp(t.clone());
                        }
                        env.exports.add_device(&res, p.logger().clone());
                        tracing::info!(%res, log = %p.current_log(), io = %p.io_mode(), "primary: logger and NBD export started");
                        self.primary = Some(p);
                        self.last_report = None;
                        links.push((format!("actual-{}/msg", env.me), Some("OK".into())));
                    }
                    Err(e) => {
                        let msg = format!("cannot start the primary: {e}");
                        tracing::error!(%res, "{msg}");
                        links.push((format!("actual-{}/msg", env.me), Some(msg)));
                    }
                }
            }
            Action::StopPrimary { reason } => {
                let Some(p) = self.primary.take() else {
                    return links;
                };
                self.stop_scrub();
                env.exports.remove_device(&res);
                tracing::info!(%res, "stopping the primary: {reason}");
                match p.stop(STOP_TIMEOUT) {
                    Ok(st) => {
                        // The last log is finished: its version link (chained onto mine of
                        // the log before it) tells the others where it ends.
                        let prev = s
                            .version_value(st.last_log.seq.wrapping_sub(1), env.me)
                            .unwrap_or("")
                            .to_string();
                        let v = VersionLink::next(&prev, st.last_log.clone(), st.last_len);
                        links.push((
                            format!("version-{:09}-{}", st.last_log.seq, env.me),
                            Some(v.to_string()),
                        ));
                        let here = ReplayLink {
                            log: st.last_log,
                            pos: st.last_len,
                            len: 0,
                        };
                        links.push((format!("replay-{}", env.me), Some(here.to_string())));
                        links.push((format!("actual-{}/is-primary", env.me), Some("0".into())));
                        links.push((format!("actual-{}/open-count", env.me), Some("0".into())));
                    }
                    Err(e) => {
                        let msg = format!("stopping the primary failed: {e}");
                        tracing::error!(%res, "{msg}");
                        links.push((format!("actual-{}/msg", env.me), Some(msg)));
                    }
                }
            }
            Action::Fetch { log, peer, .. } => {
                if self.fetch.is_none()
                    && self
                        .fetch_failed_at
                        .is_some_and(|t| t.elapsed() < RETRY_AFTER)
                {
                    return links; // retried after a pause
                }
                if let Some((_, _, w)) = self.fetch.take() {
                    w.stop();
                }
                self.fetch_ended = None;
                let remote = format!("resource-{res}/{log}");
                match self.client(env, peer, ChannelKind::Fetch, Target::Log(remote.clone())) {
                    Ok(mut c) => {
                        // A log fetch is one sequential stream: one connection (a thread on
                        // each side) per fetching replica, also while it only follows an
                        // idle log.
                        c.connections = 1;
                        let _ = std::fs::create_dir_all(&self.log_dir);
                        let w =
                            FetchWorker::start(log, &remote, self.log_dir.join(log.to_string()), c);
                        self.fetch = Some((log.clone(), peer.clone(), w));
                    }
                    Err(e) => {
                        self.fetch_failed_at = Some(Instant::now());
                        self.fetch_ended = Some(FetchFact {
                            log: log.clone(),
                            peer: peer.clone(),
                            done: false,
                            failed: Some(e),
                        })
                    }
                }
            }
            Action::StopFetch => {
                if let Some((_, _, w)) = self.fetch.take() {
                    w.stop();
                }
                self.fetch_ended = None;
            }
            // A verify takes this replica's checksums at a fixed position: replay waits.
            Action::Replay { .. }
                if matches!(
                    self.verify_hold,
                    Some(
                        crate::verify::VerifyHold::Holding(_)
                            | crate::verify::VerifyHold::Ready(..)
                    )
                ) => {}
            Action::Replay { log, from, to } => match self.data_device(s) {
                Ok(d) => {
                    // Operators (and the restart tests) see where each step starts: after a
                    // restart it must be the persisted replay position.
                    tracing::info!(%res, "replay step: {log} from {from} to {to}");
                    let w = ReplayWorker::start(d, &self.log_dir, env.me, &res, log, *from, *to);
                    self.replay = Some((log.clone(), w));
                }
                Err(e) => self.replay_failed = Some((e, Instant::now())),
            },
            Action::StartSync { peer, from, size } => {
                if self.sync.is_none()
                    && self
                        .sync_failed_at
                        .is_some_and(|t| t.elapsed() < RETRY_AFTER)
                {
                    return links; // retried after a pause
                }
                if let Some(w) = self.sync.take() {
                    w.stop();
                }
                let started = self.data_device(s).and_then(|d| {
                    Ok((
                        d,
                        self.client(env, peer, ChannelKind::Sync, Target::Device(res.clone()))?,
                    ))
                });
                match started {
                    Ok((d, c)) => {
                        let _ = std::fs::create_dir_all(&self.log_dir);
                        let w = SyncWorker::start(
                            &res,
                            c,
                            d,
                            *from,
                            *size,
                            self.log_dir.join("sync.restart"),
                        );
                        self.sync_fact = Some(SyncFact {
                            pos: *from,
                            done_at: None,
                            failed: None,
                        });
                        self.sync = Some(w);
                    }
                    Err(e) => {
                        self.sync_failed_at = Some(Instant::now());
                        self.sync_fact = Some(SyncFact {
                            pos: *from,
                            done_at: None,
                            failed: Some(e),
                        })
                    }
                }
            }
            Action::StopSync => {
                if let Some(w) = self.sync.take() {
                    w.stop();
                }
                self.sync_fact = None;
            }
            Action::DeleteLocalLog { log } => {
                let path = self.log_dir.join(log.to_string());
                match self.delete_log(log, env) {
                    Ok(()) => tracing::info!(%res, "deleted {}", path.display()),
                    Err(e) => tracing::warn!(%res, "cannot delete {}: {e}", path.display()),
                }
                self.verified.remove(log);
            }
        }
        links
    }
}

/// After a full sync the data device's page cache holds what the sync wrote, in large folios,
/// and every 4 KiB replayed write into one walks buffer heads for the whole folio (44 % of a
/// secondary's samples under random writes; its CPU halved once the cache was dropped). Write
/// it out and drop it, beside the resource's round: the `fdatasync` may take a while.
fn drop_page_cache_after_sync(file: Arc<file::FileBrick>) {
    let spawned = std::thread::Builder::new()
        .name("drop-cache".into())
        .spawn(move || {
            let device = brick_core::Brick::name(&*file);
            match file.drop_page_cache() {
                Ok(()) => tracing::debug!(%device, "page cache dropped after the sync"),
                Err(e) => tracing::warn!(
                    %device,
                    "cannot drop the page cache after the sync (replay stays correct, only \
                     slower for small writes): {e}"
                ),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a thread to drop the page cache after the sync: {e}");
    }
}

/// How many log files and their bytes.
fn totals(lens: impl ExactSizeIterator<Item = u64>) -> (usize, u64) {
    (lens.len(), lens.sum())
}

/// The share of the node's memory budget for the primary of `res`. A floor smaller than asked
/// for (the other resources' floors fill the budget) is logged: that resource may then wait
/// for memory behind busier ones.
fn memory_share(res: &str, env: &Env<'_>) -> Arc<brick_core::MemBudget> {
    let share = env.budget.share(env.mem_floor, env.budget.limit());
    if share.floor() < env.mem_floor {
        tracing::warn!(
            %res,
            "the memory floor of this primary is {} bytes instead of --mem-floor {}: the other \
             primaries' floors fill --mem-budget {}; raise --mem-budget or lower --mem-floor so \
             that every primary's floor fits",
            share.floor(),
            env.mem_floor,
            env.budget.limit()
        );
    }
    share
}
