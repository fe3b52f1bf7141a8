//! Incremental verification of a log file while it is being fetched: every complete record is
//! checked as it arrives (file header, record header CRC, nonce, record and batch numbering,
//! trailer CRC and magic, per `xio/src/log/FORMAT.md`). An incomplete record at the end just
//! waits for more bytes. Use it as [`super::fetch::FetchConfig::verify`].

use super::fetch::VerifyFn;
use crate::log::header::{FileHeader, HeaderProblem, HEADER_LEN};
use crate::log::record::{check_trailer, RecordHeader, REC_HEADER_LEN, TRAILER_LEN};
use parking_lot::Mutex;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

#[derive(Default)]
struct State {
    nonce: u64,
    next_rec: u64,
    batch: u64,
    last_closed: bool,
}

/// A verifier for log files of format v1 (`expect_seq`: the sequence number the file header
/// must carry, if known).
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
    let read = |pos: u64, len: usize| -> Result<Vec<u8>, (u64, String)> {
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, pos)
            .map_err(|e| (pos, format!("reading the local copy at {pos}: {e}")))?;
        Ok(b)
    };
    let mut p = from;
    if p == 0 {
        if local < HEADER_LEN as u64 {
            return Ok(0);
        }
        let h = match FileHeader::decode(&read(0, HEADER_LEN)?) {
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
        *st = State {
            nonce: h.nonce,
            next_rec: 1,
            batch: 1,
            last_closed: false,
        };
        p = HEADER_LEN as u64;
    }
    while local - p >= REC_HEADER_LEN as u64 {
        let at = |why: String| (p, format!("record at {p}: {why}"));
        let hb = read(p, REC_HEADER_LEN).map_err(|(_, e)| (p, e))?;
        let h = RecordHeader::decode(&hb).map_err(|why| at(why.to_string()))?;
        let total = h.total_len();
        if p + total > local {
            break; // the rest of this record has not arrived yet
        }
        if h.nonce != st.nonce {
            return Err((p, format!("record at {p} carries another file's nonce")));
        }
        if h.rec_seq != st.next_rec {
            return Err((
                p,
                format!(
                    "record at {p} is number {} where {} was expected",
                    h.rec_seq, st.next_rec
                ),
            ));
        }
        let want_batch = if st.last_closed {
            st.batch + 1
        } else {
            st.batch
        };
        if h.batch != want_batch {
            return Err((
                p,
                format!(
                    "record at {p} is in batch {} where {want_batch} was expected",
                    h.batch
                ),
            ));
        }
        let payload =
            read(p + REC_HEADER_LEN as u64, h.stored_len as usize).map_err(|(_, e)| (p, e))?;
        let trailer = read(p + REC_HEADER_LEN as u64 + h.stored_len as u64, TRAILER_LEN)
            .map_err(|(_, e)| (p, e))?;
        check_trailer(&hb, &payload, &trailer).map_err(|why| at(why.to_string()))?;
        st.next_rec += 1;
        st.batch = h.batch;
        st.last_closed = h.batch_end();
        p += total;
    }
    Ok(p)
}
