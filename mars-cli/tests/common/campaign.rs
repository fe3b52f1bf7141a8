//! Fault campaigns: the profile (quick by default, long with `MARS_LONG_TESTS=1`), the
//! counters each campaign prints as one line, and a verifying writer whose blocks say which
//! write they are, so that a read-back tells exactly what was lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xio::nbd::client::Client;

/// Block size of the verifying writer.
pub const BLOCK: usize = 4096;

/// The long profile runs (`MARS_LONG_TESTS=1`).
pub fn long_profile() -> bool {
    std::env::var("MARS_LONG_TESTS").is_ok_and(|v| v == "1")
}

/// `quick` in the default profile, `long` in the long one.
pub fn profile<T>(quick: T, long: T) -> T {
    if long_profile() {
        long
    } else {
        quick
    }
}

/// A seed for a campaign's random choices: `MARS_CAMPAIGN_SEED` (to rerun a failure), else
/// from the clock. Printed by [`Campaign::new`].
pub fn campaign_seed() -> u64 {
    std::env::var("MARS_CAMPAIGN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// xorshift64: small, deterministic from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Never 0 (a fixed point of xorshift).
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Counters of one campaign. `finish` prints
/// `campaign RX: cycles=N violations=V data_lost_bytes=B time=T` and fails on any violation.
pub struct Campaign {
    name: String,
    cycles: usize,
    violations: Vec<String>,
    lost: u64,
    t0: Instant,
    limit: Duration,
    pub seed: u64,
}

impl Campaign {
    /// A campaign that must finish within `limit`.
    pub fn new(name: &str, limit: Duration) -> Campaign {
        let seed = campaign_seed();
        eprintln!(
            "campaign {name}: profile {}, seed {seed} (rerun with MARS_CAMPAIGN_SEED={seed})",
            profile("quick", "long (MARS_LONG_TESTS=1)")
        );
        Campaign {
            name: name.to_string(),
            cycles: 0,
            violations: Vec::new(),
            lost: 0,
            t0: Instant::now(),
            limit,
            seed,
        }
    }

    /// One cycle done; fails once the campaign is over its time budget.
    pub fn cycle_done(&mut self) {
        self.cycles += 1;
        assert!(
            self.t0.elapsed() < self.limit,
            "campaign {}: over its time budget of {:?} after {} cycles ({} violations so far: {:?})",
            self.name,
            self.limit,
            self.cycles,
            self.violations.len(),
            self.violations
        );
    }

    /// Record a violation and the bytes it lost.
    pub fn violation(&mut self, what: String, lost_bytes: u64) {
        eprintln!(
            "campaign {} cycle {}: VIOLATION: {what}",
            self.name, self.cycles
        );
        self.violations.push(what);
        self.lost += lost_bytes;
    }

    /// Record the stale read-backs of a writer as a violation.
    pub fn writer_ended(&mut self, what: &str, end: &WriterEnd) {
        if end.stale_reads > 0 {
            self.violation(
                format!(
                    "{what}: {} reads right after an acknowledged write returned other data; first: {}",
                    end.stale_reads,
                    end.first_stale.as_deref().unwrap_or_default()
                ),
                end.stale_reads * BLOCK as u64,
            );
        }
    }

    /// Record the result of a [`Model::check`].
    pub fn check(&mut self, what: &str, found: Result<(), Loss>) {
        if let Err(l) = found {
            self.violation(format!("{what}: {l}"), l.bytes);
        }
    }

    /// Print the counters line (also appended to `campaigns.txt` beside the scenario
    /// artifacts) and fail on any violation.
    pub fn finish(self) {
        let line = format!(
            "campaign {}: cycles={} violations={} data_lost_bytes={} time={:.1}s",
            self.name,
            self.cycles,
            self.violations.len(),
            self.lost,
            self.t0.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        let summary = super::artifacts::artifacts_dir("x")
            .parent()
            .map(|d| d.join("campaigns.txt"));
        if let Some(p) = summary {
            use std::io::Write;
            let _ = std::fs::create_dir_all(p.parent().unwrap());
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
            {
                let _ = writeln!(f, "{line} profile={}", profile("quick", "long"));
            }
        }
        assert!(
            self.violations.is_empty(),
            "{line}\nviolations:\n{}",
            self.violations.join("\n")
        );
    }
}

/// The bytes of write number `generation` to block `block`: the pair repeated, so that a
/// read-back names the write it comes from (generation 0: never written, zeros).
pub fn block_bytes(block: u64, generation: u64) -> Vec<u8> {
    let mut pair = [0u8; 16];
    pair[..8].copy_from_slice(&block.to_le_bytes());
    pair[8..].copy_from_slice(&generation.to_le_bytes());
    pair.repeat(BLOCK / 16)
}

/// The write a block's bytes come from; `None` when they are no whole write of this block
/// (torn, or garbage).
pub fn block_generation(block: u64, bytes: &[u8]) -> Option<u64> {
    if bytes.iter().all(|&b| b == 0) {
        return Some(0);
    }
    let g = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    (bytes == block_bytes(block, g).as_slice()).then_some(g)
}

/// What a check found missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub blocks: u64,
    pub bytes: u64,
    pub first: String,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} blocks ({} bytes) lost or wrong; first: {}",
            self.blocks, self.bytes, self.first
        )
    }
}

