//! xio file backends on real block devices and real full file systems (needs root: loop
//! devices and tmpfs mounts). Run: `cargo test -p mars-rs --features interop --test xio_devices`.
//!
//! - a loop device: size from the device, 512-byte sectors, read/write/flush/discard/
//!   write-zeroes (aligned, and unaligned falling back to written zeroes) against a model;
//! - ENOSPC: a growable file on a 1 MiB tmpfs fills up → `Error::NoSpace`;
//! - EIO: a loop device whose backing file lives on that tiny tmpfs; writeback fails, and the
//!   flush reports `Error::Os { errno: 5 }`;
//! - the trans_logger's log directory on a 2 MiB tmpfs that fills up: bypass, nothing lost,
//!   and a restart that logs again.
#![cfg(feature = "interop")]

use brick_core::{run, Aio, Error, Flags, Op, Output};
use std::path::{Path, PathBuf};
use std::process::Command;
use xio::file::{self, Backend, FileKind, FileOptions};

const BACKENDS: [Backend; 2] = [Backend::Sync, Backend::IoUring];

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A tmpfs of `size` mounted on a fresh temp dir; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "none",
                dir.path().to_str().unwrap(),
            ],
        );
        Tmpfs { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A loop device over `backing`; detached on drop.
struct Loop {
    dev: PathBuf,
}

impl Loop {
    fn new(backing: &Path) -> Loop {
        let dev = sh("losetup", &["-f", "--show", backing.to_str().unwrap()]);
        Loop { dev: dev.into() }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

#[test]
fn loop_device_round_trips_like_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing.img");
    let size = 16u64 << 20;
    std::fs::write(&backing, vec![0x11u8; size as usize]).unwrap();
    let lo = Loop::new(&backing);
    for backend in BACKENDS {
        let f = file::open(&lo.dev, backend, &FileOptions::default()).unwrap();
        assert_eq!(f.kind(), FileKind::BlockDevice);
        let info = f.info().unwrap();
        assert_eq!(info.size, size, "{backend:?}: size from the device");
        assert_eq!(info.block_size, 512);
        let mut model = vec![0x11u8; size as usize];
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();
        brick_core::write_all(&*f, 12_345, &data).unwrap();
        model[12_345..12_345 + data.len()].copy_from_slice(&data);
        let mut fua = Aio::write(1 << 20, vec![0x22; 4096]);
        fua.flags = Flags::FUA;
        run(&*f, fua).unwrap();
        model[1 << 20..(1 << 20) + 4096].fill(0x22);
        // Aligned discard / write-zeroes go to fallocate on the device; unaligned ones fall
        // back to writing zeroes. Either way the range reads back as zeroes.
        for (op, pos, len, flags) in [
            (Op::Discard, 2u64 << 20, 1usize << 20, Flags::NONE),
            (Op::WriteZeroes, 4 << 20, 65_536, Flags::NONE),
            (Op::WriteZeroes, 5 << 20, 65_536, Flags::NO_HOLE),
            (Op::WriteZeroes, 20_001, 3_333, Flags::NONE),
            (Op::Discard, 6 << 20 | 7, 10_000, Flags::NONE),
        ] {
            let mut r = Aio::new(op, pos, len);
            r.flags = flags;
            run(&*f, r).unwrap_or_else(|e| panic!("{backend:?} {op:?} at {pos}: {e}"));
            model[pos as usize..pos as usize + len].fill(0);
        }
        run(&*f, Aio::new(Op::Flush, 0, 0)).unwrap();
        let got = brick_core::read_all(&*f, 0, size as usize).unwrap();
        assert!(
            got == model,
            "{backend:?}: device contents differ from the model"
        );
        assert!(matches!(
            run(&*f, Aio::read(size - 512, 1024)).unwrap_err(),
            Error::OutOfRange { .. }
        ));
        // Reset for the next backend.
        brick_core::write_all(&*f, 0, &vec![0x11u8; size as usize]).unwrap();
        run(&*f, Aio::new(Op::Flush, 0, 0)).unwrap();
    }
}

#[test]
fn a_full_file_system_is_no_space() {
    for backend in BACKENDS {
        let fs = Tmpfs::new("1m");
        let opts = FileOptions {
            create_size: Some(0),
            growable: true,
            ..FileOptions::default()
        };
        let f = file::open(fs.path().join("log"), backend, &opts).unwrap();
        let chunk = vec![0x33u8; 64 * 1024];
        let mut pos = 0u64;
        let err = loop {
            assert!(pos < 4 << 20, "{backend:?}: 4 MiB fit into a 1 MiB tmpfs");
            match run(&*f, Aio::write(pos, chunk.clone())) {
                Ok(_) => pos += chunk.len() as u64,
                Err(e) => break e,
            }
        };
        assert_eq!(err, Error::NoSpace { context: "writing" }, "{backend:?}");
        assert!(pos >= 512 * 1024, "{backend:?}: only {pos} bytes fit");
        // What was written before is intact and the size grew with it.
        assert!(f.info().unwrap().size >= pos);
        assert_eq!(
            brick_core::read_all(&*f, 0, 4096).unwrap(),
            vec![0x33; 4096]
        );
    }
}

#[test]
fn failed_writeback_is_eio_on_flush() {
    for backend in BACKENDS {
        let fs = Tmpfs::new("1m");
        let backing = fs.path().join("sparse.img");
        std::fs::File::create(&backing)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let lo = Loop::new(&backing);
        let f = file::open(&lo.dev, backend, &FileOptions::default()).unwrap();
        // Buffered writes land in the device's page cache and succeed ...
        brick_core::write_all(&*f, 0, &vec![0x44u8; 4 << 20]).unwrap();
        // ... writeback cannot fit into the 1 MiB tmpfs: the flush reports EIO.
        let err = run(&*f, Aio::new(Op::Flush, 0, 0)).unwrap_err();
        assert_eq!(
            err,
            Error::Os {
                errno: 5,
                context: "flushing (fdatasync)"
            },
            "{backend:?}"
        );
        assert_eq!(err.errno(), libc::EIO);
        assert!(!err.is_retryable());
    }
}

/// The log's file system fills up under a writer: no write fails, the logger drains its
/// memory to the data device and continues in bypass, reporting where the log's hole starts;
/// a restart on the full directory replays nothing over the direct writes and still reports
/// the hole. Nothing acknowledged is lost at any step.
#[test]
fn a_full_log_file_system_switches_the_logger_to_bypass_and_loses_nothing() {
    use xio::logger::{LoggerConfig, LoggerMode, TransLogger};
    const BLOCK: usize = 4096;
    const BLOCKS: u64 = 4096; // 16 MiB of data device
    let fs = Tmpfs::new("2m");
    let disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let open_data = || {
        file::open(
            disk.path().join("data.img"),
            Backend::IoUring,
            &FileOptions {
                create_size: Some(BLOCKS * BLOCK as u64),
                ..FileOptions::default()
            },
        )
        .unwrap()
    };
    let cfg = || LoggerConfig {
        resource: "full".into(),
        node: "n0".into(),
        ..LoggerConfig::default()
    };
    let logs = fs.path().join("logs");
    let logger = TransLogger::open(open_data(), &logs, cfg()).unwrap();
    let mut model = vec![0u8; (BLOCKS as usize) * BLOCK];
    // 6 MiB of writes (three times the file system), every 16th with FUA.
    for i in 0..1536u64 {
        let b = (i * 2654435761) % BLOCKS;
        let fill = (i % 251) as u8 + 1;
        let mut w = Aio::write(b * BLOCK as u64, vec![fill; BLOCK]);
        if i % 16 == 0 {
            w.flags = Flags::FUA;
        }
        run(&*logger, w).unwrap_or_else(|e| panic!("write {i} failed: {e}"));
        model[(b as usize) * BLOCK..(b as usize + 1) * BLOCK].fill(fill);
    }
    run(&*logger, Aio::new(Op::Flush, 0, 0)).unwrap();
    let status = logger.status();
    assert_eq!(status.mode, LoggerMode::Bypass, "{status:?}");
    let hole = logger.log_hole().expect("the log's hole is reported");
    let seen = brick_core::read_all(&*logger, 0, model.len()).unwrap();
    assert!(
        seen == model,
        "reads through the logger differ from what was written"
    );
    // `close` lets go of the log files (no `drop` here): their space is needed below.
    logger.close().unwrap();
    // Restart: nothing is replayed over the direct writes, the hole is still reported.
    let logger = TransLogger::open(open_data(), &logs, cfg()).unwrap();
    assert_eq!(logger.log_hole(), Some(hole));
    let seen = brick_core::read_all(&*logger, 0, model.len()).unwrap();
    assert!(
        seen == model,
        "after the restart the data differs from what was written"
    );
    // The old log files made room: the restarted logger logs again.
    assert_eq!(logger.status().mode, LoggerMode::Logging);
    let mut w = Aio::write(0, vec![0xab; BLOCK]);
    w.flags = Flags::FUA;
    run(&*logger, w).unwrap();
    model[..BLOCK].fill(0xab);
    assert_eq!(
        logger.status().records_logged,
        1,
        "the write after the restart is logged"
    );
    logger.close().unwrap();
    let data = open_data();
    assert!(brick_core::read_all(&*data, 0, model.len()).unwrap() == model);
}
