//! The reply side of one connection: a writer thread that collects completed pieces of each
//! request, writes the reply (simple or structured) when the last piece is in, recycles the
//! requests and frees the request's in-flight slot.
//!
//! Completion hooks only send into this thread's channel (hooks must not block), so a slow
//! client never stalls the brick's completion thread. Replies are written in completion order
//! (out of order with respect to requests) and batched: the socket is written when the channel
//! is momentarily empty.
//!
//! A request's pieces are the only messages it needs: the reader posts the cookie, the kind
//! and the number of pieces on the slot's [`Posted`] before it submits the last piece, so the
//! writer finds them when that piece comes back. (A separate "sealed" message per request
//! cost a second channel send and, when the writer was asleep, a second wake-up per IO.)
//! Only requests that end without pieces or without a reply send [`ToWriter::Seal`].

use super::proto::{self, chunk, cmd, errno};
use super::socket::Stream;
use brick_core::{Aio, AioPool, Completer};
use crossbeam_channel::{Receiver, Sender};
use std::io::{BufWriter, Write};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;

/// Messages to the writer thread.
pub(crate) enum ToWriter {
    /// One piece of a request came back from the brick (`tag` is the slot).
    Piece(Box<Aio>),
    /// All pieces of the request in `slot` have been submitted, and it was not posted: it
    /// has no pieces (an empty request) or gets no reply (abandoned: truncated payload).
    Seal {
        slot: u32,
        cookie: u64,
        kind: u16,
        pieces: u32,
        /// `false` when the request was abandoned (truncated payload): no reply.
        reply: bool,
    },
    /// Answer with an error without any IO.
    Refuse {
        slot: u32,
        cookie: u64,
        errno: u32,
        reason: &'static str,
    },
    /// The reader stopped; exit once every slot is free.
    ReaderDone,
}

/// The completion hook of one connection: forwards the finished piece to the writer.
pub(crate) struct Hook(pub(crate) Sender<ToWriter>);

impl Completer for Hook {
    fn complete(&self, req: Box<Aio>) {
        // The writer outlives every in-flight request (it waits for all slots), so this only
        // fails after a bug elsewhere; the request is then dropped, not leaked.
        let _ = self.0.send(ToWriter::Piece(req));
    }
}

/// What the reader tells the writer about the request in one slot without a message.
/// **Invariant:** `pieces` is stored (Release) after `cookie` and `kind` and before the
/// request's last piece is submitted; the writer resets it to 0 before it frees the slot.
#[derive(Default)]
pub(crate) struct Posted {
    cookie: AtomicU64,
    kind: AtomicU32,
    /// How many pieces the request was split into; 0 while it is not posted.
    pieces: AtomicU32,
}

/// One [`Posted`] per in-flight slot of a connection, shared by its reader and writer.
pub(crate) type Board = Arc<[Posted]>;

/// A board for `slots` in-flight slots.
pub(crate) fn board(slots: usize) -> Board {
    (0..slots).map(|_| Posted::default()).collect()
}

/// The reader's side: the request in `slot` has `pieces` pieces and is answered. Call before
/// submitting (or failing) its last piece; `pieces` ≥ 1.
pub(crate) fn post(board: &Board, slot: u32, cookie: u64, kind: u16, pieces: u32) {
    debug_assert!(pieces > 0);
    let p = &board[slot as usize];
    p.cookie.store(cookie, Relaxed);
    p.kind.store(u32::from(kind), Relaxed);
    p.pieces.store(pieces, Release);
}

#[derive(Default)]
struct Slot {
    cookie: u64,
    kind: u16,
    expected: Option<u32>,
    reply: bool,
    received: u32,
    error: Option<(u32, String)>,
    pieces: Vec<Box<Aio>>,
}

/// The writer thread's state.
pub(crate) struct Writer {
    out: BufWriter<Stream>,
    slots: Vec<Slot>,
    board: Board,
    free: Sender<u32>,
    pool: Arc<AioPool>,
    structured: bool,
    broken: bool,
}

impl Writer {
    pub(crate) fn new(
        stream: Stream,
        board: Board,
        free: Sender<u32>,
        pool: Arc<AioPool>,
        structured: bool,
    ) -> Writer {
        Writer {
            out: BufWriter::with_capacity(256 << 10, stream),
            slots: (0..board.len()).map(|_| Slot::default()).collect(),
            board,
            free,
            pool,
            structured,
            broken: false,
        }
    }

    /// Run until the reader is done and every slot is free (back in the free channel: the
    /// reader takes none once it is done). Returns whether the socket broke.
    pub(crate) fn run(mut self, rx: Receiver<ToWriter>) -> bool {
        let mut reader_done = false;
        while !(reader_done && self.free.len() == self.slots.len()) {
            let Ok(msg) = rx.recv() else { break };
            reader_done |= self.handle(msg);
            while let Ok(msg) = rx.try_recv() {
                reader_done |= self.handle(msg);
            }
            if !self.broken {
                if let Err(e) = self.out.flush() {
                    self.fail(&e);
                }
            }
        }
        if !self.broken {
            let _ = self.out.flush();
        }
        self.broken
    }