/// What each block must hold: `durable` (acknowledged before a completed flush) and the
/// writes since (sent, maybe acknowledged, not yet covered by a flush: either may survive).
#[derive(Debug, Clone)]
pub struct Model {
    pub durable: Vec<u64>,
    pending: Vec<(u64, u64)>,
    next_gen: u64,
    rng: Rng,
}

impl Model {
    pub fn new(size: u64, seed: u64) -> Model {
        Model {
            durable: vec![0; size as usize / BLOCK],
            pending: Vec::new(),
            next_gen: 1,
            rng: Rng::new(seed),
        }
    }

    /// The next write (offset, bytes), registered as pending before it is sent.
    pub fn next_write(&mut self) -> (u64, Vec<u8>) {
        let block = self.rng.below(self.durable.len() as u64);
        let g = self.next_gen;
        self.next_gen += 1;
        self.pending.push((block, g));
        (block * BLOCK as u64, block_bytes(block, g))
    }

    /// A copy whose next writes differ from this model's next ones (other blocks, other
    /// generations from `1 << 40` on): the other side of a fork must not write the same bytes,
    /// or a replica that replays the wrong side looks right.
    pub fn diverge(&self, salt: u64) -> Model {
        let mut m = self.clone();
        m.rng = Rng::new(self.rng.0 ^ salt);
        m.next_gen += 1 << 40;
        m
    }

    /// The blocks whose durable write differs from `before`'s (written since), with the
    /// generation each holds now.
    pub fn written_since(&self, before: &Model) -> Vec<(u64, u64)> {
        let pairs = self.durable.iter().zip(&before.durable).enumerate();
        pairs
            .filter(|(_, (now, then))| now != then)
            .map(|(b, (now, _))| (b as u64, *now))
            .collect()
    }

    /// A block written before, and the generation of its newest acknowledged write (the
    /// newest pending one, else the durable one). For a writer with one write in flight,
    /// between its writes.
    pub fn earlier_block(&mut self) -> (u64, u64) {
        let b = self.rng.below(self.durable.len() as u64);
        let newest = self.pending.iter().rev().find(|(p, _)| *p == b);
        (b, newest.map_or(self.durable[b as usize], |(_, g)| *g))
    }

    /// A flush completed: every write sent before it is durable.
    pub fn flushed(&mut self) {
        for (b, g) in self.pending.drain(..) {
            self.durable[b as usize] = g;
        }
    }

    /// Whether `image` holds, in every block, its durable write or one of its pending ones.
    pub fn check(&self, image: &[u8]) -> Result<(), Loss> {
        self.check_blocks(image, |b, g| {
            g == Some(self.durable[b as usize]) || g.is_some_and(|g| self.pending.contains(&(b, g)))
        })
    }

    /// Whether `image` holds exactly the durable writes (nothing pending may differ).
    pub fn check_exact(&self, image: &[u8]) -> Result<(), Loss> {
        self.check_blocks(image, |b, g| g == Some(self.durable[b as usize]))
    }

    fn check_blocks(
        &self,
        image: &[u8],
        ok: impl Fn(u64, Option<u64>) -> bool,
    ) -> Result<(), Loss> {
        let mut loss = Loss {
            blocks: 0,
            bytes: 0,
            first: String::new(),
        };
        for (b, want) in self.durable.iter().enumerate() {
            let b = b as u64;
            let got = image.get(b as usize * BLOCK..(b as usize + 1) * BLOCK);
            let g = got.and_then(|bytes| block_generation(b, bytes));
            if !ok(b, g) {
                if loss.blocks == 0 {
                    loss.first = format!("block {b}: holds write {g:?}, want write {want}");
                }
                loss.blocks += 1;
                loss.bytes += BLOCK as u64;
            }
        }
        if loss.blocks == 0 {
            Ok(())
        } else {
            Err(loss)
        }
    }

    /// After a crash: adopt what survived (`image`, already checked) as durable.
    pub fn settle(&mut self, image: &[u8]) {
        for (b, d) in self.durable.iter_mut().enumerate() {
            let bytes = &image[b * BLOCK..(b + 1) * BLOCK];
            *d = block_generation(b as u64, bytes).unwrap_or(*d);
        }
        self.pending.clear();
    }

    /// The bytes the durable writes make.
    pub fn image(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.durable.len() * BLOCK);
        for (b, g) in self.durable.iter().enumerate() {
            if *g == 0 {
                out.resize(out.len() + BLOCK, 0);
            } else {
                out.extend(block_bytes(b as u64, *g));
            }
        }
        out
    }
}

/// A writer thread: verified writes from a shared [`Model`] through one NBD connection,
/// with a flush every `flush_every` writes, until stopped, `max` writes, or an error (the
/// server went away).
pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<WriterEnd>>,
}

