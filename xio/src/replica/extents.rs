//! Which device bytes the log records from a position on touch (`marsadm verify` leaves
//! those blocks out: replicas at different positions may legitimately differ there).

use super::log_sizes::local_log_state;
use super::ReplicaError;
use crate::file::{self, Backend, FileOptions};
use crate::log::{Expect, LogPos, RecordOp, Scanner};
use std::path::Path;

/// Byte extents `(pos, len)` of every mutation in the log files of `dir` (resource `res`) at
/// or after `from`, up to each file's valid end.
pub fn log_extents(dir: &Path, res: &str, from: LogPos) -> Result<Vec<(u64, u64)>, ReplicaError> {
    let mut out = Vec::new();
    for (name, len) in local_log_state(dir)
        .into_iter()
        .filter(|(n, _)| n.seq >= from.seq)
    {
        let path = dir.join(name.to_string());
        let f = file::open(&path, Backend::Sync, &FileOptions::default())?;
        let expect = Expect {
            resource: Some(res.to_string()),
            seq: Some(name.seq),
        };
        let mut s = Scanner::open(f, path.display().to_string(), len, &expect)
            .map_err(crate::logger::LoggerError::from)?;
        while let Some(r) = s.next_raw().map_err(crate::logger::LoggerError::from)? {
            let mutation = matches!(
                r.header.op,
                RecordOp::Write | RecordOp::Discard | RecordOp::WriteZeroes
            );
            if mutation && (name.seq > from.seq || r.offset >= from.offset) {
                out.push((r.header.pos, u64::from(r.header.data_len)));
            }
        }
    }
    Ok(out)
}
