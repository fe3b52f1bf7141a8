//! The main demo: one resource replicated from a primary to a secondary over loopback.
//!
//! - **alice** (primary) keeps the resource's data on a file (io_uring backend), logs every
//!   write through the trans_logger and exports the resource over NBD on a Unix socket.
//! - An NBD client writes random 4 KiB blocks with a flush every 256 writes; the logger rotates
//!   its log files along the way.
//! - **bob** (secondary) fetches alice's log files over mars-net (HMAC-authenticated,
//!   records verified as they arrive) and replays each finished log onto his own data file.
//! - A peer with the wrong cluster secret is refused.
//! - At the end bob's device equals alice's byte for byte, and both equal what the client wrote.
//!
//! Run: `cargo run --release --example demo-cluster` (takes a few seconds).
//! The daemon (`marsd`) and `marsadm` will drive the same bricks from the metadata store.

// The binaries' allocator: see ARCHITECTURE.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Context, Result};
use mars_net::{ChannelKind, ClusterId, NetConfig, Secret};
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xio::file::{self, Backend, FileOptions};
use xio::log::{LogName, LogPos};
use xio::logger::{replay_store, FsLogStore, LoggerConfig, ReplayOptions, TransLogger};
use xio::nbd::client::Client;
use xio::nbd::{Export, NbdServer, ServerConfig};
use xio::remote::{
    log_verifier, ClientConfig, Exports, FetchConfig, LogFetch, RemoteClient, Target,
};

const SIZE: u64 = 64 << 20;
const BLOCK: usize = 4096;
const WRITES: u64 = 12_000;
const RESOURCE: &str = "r0";

fn net(node: &str, secret: &str) -> NetConfig {
    NetConfig::new(
        ClusterId([0x4d; 16]),
        node,
        Secret::new(secret).expect("secret is long enough"),
    )
}

/// What the secondary's fetch+replay loop shares with the main thread.
#[derive(Default)]
struct Secondary {
    /// The log being fetched now.
    current: Mutex<Option<(u64, Arc<LogFetch>)>>,
    /// Set once the primary is done: the last log that holds data.
    last_seq: AtomicU64,
    done: AtomicBool,
    replayed_seq: AtomicU64,
    fetched_bytes: AtomicU64,
    records: AtomicU64,
}

