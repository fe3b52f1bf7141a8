//! One client connection: handshake, then the transmission phase's reader loop. The reader
//! checks each request ([`super::check`]), takes an in-flight slot (blocking while all slots are
//! taken: that is the back-pressure, the socket is simply not read), reads a write's payload
//! straight into the request buffer, splits the request where the output's `prepare` or
//! `max_len` says so, and submits the pieces. Replies are the writer thread's job
//! ([`super::reply`]).

use super::check::{check, Verdict};
use super::error::{NbdError, Result};
use super::export::{Export, Geometry};
use super::handshake::{self, negotiate, read_at_boundary, skip};
use super::payload::read_payload;
use super::proto::{self, Request};
use super::reply::{self, Board, Hook, ToWriter, Writer};
use super::socket::Stream;
use super::stats::Counters;
use brick_core::{Aio, AioPool, Completer, Error, Flags, Op, Output};
use crossbeam_channel::{Receiver, Sender};
use std::io::{BufReader, Read, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest single wait for this thread's own IO while waiting for a slot (then look again).
const SLOT_WAIT: Duration = Duration::from_millis(1);

/// How long a request is retried while the output answers `Busy` before it fails.
const BUSY_RETRY: Duration = Duration::from_secs(30);

/// Read side and write side as one `Read + Write` for the handshake.
struct Duplex<'a> {
    r: &'a mut BufReader<Stream>,
    w: &'a mut Stream,
}

impl Read for Duplex<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.r.read(buf)
    }
}

