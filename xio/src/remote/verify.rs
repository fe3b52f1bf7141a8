//! Incremental verification of a log file while it is being fetched: every complete record is
//! checked as it arrives (file header, record header CRC, nonce, record and batch numbering,
//! trailer CRC and magic, per `xio/src/log/FORMAT.md`). An incomplete record at the end just
//! waits for more bytes. Use it as [`super::fetch::FetchConfig::verify`].

use super::fetch::VerifyFn;
use crate::log::header::{FileHeader, HeaderProblem, HEADER_LEN};
use crate::log::record::{RecordHeader, RecordOp, REC_HEADER_LEN, TRAILER_LEN};
use crate::log::Chain;
use parking_lot::Mutex;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Between calls: the chain of the file (after its header) and where the next record starts
/// when that lies beyond the bytes that had arrived (v2 padding).
#[derive(Default)]
struct State {
    chain: Option<Chain>,
    resume: u64,
    /// The file's end-of-file record was seen, ending there: the file verifies to `end`.
    closed_at: Option<u64>,
}

/// A verifier for log files of format v1 and v2 (`expect_seq`: the sequence number the file
/// header must carry, if known). It returns how far the file verifies: the end of the last
/// complete record, or the start of the next one once its padding (v2) has arrived.
pub fn log_verifier(expect_seq: Option<u64>) -> VerifyFn {
    let state = Mutex::new(State::default());
    Arc::new(move |path: &Path, from: u64, local: u64| {
        check(&mut state.lock(), expect_seq, path, from, local).map_err(|(_, why)| why)
    })
}

/// How far the log file at `path` verifies from its start: the end of its last good record
/// before the first damage (or before an incomplete record at the end), 0 when its header
/// does not verify or it cannot be read.
pub fn verified_len(path: &Path, expect_seq: Option<u64>) -> u64 {
    let Ok(len) = std::fs::metadata(path).map(|m| m.len()) else {
        return 0;
    };
    match check(&mut State::default(), expect_seq, path, 0, len) {
        Ok(p) | Err((p, _)) => p,
    }
}

/// Verify the complete records of `path` between `from` (a record boundary this state
/// reached, or 0) and `local`; the new boundary, or the last good one and what is wrong.
fn check(
    st: &mut State,
    expect_seq: Option<u64>,
    path: &Path,
    from: u64,
    local: u64,
) -> Result<u64, (u64, String)> {
    let f = File::open(path).map_err(|e| (from, format!("cannot open the local copy: {e}")))?;
    let read = |pos: u64, len: usize| -> Result<Vec<u8>, String> {
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, pos)
            .map_err(|e| format!("reading the local copy at {pos}: {e}"))?;
        Ok(b)
    };
    if let Some(end) = st.closed_at {
        // Nothing after the end-of-file record (and its padding) belongs to the file.
        return Ok(end.min(local));
    }
    let mut p = from;
    if p == 0 {
        if local < HEADER_LEN as u64 {
            return Ok(0);
        }
        let h = match FileHeader::decode(&read(0, HEADER_LEN).map_err(|e| (0, e))?) {
            Ok(h) => h,
            Err(HeaderProblem::Damaged(why)) => return Err((0, format!("file header: {why}"))),
            Err(HeaderProblem::Version(v)) => {
                return Err((0, format!("unknown log format version {v}")))
            }
        };
        if let Some(seq) = expect_seq {
            if h.seq != seq {
                return Err((
                    0,
                    format!("file header says log {} where {seq} was expected", h.seq),
                ));
            }
        }
        st.resume = h.data_start();
        st.chain = Some(Chain::new(&h));
    }
    if st.resume > p {
        // The header block, or the padding after the last record, ends at `resume`.
        if local < st.resume {
            return Ok(p);
        }
        p = st.resume;
    }
    let Some(chain) = st.chain.as_mut() else {
        return Err((p, "verification resumed without the file header".into()));
    };
    while local - p >= REC_HEADER_LEN as u64 {
        let at = |why: String| (p, format!("record at {p}: {why}"));
        let hb = read(p, REC_HEADER_LEN).map_err(|e| (p, e))?;
        let h = RecordHeader::decode(&hb).map_err(|why| at(why.to_string()))?;
        let end = p + h.total_len();
        if end > local {
            break; // the rest of this record has not arrived yet
        }
        let payload = read(p + REC_HEADER_LEN as u64, h.stored_len as usize).map_err(|e| (p, e))?;
        let trailer = read(end - TRAILER_LEN as u64, TRAILER_LEN).map_err(|e| (p, e))?;
        chain
            .check_record(&hb, &payload, &trailer)
            .map_err(|why| at(why.to_string()))?;
        let next = chain.accept(&h, p);
        if h.op == RecordOp::End {
            st.closed_at = Some(next);
            return Ok(next.min(local));
        }
        if next > local {
            st.resume = next;
            return Ok(end);
        }
        p = next;
    }
    Ok(p)
}
