//! Export a file over NBD through the MARS write path: aio (io_uring) → trans_logger → NBD.
//!
//! ```text
//! cargo run --release --example nbd-export -- --data disk.img --log-dir logs/ \
//!     --unix /tmp/disk.sock [--tcp 127.0.0.1:10809] [--name disk] \
//!     [--direct | --log-direct] [--backend sio --threads 64]
//! qemu-io -f raw -c 'write -P 0xab 0 1M' 'nbd+unix:///disk?socket=/tmp/disk.sock'
//! ```
//!
//! On start the logger replays the log directory onto the data file (crash recovery).
//! SIGINT/SIGTERM shut down gracefully: stop accepting, finish in-flight requests, flush the
//! logger, write everything back and close it, exit 0. A line `ready` on stdout says the
//! sockets are listening. A line `status mode=... min_pos=... hole=...` (the logger's state)
//! follows on stdout at once, whenever the logger's mode changes, and every
//! `--status-interval` seconds; a mode change is also logged with what to do about it.
// The binaries' allocator: see ARCHITECTURE.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Context, Result};
use brick_core::{Aio, Op, Output};
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xio::file::{Backend, FileOptions};
use xio::logger::{LoggerConfig, LoggerMode, TransLogger};
use xio::nbd::{Export, NbdServer, ServerConfig};

#[derive(Parser, Debug)]
#[command(about = "Export a file over NBD through aio → trans_logger → NBD")]
struct Args {
    /// The data file (created with --create-size if missing).
    #[arg(long)]
    data: PathBuf,
    /// Directory of the transaction logs.
    #[arg(long)]
    log_dir: PathBuf,
    /// Unix socket to listen on.
    #[arg(long)]
    unix: PathBuf,
    /// TCP address to listen on as well (e.g. 127.0.0.1:10809).
    #[arg(long)]
    tcp: Option<String>,
    /// Export name.
    #[arg(long, default_value = "disk")]
    name: String,
    /// IO backend: aio (io_uring) or sio (thread pool).
    #[arg(long, default_value = "aio")]
    backend: Backend,
    /// Create the data file with this size in bytes if it does not exist.
    #[arg(long)]
    create_size: Option<u64>,
    /// Refuse writes.
    #[arg(long)]
    read_only: bool,
    /// Memory for written-but-not-written-back data, in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    mem_budget: u64,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 128)]
    max_inflight: usize,
    /// Open the data file and the log files with O_DIRECT (no page cache between the logger
    /// and the disk); the export then announces the file's block size as its minimum.
    #[arg(long)]
    direct: bool,
    /// Open only the log files with O_DIRECT (format v2), the data file through the page cache
    /// (implied by --direct).
    #[arg(long)]
    log_direct: bool,
    /// Alignment of the writes to new log files (> 0: log format v2); 0 (default): v1 for
    /// buffered logs, v2 with 4 KiB with --direct. Both formats are read.
    #[arg(long, default_value_t = 0)]
    log_align: u32,
    /// IO threads of the sio backend (requests in flight on the data file).
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Print the logger's status line every this many seconds (0: only on changes of mode).
    #[arg(long, default_value_t = 60)]
    status_interval: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nbd-export: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    if !args.data.exists() && args.create_size.is_none() {
        bail!(
            "data file {} does not exist: create it or pass --create-size BYTES",
            args.data.display()
        );
    }
    std::fs::create_dir_all(&args.log_dir)
        .with_context(|| format!("creating the log directory {}", args.log_dir.display()))?;
    let opts = FileOptions {
        name: Some(format!("{}/data", args.name)),
        read_only: args.read_only,
        create_size: args.create_size,
        direct: args.direct,
        threads: args.threads.max(1),
        ..FileOptions::default()
    };
    let data = xio::file::open(&args.data, args.backend, &opts)
        .with_context(|| format!("opening the data file {}", args.data.display()))?;
    let logger = TransLogger::open(
        data,
        &args.log_dir,
        LoggerConfig {
            resource: args.name.clone(),
            mem_budget: args.mem_budget,
            log_align: args.log_align,
            log_direct: args.direct || args.log_direct,
            ..LoggerConfig::default()
        },
    )
    .with_context(|| format!("opening the logs in {}", args.log_dir.display()))?;
    let out: Arc<dyn Output> = logger.clone();

