//! The primary's image at a log position, rebuilt from its log files with xio's scanner
//! (the reference a secondary's device must equal when its replay stands at that position).

use std::path::Path;
use std::sync::Arc;
use xio::file::{self, Backend, FileOptions};
use xio::log::{Expect, LogName, RecordOp, Scanner};

/// The device (`size` bytes, zeros at the start) after applying, in log order, every record
/// of the logs in `dir` before `log`, and those of `log` that end at or before `pos`.
/// Fails naming the log when one is missing or does not scan.
pub fn image_at(dir: &Path, log: &LogName, pos: u64, size: u64) -> Result<Vec<u8>, String> {
    let mut logs: Vec<LogName> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .filter_map(|e| LogName::parse(e.file_name().to_str()?).ok())
        .filter(|l| l.seq <= log.seq && (l.seq < log.seq || l == log))
        .collect();
    logs.sort_by_key(|l| l.seq);
    let seqs: Vec<u64> = logs.iter().map(|l| l.seq).collect();
    if seqs.first() != Some(&1) || seqs.windows(2).any(|w| w[1] != w[0] + 1) {
        return Err(format!(
            "the logs up to {log} are not all in {} (found {seqs:?}): cannot rebuild",
            dir.display()
        ));
    }
    let mut img = vec![0u8; size as usize];
    for l in &logs {
        let until = if l == log { pos } else { u64::MAX };
        apply_log(&dir.join(l.to_string()), until, &mut img)?;
    }
    Ok(img)
}

fn apply_log(path: &Path, until: u64, img: &mut [u8]) -> Result<(), String> {
    let what = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let len = std::fs::metadata(path).map_err(|e| what(&e))?.len();
    let src: Arc<dyn brick_core::Output> =
        file::open(path, Backend::Sync, &FileOptions::default()).map_err(|e| what(&e))?;
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut s = Scanner::open(src, name, len, &Expect::default()).map_err(|e| what(&e))?;
    while let Some(r) = s.next().map_err(|e| what(&e))? {
        if r.end > until {
            break;
        }
        let range = r.header.pos as usize..(r.header.pos + r.header.data_len as u64) as usize;
        if range.end > img.len() {
            return Err(format!(
                "{}: record at {} writes past the device end",
                path.display(),
                r.offset
            ));
        }
        match r.header.op {
            RecordOp::Write => img[range].copy_from_slice(&r.data),
            RecordOp::Discard | RecordOp::WriteZeroes => img[range].fill(0),
            RecordOp::Commit | RecordOp::End => {}
        }
    }
    Ok(())
}
