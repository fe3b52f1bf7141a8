//! Interop of the NBD export with real NBD clients: nbdinfo, qemu-img, qemu-io, nbdcopy, fio's
//! nbd engine, and a kill -9 recovery check. Needs the tools installed; run with
//! `cargo test -p mars-rs --features interop --test nbd_interop`.
//!
//! Most tests run the `nbd-export` example (aio → trans_logger → NBD) as a child process, so
//! the deliverable itself is what the clients talk to; the listing test uses an in-process
//! server with several exports over `MemDisk`.
#![cfg(feature = "interop")]

use brick_core::bricks::{MemDisk, MemDiskMode};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};
use xio::nbd::client::{Client, Payload};
use xio::nbd::proto::cmd;
use xio::nbd::{Export, NbdServer, ServerConfig};

/// Build the example once (same profile as this test) and return its path.
fn example() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let release = profile_dir.file_name().unwrap() == "release";
        let mut c = Command::new(env!("CARGO"));
        c.args(["build", "--quiet", "--example", "nbd-export", "--profile"]);
        // The test profile (optimised) for debug test runs: log replay at opt-level 0 is slow.
        c.arg(if release { "release" } else { "test" });
        c.current_dir(env!("CARGO_MANIFEST_DIR"));
        let st = c.status().expect("running cargo build for the example");
        assert!(st.success(), "building the nbd-export example failed");
        profile_dir.join("examples").join("nbd-export")
    })
}

/// The example running as a child; killed (SIGKILL) on drop unless stopped.
struct ExportProc {
    child: Option<Child>,
    sock: PathBuf,
    /// Its stdout lines after `ready` (`status ...` lines).
    lines: mpsc::Receiver<String>,
}

impl ExportProc {
    fn start(dir: &Path, size: u64, name: &str) -> ExportProc {
        Self::start_with(dir, size, name, &[])
    }

    fn start_with(dir: &Path, size: u64, name: &str, extra: &[&str]) -> ExportProc {
        Self::start_logs(dir, &dir.join("logs"), size, name, extra)
    }

    fn start_logs(dir: &Path, logs: &Path, size: u64, name: &str, extra: &[&str]) -> ExportProc {
        let sock = dir.join("nbd.sock");
        let mut child = Command::new(example())
            .arg("--data")
            .arg(dir.join("data.img"))
            .arg("--log-dir")
            .arg(logs)
            .arg("--unix")
            .arg(&sock)
            .args(["--name", name, "--create-size", &size.to_string()])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("NBD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting nbd-export");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line == "ready" => break,
                Ok(_) => continue,
                Err(_) => panic!("nbd-export did not become ready"),
            }
        }
        ExportProc {
            child: Some(child),
            sock,
            lines: rx,
        }
    }

    /// Wait for a `status` line containing `what`; returns it.
    fn wait_status(&self, what: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with("status ") && line.contains(what) => return line,
                Ok(_) => continue,
                Err(_) => panic!("no status line with `{what}` within {timeout:?}"),
            }
        }
    }

    fn uri(&self, name: &str) -> String {
        format!("nbd+unix:///{name}?socket={}", self.sock.display())
    }

    /// SIGTERM and wait: the graceful path must exit 0.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        unsafe_free_kill(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(st.success(), "nbd-export exited with {st} after SIGTERM");
                return;
            }
            assert!(Instant::now() < deadline, "nbd-export ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ExportProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn unsafe_free_kill(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

#[test]
fn nbdinfo_lists_several_exports_and_qemu_img_sees_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let server = NbdServer::new(ServerConfig::default());
    let a = MemDisk::new("a", 16 << 20, MemDiskMode::Threaded(2));
    let b = MemDisk::new("b", 8 << 20, MemDiskMode::Threaded(2));
    server
        .add_export(Export::new("alpha", a).unwrap().multi_conn(true))
        .unwrap();
    server
        .add_export(Export::new("beta", b).unwrap().read_only(true))
        .unwrap();
    server.listen_unix(&sock).unwrap();
    let list = stdout(
        Command::new("nbdinfo")
            .arg("--list")
            .arg(format!("nbd+unix:///?socket={}", sock.display())),
    );
    assert!(list.contains("export=\"alpha\""), "{list}");
    assert!(list.contains("export=\"beta\""), "{list}");
    let info =
        stdout(Command::new("nbdinfo").arg(format!("nbd+unix:///beta?socket={}", sock.display())));
    assert!(info.contains("export-size: 8388608"), "{info}");
    assert!(info.contains("is_read_only: true"), "{info}");
    assert!(info.contains("can_multi_conn: false"), "{info}");
    let info =
        stdout(Command::new("nbdinfo").arg(format!("nbd+unix:///alpha?socket={}", sock.display())));
    assert!(info.contains("export-size: 16777216"), "{info}");
    assert!(info.contains("can_multi_conn: true"), "{info}");
    assert!(
        info.contains("can_flush: true") && info.contains("can_fua: true"),
        "{info}"
    );
    assert!(
        info.contains("can_trim: true") && info.contains("can_zero: true"),
        "{info}"
    );
    let q = stdout(Command::new("qemu-img").args([
        "info",
        &format!("nbd+unix:///alpha?socket={}", sock.display()),
    ]));
    assert!(q.contains("16 MiB (16777216 bytes)"), "{q}");
    // TCP as well.
    let addr = server.listen_tcp("127.0.0.1:0").unwrap();
    let info = stdout(Command::new("nbdinfo").arg(format!("nbd://{addr}/alpha")));
    assert!(info.contains("export-size: 16777216"), "{info}");
    assert!(server.shutdown(Duration::from_secs(10)));
}