/// How a writer ended.
pub struct WriterEnd {
    pub writes: u64,
    pub flushes: u64,
    /// The connection failed (e.g. marsd was killed); `None` when it was stopped.
    pub error: Option<String>,
    /// Read-backs right after an acknowledged write that returned other bytes (a write must
    /// be readable once acknowledged), with the first one.
    pub stale_reads: u64,
    pub first_stale: Option<String>,
    pub client: Option<Client>,
}

/// A writer reads back one earlier block every this many writes.
const READ_EARLIER_EVERY: u64 = 4;

/// Verified writes from `model` through `c`, a flush every `flush_every` writes and at the
/// end, until `stop` is set, `max` writes, or an error (the server went away).
fn write_loop(
    mut c: Client,
    model: &Mutex<Model>,
    flush_every: u64,
    max: u64,
    stop: &AtomicBool,
) -> WriterEnd {
    let mut end = WriterEnd {
        writes: 0,
        flushes: 0,
        error: None,
        stale_reads: 0,
        first_stale: None,
        client: None,
    };
    let flush = |c: &mut Client, end: &mut WriterEnd| match c.flush() {
        Ok(0) => {
            model.lock().unwrap().flushed();
            end.flushes += 1;
            true
        }
        r => {
            end.error = Some(format!("flush: {r:?}"));
            false
        }
    };
    while !stop.load(Ordering::Relaxed) && end.writes < max {
        let (off, bytes) = model.lock().unwrap().next_write();
        match c.write(off, &bytes) {
            Ok(0) => end.writes += 1,
            r => {
                end.error = Some(format!("write at {off}: {r:?}"));
                return end;
            }
        }
        let b = off / BLOCK as u64;
        let g = block_generation(b, &bytes).expect("a write's own bytes");
        if !read_back(&mut c, b, g, "the acknowledged write", &mut end) {
            return end;
        }
        // Now and then a block written earlier (maybe written back to the data device
        // meanwhile): it must read as its newest acknowledged write.
        if end.writes.is_multiple_of(READ_EARLIER_EVERY) {
            let (b, g) = model.lock().unwrap().earlier_block();
            if !read_back(&mut c, b, g, "an earlier block", &mut end) {
                return end;
            }
        }
        if end.writes.is_multiple_of(flush_every) && !flush(&mut c, &mut end) {
            return end;
        }
    }
    if flush(&mut c, &mut end) {
        end.client = Some(c);
    }
    end
}

/// Read block `b` through `c`: it must hold write `g`; other bytes count as a stale read.
/// `false` when the connection failed (recorded in `end`).
fn read_back(c: &mut Client, b: u64, g: u64, what: &str, end: &mut WriterEnd) -> bool {
    let off = b * BLOCK as u64;
    match c.read(off, BLOCK as u32) {
        Ok(Ok(d)) if block_generation(b, &d) == Some(g) => true,
        Ok(r) => {
            end.stale_reads += 1;
            end.first_stale.get_or_insert_with(|| {
                format!(
                    "read of {what} (block {b}, newest acknowledged write {g}): {:?}",
                    r.map(|d| block_generation(b, &d))
                )
            });
            true
        }
        Err(e) => {
            end.error = Some(format!("read at {off}: {e}"));
            false
        }
    }
}

/// `n` verified writes from `model` through `c` (flushed at the end); panics on an error.
/// Returns the connection.
pub fn write_n(c: Client, model: &Mutex<Model>, n: u64, flush_every: u64) -> Client {
    let end = write_loop(c, model, flush_every, n, &AtomicBool::new(false));
    match end.client {
        Some(c) if end.writes == n && end.stale_reads == 0 => c,
        _ => panic!(
            "verified writes failed after {} of {n} writes: {:?} ({} stale read-backs: {:?})",
            end.writes, end.error, end.stale_reads, end.first_stale
        ),
    }
}

impl Writer {
    pub fn start(c: Client, model: Arc<Mutex<Model>>, flush_every: u64, max: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || write_loop(c, &model, flush_every, max, &s));
        Writer {
            stop,
            thread: Some(thread),
        }
    }

    /// Wait until it has done `n` writes or ended (at most `limit`).
    pub fn wait_writes(&self, model: &Arc<Mutex<Model>>, n: u64, limit: Duration) {
        let start = model.lock().unwrap().next_gen;
        super::wait_until(limit, "the writer to make progress", || {
            let done = model.lock().unwrap().next_gen - start;
            let ended = self.thread.as_ref().is_none_or(|t| t.is_finished());
            if done >= n || ended {
                Ok(())
            } else {
                Err(format!("{done} of {n} writes"))
            }
        });
    }

    /// Stop it (after its current write) and wait for it: a stopped writer flushed last.
    pub fn stop(mut self) -> WriterEnd {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("writer thread")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Poll `path` (a secondary's device) until it holds exactly the durable writes of `model`,
/// at most `limit`; the last loss otherwise.
pub fn wait_model(path: &std::path::Path, model: &Model, limit: Duration) -> Result<(), Loss> {
    let deadline = Instant::now() + limit;
    loop {
        let img = std::fs::read(path).unwrap_or_default();
        match model.check_exact(&img) {
            Ok(()) => return Ok(()),
            Err(l) if Instant::now() >= deadline => return Err(l),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
