//! The server brick: serves a node's exported data devices and its log files to remote
//! clients over mars-net (`fetch` and `sync` channels). A log is named relative to the
//! exported log root: `<file>` or `<subdir>/<file>` (one directory per resource, e.g.
//! `resource-r0/log-000000001-alice`), where `<file>` is a [`LogName`]. One thread per
//! connection; requests on a connection are served in order (clients bundle several
//! connections for parallelism).
//!
//! On a send error the server just drops the connection: the client resubmits what is lost.

use super::proto::{
    chunk_sum, RemoteReply, RemoteReq, Target, MAX_READ, MAX_SUM_RANGE, MAX_WAIT_MS, MIN_SUM_CHUNK,
};
use super::source::{err, OpenLog, Source};
use crate::log::{LiveEnds, LogName};
use brick_core::Output;
use mars_net::{ChannelKind, Connection, Handlers, Message, NetConfig, Node};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::fs::File;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Split a log target `<file>` or `<subdir>/<file>` into the directory below `root` and the
/// file name, or say why it is not one.
fn log_path(root: &Path, target: &str) -> Result<(PathBuf, String), String> {
    let (dir, file) = match target.split_once('/') {
        Some((sub, file)) => (Some(sub), file),
        None => (None, target),
    };
    let expected = "expected <log file name> or <subdirectory>/<log file name>";
    for c in dir.iter().chain([&file]) {
        if c.is_empty() || c.starts_with('.') || c.contains(['/', '\0']) {
            return Err(format!(
                "invalid log name {target:?}: component {c:?} is empty, starts with '.' or \
                 holds '/' or NUL ({expected})"
            ));
        }
    }
    LogName::parse(file).map_err(|e| format!("invalid log name {target:?}: {e}"))?;
    Ok((
        dir.map_or_else(|| root.to_path_buf(), |d| root.join(d)),
        file.to_string(),
    ))
}

/// What a node exports.
#[derive(Clone)]
pub struct Exports {
    devices: Arc<RwLock<HashMap<String, Arc<dyn Output>>>>,
    log_dir: Option<PathBuf>,
    /// The durable ends of the files the loggers of this process write.
    live: Option<LiveEnds>,
    /// Reads parked at the end of a growing log now.
    waiting: Arc<AtomicU64>,
}

impl Exports {
    /// Export the log files of `log_dir` (if any; its files and those of its subdirectories,
    /// one level deep) and no devices yet.
    pub fn new(log_dir: Option<PathBuf>) -> Exports {
        Exports {
            devices: Arc::default(),
            log_dir,
            live: None,
            waiting: Arc::default(),
        }
    }

    /// Reads waiting now at the end of a log for it to grow (fetchers that have caught up).
    pub fn waiting_reads(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Serve the log files that loggers of this process write only up to their durable ends
    /// (`LoggerConfig::live_ends`): never bytes that are not synced yet, nor the stale bytes
    /// after them in a recycled file.
    pub fn with_live_ends(mut self, live: LiveEnds) -> Exports {
        self.live = Some(live);
        self
    }

    /// Export `dev` under `name` (replaces an earlier export of that name).
    pub fn add_device(&self, name: &str, dev: Arc<dyn Output>) {
        self.devices.write().insert(name.into(), dev);
    }

    /// Withdraw an export.
    pub fn remove_device(&self, name: &str) {
        self.devices.write().remove(name);
    }

    /// The mars-net handlers serving these exports on the fetch and sync channels.
    pub fn handlers(&self) -> Handlers {
        let a = self.clone();
        let b = self.clone();
        Handlers::new()
            .on(ChannelKind::Fetch, move |c: Connection| a.serve(c))
            .on(ChannelKind::Sync, move |c: Connection| b.serve(c))
    }

    /// Start a node listening on `addr` that serves these exports.
    pub fn listen(&self, addr: impl ToSocketAddrs, cfg: NetConfig) -> mars_net::Result<Node> {
        Node::listen(addr, cfg, self.handlers())
    }

    /// Serve one connection until it ends. Driven: reads of an io_uring device it serves
    /// (a full sync's source) complete on this thread, which waits for them anyway.
    pub fn serve(&self, conn: Connection) {
        crate::aio::drive(|| self.serve_driven(conn));
    }

    fn serve_driven(&self, mut conn: Connection) {
        let peer = format!("{}@{}", conn.peer().node, conn.peer().addr);
        let mut files: HashMap<String, OpenLog> = HashMap::new();
        loop {
            let f = match conn.recv() {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(%peer, "remote server connection ends: {e}");
                    return;
                }
            };
            let (id, body) = match f.msg {
                Message::Request { id, body } => (id, body),
                _ => continue,
            };
            let (reply, payload) = match postcard::from_bytes::<RemoteReq>(&body) {
                Ok(req) => self.handle(&req, &mut files),
                Err(e) => {
                    tracing::warn!(%peer, "undecodable remote request: {e}");
                    (
                        err(format!("undecodable request: {e}"), libc::EINVAL),
                        Vec::new(),
                    )
                }
            };
            let body = postcard::to_allocvec(&reply).unwrap_or_default();
            if let Err(e) = conn.reply(id, body, &payload) {
                tracing::debug!(%peer, "remote server cannot reply: {e}");
                return;
            }
        }
    }