#[test]
fn example_export_with_qemu_io_patterns_discard_zero_flush() {
    let dir = tempfile::tempdir().unwrap();
    let p = ExportProc::start(dir.path(), 64 << 20, "disk");
    let info = stdout(Command::new("nbdinfo").arg(p.uri("disk")));
    assert!(info.contains("export-size: 67108864"), "{info}");
    let q = stdout(Command::new("qemu-img").args(["info", &p.uri("disk")]));
    assert!(q.contains("64 MiB"), "{q}");
    // Patterns at many offsets (aligned and not), then read them all back in a second session.
    let mut w = Command::new("qemu-io");
    w.args(["-f", "raw"]);
    let mut r = Command::new("qemu-io");
    r.args(["-f", "raw"]);
    for i in 0..40u64 {
        let off = i * 1_536_000 + (i % 3) * 512;
        let len = 4096 * (1 + i % 9);
        let pat = 1 + (i * 37 % 250);
        w.args(["-c", &format!("write -P {pat} {off} {len}")]);
        r.args(["-c", &format!("read -P {pat} {off} {len}")]);
    }
    w.args(["-c", "flush"]).arg(p.uri("disk"));
    run(&mut w);
    r.arg(p.uri("disk"));
    let out = stdout(&mut r);
    assert!(!out.contains("Pattern verification failed"), "{out}");
    // discard and write -z read back as zeroes.
    let out = stdout(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "write -P 0x5a 32M 1M",
        "-c",
        "discard 32M 256k",
        "-c",
        "read -P 0 32M 256k",
        "-c",
        "read -P 0x5a 33024k 768k",
        "-c",
        "write -z 33M 128k",
        "-c",
        "read -P 0 33M 128k",
        "-c",
        "write -z -u 34M 64k",
        "-c",
        "flush",
        &p.uri("disk"),
    ]));
    assert!(!out.contains("Pattern verification failed"), "{out}");
    p.stop();
}

#[test]
fn qemu_img_convert_compare_and_nbdcopy_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let size = 32u64 << 20;
    let p = ExportProc::start(dir.path(), size, "disk");
    let src = dir.path().join("src.raw");
    let mut data = vec![0u8; size as usize];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for (i, chunk) in data.chunks_mut(65536).enumerate() {
        // Leave every fourth 64 KiB chunk zero so that sparse paths are exercised too.
        if i % 4 == 3 {
            continue;
        }
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    std::fs::write(&src, &data).unwrap();
    run(Command::new("qemu-img")
        .args(["convert", "-n", "-f", "raw", "-O", "raw"])
        .arg(&src)
        .arg(p.uri("disk")));
    run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&src)
        .arg(p.uri("disk")));
    // nbdcopy out of the export, then a modified file back in.
    let out = dir.path().join("out.raw");
    run(Command::new("nbdcopy").arg(p.uri("disk")).arg(&out));
    assert!(
        std::fs::read(&out).unwrap() == data,
        "nbdcopy export → file differs"
    );
    data[4096..8192].fill(0xee);
    std::fs::write(&src, &data).unwrap();
    run(Command::new("nbdcopy").arg(&src).arg(p.uri("disk")));
    run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&src)
        .arg(p.uri("disk")));
    p.stop();
}

#[test]
fn fio_randwrite_verify_multi_conn() {
    let dir = tempfile::tempdir().unwrap();
    let p = ExportProc::start(dir.path(), 128 << 20, "disk");
    // fio writes verify state files into its working directory: keep them in the temp dir.
    let out = stdout(Command::new("fio").current_dir(dir.path()).args([
        "--name=mc",
        "--ioengine=nbd",
        &format!("--uri={}", p.uri("disk")),
        "--rw=randwrite",
        "--bs=4k",
        "--iodepth=16",
        "--numjobs=4",
        "--size=16M",
        "--offset_increment=32M",
        "--verify=crc32c",
        "--verify_fatal=1",
        "--do_verify=1",
        "--group_reporting",
        "--output-format=terse",
    ]));
    assert!(
        !out.contains("verify:"),
        "fio reported verify errors: {out}"
    );
    p.stop();
}

