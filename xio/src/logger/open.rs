//! Starting a logger: [`TransLogger::open`] (recover a log directory, then log into a fresh
//! file) and [`TransLogger::new`] (hand-wired: a data output and an empty log output).

use super::core::Core;
use super::error::{LoggerError, Result};
use super::fs::FsLogStore;
use super::replay::{replay_store, ReplayOptions, ReplayReport};
use super::state::LogState;
use super::store::LogStore;
use super::{LoggerConfig, TransLogger};
use crate::log::{LogName, LogPos, LogWriter, HEADER_LEN};
use brick_core::{Output, TimeSource};
use std::path::Path;
use std::sync::Arc;

impl TransLogger {
    /// Open the log directory `log_dir` for the data device `data` (new log files are named
    /// after `cfg.node`, which must be a valid [`LogName`] creator): (1) scan the log files,
    /// (2) replay them from the persisted min_pos onto `data` (and flush it), (3) seal a torn
    /// tail and start a fresh log file, (4) persist the new watermark and return the running
    /// brick. See the module docs for the full contract.
    pub fn open(
        data: Arc<dyn Output>,
        log_dir: &Path,
        mut cfg: LoggerConfig,
    ) -> Result<Arc<TransLogger>> {
        if cfg.log_direct && cfg.log_align == 0 {
            // O_DIRECT writes must be aligned: format v2.
            cfg.log_align = crate::log::header::DEFAULT_ALIGN;
        }
        let store = Arc::new(
            FsLogStore::new(log_dir, &cfg.node)?
                .with_direct(cfg.log_direct)
                .with_spares(cfg.log_spares)
                .with_live_ends(cfg.live_ends.clone()),
        );
        // A split brain as its own error before anything else reads the directory.
        store.logs()?;
        TransLogger::open_store(data, store, cfg)
    }

    /// [`TransLogger::open`] on any [`LogStore`] (tests use an in-memory, crashable one).
    pub fn open_store(
        data: Arc<dyn Output>,
        store: Arc<dyn LogStore>,
        cfg: LoggerConfig,
    ) -> Result<Arc<TransLogger>> {
        let (logger, _) = TransLogger::recover(data, store, cfg)?;
        Ok(logger)
    }

    /// Like [`TransLogger::open_store`], also returning what the recovery replay did.
    pub fn recover(
        data: Arc<dyn Output>,
        store: Arc<dyn LogStore>,
        cfg: LoggerConfig,
    ) -> Result<(Arc<TransLogger>, ReplayReport)> {
        let state = match store.load_state()? {
            None => None,
            Some(b) => Some(LogState::decode(&b).map_err(|reason| LoggerError::State {
                dir: store.describe(0),
                reason,
            })?),
        };
        let seqs = store.list()?;
        let from = match state {
            Some(s) => s.min_pos,
            None => LogPos::new(seqs.first().copied().unwrap_or(1), 0),
        };
        let opts = ReplayOptions {
            resource: Some(cfg.resource.clone()),
            depth: cfg.writeback_depth,
            ..ReplayOptions::default()
        };
        let report = replay_store(&*data, &*store, from, opts)?;
        let mut last = seqs.last().copied().unwrap_or(0);
        if let Some((seq, end)) = &report.torn {
            // Seal the torn file; the files after it hold no records (replay checked that).
            tracing::info!(file = %store.describe(*seq), end = ?end, "sealing the torn tail of the log");
            for later in seqs.iter().copied().filter(|s| s > seq) {
                store.remove(later)?;
            }
            last = *seq;
            if end.end() < HEADER_LEN as u64 {
                store.remove(*seq)?;
                last = seq - 1;
            } else {
                store.truncate(*seq, end.end())?;
            }
        }
        let new_seq = (last + 1).max(from.seq).max(1);
        // The new file records where its predecessor's valid bytes end, when replay saw it.
        let prev_end = prev_end(&*store, &report, new_seq, &cfg.resource);
        let min_pos = LogPos::new(new_seq, HEADER_LEN as u64);
        let hole = state.and_then(|s| s.hole);
        // The watermark moves to the new file first, then the old files go, and only then is
        // the new file created: on a full log file system the space of the old files is what
        // the new one needs. A crash in between finds a state pointing at a file that does not
        // exist yet: nothing to replay, and the file is created again.
        store.store_state(&LogState { min_pos, hole }.encode())?;
        let mut oldest = seqs.first().copied().unwrap_or(new_seq);
        if !cfg.keep_logs {
            for seq in store.list()?.into_iter().filter(|&s| s < new_seq) {
                store.remove(seq)?;
            }
            oldest = new_seq;
        }
        let made = store
            .create(new_seq)
            .map_err(LoggerError::from)
            .and_then(|out| {
                let header = crate::log::FileHeader {
                    prev_end,
                    ..header_for(&cfg, new_seq)
                };
                let writer =
                    LogWriter::create(&*out, store.describe(new_seq), header, cfg.compress)?;
                store.durable(new_seq, writer.pos().offset);
                Ok((out, writer))
            });
        let (out, writer) = match made {
            Ok(x) => x,
            Err(e) => {
                // Leave no half-made file behind (a restart would seal it anyway).
                let _ = store.remove(new_seq);
                return Err(e);
            }
        };
        let name = format!("{}/logger", cfg.resource);
        let core = Core::new(name, cfg, data, out, Some(store), min_pos, min_pos, oldest)?;
        let logger = TransLogger::start(core, writer, hole);
        Ok((logger, report))
    }

