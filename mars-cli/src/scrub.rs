//! `marsadm scrub`: a throttled, resumable pass over the local data device comparing every
//! block with its stored checksum (`xio::csum`). One thread per running scrub; its restart
//! point (position and findings so far) is persisted after every chunk, so an interrupted
//! scrub (a stop, a crash, `kill -9`) continues where it stopped.

use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use xio::csum::{CsumDisk, SCRUB_CHUNK};

/// Damaged block numbers kept for the report (the count goes on beyond).
const KEEP_DAMAGED: usize = 1000;

/// Where a scrub stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubProgress {
    /// Next byte to scrub.
    pub pos: u64,
    /// Device size.
    pub size: u64,
    /// Damaged blocks found (the first [`KEEP_DAMAGED`] block numbers).
    pub damaged: Vec<u64>,
    /// How many damaged blocks, in all.
    pub damaged_count: u64,
    /// Blocks whose checksum-file page is damaged.
    pub csum_file_errors: u64,
    /// Unknown checksums learnt from the data.
    pub learned: u64,
    /// Damaged checksum-file pages rebuilt (with `--repair`).
    pub relearned_pages: u64,
    /// Bytes per second over this run.
    pub rate: u64,
    /// Finished (the restart point is gone).
    pub done: bool,
    /// Why it stopped early.
    pub failed: Option<String>,
    /// Repair was asked for.
    pub repair: bool,
}

impl ScrubProgress {
    fn encode(&self) -> String {
        let list: Vec<String> = self.damaged.iter().map(u64::to_string).collect();
        format!(
            "{} {} {} {} {} {}\n{}\n",
            self.pos,
            self.size,
            self.damaged_count,
            self.csum_file_errors,
            self.learned,
            self.relearned_pages,
            list.join(" ")
        )
    }

    fn decode(text: &str) -> Option<ScrubProgress> {
        let mut lines = text.lines();
        let head: Vec<u64> = lines
            .next()?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [pos, size, damaged_count, csum_file_errors, learned, relearned_pages] = head[..]
        else {
            return None;
        };
        let damaged = lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        Some(ScrubProgress {
            pos,
            size,
            damaged,
            damaged_count,
            csum_file_errors,
            learned,
            relearned_pages,
            ..ScrubProgress::default()
        })
    }

    /// The record `view` shows: `<bytes> <damaged> <csum-file-errors> <repair 0|1>`.
    pub fn record(&self) -> String {
        format!(
            "{} {} {} {}",
            self.size,
            self.damaged_count,
            self.csum_file_errors,
            u8::from(self.repair)
        )
    }
}

/// A running scrub.
pub struct ScrubJob {
    progress: Arc<Mutex<ScrubProgress>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Write `p` to `path` atomically.
fn persist(path: &Path, p: &ScrubProgress) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, p.encode())?;
    std::fs::rename(&tmp, path)
}

impl ScrubJob {
    /// Scrub `disk` at up to `rate` bytes/s (0: unlimited), continuing from the restart point
    /// in `restart` unless `from_scratch`; with `repair`, damaged checksum-file pages are
    /// rebuilt from the data.
    pub fn start(
        res: &str,
        disk: Arc<CsumDisk>,
        restart: PathBuf,
        rate: u64,
        repair: bool,
        from_scratch: bool,
    ) -> ScrubJob {
        let size = brick_core::Output::info(&*disk).map_or(0, |i| i.size);
        let resumed = (!from_scratch)
            .then(|| std::fs::read_to_string(&restart).ok())
            .flatten()
            .and_then(|t| ScrubProgress::decode(&t))
            .filter(|p| p.size == size && p.pos <= size);
        if let Some(p) = &resumed {
            tracing::info!(%res, pos = p.pos, "scrub continues from its restart point");
        }
        let progress = Arc::new(Mutex::new(ScrubProgress {
            size,
            repair,
            ..resumed.unwrap_or_default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s, res) = (progress.clone(), stop.clone(), res.to_string());
        let thread = std::thread::Builder::new()
            .name("marsd-scrub".into())
            .spawn(move || run(&res, &disk, &restart, rate, repair, &p, &s))
            .expect("spawning the scrub thread");
        ScrubJob {
            progress,
            stop,
            thread: Some(thread),
        }
    }

    /// Where it stands.
    pub fn progress(&self) -> ScrubProgress {
        self.progress.lock().clone()
    }

    /// Stop (the restart point stays for the next run).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ScrubJob {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run(
    res: &str,
    disk: &CsumDisk,
    restart: &Path,
    rate: u64,
    repair: bool,
    progress: &Mutex<ScrubProgress>,
    stop: &AtomicBool,
) {
    let limiter = brick_core::Limiter::new(brick_core::Rates {
        ops_per_sec: 0,
        bytes_per_sec: rate,
    });
    let started = Instant::now();
    let first = progress.lock().pos;
    let fail = |why: String| {
        tracing::error!(%res, "scrub stopped: {why}");
        progress.lock().failed = Some(why);
    };
    loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let mut p = progress.lock().clone();
        if p.pos >= p.size {
            break;
        }
        let len = (p.size - p.pos).min(SCRUB_CHUNK);
        limiter.wait(1, len);
        let c = match disk.scrub_chunk(p.pos, repair) {
            Ok(c) => c,
            Err(e) => return fail(format!("reading at byte {}: {e}", p.pos)),
        };
        p.damaged_count += c.bad.len() as u64;
        let room = KEEP_DAMAGED.saturating_sub(p.damaged.len());
        p.damaged.extend(c.bad.iter().take(room));
        p.csum_file_errors += c.csum_file_errors;
        p.learned += c.learned;
        p.relearned_pages += c.relearned_pages;
        p.pos += len;
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        p.rate = ((p.pos - first) as f64 / secs) as u64;
        if let Err(e) = persist(restart, &p) {
            return fail(format!(
                "writing the restart point {}: {e}",
                restart.display()
            ));
        }
        *progress.lock() = p;
    }
    // What was learnt (checksums, rebuilt pages) becomes durable before the record says so.
    if let Err(e) = disk.persist() {
        return fail(format!("persisting the checksums: {e}"));
    }
    let _ = std::fs::remove_file(restart);
    let mut p = progress.lock();
    p.done = true;
    tracing::info!(%res, damaged = p.damaged_count, csum_file_errors = p.csum_file_errors,
        learned = p.learned, "scrub finished");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_point_roundtrip() {
        let p = ScrubProgress {
            pos: 8 << 20,
            size: 64 << 20,
            damaged: vec![3, 99],
            damaged_count: 2,
            csum_file_errors: 1023,
            learned: 5,
            relearned_pages: 1,
            ..ScrubProgress::default()
        };
        assert_eq!(ScrubProgress::decode(&p.encode()), Some(p));
        assert_eq!(ScrubProgress::decode("1 2 3\n"), None);
        assert_eq!(ScrubProgress::decode("garbage"), None);
    }
}