    let server = NbdServer::new(ServerConfig {
        max_inflight: args.max_inflight,
        ..ServerConfig::default()
    });
    // The logger's flush is global (it waits until every mutation accepted before it is
    // durable in the log), so a flush on one connection covers writes completed on all.
    server.add_export(
        Export::new(&args.name, out.clone())?
            .multi_conn(true)
            .read_only(args.read_only)
            .description(format!("MARS export of {}", args.data.display())),
    )?;
    server.listen_unix(&args.unix)?;
    if let Some(addr) = &args.tcp {
        let bound = server.listen_tcp(addr.as_str())?;
        tracing::info!("listening on tcp {bound}");
    }
    tracing::info!(
        "exporting {} as `{}` on {}",
        args.data.display(),
        args.name,
        args.unix.display()
    );
    println!("ready");
    std::io::stdout().flush().ok();

    let mut monitor = StatusMonitor::new(&args);
    monitor.check(&logger);
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        monitor.check(&logger);
    }
    tracing::info!("signal received: finishing in-flight requests");
    if !server.shutdown(Duration::from_secs(60)) {
        tracing::warn!("some connections did not finish within 60 s");
    }
    brick_core::run(&*out, Aio::new(Op::Flush, 0, 0)).context("final flush")?;
    logger.close().context("closing the logger")?;
    monitor.check(&logger);
    tracing::info!("flushed and written back; exiting");
    Ok(())
}

/// Prints the logger's status on stdout: on start, on every change of mode (with a log line
/// that tells the operator what happened and what to do), and every `--status-interval`.
struct StatusMonitor {
    log_dir: PathBuf,
    interval: Option<Duration>,
    last_mode: Option<LoggerMode>,
    last_print: Instant,
}

impl StatusMonitor {
    fn new(args: &Args) -> StatusMonitor {
        StatusMonitor {
            log_dir: args.log_dir.clone(),
            interval: (args.status_interval > 0).then(|| Duration::from_secs(args.status_interval)),
            last_mode: None,
            last_print: Instant::now(),
        }
    }

    fn check(&mut self, logger: &TransLogger) {
        let st = logger.status();
        let changed = Some(st.mode) != self.last_mode;
        let due = self
            .interval
            .is_some_and(|i| self.last_print.elapsed() >= i);
        if !changed && !due {
            return;
        }
        if changed && self.last_mode.is_some() {
            let hole = st.hole.map_or_else(|| "?".into(), |h| h.to_string());
            match st.mode {
                LoggerMode::Draining => tracing::warn!(
                    "the log cannot be written ({}): writing everything in memory back to the \
                     data device, then writes bypass the log",
                    self.log_dir.display()
                ),
                LoggerMode::Bypass => tracing::warn!(
                    "writes now bypass the log: it has a hole from {hole}. Free space in {} (or \
                     fix its device) and restart the export to log again; replicas fed from \
                     this log need a full sync",
                    self.log_dir.display()
                ),
                LoggerMode::Failed => tracing::error!(
                    "the data device failed ({}): every request fails now. The log keeps every \
                     acknowledged write: fix or replace the data device and restart the export \
                     (it replays the log)",
                    st.error.as_deref().unwrap_or("unknown error")
                ),
                _ => tracing::info!("logger mode: {}", st.mode),
            }
        }
        println!("status {st}");
        std::io::stdout().flush().ok();
        self.last_mode = Some(st.mode);
        self.last_print = Instant::now();
    }
}