    fn handle(
        &self,
        req: &RemoteReq,
        files: &mut HashMap<String, OpenLog>,
    ) -> (RemoteReply, Vec<u8>) {
        let src = match self.source(req.target(), files) {
            Ok(s) => s,
            Err(r) => return (r, Vec::new()),
        };
        let r = match req {
            RemoteReq::Stat { .. } => src
                .stat()
                .map(|(size, finished)| (RemoteReply::Stat { size, finished }, Vec::new())),
            RemoteReq::Read {
                pos, len, wait_ms, ..
            } => self.read(&src, *pos, *len, *wait_ms),
            RemoteReq::Checksums {
                pos, len, chunk, ..
            } => sums(&src, *pos, *len, *chunk),
            RemoteReq::ReadIfDiffers { pos, len, sum, .. } => {
                if *len as usize > MAX_READ {
                    Err(err(
                        format!("read of {len} bytes exceeds {MAX_READ}"),
                        libc::EINVAL,
                    ))
                } else {
                    src.stat().and_then(|(size, finished)| {
                        let data = src.read(*pos, *len as usize, size)?;
                        if data.len() == *len as usize && chunk_sum(&data) == *sum {
                            Ok((RemoteReply::Same, Vec::new()))
                        } else {
                            Ok((RemoteReply::Data { size, finished }, data))
                        }
                    })
                }
            }
        };
        r.unwrap_or_else(|e| (e, Vec::new()))
    }

    fn read(
        &self,
        src: &Source<'_>,
        pos: u64,
        len: u32,
        wait_ms: u32,
    ) -> Result<(RemoteReply, Vec<u8>), RemoteReply> {
        if len as usize > MAX_READ {
            return Err(err(
                format!("read of {len} bytes exceeds {MAX_READ}"),
                libc::EINVAL,
            ));
        }
        let deadline = Instant::now() + Duration::from_millis(wait_ms.min(MAX_WAIT_MS) as u64);
        let mut parked = None;
        loop {
            let (size, finished) = src.stat()?;
            if pos < size || finished || Instant::now() >= deadline || len == 0 {
                let data = src.read(pos, len as usize, size)?;
                return Ok((RemoteReply::Data { size, finished }, data));
            }
            parked.get_or_insert_with(|| Parked::new(&self.waiting));
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn source<'a>(
        &'a self,
        t: &Target,
        files: &'a mut HashMap<String, OpenLog>,
    ) -> Result<Source<'a>, RemoteReply> {
        match t {
            Target::Device(name) => self
                .devices
                .read()
                .get(name)
                .cloned()
                .map(Source::Dev)
                .ok_or_else(|| err(format!("no device exported as {name:?}"), libc::ENOENT)),
            Target::Log(name) => {
                let Some(dir) = &self.log_dir else {
                    return Err(err(
                        "this node exports no log directory".into(),
                        libc::ENOENT,
                    ));
                };
                let (sub, file) = log_path(dir, name).map_err(|m| err(m, 22))?;
                if !files.contains_key(name) {
                    let seq = LogName::parse(&file)
                        .map_err(|e| err(e.to_string(), 22))?
                        .seq;
                    let f = File::open(sub.join(&file)).map_err(|e| {
                        err(
                            format!("opening log {name}: {e}"),
                            e.raw_os_error().unwrap_or(5),
                        )
                    })?;
                    files.insert(
                        name.clone(),
                        OpenLog {
                            file: f,
                            seq,
                            successor: None,
                        },
                    );
                }
                let open = files.get_mut(name).expect("opened above");
                // A log is finished once its successor has a valid header (upstream's rule that
                // a successor exists, made exact for files created ahead or recycled), and ends
                // where that header says: one read for both, kept (`OpenLog`).
                if open.successor.is_none() {
                    open.successor = crate::log::ends::successor_header(&sub, open.seq);
                }
                let open = &files[name];
                // The one being written ends at its durable end.
                let live = open
                    .successor
                    .is_none()
                    .then(|| self.live.as_ref().map(|l| (l, sub.join(&file))))
                    .flatten();
                Ok(Source::Log { log: open, live })
            }
        }
    }
}

