//! Inputs: the wiring from one brick to the output of another, with safe hot re-wiring while
//! IO is in flight (make-before-break).
//!
//! **Invariant:** once [`Input::disconnect`] or [`Input::rewire`] returns, no request reaches the
//! old output any more; the returned [`Drain`] tells when every request that did reach it has
//! completed. Requests are never lost, duplicated or moved between outputs.

use crate::brick::{Info, Output};
use crate::error::{Error, Rejected, Result};
use crate::request::{Aio, Completer};
use arc_swap::ArcSwapOption;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Conn {
    output: Arc<dyn Output>,
    inflight: AtomicUsize,
    closed: AtomicBool,
    lock: Mutex<()>,
    drained: Condvar,
}

impl Conn {
    fn leave(&self) {
        if self.inflight.fetch_sub(1, SeqCst) == 1 && self.closed.load(SeqCst) {
            let _g = self.lock.lock();
            self.drained.notify_all();
        }
    }
}

impl Completer for Conn {
    fn complete(&self, req: Box<Aio>) {
        self.leave();
        req.complete();
    }
}

/// One input of a brick.
pub struct Input {
    name: String,
    conn: ArcSwapOption<Conn>,
}

impl Input {
    /// An unconnected input called `name` (e.g. `"data"`, `"log1"`).
    pub fn new(name: impl Into<String>) -> Self {
        Input {
            name: name.into(),
            conn: ArcSwapOption::empty(),
        }
    }

    /// An input connected to `output`.
    pub fn connected(name: impl Into<String>, output: Arc<dyn Output>) -> Self {
        let input = Input::new(name);
        input.conn.store(Some(Arc::new(new_conn(output))));
        input
    }

    /// The input's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether an output is connected.
    pub fn is_connected(&self) -> bool {
        self.conn.load().is_some()
    }

    /// Requests currently in flight through this input's present connection.
    pub fn inflight(&self) -> usize {
        self.conn
            .load()
            .as_ref()
            .map_or(0, |c| c.inflight.load(SeqCst))
    }

    /// Connect to `output`. Fails if already connected.
    pub fn connect(&self, output: Arc<dyn Output>) -> Result<()> {
        let new = Arc::new(new_conn(output));
        let prev = self.conn.compare_and_swap(&None::<Arc<Conn>>, Some(new));
        if prev.is_some() {
            return Err(Error::AlreadyConnected {
                input: self.name.clone(),
            });
        }
        Ok(())
    }

    /// Disconnect; new submissions are rejected with [`Error::NotConnected`] from now on.
    /// Returns a [`Drain`] for the requests still in flight on the old output.
    pub fn disconnect(&self) -> Option<Drain> {
        self.conn.swap(None).map(close)
    }

    /// Atomically replace the output (make-before-break). Requests submitted after this returns
    /// go to `output`; the returned [`Drain`] covers those still in flight on the old one.
    pub fn rewire(&self, output: Arc<dyn Output>) -> Option<Drain> {
        self.conn.swap(Some(Arc::new(new_conn(output)))).map(close)
    }

    /// Geometry of the connected output.
    pub fn info(&self) -> Result<Info> {
        match self.conn.load_full() {
            Some(c) => c.output.info(),
            None => Err(self.not_connected()),
        }
    }

    /// Forward `prepare` to the connected output.
    pub fn prepare(&self, req: &mut Aio) -> Result<()> {
        match self.conn.load_full() {
            Some(c) => c.output.prepare(req),
            None => Err(self.not_connected()),
        }
    }

    /// Forward a request to the connected output; see [`Output::submit`] for the contract.
    pub fn submit(&self, mut req: Box<Aio>) -> Result<(), Rejected> {
        let guard = match self.enter() {
            Ok(guard) => guard,
            Err(e) => return Err(Rejected::new(req, e)),
        };
        let conn = guard.as_ref().expect("enter returns a connection");
        req.push_hook(conn.clone());
        match conn.output.submit(req) {
            Ok(()) => Ok(()),
            Err(mut rej) => {
                rej.req.pop_hook();
                conn.leave();
                Err(rej)
            }
        }
    }

    /// Forward a gather write ([`Output::write_gather`]) to the connected output; it counts
    /// as in flight on this connection while it runs (a [`Drain`] waits for it).
    pub fn write_gather(&self, pos: u64, bufs: &[std::io::IoSlice<'_>]) -> Option<Result<()>> {
        let guard = match self.enter() {
            Ok(guard) => guard,
            Err(e) => return Some(Err(e)),
        };
        let conn = guard.as_ref().expect("enter returns a connection");
        let result = conn.output.write_gather(pos, bufs);
        conn.leave();
        result
    }

    /// The present connection with one more request counted in flight on it.
    fn enter(&self) -> Result<arc_swap::Guard<Option<Arc<Conn>>>> {
        loop {
            // A guard, not a clone: the only reference count a submit takes is its hook's.
            let guard = self.conn.load();
            let Some(conn) = guard.as_ref() else {
                return Err(self.not_connected());
            };
            conn.inflight.fetch_add(1, SeqCst);
            // Dekker-style handshake with `close`: either we see `closed` and retry on the new
            // connection, or the drainer sees our increment and waits for our completion.
            if conn.closed.load(SeqCst) {
                conn.leave();
                std::hint::spin_loop();
                continue;
            }
            return Ok(guard);
        }
    }

    fn not_connected(&self) -> Error {
        Error::NotConnected {
            input: self.name.clone(),
        }
    }
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("name", &self.name)
            .field("connected", &self.is_connected())
            .field("inflight", &self.inflight())
            .finish()
    }
}

fn new_conn(output: Arc<dyn Output>) -> Conn {
    Conn {
        output,
        inflight: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        lock: Mutex::new(()),
        drained: Condvar::new(),
    }
}

fn close(conn: Arc<Conn>) -> Drain {
    conn.closed.store(true, SeqCst);
    Drain { conn }
}

/// The old side of a disconnect or rewire: tells when its in-flight requests have completed.
pub struct Drain {
    conn: Arc<Conn>,
}

impl Drain {
    /// Requests still in flight on the old output.
    pub fn inflight(&self) -> usize {
        self.conn.inflight.load(SeqCst)
    }

    /// The old output (to switch it off or reuse it once drained).
    pub fn output(&self) -> Arc<dyn Output> {
        self.conn.output.clone()
    }

    /// Wait until nothing is in flight on the old output, at most `timeout`.
    pub fn wait(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut g = self.conn.lock.lock();
        while self.inflight() > 0 {
            if self.conn.drained.wait_until(&mut g, deadline).timed_out() && self.inflight() > 0 {
                return Err(Error::Timeout {
                    context: "draining a disconnected input",
                    millis: timeout.as_millis() as u64,
                });
            }
        }
        Ok(())
    }
}