    /// A hand-wired logger: `log` is an empty log output that becomes log file `log_seq`
    /// (its header is written now). Nothing is replayed and no state file is kept: the caller
    /// persists the watermark from [`LoggerConfig::on_min_pos`] and provides the next log file
    /// with [`TransLogger::connect_next_log`] for rotation.
    pub fn new(
        data: Arc<dyn Output>,
        log: Arc<dyn Output>,
        log_seq: u64,
        cfg: LoggerConfig,
    ) -> Result<Arc<TransLogger>> {
        let writer = LogWriter::create(
            &*log,
            LogName::new(log_seq, cfg.node.as_str()).to_string(),
            header_for(&cfg, log_seq),
            cfg.compress,
        )?;
        let pos = writer.pos();
        let name = format!("{}/logger", cfg.resource);
        let core = Core::new(name, cfg, data, log, None, pos, pos, log_seq)?;
        Ok(TransLogger::start(core, writer, None))
    }
}

/// The valid end of log file `seq - 1` (sealed or ended by now) for `seq`'s header: as the
/// replay saw it, else scanned now (the replay started after it); 0 when there is none.
fn prev_end(store: &dyn LogStore, report: &ReplayReport, seq: u64, resource: &str) -> u64 {
    let Some(prev) = seq.checked_sub(1).filter(|&p| p > 0) else {
        return 0;
    };
    if let Some(&(_, end)) = report.file_ends.iter().find(|(s, _)| *s == prev) {
        return if end >= HEADER_LEN as u64 { end } else { 0 };
    }
    let scanned = store.open(prev).ok().and_then(|(out, len)| {
        let expect = crate::log::Expect {
            resource: Some(resource.to_string()),
            seq: Some(prev),
        };
        let mut s = crate::log::Scanner::open(out, store.describe(prev), len, &expect).ok()?;
        while s.next_raw().ok()?.is_some() {}
        s.end().map(crate::log::ScanEnd::end)
    });
    scanned.filter(|&e| e >= HEADER_LEN as u64).unwrap_or(0)
}

fn header_for(cfg: &LoggerConfig, seq: u64) -> crate::log::FileHeader {
    let mut h = crate::log::FileHeader::new(seq, &cfg.resource, &cfg.node, cfg.log_align);
    h.created = cfg
        .clock
        .as_ref()
        .map_or_else(|| brick_core::SystemTimeSource.now_ns(), |c| c.now().0);
    h
}
