//! The server brick: serves a node's exported data devices and its log directory to remote
//! clients over mars-net (`fetch` and `sync` channels). One thread per connection; requests on a
//! connection are served in order (clients bundle several connections for parallelism).
//!
//! On a send error the server just drops the connection: the client resubmits what is lost.

use super::proto::{
    chunk_sum, RemoteReply, RemoteReq, Target, MAX_READ, MAX_SUM_RANGE, MAX_WAIT_MS, MIN_SUM_CHUNK,
};
use brick_core::Output;
use mars_net::{ChannelKind, Connection, Handlers, Message, NetConfig, Node};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::fs::File;
use std::net::ToSocketAddrs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Decides whether a log file is finished (will not grow any more).
pub type FinishedFn = Arc<dyn Fn(&Path, &str) -> bool + Send + Sync>;

/// The default rule: log `log-<seq>...` is finished once a log with a higher sequence number
/// exists in the same directory **and has its header written** (the logger rotated away from
/// it), as upstream MARS. The trans_logger creates the next file early, empty, half way to the
/// rotation size and writes its header only when it switches to it, after the last batch of the
/// old file completed; an empty successor therefore says nothing about its predecessor.
pub fn finished_when_successor_exists() -> FinishedFn {
    Arc::new(|dir: &Path, name: &str| {
        let Some(seq) = log_seq(name) else {
            return false;
        };
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten().any(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(log_seq)
                        .is_some_and(|s| s > seq)
                        && e.metadata()
                            .is_ok_and(|m| m.len() >= crate::log::HEADER_LEN as u64)
                })
            })
            .unwrap_or(false)
    })
}

fn log_seq(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("log-")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// What a node exports.
#[derive(Clone)]
pub struct Exports {
    devices: Arc<RwLock<HashMap<String, Arc<dyn Output>>>>,
    log_dir: Option<PathBuf>,
    finished: FinishedFn,
}

impl Exports {
    /// Export the log files of `log_dir` (if any) and no devices yet.
    pub fn new(log_dir: Option<PathBuf>) -> Exports {
        Exports {
            devices: Arc::default(),
            log_dir,
            finished: finished_when_successor_exists(),
        }
    }

    /// Replace the rule that says whether a log is finished.
    pub fn with_finished(mut self, f: FinishedFn) -> Exports {
        self.finished = f;
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

    /// Serve one connection until it ends.
    pub fn serve(&self, mut conn: Connection) {
        let peer = format!("{}@{}", conn.peer().node, conn.peer().addr);
        let mut files: HashMap<String, File> = HashMap::new();
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
                    (err(format!("undecodable request: {e}"), 22), Vec::new())
                }
            };
            let body = postcard::to_allocvec(&reply).unwrap_or_default();
            if let Err(e) = conn.reply(id, body, &payload) {
                tracing::debug!(%peer, "remote server cannot reply: {e}");
                return;
            }
        }
    }

    fn handle(&self, req: &RemoteReq, files: &mut HashMap<String, File>) -> (RemoteReply, Vec<u8>) {
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
                    Err(err(format!("read of {len} bytes exceeds {MAX_READ}"), 22))
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
            return Err(err(format!("read of {len} bytes exceeds {MAX_READ}"), 22));
        }
        let deadline = Instant::now() + Duration::from_millis(wait_ms.min(MAX_WAIT_MS) as u64);
        loop {
            let (size, finished) = src.stat()?;
            if pos < size || finished || Instant::now() >= deadline || len == 0 {
                let data = src.read(pos, len as usize, size)?;
                return Ok((RemoteReply::Data { size, finished }, data));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn source<'a>(
        &'a self,
        t: &Target,
        files: &'a mut HashMap<String, File>,
    ) -> Result<Source<'a>, RemoteReply> {
        match t {
            Target::Device(name) => self
                .devices
                .read()
                .get(name)
                .cloned()
                .map(Source::Dev)
                .ok_or_else(|| err(format!("no device exported as {name:?}"), 2)),
            Target::Log(name) => {
                let Some(dir) = &self.log_dir else {
                    return Err(err("this node exports no log directory".into(), 2));
                };
                if name.is_empty()
                    || name.contains('/')
                    || name.starts_with('.')
                    || name.contains('\0')
                {
                    return Err(err(format!("invalid log name {name:?}"), 22));
                }
                if !files.contains_key(name) {
                    let f = File::open(dir.join(name)).map_err(|e| {
                        err(
                            format!("opening log {name}: {e}"),
                            e.raw_os_error().unwrap_or(5),
                        )
                    })?;
                    files.insert(name.clone(), f);
                }
                let finished = (self.finished)(dir, name);
                Ok(Source::Log {
                    file: &files[name],
                    finished,
                })
            }
        }
    }
}

enum Source<'a> {
    Dev(Arc<dyn Output>),
    Log { file: &'a File, finished: bool },
}

impl Source<'_> {
    fn stat(&self) -> Result<(u64, bool), RemoteReply> {
        match self {
            Source::Dev(d) => d
                .info()
                .map(|i| (i.size, true))
                .map_err(|e| err(e.to_string(), e.errno())),
            Source::Log { file, finished } => file
                .metadata()
                .map(|m| (m.len(), *finished))
                .map_err(|e| err(format!("stat of log: {e}"), 5)),
        }
    }

    /// Read what exists of `[pos, pos+len)` below `size`.
    fn read(&self, pos: u64, len: usize, size: u64) -> Result<Vec<u8>, RemoteReply> {
        let len = (size.saturating_sub(pos)).min(len as u64) as usize;
        match self {
            Source::Dev(d) => {
                brick_core::read_all(&**d, pos, len).map_err(|e| err(e.to_string(), e.errno()))
            }
            Source::Log { file, .. } => {
                let mut buf = vec![0u8; len];
                let mut got = 0;
                while got < len {
                    match file.read_at(&mut buf[got..], pos + got as u64) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(err(format!("reading log: {e}"), 5)),
                    }
                }
                buf.truncate(got);
                Ok(buf)
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

fn err(message: String, errno: i32) -> RemoteReply {
    RemoteReply::Error { message, errno }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_is_finished_once_a_successor_exists() {
        let d = tempfile::tempdir().unwrap();
        let f = finished_when_successor_exists();
        std::fs::write(d.path().join("log-000000001"), b"x").unwrap();
        assert!(!f(d.path(), "log-000000001"));
        // The logger pre-creates its next file empty: that says nothing yet.
        std::fs::write(d.path().join("log-000000002"), b"").unwrap();
        assert!(!f(d.path(), "log-000000001"));
        std::fs::write(d.path().join("log-000000002"), [0u8; 512]).unwrap();
        assert!(f(d.path(), "log-000000001"));
        assert!(!f(d.path(), "log-000000002"));
        assert!(!f(d.path(), "state"));
    }
}
