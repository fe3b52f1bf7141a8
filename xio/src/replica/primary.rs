//! [`PrimaryGraph`]: the primary's graph of one resource.

use super::ReplicaError;
use crate::csum::CsumDisk;
use crate::file::{self, Backend, DirectIo, FileOptions};
use crate::log::{LogName, LogPos};
use crate::logger::{LoggerConfig, TransLogger};
use crate::nbd::{Export, NbdServer, ServerConfig};
use brick_core::Output;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How to build a primary.
#[derive(Clone)]
pub struct PrimaryConfig {
    /// The data device (file or block device).
    pub data: PathBuf,
    /// Its size (a file is created sparse with this size if missing).
    pub size: u64,
    /// The resource's log directory.
    pub log_dir: PathBuf,
    /// Where the NBD export listens (Unix socket).
    pub nbd_socket: PathBuf,
    /// The logger's settings (resource and node name; `keep_logs` is forced on: the
    /// secondaries fetch the logs, and `log-delete` removes them).
    pub logger: LoggerConfig,
    /// The IO backend of the data device.
    pub backend: Backend,
    /// `O_DIRECT` on the data device (and the log files, unless `log_direct` says otherwise;
    /// default `auto`: for block devices).
    pub direct: DirectIo,
    /// `O_DIRECT` on the log files (default `auto`: as the data device).
    pub log_direct: DirectIo,
    /// Keep per-block checksums of the data device in this file (`None`: no checksums).
    pub checksums: Option<PathBuf>,
    /// Verify reads against the checksums.
    pub verify_reads: bool,
}

impl PrimaryConfig {
    /// Defaults for resource `res` on node `node`.
    pub fn new(
        res: &str,
        node: &str,
        data: &Path,
        size: u64,
        log_dir: &Path,
        nbd_socket: &Path,
    ) -> PrimaryConfig {
        PrimaryConfig {
            data: data.to_path_buf(),
            size,
            log_dir: log_dir.to_path_buf(),
            nbd_socket: nbd_socket.to_path_buf(),
            logger: LoggerConfig {
                resource: res.to_string(),
                node: node.to_string(),
                ..LoggerConfig::default()
            },
            backend: Backend::IoUring,
            direct: DirectIo::Auto,
            log_direct: DirectIo::Auto,
            checksums: None,
            verify_reads: true,
        }
    }
}

/// A running primary: logger and NBD export.
pub struct PrimaryGraph {
    file: Arc<file::FileBrick>,
    csum: Option<Arc<CsumDisk>>,
    node: String,
    res: String,
    logger: Arc<TransLogger>,
    nbd: NbdServer,
    tcp: Option<Arc<NbdServer>>,
    clients: Arc<AtomicU64>,
    export: Export,
    nbd_socket: PathBuf,
    /// `O_DIRECT` on the data device, on the log files (as resolved at start).
    direct: (bool, bool),
}

/// What a stopped primary leaves behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedPrimary {
    /// The last log it wrote.
    pub last_log: LogName,
    /// That log's final length.
    pub last_len: u64,
}

impl PrimaryGraph {
    /// Open the data device, recover the log directory (replaying the node's own log onto the
    /// device), then start the NBD export.
    pub fn start(cfg: PrimaryConfig) -> Result<PrimaryGraph, ReplicaError> {
        let direct = cfg.direct.resolve(&cfg.data);
        let opts = FileOptions {
            create_size: Some(cfg.size),
            direct,
            ..FileOptions::default()
        };
        let file = file::open(&cfg.data, cfg.backend, &opts)?;
        let csum = match &cfg.checksums {
            Some(path) => Some(CsumDisk::open(
                file.clone(),
                &cfg.data.display().to_string(),
                path,
                cfg.verify_reads,
            )?),
            None => None,
        };
        let data: Arc<dyn Output> = match &csum {
            Some(c) => c.clone(),
            None => file.clone(),
        };
        let mut lcfg = cfg.logger.clone();
        lcfg.keep_logs = true;
        // O_DIRECT log files are written in the aligned format v2.
        let log_direct = cfg.log_direct.resolve_log(direct);
        lcfg.log_direct = log_direct;
        let logger = TransLogger::open(data, &cfg.log_dir, lcfg)?;
        let export = Export::new(cfg.logger.resource.clone(), logger.clone())
            .map_err(|source| ReplicaError::Nbd {
                what: "creating the export".into(),
                source,
            })?
            .multi_conn(true)
            .description(format!(
                "MARS resource {} on {}",
                cfg.logger.resource, cfg.logger.node
            ));
        let clients = export.client_count();
        let nbd = NbdServer::new(ServerConfig::default());
        let up = nbd.add_export(export.clone()).and_then(|()| {
            if let Some(dir) = cfg.nbd_socket.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::remove_file(&cfg.nbd_socket);
            nbd.listen_unix(&cfg.nbd_socket)
        });
        if let Err(e) = up {
            let _ = logger.close();
            return Err(ReplicaError::Nbd {
                what: format!("listening at {}", cfg.nbd_socket.display()),
                source: e,
            });
        }
        Ok(PrimaryGraph {
            file,
            csum,
            node: cfg.logger.node.clone(),
            res: cfg.logger.resource.clone(),
            logger,
            nbd,
            tcp: None,
            clients,
            export,
            nbd_socket: cfg.nbd_socket.clone(),
            direct: (direct, log_direct),
        })
    }