fn sums(
    src: &Source<'_>,
    pos: u64,
    len: u64,
    chunk: u32,
) -> Result<(RemoteReply, Vec<u8>), RemoteReply> {
    if len > MAX_SUM_RANGE || chunk < MIN_SUM_CHUNK || chunk as usize > MAX_READ {
        return Err(err(
            format!("checksum range {len} or chunk {chunk} outside the limits"),
            22,
        ));
    }
    let (size, _) = src.stat()?;
    if pos.checked_add(len).is_none_or(|e| e > size) {
        return Err(err(
            format!("checksum range {pos}+{len} beyond the size {size}"),
            22,
        ));
    }
    let mut out = Vec::with_capacity(len.div_ceil(chunk as u64) as usize);
    let mut p = pos;
    while p < pos + len {
        let n = (pos + len - p).min(chunk as u64) as usize;
        let data = src.read(p, n, size)?;
        out.push(chunk_sum(&data));
        p += n as u64;
    }
    Ok((RemoteReply::Sums { sums: out }, Vec::new()))
}

/// Counts a read in [`Exports::waiting_reads`] while it lives.
struct Parked(Arc<AtomicU64>);

impl Parked {
    fn new(n: &Arc<AtomicU64>) -> Parked {
        n.fetch_add(1, Ordering::Relaxed);
        Parked(n.clone())
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L1: &str = "log-000000001-alice";
    const L2: &str = "log-000000002-bob";

    /// A valid header of log 2 (what the logger writes when it switches to the file).
    fn header2() -> [u8; 512] {
        crate::log::FileHeader {
            prev_end: 1,
            ..crate::log::FileHeader::new(2, "r0", "bob", 0)
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn the_successor_of_a_log_is_looked_for_inside_its_subdirectory() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("resource-r0");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join(L1), b"x").unwrap();
        // A successor in the root or in another resource's directory does not count.
        std::fs::write(d.path().join(L2), header2()).unwrap();
        std::fs::create_dir(d.path().join("resource-r1")).unwrap();
        std::fs::write(d.path().join("resource-r1").join(L2), header2()).unwrap();
        let (dir, file) = log_path(d.path(), &format!("resource-r0/{L1}")).unwrap();
        assert_eq!((dir.as_path(), file.as_str()), (sub.as_path(), L1));
        let successor = || crate::log::ends::successor_header(&dir, 1);
        assert_eq!(successor(), None);
        std::fs::write(sub.join(L2), header2()).unwrap();
        assert_eq!(successor().map(|h| h.prev_end), Some(1));
    }

    #[test]
    fn log_targets_are_a_log_name_with_at_most_one_subdirectory() {
        let root = Path::new("/logs");
        assert_eq!(
            log_path(root, L1).unwrap(),
            (root.to_path_buf(), L1.to_string())
        );
        assert_eq!(
            log_path(root, &format!("resource-r0/{L1}")).unwrap(),
            (root.join("resource-r0"), L1.to_string())
        );
        for bad in [
            "".to_string(),
            "../x".to_string(),
            format!("../{L1}"),
            format!("a/b/{L1}"),
            "a/b/c".to_string(),
            format!(".hidden/{L1}"),
            format!("/{L1}"),
            "r0/".to_string(),
            format!("r0\0/{L1}"),
            "resource-r0/state".to_string(),
            "resource-r0/log-000000001".to_string(),
            "notes.txt".to_string(),
            format!(".{L1}"),
        ] {
            let e = log_path(root, &bad).unwrap_err();
            assert!(e.contains("invalid log name"), "{bad:?}: {e}");
        }
        let e = log_path(root, "r0/log-000000001").unwrap_err();
        assert!(e.contains("expected log-<"), "{e}");
    }
}