const BLOCK: usize = 4096;

/// A self-describing block: block number, generation, and a checksum over both and the fill.
fn record(block: u64, generation: u64) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    b[0..8].copy_from_slice(&block.to_le_bytes());
    b[8..16].copy_from_slice(&generation.to_le_bytes());
    let mut x = block.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ generation;
    for v in b[24..].iter_mut() {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *v = (x >> 56) as u8;
    }
    let sum = b[24..]
        .iter()
        .fold(0u64, |a, &v| a.wrapping_mul(31).wrapping_add(u64::from(v)));
    b[16..24].copy_from_slice(&sum.to_le_bytes());
    b
}

fn decode(block: u64, b: &[u8]) -> Option<u64> {
    if b.iter().all(|&v| v == 0) {
        return Some(0);
    }
    let generation = u64::from_le_bytes(b[8..16].try_into().unwrap());
    (record(block, generation) == b).then_some(generation)
}

/// A child process killed (and reaped) when dropped: a failing test leaves none behind.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn kill_9_during_fio_with_flushes_then_restart_keeps_every_flushed_block() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = 8192u64; // our writer's region: the first 32 MiB of a 64 MiB export
    let size = 2 * blocks * BLOCK as u64;
    let p = ExportProc::start(dir.path(), size, "disk");
    // fio with fsync=N hammers another region of the same export while we kill it. `--thread`:
    // its job runs in the process we kill (a forked job process outlived the kill and spun
    // on the dead socket at 100 % CPU long after its 30 s runtime).
    let mut fio = KillOnDrop(
        Command::new("fio")
            .current_dir(dir.path())
            .args([
                "--thread",
                "--name=bg",
                "--ioengine=nbd",
                &format!("--uri={}", p.uri("disk")),
                "--rw=randwrite",
                "--bs=4k",
                "--iodepth=8",
                "--fsync=8",
                "--offset=32M",
                "--size=32M",
                "--rate_iops=2000",
                "--time_based",
                "--runtime=30",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Our own writer: pipelined writes of self-describing blocks plus periodic flushes. At each
    // acknowledged flush, every write acknowledged before the flush was sent is durable.
    let mut c = Client::unix(&p.sock, "disk", true).unwrap();
    let mut durable = vec![0u64; blocks as usize]; // generation guaranteed after a crash
    let mut acked = vec![0u64; blocks as usize];
    let mut issued = vec![0u64; blocks as usize];
    let mut inflight = std::collections::HashMap::new();
    let mut flush_snapshot: Option<(u64, Vec<u64>)> = None;
    let mut x = 12345u64;
    let started = Instant::now();
    let kill_after = Duration::from_millis(1500);
    let mut generation = 0u64;
    let mut flushes_acked = 0;
    'outer: while started.elapsed() < Duration::from_secs(20) {
        for _ in 0..32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let blk = x % blocks;
            if inflight.values().any(|&(b, _)| b == blk) {
                continue; // keep at most one write per block in flight: order is then known
            }
            generation += 1;
            let Ok(cookie) = c.send(
                cmd::WRITE,
                0,
                blk * BLOCK as u64,
                Payload::Data(&record(blk, generation)),
            ) else {
                break 'outer;
            };
            issued[blk as usize] = generation;
            inflight.insert(cookie, (blk, generation));
        }
        if flush_snapshot.is_none() {
            if let Ok(cookie) = c.send(cmd::FLUSH, 0, 0, Payload::Len(0)) {
                flush_snapshot = Some((cookie, acked.clone()));
            }
        }
        while !inflight.is_empty() || flush_snapshot.is_some() {
            let Ok(rep) = c.recv() else { break 'outer };
            assert_eq!(rep.error, 0, "request failed before the kill");
            if let Some((blk, g)) = inflight.remove(&rep.cookie) {
                acked[blk as usize] = acked[blk as usize].max(g);
            } else if flush_snapshot
                .as_ref()
                .is_some_and(|(k, _)| *k == rep.cookie)
            {
                let (_, snap) = flush_snapshot.take().unwrap();
                durable = snap;
                flushes_acked += 1;
            }
            if inflight.len() < 16 {
                break;
            }
        }
        if started.elapsed() > kill_after {
            break;
        }
    }
    assert!(
        flushes_acked > 3,
        "the writer made too little progress before the kill"
    );
    p.kill9();
    fio.kill();
    drop(c);

    let p = ExportProc::start(dir.path(), size, "disk");
    let mut c = Client::unix(&p.sock, "disk", true).unwrap();
    let mut checked = 0;
    for chunk in (0..blocks).collect::<Vec<_>>().chunks(256) {
        let data = c
            .read(chunk[0] * BLOCK as u64, (chunk.len() * BLOCK) as u32)
            .unwrap()
            .unwrap();
        for (k, &blk) in chunk.iter().enumerate() {
            let b = &data[k * BLOCK..(k + 1) * BLOCK];
            let g = decode(blk, b)
                .unwrap_or_else(|| panic!("block {blk} is torn or garbage after recovery"));
            let i = blk as usize;
            assert!(
                g >= durable[i] && g <= issued[i],
                "block {blk}: generation {g} after recovery, but {} was durable and {} the last issued",
                durable[i],
                issued[i]
            );
            if durable[i] > 0 {
                checked += 1;
            }
        }
    }
    assert!(
        checked > 100,
        "too few blocks were durable to make the check meaningful"
    );
    p.stop();
}

/// The data file behind `O_DIRECT` (`--direct`, on aio and on sio): qemu-io writes at aligned
/// and unaligned offsets (qemu aligns to the announced minimum block), reads them back through
/// the logger, and after a graceful stop the data file itself holds them.
#[test]
fn direct_data_file_round_trips_through_the_logger() {
    for backend in ["aio", "sio"] {
        direct_round_trip(backend);
    }
}

fn direct_round_trip(backend: &str) {
    // Not the system temp dir: tmpfs has no O_DIRECT.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let p = ExportProc::start_with(
        dir.path(),
        32 << 20,
        "disk",
        &["--backend", backend, "--direct", "--threads", "16"],
    );
    let info = stdout(Command::new("nbdinfo").arg(p.uri("disk")));
    assert!(info.contains("block_size_minimum: 4096"), "{info}");
    let mut w = Command::new("qemu-io");
    w.args(["-f", "raw"]);
    let mut r = Command::new("qemu-io");
    r.args(["-f", "raw"]);
    let mut want = Vec::new();
    for i in 0..24u64 {
        let off = i * 1_200_000 + (i % 3) * 512;
        let len = 4096 * (1 + i % 5) - (i % 2) * 512;
        let pat = 1 + (i * 41 % 250);
        w.args(["-c", &format!("write -P {pat} {off} {len}")]);
        r.args(["-c", &format!("read -P {pat} {off} {len}")]);
        want.push((off as usize, len as usize, pat as u8));
    }
    w.args(["-c", "flush"]).arg(p.uri("disk"));
    run(&mut w);
    r.arg(p.uri("disk"));
    let out = stdout(&mut r);
    assert!(!out.contains("Pattern verification failed"), "{out}");
    p.stop();
    let disk = std::fs::read(dir.path().join("data.img")).unwrap();
    for (off, len, pat) in want {
        assert!(
            disk[off..off + len].iter().all(|&b| b == pat),
            "data file lacks the write at {off}+{len}"
        );
    }
}