    /// Also serve the export on a (shared) TCP server, under the resource's name.
    pub fn serve_tcp(&mut self, tcp: Arc<NbdServer>) {
        tcp.remove_export(&self.res);
        if let Err(e) = tcp.add_export(self.export.clone()) {
            tracing::warn!(res = %self.res, "cannot add the TCP export: {e}");
            return;
        }
        self.tcp = Some(tcp);
    }

    /// How the data device and the log files are written, for operators: e.g.
    /// `data page cache, log O_DIRECT`.
    pub fn io_mode(&self) -> String {
        let mode = |direct: bool| if direct { "O_DIRECT" } else { "page cache" };
        format!("data {}, log {}", mode(self.direct.0), mode(self.direct.1))
    }

    /// The logger (the device the NBD export serves; also what syncing peers read).
    pub fn logger(&self) -> &Arc<TransLogger> {
        &self.logger
    }

    /// Grow the resource online to `size` bytes: a regular data file is extended, a block
    /// device must already be that large; then the logger accepts requests up to the new end
    /// (NBD clients see it when they connect again).
    pub fn grow(&self, size: u64) -> Result<(), ReplicaError> {
        if self.file.info()?.size < size {
            self.file.set_size(size)?;
        }
        if let Some(c) = &self.csum {
            c.grow(size)?;
        }
        self.logger.grow(size)?;
        Ok(())
    }

    /// The size the export serves now.
    pub fn size(&self) -> u64 {
        self.logger.info().map_or(0, |i| i.size)
    }

    /// The checksums of the data device, if kept.
    pub fn checksums(&self) -> Option<&Arc<CsumDisk>> {
        self.csum.as_ref()
    }

    /// Where the NBD export listens (Unix socket).
    pub fn nbd_socket(&self) -> &Path {
        &self.nbd_socket
    }

    /// NBD clients connected now (Unix and TCP).
    pub fn clients(&self) -> u64 {
        self.clients.load(Ordering::SeqCst)
    }

    /// The log being written.
    pub fn current_log(&self) -> LogName {
        LogName::new(self.logger.status().durable_end.seq, self.node.clone())
    }

    /// The durable end of the log and the watermark.
    pub fn positions(&self) -> (LogPos, LogPos) {
        let s = self.logger.status();
        (s.durable_end, s.min_pos)
    }

    /// Stop: no new NBD connections, the current ones end (after `timeout` they are cut),
    /// then the logger writes everything back and closes.
    pub fn stop(self, timeout: Duration) -> Result<StoppedPrimary, ReplicaError> {
        if let Some(t) = &self.tcp {
            t.remove_export(&self.res);
        }
        self.nbd.shutdown(timeout);
        self.logger.close()?;
        let end = self.logger.status().durable_end;
        Ok(StoppedPrimary {
            last_log: LogName::new(end.seq, self.node.clone()),
            last_len: end.offset,
        })
    }

    /// Stop at once, as a crash would (tests).
    pub fn kill(self) {
        self.nbd.shutdown(Duration::from_millis(100));
        self.logger.kill();
    }
}
