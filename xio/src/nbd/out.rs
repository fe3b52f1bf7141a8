//! The reply bytes of one connection on their way to the socket. Two ways to send them: the
//! reply thread may block ([`Out::flush`]); a completion hook replying at once must not
//! ([`Out::flush_nowait`] sends what the socket buffer takes and leaves the rest queued for the
//! reply thread).

use super::socket::Stream;
use crate::file::sys::send_nowait;
use std::io::{self, Write};
use std::os::fd::AsFd;

/// Queued bytes beyond this are sent by the reply thread before more are queued.
pub(crate) const HIGH_WATER: usize = 256 << 10;
/// The reply thread writes payloads at least this long straight to the socket (no copy).
const WRITE_THROUGH: usize = 64 << 10;

pub(crate) struct Out {
    stream: Stream,
    buf: Vec<u8>,
    /// Bytes of `buf` already sent.
    sent: usize,
}

impl Out {
    pub(crate) fn new(stream: Stream) -> Out {
        Out {
            stream,
            buf: Vec::with_capacity(HIGH_WATER),
            sent: 0,
        }
    }

    pub(crate) fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Bytes queued and not yet sent.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Queue `b` (the caller must not block: no IO).
    pub(crate) fn queue(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Reply thread: send `b` after what is queued, blocking; long payloads go straight to the
    /// socket.
    pub(crate) fn write_blocking(&mut self, b: &[u8]) -> io::Result<()> {
        if b.len() >= WRITE_THROUGH {
            self.flush()?;
            return self.stream.write_all(b);
        }
        self.queue(b);
        if self.pending() >= HIGH_WATER {
            self.flush()?;
        }
        Ok(())
    }

    /// Send everything queued, blocking (reply thread only).
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        let r = self.stream.write_all(&self.buf[self.sent..]);
        self.buf.clear();
        self.sent = 0;
        r
    }

    /// Send what the socket takes now without blocking; `Ok(true)` when nothing is left.
    pub(crate) fn flush_nowait(&mut self) -> io::Result<bool> {
        // Bounded: each round sends at least one byte or stops.
        while self.sent < self.buf.len() {
            match send_nowait(self.stream.as_fd(), &self.buf[self.sent..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.sent = 0;
        Ok(true)
    }
}
