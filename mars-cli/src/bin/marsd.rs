//! `marsd`: the MARS node daemon. See `mars_cli::daemon`.

// The binaries' allocator: see ARCHITECTURE.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// MARS node daemon: replicates the resources of this node (primary: log + NBD export;
/// secondary: fetch + replay). Everything lives under --mars-dir; restarted, it resumes.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The mars directory: metadata store, logs, control socket (marsd.sock), NBD sockets.
    #[arg(long, env = "MARS_DIR", default_value = "/var/lib/mars")]
    mars_dir: PathBuf,
    /// Address to listen on for peers (metadata, log fetch, sync), e.g. 10.0.0.1:7777.
    #[arg(long)]
    listen: String,
    /// This node's name (letters, digits, '.', '_', '-').
    #[arg(long)]
    node: String,
    /// File holding the cluster secret (at least 16 bytes; the same on every node).
    #[arg(long)]
    secret_file: PathBuf,
    /// Also export each primary resource R over NBD on TCP here, with export name R.
    #[arg(long)]
    nbd_listen: Option<String>,
    /// Serve Prometheus metrics (GET /metrics, plain HTTP) here, e.g. 127.0.0.1:9177.
    /// The metrics are listed in mars-cli/src/METRICS.md.
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Memory (bytes) that all primaries of this node share for writes not yet written back;
    /// writers wait beyond it. Suffixes K, M, G (powers of 1024).
    #[arg(long, value_parser = parse_bytes, default_value = "1G")]
    mem_budget: u64,
    /// Memory (bytes) that each primary can always get of --mem-budget, however busy the
    /// others are (so an idle or slow resource is never starved). Suffixes K, M, G.
    #[arg(long, value_parser = parse_bytes, default_value = "8M")]
    mem_floor: u64,
    /// O_DIRECT on primary data devices (and their log files, unless --log-direct-io says
    /// otherwise): auto (block devices only), on (the file system under --mars-dir and the
    /// data files must support it) or off.
    #[arg(long, default_value = "auto")]
    direct_io: xio::file::DirectIo,
    /// O_DIRECT on primary log files only: auto (as --direct-io decides for the data device),
    /// on or off. `--direct-io off --log-direct-io on` keeps the page cache for the data
    /// device's reads while the log, which is only written, bypasses it.
    #[arg(long, default_value = "auto")]
    log_direct_io: xio::file::DirectIo,
    /// Deleted log files each primary keeps to reuse as later log files (0: delete them).
    /// Writing over a recycled file's blocks makes a commit a data-only fdatasync.
    #[arg(long, default_value_t = xio::logger::DEFAULT_SPARES)]
    log_spares: usize,
    /// A primary's log moves on to a new file once the current one holds this much. Smaller
    /// files are deleted sooner once replayed everywhere; each file is a version link in the
    /// metadata. Suffixes K, M, G.
    #[arg(long, value_parser = parse_bytes, default_value = "256M")]
    log_rotate_size: u64,
}

/// The smallest `--log-rotate-size`.
const MIN_LOG_ROTATE_SIZE: u64 = 1 << 20;

/// `4096`, `64K`, `8M`, `1G` (powers of 1024).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let (num, shift) = match s.trim().chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?} is not a size: give bytes, or a number with K, M or G"))
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Args::parse()) {
        eprintln!("marsd: {e:#}");
        std::process::exit(1);
    }
}

fn run(a: Args) -> Result<()> {
    let mut secret = std::fs::read(&a.secret_file)
        .with_context(|| format!("reading the secret file {}", a.secret_file.display()))?;
    while secret.last().is_some_and(|b| b.is_ascii_whitespace()) {
        secret.pop();
    }
    if a.log_rotate_size < MIN_LOG_ROTATE_SIZE {
        anyhow::bail!(
            "--log-rotate-size {} is too small: give at least 1M (every log file costs metadata keys and a file switch)",
            a.log_rotate_size
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let mut d = mars_cli::daemon::Daemon::open(mars_cli::daemon::Options {
        dir: a.mars_dir,
        listen: a.listen,
        node: a.node,
        secret,
        nbd_listen: a.nbd_listen.clone(),
        mem_budget: a.mem_budget,
        mem_floor: a.mem_floor,
        direct_io: a.direct_io,
        log_direct_io: a.log_direct_io,
        log_spares: a.log_spares,
        log_rotate_size: a.log_rotate_size,
    })?;
    if let Some(m) = &a.metrics_listen {
        let at = d.serve_metrics(m)?;
        println!("marsd metrics at http://{at}/metrics");
    }
    println!("marsd listening on {}", d.local_addr());
    d.run(&stop)
}