/// The log directory fills up under qemu-io's writes (a 2 MiB tmpfs, needs root): every write
/// succeeds, the export reports the bypass and the log's hole on its status line, shuts down
/// cleanly, restarts (logging again, the hole still reported), and the data reads back.
#[test]
fn a_full_log_directory_bypasses_the_log_and_loses_nothing() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "none"])
        .arg(&logs));
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&logs);
    let size: u64 = 16 << 20;
    let exp = ExportProc::start_logs(dir.path(), &logs, size, "full", &["--status-interval", "0"]);
    exp.wait_status("mode=logging", Duration::from_secs(10));
    // 8 MiB into a 2 MiB log file system, then a flush.
    run(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "write -P 0x5a 0 8M",
        "-c",
        "flush",
        &exp.uri("full"),
    ]));
    let line = exp.wait_status("mode=bypass", Duration::from_secs(30));
    assert!(!line.contains("hole=none"), "the hole is reported: {line}");
    exp.stop();
    let exp = ExportProc::start_logs(dir.path(), &logs, size, "full", &["--status-interval", "0"]);
    let line = exp.wait_status("mode=logging", Duration::from_secs(10));
    assert!(
        !line.contains("hole=none"),
        "the hole is still reported after a restart: {line}"
    );
    let out = stdout(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        "read -P 0x5a 0 8M",
        "-c",
        "read -P 0 8M 8M",
        &exp.uri("full"),
    ]));
    assert!(!out.contains("Pattern verification failed"), "{out}");
    assert_eq!(
        out.matches("read 8388608/8388608 bytes").count(),
        2,
        "{out}"
    );
    exp.stop();
}
