//! Reading a write request's payload into its buffer without zeroing the buffer first.
//!
//! The buffer a write gets is recycled and empty (`len` 0). `resize(len, 0)` and then
//! `read_exact` wrote every byte twice: a `memset` of the whole payload before the socket's
//! copy (3 % of the process's samples under 4 KiB random writes, a whole MiB per 1 MiB write).
//! Here the bytes go straight into the spare capacity: what the `BufReader` already holds is
//! copied, and the rest is read from the socket with `read(2)`, which writes into memory that
//! Rust has not initialised without ever exposing it as `&mut [u8]`.

// The one read(2) into a Vec's spare capacity (`read_into_spare`).
#![allow(unsafe_code)]

use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsRawFd;

/// From this many missing bytes on, the payload is read from the socket straight into the
/// buffer; below it through the `BufReader`, so that a small payload and the next request
/// headers come in one system call.
const DIRECT_READ_MIN: usize = 32 << 10;

/// Replace `buf`'s contents with the next `len` bytes of `rd`. A stream that ends first is an
/// `UnexpectedEof` error; `buf` then holds what was read.
pub(crate) fn read_payload<S: Read + AsRawFd>(
    rd: &mut BufReader<S>,
    buf: &mut Vec<u8>,
    len: usize,
) -> io::Result<()> {
    buf.clear();
    buf.reserve_exact(len);
    while buf.len() < len {
        let want = len - buf.len();
        let got = if want >= DIRECT_READ_MIN && rd.buffer().is_empty() {
            read_into_spare(rd.get_ref().as_raw_fd(), buf, want)?
        } else {
            let have = rd.fill_buf()?;
            let n = have.len().min(want);
            buf.extend_from_slice(&have[..n]);
            rd.consume(n);
            n
        };
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the stream ended after {} of {len} payload bytes",
                    buf.len()
                ),
            ));
        }
    }
    Ok(())
}

/// One `read(2)` of at most `want` bytes into `buf`'s spare capacity; 0 at the end of the
/// stream. Interrupted reads are retried.
fn read_into_spare(fd: std::os::fd::RawFd, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let want = want.min(spare.len());
    loop {
        // SAFETY: `spare` is valid for writes of `want` bytes (it is the Vec's own spare
        // capacity, borrowed mutably for this call); read(2) writes at most `want` bytes, and
        // exactly the first `n` it reports are initialised before `set_len` exposes them.
        let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), want) };
        if n >= 0 {
            let n = n as usize;
            // SAFETY: read(2) initialised `n` ≤ `want` ≤ spare capacity bytes after `len`.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(n);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Two payloads of every interesting size back to back, then a header-sized tail: each is
    /// read exactly, whether it sits in the reader's buffer, straddles it, or is read straight
    /// from the socket, and the bytes after a payload stay for the next read.
    #[test]
    fn reads_exact_payloads_whatever_the_reader_holds() {
        for len in [1, 4096, 5000, DIRECT_READ_MIN - 1, DIRECT_READ_MIN, 1 << 20] {
            let (mut tx, rx) = UnixStream::pair().unwrap();
            let (a, b) = (pattern(len, 1), pattern(len, 2));
            let writer = {
                let (a, b) = (a.clone(), b.clone());
                std::thread::spawn(move || {
                    tx.write_all(&a).unwrap();
                    tx.write_all(&b).unwrap();
                    tx.write_all(b"TAIL").unwrap();
                })
            };
            let mut rd = BufReader::with_capacity(8 << 10, rx);
            // A recycled buffer: stale bytes and spare capacity that must not show through.
            let mut buf = vec![0xEE; 3 * len];
            read_payload(&mut rd, &mut buf, len).unwrap();
            assert!(buf == a, "first payload of {len} bytes");
            read_payload(&mut rd, &mut buf, len).unwrap();
            assert!(buf == b, "second payload of {len} bytes");
            let mut tail = [0u8; 4];
            rd.read_exact(&mut tail).unwrap();
            assert_eq!(&tail, b"TAIL", "after payloads of {len} bytes");
            writer.join().unwrap();
        }
    }

    #[test]
    fn a_stream_that_ends_inside_the_payload_is_unexpected_eof() {
        for (len, sent) in [(4096, 100), (1 << 20, (1 << 19) + 3), (1 << 20, 0)] {
            let (mut tx, rx) = UnixStream::pair().unwrap();
            // From another thread: more than the socket buffer holds.
            let writer = std::thread::spawn(move || tx.write_all(&pattern(sent, 3)).unwrap());
            let mut rd = BufReader::with_capacity(8 << 10, rx);
            let mut buf = Vec::new();
            let e = read_payload(&mut rd, &mut buf, len).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{len}/{sent}: {e}");
            assert!(
                buf == pattern(sent, 3),
                "{len}/{sent}: what arrived is kept"
            );
            writer.join().unwrap();
        }
    }
}
