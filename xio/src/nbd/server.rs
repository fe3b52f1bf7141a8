//! The NBD server: a table of named exports, TCP listeners (one accept thread each) and Unix
//! listeners (served by the process's one accept thread, `acceptor`), one reader thread plus
//! one reply thread per connection, counters, and graceful shutdown.
//!
//! Shutdown: stop accepting (TCP listeners are woken by a connection to themselves, Unix
//! listeners are removed from the accept thread), shut down the
//! read side of every client socket (readers see EOF, stop taking requests), wait until every
//! connection has finished its in-flight requests and written their replies. The caller then
//! flushes the exported bricks.

use super::acceptor;
use super::conn;
use super::error::{NbdError, Result};
use super::export::Export;
use super::socket::Stream;
use super::stats::{Counters, ServerStats};
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Server settings.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Requests in flight per connection; the reader stops reading the socket while this many
    /// are outstanding.
    pub max_inflight: usize,
    /// A client that does not read its replies for this long is disconnected (its reply
    /// thread cannot write; without a bound its requests would hold their slots forever).
    pub write_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_inflight: 128,
            write_timeout: Duration::from_secs(120),
        }
    }
}

enum Listener {
    Tcp {
        /// Where to connect to wake the blocked accept.
        waker: SocketAddr,
        thread: JoinHandle<()>,
        /// Disconnected when the accept thread has ended.
        ended: crossbeam_channel::Receiver<()>,
    },
    Unix {
        registration: acceptor::Registration,
        path: PathBuf,
    },
}

struct Shared {
    cfg: ServerConfig,
    exports: RwLock<Vec<Arc<Export>>>,
    shutting_down: AtomicBool,
    conns: Mutex<HashMap<u64, Stream>>,
    idle: Condvar,
    next_id: AtomicU64,
    counters: Counters,
}

/// An NBD server exporting one or more bricks.
///
/// ```no_run
/// use std::sync::Arc;
/// use brick_core::bricks::{MemDisk, MemDiskMode};
/// use xio::nbd::{Export, NbdServer, ServerConfig};
///
/// let disk = MemDisk::new("disk", 64 << 20, MemDiskMode::Threaded(2));
/// let server = NbdServer::new(ServerConfig::default());
/// server.add_export(Export::new("disk", disk).unwrap().multi_conn(true)).unwrap();
/// server.listen_unix("/tmp/disk.sock").unwrap();
/// // ... qemu-io -f raw nbd+unix:///disk?socket=/tmp/disk.sock
/// server.shutdown(std::time::Duration::from_secs(10));
/// ```
pub struct NbdServer {
    shared: Arc<Shared>,
    listeners: Mutex<Vec<Listener>>,
}

impl NbdServer {
    /// A server without exports or listeners.
    pub fn new(cfg: ServerConfig) -> NbdServer {
        NbdServer {
            shared: Arc::new(Shared {
                cfg,
                exports: RwLock::new(Vec::new()),
                shutting_down: AtomicBool::new(false),
                conns: Mutex::new(HashMap::new()),
                idle: Condvar::new(),
                next_id: AtomicU64::new(0),
                counters: Counters::default(),
            }),
            listeners: Mutex::new(Vec::new()),
        }
    }

    /// Add an export. The first export added is also the default export (empty name).
    pub fn add_export(&self, export: Export) -> Result<()> {
        let mut t = self.shared.exports.write();
        if t.iter().any(|e| e.name == export.name) {
            return Err(NbdError::DuplicateExport { name: export.name });
        }
        t.push(Arc::new(export));
        Ok(())
    }

    /// Remove an export by name (connections already using it keep it). Returns whether it
    /// existed.
    pub fn remove_export(&self, name: &str) -> bool {
        let mut t = self.shared.exports.write();
        let before = t.len();
        t.retain(|e| e.name != name);
        t.len() != before
    }

    /// Names of the exports.
    pub fn export_names(&self) -> Vec<String> {
        self.shared
            .exports
            .read()
            .iter()
            .map(|e| e.name.clone())
            .collect()
    }

    /// Listen on a TCP address; returns the bound address (useful with port 0).
    pub fn listen_tcp(&self, addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<SocketAddr> {
        let shown = format!("{addr:?}");
        let l = TcpListener::bind(addr).map_err(|source| NbdError::Bind {
            addr: shown.clone(),
            source,
        })?;
        let local = l.local_addr().map_err(|source| NbdError::Bind {
            addr: shown,
            source,
        })?;
        let shared = self.shared.clone();
        let (ended_tx, ended) = crossbeam_channel::bounded::<()>(0);
        let thread = spawn("nbd-accept-tcp", move || {
            let _ended = ended_tx;
            for s in l.incoming() {
                if shared.shutting_down.load(SeqCst) {
                    break;
                }
                match s {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        Shared::start(&shared, Stream::Tcp(s));
                    }
                    Err(e) => acceptor::accept_failed(&e),
                }
            }
        })?;
        self.listeners.lock().push(Listener::Tcp {
            waker: local,
            thread,
            ended,
        });
        Ok(local)
    }

