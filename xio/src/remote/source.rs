//! What the log server reads for a request: an exported device, or a log file up to its valid
//! end as `log::ends::file_end` places it (a finished log's successor's `prev_end`, the
//! durable end of the file a logger of this process writes, nothing of a file whose header
//! block is all zero), and the error replies.

use super::proto::RemoteReply;
use crate::log::ends::{file_end, read_head, EndFacts, Head};
use crate::log::{FileHeader, LiveEnds};
use brick_core::Output;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

/// A log file a connection has open. Once finished, its successor's header is kept for the
/// connection's life: a finished log's valid end is a fact of its history, recorded in that
/// header, which is written once (`log::ends`); reading it again on every request listed the
/// whole directory per request (a secondary lagging by hundreds of logs fetches from a
/// directory of hundreds of files). Until then every request looks for it (one listing and
/// one header read), and the same read decides both that the log is finished and its end.
pub(super) struct OpenLog {
    pub(super) file: File,
    /// Its sequence number.
    pub(super) seq: u64,
    /// Its successor's valid header, once there is one (the log is finished).
    pub(super) successor: Option<FileHeader>,
}

/// What a request reads: an exported device or a log file.
pub(super) enum Source<'a> {
    Dev(Arc<dyn Output>),
    Log {
        log: &'a OpenLog,
        /// Where the durable end of a file being written is published.
        live: Option<(&'a LiveEnds, PathBuf)>,
    },
}

impl Source<'_> {
    pub(super) fn stat(&self) -> Result<(u64, bool), RemoteReply> {
        match self {
            Source::Dev(d) => d
                .info()
                .map(|i| (i.size, true))
                .map_err(|e| err(e.to_string(), e.errno())),
            Source::Log { log, live } => {
                let len = log
                    .file
                    .metadata()
                    .map_err(|e| io_err(&e, "reading the metadata of a log file"))?
                    .len();
                // A spare renamed into place waits for its header with a zeroed header block
                // in front of stale bytes: nothing to serve yet, whoever writes it (a logger
                // of this process publishes 0 for it, but another process's does not).
                let head = read_head(&log.file)
                    .map_err(|e| io_err(&e, "reading the header of a log file"))?;
                let end = file_end(&EndFacts {
                    seq: log.seq,
                    len,
                    header_zeroed: head == Head::Zeroed,
                    successor: log.successor.as_ref(),
                    live: live.as_ref().and_then(|(l, path)| l.get(path)),
                });
                Ok((end.end, end.finished))
            }
        }
    }

    /// Read what exists of `[pos, pos+len)` below `size`.
    pub(super) fn read(&self, pos: u64, len: usize, size: u64) -> Result<Vec<u8>, RemoteReply> {
        let len = (size.saturating_sub(pos)).min(len as u64) as usize;
        match self {
            Source::Dev(d) => {
                brick_core::read_all(&**d, pos, len).map_err(|e| err(e.to_string(), e.errno()))
            }
            Source::Log { log, .. } => {
                let file = &log.file;
                let mut buf = vec![0u8; len];
                let mut got = 0;
                while got < len {
                    match file.read_at(&mut buf[got..], pos + got as u64) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(io_err(&e, "reading a log file")),
                    }
                }
                buf.truncate(got);
                Ok(buf)
            }
        }
    }
}

pub(super) fn err(message: String, errno: i32) -> RemoteReply {
    RemoteReply::Error { message, errno }
}

/// A failed system call, through the one errno mapping (`brick_core::Error::from_io`).
pub(super) fn io_err(e: &std::io::Error, context: &'static str) -> RemoteReply {
    let e = brick_core::Error::from_io(e, context);
    err(e.to_string(), e.errno())
}
