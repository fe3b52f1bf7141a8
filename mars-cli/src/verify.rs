//! `marsadm verify`: the primary compares its checksum table with each secondary's, taken
//! while that secondary held its replay at a known log position. Blocks any log record at or
//! after the older of that position and the primary's watermark touches are left out (there
//! the replicas may legitimately differ), and so are blocks unknown on either side. One thread
//! per secondary being compared; the table travels over the node's device server, throttled.

use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use xio::csum::verify::{blocks_of, compare, decode_table, in_runs, VerifyDiff};
use xio::csum::CsumDisk;
use xio::log::LogPos;
use xio::logger::TransLogger;
use xio::remote::{ClientConfig, RemoteClient};

/// Bytes of table per read (covers 1 GiB of data).
const PIECE: u32 = 1 << 20;

/// A secondary's part of a verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyHold {
    /// Replay is held; the table is taken once replay is idle.
    Holding(u64),
    /// The table is served and announced, since then.
    Ready(u64, Instant),
    /// This verify is over here.
    Done(u64),
}

/// Where one comparison stands.
#[derive(Debug, Clone, Default)]
pub struct VerifyState {
    /// Table bytes fetched, of all.
    pub done: u64,
    /// Table bytes in all.
    pub total: u64,
    /// The result, once compared.
    pub diff: Option<VerifyDiff>,
    /// Why it failed.
    pub failed: Option<String>,
}

/// What a comparison needs on the primary.
pub struct VerifyInput {
    /// The secondary (for messages).
    pub peer: String,
    /// Its device server, serving its table snapshot as device `csum-<res>`.
    pub client: ClientConfig,
    /// The log position its table snapshot is at.
    pub at: LogPos,
    /// The primary's logger and checksums.
    pub logger: Arc<TransLogger>,
    /// The primary's checksums.
    pub csum: Arc<CsumDisk>,
    /// The primary's log directory and the resource.
    pub log_dir: PathBuf,
    /// The resource.
    pub res: String,
    /// Data bytes per second to compare (0: unlimited); the table is 1/1024 of that.
    pub rate: u64,
}

/// One comparison running on the primary.
pub struct VerifyJob {
    state: Arc<Mutex<VerifyState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl VerifyJob {
    /// Start comparing with `input.peer`.
    pub fn start(input: VerifyInput) -> VerifyJob {
        let state = Arc::new(Mutex::new(VerifyState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("marsd-verify".into())
            .spawn(move || {
                let r = run(&input, &st, &sp);
                if let Err(e) = r {
                    tracing::error!(res = %input.res, peer = %input.peer, "verify failed: {e}");
                    st.lock().failed = Some(e);
                }
            })
            .expect("spawning the verify thread");
        VerifyJob {
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// Where it stands.
    pub fn state(&self) -> VerifyState {
        self.state.lock().clone()
    }
}

impl Drop for VerifyJob {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(i: &VerifyInput, st: &Mutex<VerifyState>, stop: &AtomicBool) -> Result<(), String> {
    // The primary's own table first (T0), the log positions after (T1): a write completing
    // in between is in the log or the index at T1, so its blocks are left out.
    let mine = i.csum.snapshot();
    let min_pos = i.logger.min_pos();
    let client = RemoteClient::start(format!("verify {}/{}", i.res, i.peer), i.client.clone());
    let fetched = fetch_table(&client, i, st, stop);
    client.shutdown();
    let theirs = decode_table(&fetched?);
    let from = i.at.min(min_pos);
    let mut extents = xio::replica::log_extents(&i.log_dir, &i.res, from)
        .map_err(|e| format!("reading the primary's logs from {from}: {e}"))?;
    extents.extend(i.logger.unwritten_extents());
    let runs = blocks_of(extents);
    let diff = compare(&mine, &theirs, |b| in_runs(&runs, b));
    tracing::info!(res = %i.res, peer = %i.peer, differing = diff.blocks(), compared = diff.compared,
        unjudged = diff.unjudged, "verify compared the checksums");
    st.lock().diff = Some(diff);
    Ok(())
}

fn fetch_table(
    client: &RemoteClient,
    i: &VerifyInput,
    st: &Mutex<VerifyState>,
    stop: &AtomicBool,
) -> Result<Vec<u8>, String> {
    let (_, size, _) = client
        .read_at(0, 0, 0)
        .map_err(|e| format!("asking {} for its checksums: {e}", i.peer))?;
    st.lock().total = size;
    let limiter = brick_core::Limiter::new(brick_core::Rates {
        ops_per_sec: 0,
        bytes_per_sec: i.rate / 1024,
    });
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        if stop.load(Ordering::Acquire) {
            return Err("stopped".into());
        }
        let len = (size - out.len() as u64).min(u64::from(PIECE)) as u32;
        limiter.wait(1, u64::from(len));
        let (data, _, _) = client
            .read_at(out.len() as u64, len, 0)
            .map_err(|e| format!("reading {}'s checksums: {e}", i.peer))?;
        if data.is_empty() {
            return Err(format!("{}'s checksum table ended early", i.peer));
        }
        out.extend(data);
        st.lock().done = out.len() as u64;
    }
    Ok(out)
}
