//! Basic round trips through both file backends (the first thing to break).

use brick_core::{read_all, run, write_all, Aio, Brick, Error, Flags, Op, Output};
use xio::file::{self, Backend, FileOptions};

const BACKENDS: [Backend; 2] = [Backend::Sync, Backend::IoUring];

fn open(dir: &tempfile::TempDir, backend: Backend, size: u64) -> std::sync::Arc<file::FileBrick> {
    let opts = FileOptions {
        create_size: Some(size),
        ..FileOptions::default()
    };
    file::open(dir.path().join("disk.img"), backend, &opts).unwrap()
}

#[test]
fn write_read_flush_discard_zeroes() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let f = open(&dir, backend, 1 << 20);
        assert_eq!(f.info().unwrap().size, 1 << 20);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8 + 1).collect();
        write_all(&*f, 777, &data).unwrap();
        assert_eq!(read_all(&*f, 777, data.len()).unwrap(), data);
        run(&*f, Aio::new(Op::Flush, 0, 0)).unwrap();
        let mut fua = Aio::write(50_000, vec![9; 100]);
        fua.flags = Flags::FUA;
        run(&*f, fua).unwrap();
        run(&*f, Aio::new(Op::Discard, 1000, 3000)).unwrap();
        let mut wz = Aio::new(Op::WriteZeroes, 5000, 10);
        wz.flags = Flags::NO_HOLE;
        run(&*f, wz).unwrap();
        let got = read_all(&*f, 0, 60_000).unwrap();
        let mut want = vec![0u8; 60_000];
        want[777..777 + data.len()].copy_from_slice(&data);
        want[1000..4000].fill(0);
        want[5000..5010].fill(0);
        want[50_000..50_100].fill(9);
        assert_eq!(got, want, "{backend:?}");
        let on_disk = std::fs::read(dir.path().join("disk.img")).unwrap();
        assert_eq!(&on_disk[..60_000], &want[..], "{backend:?}");
        let err = run(&*f, Aio::read((1 << 20) - 10, 11)).unwrap_err();
        assert!(matches!(err, Error::OutOfRange { .. }), "{err:?}");
        assert_eq!(f.stats().inflight(), 0);
    }
}

/// `Flags::MAY_BLOCK`: aio writes the page cache on the submitting thread (the completion is
/// there before `submit` returns); results, errors and statistics are the same as without it.
#[test]
fn may_block_writes_complete_on_the_submitting_thread() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let f = open(&dir, backend, 1 << 20);
        let cq = brick_core::CompletionQueue::new();
        let before = f.stats();
        for i in 0..64u64 {
            let mut w = Aio::write(i * 4096, vec![i as u8 + 1; 4096]);
            w.flags = Flags::MAY_BLOCK;
            cq.submit(&*f, w).unwrap();
            if backend == Backend::IoUring {
                let done = cq.try_recv().expect("completed before submit returned");
                assert!(done.error.is_none(), "{:?}", done.error);
            } else {
                assert!(cq.recv().error.is_none());
            }
        }
        let mut past_end = Aio::write((1 << 20) - 100, vec![1; 4096]);
        past_end.flags = Flags::MAY_BLOCK;
        cq.submit(&*f, past_end).unwrap();
        assert!(
            matches!(cq.recv().error, Some(Error::OutOfRange { .. })),
            "{backend:?}: range still checked"
        );
        for i in 0..64u64 {
            assert_eq!(
                read_all(&*f, i * 4096, 4096).unwrap(),
                vec![i as u8 + 1; 4096]
            );
        }
        let st = f.stats();
        assert!(st.completed >= before.completed + 65, "{backend:?}: {st:?}");
    }
}

/// `FileOptions::direct`: `O_DIRECT` through aligned bounce buffers on both backends; the data
/// reaches the file, unaligned requests get a clear error.
#[test]
fn direct_io_round_trips_and_refuses_unaligned_requests() {
    for backend in BACKENDS {
        // Not the system temp dir: tmpfs has no O_DIRECT.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let path = dir.path().join("direct.img");
        let opts = FileOptions {
            create_size: Some(4 << 20),
            direct: true,
            ..FileOptions::default()
        };
        let f = file::open(&path, backend, &opts).unwrap();
        let bs = f.info().unwrap().block_size as usize;
        assert!(bs >= 512 && bs.is_power_of_two());
        let data: Vec<u8> = (0..2 * bs).map(|i| (i % 253) as u8 + 1).collect();
        write_all(&*f, bs as u64, &data).unwrap();
        // Many in flight at once, of different sizes (aio: each with its own bounce buffer).
        let cq = brick_core::CompletionQueue::new();
        for i in 0..32u64 {
            let len = bs * (1 + i as usize % 4);
            cq.submit(
                &*f,
                Aio::write((1 << 20) + i * 4 * bs as u64, vec![i as u8 + 1; len]),
            )
            .unwrap();
        }
        for _ in 0..32 {
            assert!(cq.recv().error.is_none());
        }
        let mut fua = Aio::write(0, vec![0x33; bs]);
        fua.flags = Flags::FUA.with(Flags::MAY_BLOCK);
        run(&*f, fua).unwrap();
        run(&*f, Aio::new(Op::Flush, 0, 0)).unwrap();
        assert_eq!(
            read_all(&*f, bs as u64, 2 * bs).unwrap(),
            data,
            "{backend:?}"
        );
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(&on_disk[..bs], &vec![0x33; bs][..]);
        assert_eq!(&on_disk[bs..3 * bs], &data[..]);
        for i in 0..32usize {
            let at = (1 << 20) + i * 4 * bs;
            let len = bs * (1 + i % 4);
            assert!(
                on_disk[at..at + len].iter().all(|&b| b == i as u8 + 1),
                "{backend:?} {i}"
            );
        }
        let mut wz = Aio::new(Op::WriteZeroes, bs as u64, bs);
        wz.flags = Flags::NO_HOLE;
        run(&*f, wz).unwrap();
        assert_eq!(read_all(&*f, bs as u64, bs).unwrap(), vec![0u8; bs]);
        let past_end = run(&*f, Aio::read((4 << 20) - bs as u64, 2 * bs)).unwrap_err();
        assert!(matches!(past_end, Error::OutOfRange { .. }), "{past_end}");
        for (pos, len) in [(1u64, bs), (0, bs - 1), (bs as u64 / 2, bs)] {
            let err = run(&*f, Aio::write(pos, vec![7; len])).unwrap_err();
            assert!(
                matches!(err, Error::Invalid(m) if m.contains("O_DIRECT")),
                "{pos}+{len}"
            );
        }
    }
}