    /// Listen on a Unix socket at `path` (a stale socket file there is replaced; any other
    /// file is left alone and reported).
    pub fn listen_unix(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref().to_path_buf();
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if !meta.file_type().is_socket() {
                return Err(NbdError::PathInUse { path });
            }
            let _ = std::fs::remove_file(&path);
        }
        let l = UnixListener::bind(&path).map_err(|source| NbdError::Bind {
            addr: path.display().to_string(),
            source,
        })?;
        let shared = self.shared.clone();
        let registration = acceptor::register(l, move |s| Shared::start(&shared, Stream::Unix(s)))
            .map_err(NbdError::io("registering a Unix listener"))?;
        self.listeners
            .lock()
            .push(Listener::Unix { registration, path });
        Ok(())
    }

    /// Serve an already connected socket (e.g. one end of a `socketpair`).
    pub fn serve_unix_stream(&self, s: UnixStream) {
        Shared::start(&self.shared, Stream::Unix(s));
    }

    /// Counters.
    pub fn stats(&self) -> ServerStats {
        self.shared.counters.snapshot()
    }

    /// Stop accepting, let every connection finish its in-flight requests and close. Returns
    /// `true` if all connections ended within `timeout`. Idempotent.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        self.shared.shutting_down.store(true, SeqCst);
        for l in self.listeners.lock().drain(..) {
            match l {
                Listener::Tcp {
                    waker,
                    thread,
                    ended,
                } => {
                    // Wake the blocked accept with a connection to ourselves. If that cannot
                    // reach it, the thread is left blocked in accept rather than hanging the
                    // shutdown; it accepts nothing more either way.
                    drop(TcpStream::connect_timeout(&waker, Duration::from_secs(1)));
                    match ended.recv_timeout(Duration::from_secs(2)) {
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            tracing::warn!(
                                "nbd: a listener did not wake up for shutdown; leaving it"
                            )
                        }
                        _ => {
                            let _ = thread.join();
                        }
                    }
                }
                Listener::Unix { registration, path } => {
                    drop(registration); // synchronous: nothing more is accepted on it
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let deadline = Instant::now() + timeout;
        let mut conns = self.shared.conns.lock();
        for s in conns.values() {
            s.shutdown(Shutdown::Read);
        }
        while !conns.is_empty() {
            if self
                .shared
                .idle
                .wait_until(&mut conns, deadline)
                .timed_out()
            {
                break;
            }
        }
        conns.is_empty()
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(5));
    }
}

impl Shared {
    fn start(shared: &Arc<Shared>, stream: Stream) {
        if shared.shutting_down.load(SeqCst) {
            return;
        }
        shared.counters.accepted.fetch_add(1, Relaxed);
        let _ = stream.set_write_timeout(Some(shared.cfg.write_timeout));
        let id = shared.next_id.fetch_add(1, Relaxed);
        let Ok(handle) = stream.try_clone() else {
            tracing::warn!("nbd: cannot clone an accepted socket; dropping the connection");
            return;
        };
        shared.conns.lock().insert(id, handle);
        shared.counters.active.fetch_add(1, Relaxed);
        let exports: Vec<Arc<Export>> = shared.exports.read().clone();
        let sh = shared.clone();
        let run = move || {
            let peer = stream.peer();
            let sd = sh.clone();
            let result = conn::serve(
                stream,
                &exports,
                sh.cfg.max_inflight,
                &move || sd.shutting_down.load(SeqCst),
                &sh.counters,
            );
            match result {
                Ok(()) => tracing::debug!(%peer, "nbd: connection closed"),
                Err(e) if e.is_disconnect() => tracing::debug!(%peer, "nbd: client went away: {e}"),
                Err(e) => {
                    if matches!(e, NbdError::Protocol { .. }) {
                        sh.counters.violations.fetch_add(1, Relaxed);
                    }
                    tracing::warn!(%peer, "nbd: closing connection: {e}");
                }
            }
            let mut conns = sh.conns.lock();
            if let Some(s) = conns.remove(&id) {
                s.shutdown(Shutdown::Both);
            }
            sh.counters.active.fetch_sub(1, Relaxed);
            sh.idle.notify_all();
        };
        if let Err(e) = std::thread::Builder::new()
            .name("nbd-conn".into())
            .spawn(run)
        {
            tracing::warn!("nbd: cannot start a connection thread: {e}");
            if let Some(s) = shared.conns.lock().remove(&id) {
                s.shutdown(Shutdown::Both);
            }
            shared.counters.active.fetch_sub(1, Relaxed);
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(NbdError::io("spawning a listener thread"))
}