pub fn main() -> Result<()> {
    let started = Instant::now();
    let root = tempfile::tempdir().context("creating a temp dir")?;
    let (alice, bob) = (root.path().join("alice"), root.path().join("bob"));
    for d in [alice.join("log"), alice.join("nbd"), bob.join("log")] {
        std::fs::create_dir_all(&d)?;
    }
    let secret = "demo cluster secret, at least 16 bytes";

    // ---- alice: data file → trans_logger → NBD export; log directory served over mars-net.
    let opts = FileOptions {
        create_size: Some(SIZE),
        ..FileOptions::default()
    };
    let alice_data = file::open(alice.join("r0.img"), Backend::IoUring, &opts)?;
    let logger = TransLogger::open(
        alice_data.clone(),
        &alice.join("log"),
        LoggerConfig {
            resource: RESOURCE.into(),
            node: "alice".into(),
            keep_logs: true, // the secondary fetches them
            rotate_size: 16 << 20,
            ..LoggerConfig::default()
        },
    )?;
    let nbd = NbdServer::new(ServerConfig::default());
    nbd.add_export(Export::new(RESOURCE, logger.clone())?.multi_conn(true))?;
    let sock = alice.join("nbd").join("r0.sock");
    nbd.listen_unix(&sock)?;
    let alice_node =
        Exports::new(Some(alice.join("log"))).listen("127.0.0.1:0", net("alice", secret))?;
    let peer = alice_node.local_addr();
    println!(
        "alice: primary of `{RESOURCE}` ({} MiB), NBD at {}, mars-net at {peer}",
        SIZE >> 20,
        sock.display()
    );

    // ---- an intruder with the wrong secret is refused.
    match mars_net::connect(
        peer,
        &net("mallory", "not the cluster secret at all"),
        ChannelKind::Fetch,
    ) {
        Ok(_) => bail!("a peer with the wrong secret was accepted"),
        Err(e) => println!("mallory: refused as expected: {e}"),
    }

    // ---- bob: fetch and replay in the background.
    let opts = FileOptions {
        create_size: Some(SIZE),
        ..FileOptions::default()
    };
    let bob_data = file::open(bob.join("r0.img"), Backend::IoUring, &opts)?;
    let shared = Arc::new(Secondary::default());
    let bob_thread = {
        let (shared, bob_dir, data) = (shared.clone(), bob.clone(), bob_data.clone());
        let cfg = net("bob", secret);
        std::thread::spawn(move || secondary(peer, cfg, &bob_dir, &*data, &shared))
    };

    // ---- the workload: random 4 KiB writes over NBD with periodic flushes.
    let mut model = vec![0u8; SIZE as usize];
    let mut client = Client::unix(&sock, RESOURCE, true).context("connecting to the NBD export")?;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let t0 = Instant::now();
    for i in 0..WRITES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = (x % (SIZE / BLOCK as u64)) * BLOCK as u64;
        let block = vec![(i % 251) as u8 + 1; BLOCK];
        model[off as usize..off as usize + BLOCK].copy_from_slice(&block);
        let err = client.write(off, &block)?;
        if err != 0 {
            bail!("NBD write at {off} failed with error {err}");
        }
        if i % 256 == 255 && client.flush()? != 0 {
            bail!("NBD flush failed");
        }
        if i % 3000 == 2999 {
            let s = logger.status();
            println!(
                "alice: {} writes, log at {}, written back to {}; bob replayed through log {}",
                i + 1,
                s.durable_end,
                s.min_pos,
                shared.replayed_seq.load(Ordering::SeqCst)
            );
        }
    }
    if client.flush()? != 0 {
        bail!("final NBD flush failed");
    }
    let mib = (WRITES * BLOCK as u64) as f64 / (1 << 20) as f64;
    println!(
        "client: {WRITES} writes ({mib:.0} MiB) in {:.2?}, all acknowledged",
        t0.elapsed()
    );
    client.disconnect()?;

    // ---- primary finishes its current log (rotation) and writes everything back.
    let last_data_seq = logger.status().durable_end.seq;
    logger.rotate();
    wait_for(Duration::from_secs(10), || {
        logger.status().durable_end.seq > last_data_seq
    })
    .context("the logger did not rotate")?;
    nbd.shutdown(Duration::from_secs(10));
    logger.close()?;
    shared.last_seq.store(last_data_seq, Ordering::SeqCst);
    shared.done.store(true, Ordering::SeqCst);
    println!("alice: closed; logs 1..={last_data_seq} hold the data");

    // ---- wait until bob has replayed every log with data.
    wait_for(Duration::from_secs(30), || {
        if let Some((seq, f)) = shared.current.lock().as_ref() {
            if *seq > last_data_seq {
                f.stop(); // nothing more will come: the primary is gone
            }
        }
        bob_thread.is_finished()
    })
    .context("bob did not catch up in time")?;
    bob_thread.join().expect("bob's thread panicked")?;
    println!(
        "bob: fetched {} KiB in logs 1..={}, replayed {} records",
        shared.fetched_bytes.load(Ordering::SeqCst) >> 10,
        shared.replayed_seq.load(Ordering::SeqCst),
        shared.records.load(Ordering::SeqCst)
    );

    // ---- the proof: both replicas are identical and equal the client's view.
    let a = std::fs::read(alice.join("r0.img"))?;
    let b = std::fs::read(bob.join("r0.img"))?;
    if a != model {
        bail!("alice's device differs from what the client wrote");
    }
    if a != b {
        let first = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(0);
        bail!("bob's device differs from alice's at byte {first}");
    }
    println!(
        "consistent: bob == alice == client model ({} MiB, blake3 {}), demo took {:.1?}",
        SIZE >> 20,
        &blake3_hex(&a)[..16],
        started.elapsed()
    );
    Ok(())
}

/// bob's loop: fetch log 1, 2, ... from alice as each finishes, verifying records on arrival,
/// and replay each finished log onto the local device in log order.
fn secondary(
    peer: SocketAddr,
    cfg: NetConfig,
    dir: &Path,
    data: &dyn brick_core::Output,
    s: &Secondary,
) -> Result<()> {
    let log_dir: PathBuf = dir.join("log");
    let store = FsLogStore::new(&log_dir, "bob")?;
    let mut from = LogPos::new(1, 0);
    for seq in 1.. {
        if s.done.load(Ordering::SeqCst) && seq > s.last_seq.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Fetched logs keep their creator's name.
        let name = LogName::new(seq, "alice").to_string();
        let client = RemoteClient::start(
            format!("{name}@alice"),
            ClientConfig::new(
                cfg.clone(),
                peer,
                ChannelKind::Fetch,
                Target::Log(name.clone()),
            ),
        );
        let mut fc = FetchConfig::new(log_dir.join(&name), &name);
        fc.follow_wait_ms = 100;
        fc.verify = Some(log_verifier(Some(seq)));
        let fetch = LogFetch::new(client, fc);
        *s.current.lock() = Some((seq, fetch.clone()));
        let p = fetch.run().with_context(|| format!("fetching {name}"))?;
        if !p.finished {
            return Ok(()); // stopped: the primary is gone and this log holds nothing
        }
        s.fetched_bytes.fetch_add(p.local, Ordering::SeqCst);
        let report = replay_store(
            data,
            &store,
            from,
            ReplayOptions {
                resource: Some(RESOURCE.into()),
                ..ReplayOptions::default()
            },
        )
        .with_context(|| format!("replaying {name}"))?;
        s.records.fetch_add(report.records, Ordering::SeqCst);
        from = report.reached;
        s.replayed_seq.store(seq, Ordering::SeqCst);
    }
    Ok(())
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn blake3_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}