impl Write for Duplex<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.w.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serve one connection to its end. `Ok` for a clean end (disconnect command, abort, EOF
/// between messages); `Err` says why the connection was closed.
pub(crate) fn serve(
    stream: Stream,
    exports: &[Arc<Export>],
    max_inflight: usize,
    shutting_down: &dyn Fn() -> bool,
    counters: &Counters,
) -> Result<()> {
    let mut write_half = stream
        .try_clone()
        .map_err(NbdError::io("cloning the socket"))?;
    let mut rd = BufReader::with_capacity(128 << 10, stream);
    let neg = match negotiate(
        &mut Duplex {
            r: &mut rd,
            w: &mut write_half,
        },
        exports,
        shutting_down,
    ) {
        Ok(n) => n,
        Err(NbdError::Closed) => return Ok(()),
        Err(e) => return Err(e),
    };
    tracing::debug!(export = %neg.export.name, structured = neg.structured, "nbd: transmission");
    let _client = ClientGuard::new(&neg.export.clients);

    let slots = max_inflight.max(1);
    let (free_tx, free_rx) = crossbeam_channel::bounded(slots);
    for i in 0..slots {
        let _ = free_tx.send(i as u32);
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let pool = Arc::new(AioPool::new(slots * 2));
    let board = reply::board(slots);
    let writer = Writer::new(
        write_half,
        board.clone(),
        free_tx,
        pool.clone(),
        neg.structured,
    );
    let writer = std::thread::Builder::new()
        .name("nbd-reply".into())
        .spawn(move || writer.run(rx))
        .map_err(NbdError::io("spawning the reply thread"))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(rd.get_ref());
    let mut t = Transmit {
        fd,
        rd: &mut rd,
        output: neg.export.output.clone(),
        geometry: neg.geometry,
        structured: neg.structured,
        pool,
        board,
        hook: Arc::new(Hook(tx.clone())),
        tx: tx.clone(),
        free: free_rx,
        counters,
    };
    // Driven: the data device's io_uring reads of this connection go to this thread's own
    // ring and are reaped here while it waits for the socket or for a slot (no completion
    // thread hop); see `wait_readable` and `slot`.
    let result = crate::aio::drive(|| t.run());
    let _ = tx.send(ToWriter::ReaderDone);
    // The writer finishes every request still in flight before it exits.
    let _ = writer.join();
    match result {
        Err(NbdError::Closed) => Ok(()),
        r => r,
    }
}

struct Transmit<'a> {
    /// The socket `rd` reads.
    fd: std::os::fd::RawFd,
    rd: &'a mut BufReader<Stream>,
    output: Arc<dyn Output>,
    geometry: Geometry,
    structured: bool,
    pool: Arc<AioPool>,
    board: Board,
    hook: Arc<dyn Completer>,
    tx: Sender<ToWriter>,
    free: Receiver<u32>,
    counters: &'a Counters,
}

impl Transmit<'_> {
    fn run(&mut self) -> Result<()> {
        loop {
            let mut hdr = [0u8; proto::REQUEST_LEN];
            if self.rd.buffer().is_empty() {
                // Before blocking on the socket: our own IO in flight is reaped meanwhile.
                crate::aio::wait_readable(self.fd);
            }
            read_at_boundary(self.rd, &mut hdr, "reading a request header")?;
            let req = Request::decode(&hdr).ok_or_else(|| {
                NbdError::protocol(format!(
                    "bad request magic {:#010x}",
                    proto::be32(&hdr[0..4])
                ))
            })?;
            self.counters.requests.fetch_add(1, Relaxed);
            match check(&req, &self.geometry, self.structured) {
                Verdict::Violation(reason) => return Err(NbdError::protocol(reason)),
                Verdict::Disconnect => return Ok(()),
                Verdict::Refuse {
                    errno,
                    reason,
                    skip: n,
                } => {
                    skip(self.rd, u64::from(n))?;
                    let slot = self.slot()?;
                    self.counters.refused.fetch_add(1, Relaxed);
                    tracing::debug!(?req, errno, reason, "nbd: request refused");
                    let _ = self.tx.send(ToWriter::Refuse {
                        slot,
                        cookie: req.cookie,
                        errno,
                        reason,
                    });
                }
                Verdict::Empty => {
                    let slot = self.slot()?;
                    self.seal(slot, &req, 0, true);
                }
                Verdict::Submit { op, flags } => {
                    let slot = self.slot()?;
                    self.submit(slot, &req, op, flags)?;
                }
            }
        }
    }

    /// Take a free in-flight slot, waiting while all are taken (back-pressure). Slots come
    /// back as replies are sent; while this thread's own IO is in flight it reaps it (nobody
    /// else would, and those replies free the slots).
    fn slot(&self) -> Result<u32> {
        loop {
            match self.free.try_recv() {
                Ok(slot) => return Ok(slot),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Err(NbdError::Closed),
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
            if !crate::aio::reap_own(SLOT_WAIT) {
                // Nothing of ours in flight: the slot comes from the reply thread.
                return self.free.recv().map_err(|_| NbdError::Closed);
            }
        }
    }

    fn seal(&self, slot: u32, req: &Request, pieces: u32, reply: bool) {
        let _ = self.tx.send(ToWriter::Seal {
            slot,
            cookie: req.cookie,
            kind: req.kind,
            pieces,
            reply,
        });
    }

    fn submit(&mut self, slot: u32, req: &Request, op: Op, flags: Flags) -> Result<()> {
        let mut pos = req.offset;
        let mut left = if op == Op::Flush {
            0
        } else {
            req.length as usize
        };
        let mut pieces = 0u32;
        loop {
            let mut aio = self.pool.get(op, pos, left.min(self.geometry.max_len));
            aio.flags = flags;
            aio.tag = u64::from(slot);
            aio.push_hook(self.hook.clone());
            let prepared = if op == Op::Flush {
                Ok(())
            } else {
                match self.output.prepare(&mut aio) {
                    Ok(()) if aio.len == 0 => Err(Error::Invalid(
                        "the device shortened a request to zero bytes",
                    )),
                    r => r,
                }
            };
            if let Err(e) = prepared {
                // Fail the rest of the request as one piece (its payload is skipped).
                if op == Op::Write {
                    if let Err(err) = skip(self.rd, left as u64) {
                        self.pool.put(aio);
                        self.seal(slot, req, pieces, false);
                        return Err(err);
                    }
                }
                aio.len = left;
                pieces += 1;
                reply::post(&self.board, slot, req.cookie, req.kind, pieces);
                aio.finish(Err(e));
                return Ok(());
            }
            let len = aio.len;
            if op == Op::Write {
                if let Err(e) = read_payload(self.rd, &mut aio.data, len) {
                    self.pool.put(aio);
                    self.seal(slot, req, pieces, false);
                    return Err(handshake::truncated("a write payload")(e));
                }
            }
            pieces += 1;
            pos += len as u64;
            left -= len;
            if left == 0 {
                // The last piece: the writer learns about the request when it comes back.
                reply::post(&self.board, slot, req.cookie, req.kind, pieces);
                self.submit_one(aio);
                return Ok(());
            }
            self.submit_one(aio);
        }
    }

    /// Submit, retrying while the output pushes back; any other rejection completes the
    /// piece with the error (our hook is still on it, so the writer sees it).
    fn submit_one(&self, mut aio: Box<Aio>) {
        let deadline = Instant::now() + BUSY_RETRY;
        let mut pause = Duration::from_micros(20);
        loop {
            match self.output.submit(aio) {
                Ok(()) => return,
                Err(rej) => {
                    if matches!(rej.error, Error::Busy { .. }) && Instant::now() < deadline {
                        aio = rej.req;
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(1));
                        continue;
                    }
                    rej.req.finish(Err(rej.error));
                    return;
                }
            }
        }
    }
}

/// Counts a connection in transmission on its export for as long as it lives.
struct ClientGuard(Arc<std::sync::atomic::AtomicU64>);

impl ClientGuard {
    fn new(c: &Arc<std::sync::atomic::AtomicU64>) -> ClientGuard {
        c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ClientGuard(c.clone())
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
