//! The fail points at the fsync, mid-record and before-ack seams (`--features failpoints`), each
//! with its effect: a write whose log fsync failed is acknowledged only once durable elsewhere
//! (emergency mode); a crash in the middle of a record (a child process dies there) leaves a
//! torn tail that recovery seals, keeping every acknowledged write; a connection lost before
//! the acknowledgement loses no acknowledged write and the server keeps serving.
#![cfg(feature = "failpoints")]

use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::{Aio, Flags, Output};
use parking_lot::Mutex;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use xio::failpoint::{self, Action};
use xio::fault::{CrashMode, FaultDisk};
use xio::file::{Backend, FileOptions};
use xio::log::{Expect, ScanEnd, Scanner};
use xio::logger::{FsLogStore, LogStore, LoggerConfig, TransLogger};

const BLOCK: usize = 4096;
const BLOCKS: usize = 64;

/// The registry is process-wide: one test at a time, each starting disarmed.
fn serial() -> parking_lot::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let g = LOCK.lock();
    failpoint::reset();
    g
}

fn cfg() -> LoggerConfig {
    LoggerConfig {
        resource: "fp".into(),
        node: "n0".into(),
        // The log files stay after writeback (and after an emergency drain), for inspection.
        keep_logs: true,
        writeback_delay: Duration::from_secs(600),
        ..LoggerConfig::default()
    }
}

fn block(t: u8) -> Vec<u8> {
    vec![t; BLOCK]
}

fn fua_write(out: &dyn Output, b: usize, data: Vec<u8>) -> brick_core::Result<()> {
    let mut w = Aio::write((b * BLOCK) as u64, data);
    w.flags = Flags::FUA;
    brick_core::run(out, w).map(drop)
}

/// The end of every log file in `dir`, as the scanner sees it.
fn scan_ends(dir: &Path) -> Vec<ScanEnd> {
    let store = FsLogStore::new(dir, "n0").unwrap();
    store
        .list()
        .unwrap()
        .into_iter()
        .map(|seq| {
            let (out, len) = store.open(seq).unwrap();
            let s = Scanner::open(out, store.describe(seq), len, &Expect::default()).unwrap();
            s.read_all().unwrap().1
        })
        .collect()
}

/// A FUA write whose log fsync failed may only be acknowledged once it is durable elsewhere:
/// the logger goes into emergency mode (bypass, with a hole) and drains to the data device.
/// A crash of the data device's cache right after the acknowledgement must not lose it.
#[test]
fn a_failed_log_fsync_is_not_acknowledged_as_durable() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mem = MemDisk::new("data", BLOCKS * BLOCK, MemDiskMode::Inline);
    let data = FaultDisk::new("data", mem.clone());
    let logger = TransLogger::open(data.clone(), dir.path(), cfg()).unwrap();
    fua_write(&*logger, 0, block(1)).unwrap();
    assert_eq!(logger.log_hole(), None);
    failpoint::set(failpoint::LOG_FSYNC, Action::Always);
    let acked = fua_write(&*logger, 1, block(2));
    assert!(failpoint::hits(failpoint::LOG_FSYNC) >= 1);
    assert!(
        logger.log_hole().is_some(),
        "a failed log fsync must put the logger into emergency mode"
    );
    // Whatever was not flushed on the data device is lost now.
    data.crash(1, CrashMode::DropAll);
    if acked.is_ok() {
        assert!(
            mem.contents()[BLOCK..2 * BLOCK] == block(2)[..],
            "acknowledged although neither the log nor the data device had it durably"
        );
    }
    failpoint::reset();
    drop(logger);
    // What was acknowledged before the failure is in the log: replay restores it.
    let logger = TransLogger::open(data.reboot(), dir.path(), cfg()).unwrap();
    let got = brick_core::read_all(&*logger, 0, BLOCK).unwrap();
    assert!(
        got == block(1),
        "the write acknowledged before the failure was lost"
    );
}

const CHILD_ENV: &str = "XIO_FAILPOINT_CHILD";

