//! The demo's NBD client workload: random 4 KiB writes with periodic flushes, mirrored into
//! an in-memory model of the device, so that every replica can be checked against it.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xio::nbd::client::Client;

pub const BLOCK: usize = 4096;
/// A flush every this many writes (an application's fsync).
const FLUSH_EVERY: u64 = 256;

/// What the client wrote so far, and where the next random block comes from.
pub struct Model {
    pub bytes: Vec<u8>,
    rng: u64,
    /// Bytes written through NBD in total.
    pub written: u64,
}

impl Model {
    pub fn new(size: u64) -> Model {
        Model {
            bytes: vec![0; size as usize],
            rng: 0x2545_f491_4f6c_dd1d,
            written: 0,
        }
    }

    /// A copy that writes other blocks from here on (a diverging history).
    pub fn fork(&self, seed: u64) -> Model {
        Model {
            bytes: self.bytes.clone(),
            // Never 0: xorshift would stay there.
            rng: self.rng ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            written: self.written,
        }
    }

    fn next_block(&mut self) -> (u64, u8) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let blocks = self.bytes.len() as u64 / BLOCK as u64;
        (
            (self.rng % blocks) * BLOCK as u64,
            (self.rng >> 32) as u8 | 1,
        )
    }

    /// `n` writes through `c`, then a flush; the model follows only acknowledged writes.
    pub fn write(&mut self, c: &mut Client, n: u64) -> Result<()> {
        for i in 0..n {
            let (off, fill) = self.next_block();
            let block = [fill; BLOCK];
            if c.write(off, &block)? != 0 {
                bail!("NBD write at {off} failed");
            }
            self.bytes[off as usize..off as usize + BLOCK].copy_from_slice(&block);
            self.written += BLOCK as u64;
            if i % FLUSH_EVERY == FLUSH_EVERY - 1 && c.flush()? != 0 {
                bail!("NBD flush failed");
            }
        }
        if c.flush()? != 0 {
            bail!("NBD flush failed");
        }
        Ok(())
    }

    pub fn hash(&self) -> blake3::Hash {
        blake3::hash(&self.bytes)
    }
}

/// A client writing in the background at a steady rate until stopped (or `max` writes).
pub struct Background {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(Client, Model)>>,
}

impl Background {
    /// `rate` in bytes per second: an application's pace, not a benchmark's (unpaced, the
    /// client fills the log faster than a joining replica can follow on two cores).
    pub fn start(mut c: Client, mut m: Model, max: u64, rate: u64) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut done = 0;
            while !s2.load(Ordering::Acquire) && done < max {
                m.write(&mut c, FLUSH_EVERY)?;
                done += FLUSH_EVERY;
                let due = Duration::from_secs_f64((done * BLOCK as u64) as f64 / rate as f64);
                if let Some(ahead) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(ahead);
                }
            }
            Ok((c, m))
        });
        Background { stop, thread }
    }

    /// Stop after the current batch; the client and the model come back.
    pub fn finish(self) -> Result<(Client, Model)> {
        self.stop.store(true, Ordering::Release);
        match self.thread.join() {
            Ok(r) => r.context("the background NBD writer"),
            Err(_) => bail!("the background NBD writer panicked"),
        }
    }
}

/// blake3 of a device file, read in 4 MiB pieces.
pub fn hash_file(p: &Path) -> Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    h.update_reader(f)
        .with_context(|| format!("reading {}", p.display()))?;
    Ok(h.finalize())
}