    fn fail(&mut self, e: &std::io::Error) {
        tracing::debug!(error = %e, "nbd: writing a reply failed; dropping further replies");
        self.broken = true;
        // Wake the reader so that the connection ends.
        self.out.get_ref().shutdown(std::net::Shutdown::Both);
    }

    fn handle(&mut self, msg: ToWriter) -> bool {
        match msg {
            ToWriter::Piece(mut req) => {
                let i = req.tag as usize;
                let Some(slot) = self.slots.get_mut(i) else {
                    tracing::error!(tag = req.tag, "nbd: completion with an unknown slot");
                    return false;
                };
                slot.received += 1;
                if slot.expected.is_none() {
                    let posted = &self.board[i];
                    let pieces = posted.pieces.load(Acquire);
                    if pieces > 0 {
                        slot.cookie = posted.cookie.load(Relaxed);
                        slot.kind = posted.kind.load(Relaxed) as u16;
                        slot.expected = Some(pieces);
                        slot.reply = true;
                    }
                }
                let short = req.op == brick_core::Op::Read
                    && req.error.is_none()
                    && req.data.len() < req.len;
                if short && slot.error.is_none() {
                    slot.error = Some((errno::EIO, "the device returned a short read".into()));
                }
                if let Some(e) = req.error.take() {
                    if slot.error.is_none() {
                        slot.error = Some((errno::from_brick(&e), e.to_string()));
                    }
                }
                if req.op == brick_core::Op::Read {
                    slot.pieces.push(req);
                } else {
                    self.pool.put(req);
                }
                self.maybe_finish(i);
            }
            ToWriter::Seal {
                slot,
                cookie,
                kind,
                pieces,
                reply,
            } => {
                let i = slot as usize;
                let s = &mut self.slots[i];
                s.cookie = cookie;
                s.kind = kind;
                s.expected = Some(pieces);
                s.reply = reply;
                self.maybe_finish(i);
            }
            ToWriter::Refuse {
                slot,
                cookie,
                errno,
                reason,
            } => {
                self.write_error(cookie, errno, reason);
                let _ = self.free.send(slot);
            }
            ToWriter::ReaderDone => return true,
        }
        false
    }

    fn maybe_finish(&mut self, i: usize) {
        let s = &mut self.slots[i];
        if s.expected != Some(s.received) {
            return;
        }
        let mut s = std::mem::take(s);
        // Reset before the slot is freed (the channel orders it before the reader's reuse).
        self.board[i].pieces.store(0, Relaxed);
        if s.reply && s.error.is_none() && crate::fail_point!(crate::failpoint::NBD_BEFORE_ACK) {
            // The connection is lost after the request was done, before its acknowledgement.
            self.fail(&std::io::Error::other("fail point nbd-before-ack"));
        }
        if s.reply {
            match &s.error {
                Some((e, msg)) => self.write_error(s.cookie, *e, msg),
                None if s.kind == cmd::READ => self.write_read(s.cookie, &mut s.pieces),
                None => self.write(&proto::simple_reply(0, s.cookie)),
            }
        }
        for p in s.pieces.drain(..) {
            self.pool.put(p);
        }
        // Keep the (now empty) pieces vector's capacity for the next request in this slot.
        self.slots[i].pieces = s.pieces;
        let _ = self.free.send(i as u32);
    }

    fn write_read(&mut self, cookie: u64, pieces: &mut [Box<Aio>]) {
        pieces.sort_unstable_by_key(|p| p.pos);
        if !self.structured {
            self.write(&proto::simple_reply(0, cookie));
            for p in pieces.iter() {
                self.write(&p.data[..p.len]);
            }
            return;
        }
        if pieces.is_empty() {
            self.write(&proto::chunk_header(
                chunk::FLAG_DONE,
                chunk::NONE,
                cookie,
                0,
            ));
            return;
        }
        let last = pieces.len() - 1;
        for (k, p) in pieces.iter().enumerate() {
            let flags = if k == last { chunk::FLAG_DONE } else { 0 };
            let hdr = proto::chunk_header(flags, chunk::OFFSET_DATA, cookie, 8 + p.len as u32);
            self.write(&hdr);
            self.write(&p.pos.to_be_bytes());
            self.write(&p.data[..p.len]);
        }
    }

    fn write_error(&mut self, cookie: u64, errno: u32, msg: &str) {
        let errno = if errno == 0 { errno::EIO } else { errno };
        // Structured replies are mandatory for reads once negotiated, and carry a message.
        if self.structured {
            let mut m = msg.as_bytes();
            if m.len() > 4096 {
                m = &m[..4096];
            }
            let hdr =
                proto::chunk_header(chunk::FLAG_DONE, chunk::ERROR, cookie, 6 + m.len() as u32);
            self.write(&hdr);
            self.write(&errno.to_be_bytes());
            self.write(&(m.len() as u16).to_be_bytes());
            self.write(m);
        } else {
            self.write(&proto::simple_reply(errno, cookie));
        }
    }

    fn write(&mut self, b: &[u8]) {
        if self.broken {
            return;
        }
        if let Err(e) = self.out.write_all(b) {
            self.fail(&e);
        }
    }
}