fn file_logger(dir: &Path) -> Arc<TransLogger> {
    let opts = FileOptions {
        create_size: Some((BLOCKS * BLOCK) as u64),
        ..FileOptions::default()
    };
    let data = xio::file::open(dir.join("disk"), Backend::Sync, &opts).unwrap();
    TransLogger::open(data, &dir.join("logs"), cfg()).unwrap()
}

/// The child of `a_crash_mid_record_leaves_a_torn_tail_that_recovery_seals`: 8 acknowledged
/// FUA writes, then the process dies in the middle of the next record.
#[test]
#[ignore = "child process of a_crash_mid_record_leaves_a_torn_tail_that_recovery_seals (XIO_FAILPOINT_CHILD set); nothing to check alone"]
fn mid_record_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let logger = file_logger(Path::new(&dir));
    for b in 0..8 {
        fua_write(&*logger, b, block(10 + b as u8)).unwrap();
    }
    failpoint::set(failpoint::LOG_MID_RECORD, Action::Crash);
    let _ = fua_write(&*logger, 20, block(99));
    eprintln!("the fail point did not crash the process");
    std::process::exit(2);
}

/// A crash in the middle of a record (the process dies there): the log ends in a torn tail;
/// recovery seals it (the file is cut where the valid records end) and every acknowledged write
/// is there; the torn one is not.
#[test]
fn a_crash_mid_record_leaves_a_torn_tail_that_recovery_seals() {
    use std::os::unix::process::ExitStatusExt;
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "mid_record_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child neither crashed nor ended");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    let logs = dir.path().join("logs");
    let ends = scan_ends(&logs);
    let Some(ScanEnd::TornTail { end: torn_at, .. }) = ends.last() else {
        panic!("no torn tail after a crash mid-record: {ends:?}");
    };
    let torn_at = *torn_at;
    let logger = file_logger(dir.path());
    for b in 0..8 {
        let got = brick_core::read_all(&*logger, (b * BLOCK) as u64, BLOCK).unwrap();
        assert!(got == block(10 + b as u8), "acknowledged block {b} lost");
    }
    let torn = brick_core::read_all(&*logger, (20 * BLOCK) as u64, BLOCK).unwrap();
    assert!(torn == vec![0; BLOCK], "the torn record was applied");
    drop(logger);
    let ends = scan_ends(&logs);
    assert!(
        !ends.iter().any(|e| matches!(e, ScanEnd::TornTail { .. })),
        "a torn tail survived recovery: {ends:?}"
    );
    assert!(
        ends.iter().any(|e| e.end() == torn_at),
        "{ends:?} vs {torn_at}"
    );
}

#[test]
fn a_connection_lost_before_the_ack_loses_nothing_acknowledged() {
    use xio::nbd::client::Client;
    use xio::nbd::{Export, NbdServer, ServerConfig};
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nbd.sock");
    let disk = MemDisk::new("disk", BLOCKS * BLOCK, MemDiskMode::Inline);
    let server = NbdServer::new(ServerConfig::default());
    server
        .add_export(Export::new("d", disk.clone()).unwrap())
        .unwrap();
    server.listen_unix(&sock).unwrap();
    let mut c = Client::unix(&sock, "d", false).unwrap();
    assert_eq!(c.write(0, &block(1)).unwrap(), 0);
    let passed = failpoint::hits(failpoint::NBD_BEFORE_ACK);
    failpoint::set(failpoint::NBD_BEFORE_ACK, Action::Once { skip: 0 });
    assert!(
        c.write(BLOCK as u64, &block(2)).is_err(),
        "the acknowledgement must not arrive"
    );
    assert_eq!(failpoint::hits(failpoint::NBD_BEFORE_ACK), passed + 1);
    // A new connection: the acknowledged write is there, the unacknowledged one was done by
    // the device (allowed either way), and the server still serves.
    let mut c = Client::unix(&sock, "d", false).unwrap();
    assert!(c.read(0, BLOCK as u32).unwrap().unwrap() == block(1));
    let second = c.read(BLOCK as u64, BLOCK as u32).unwrap().unwrap();
    assert!(second == block(2) || second == vec![0; BLOCK]);
    assert!(server.shutdown(Duration::from_secs(10)));
}
