//! Golden byte fixtures of log formats v1 and v2 (`tests/data/`) and the scanner's verdicts on
//! whole files: clean end, end-of-file record, unknown version, wrong resource, interrupted
//! creation.
//!
//! Regenerate the fixtures (only when FORMAT.md changes, with a version bump):
//! `MARS_UPDATE_FIXTURES=1 cargo test -p xio --test logger_format`.

use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::Output;
use std::path::PathBuf;
use std::sync::Arc;
use xio::log::record::{FLAG_FUA, FLAG_NO_HOLE};
use xio::log::{
    Expect, FileHeader, LogError, LogPos, LogWriter, RecordIn, RecordOp, ScanEnd, Scanner,
};
use xio::logger::{FsLogStore, LogState, LogStore};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Both formats: v1 (align 0) and v2 with 4 KiB alignment.
const FORMATS: [(&str, u32); 2] = [("log-v1-golden.bin", 0), ("log-v2-golden.bin", 4096)];

fn header(align: u32) -> FileHeader {
    FileHeader {
        seq: 3,
        nonce: 0x0123_4567_89ab_cdef,
        created: 1_700_000_000_000_000_000,
        resource: "golden".into(),
        node: "node-a".into(),
        align,
        prev_end: 0,
    }
}

/// A deterministic log file: two batches covering every record kind, one record compressed.
fn build(align: u32) -> Vec<u8> {
    let disk = MemDisk::new("golden", 1 << 20, MemDiskMode::Inline);
    let (_, end) = build_on(&*disk, header(align));
    brick_core::read_all(&*disk, 0, end as usize).unwrap()
}

/// Write [`build`]'s two batches to `disk` under `header`; the writer and the end.
fn build_on(disk: &dyn Output, header: FileHeader) -> (LogWriter, u64) {
    let mut w = LogWriter::create(disk, "golden", header, true).unwrap();
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let noisy: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(0x9e37_79b9) >> 24) as u8)
        .collect();
    let b1 = [
        RecordIn {
            op: RecordOp::Write,
            pos: 0,
            len: 4096,
            data: &pattern,
            stamp: 1_700_000_000_000_000_001,
            flags: 0,
            data_crc: None,
        },
        RecordIn {
            op: RecordOp::Write,
            pos: 8192,
            len: 512,
            data: &noisy,
            stamp: 1_700_000_000_000_000_002,
            flags: FLAG_FUA,
            data_crc: None,
        },
    ];
    w.write_batch(disk, &b1).unwrap();
    let b2 = [
        RecordIn {
            op: RecordOp::Discard,
            pos: 1 << 20,
            len: 65536,
            data: &[],
            stamp: 1_700_000_000_000_000_003,
            flags: 0,
            data_crc: None,
        },
        RecordIn {
            op: RecordOp::WriteZeroes,
            pos: 4096,
            len: 4096,
            data: &[],
            stamp: 1_700_000_000_000_000_004,
            flags: FLAG_NO_HOLE,
            data_crc: None,
        },
    ];
    let spans = w.write_batch(disk, &b2).unwrap();
    (w, spans.end)
}

fn check_golden(name: &str, bytes: &[u8]) {
    let path = fixture(name);
    if std::env::var("MARS_UPDATE_FIXTURES").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        want == bytes,
        "{name}: the encoder no longer reproduces the fixture byte for byte"
    );
}

fn disk_with(bytes: &[u8]) -> Arc<dyn Output> {
    let d = MemDisk::new("f", bytes.len().max(1), MemDiskMode::Inline);
    brick_core::write_all(&*d, 0, bytes).unwrap();
    d
}

fn scan(bytes: &[u8], expect: &Expect) -> xio::log::Result<(Vec<xio::log::Record>, ScanEnd)> {
    Scanner::open(disk_with(bytes), "f", bytes.len() as u64, expect)?.read_all()
}

#[test]
fn log_file_fixtures_are_stable_and_read_back() {
    for (name, align) in FORMATS {
        fixture_reads_back(name, align);
    }
}

fn fixture_reads_back(name: &str, align: u32) {
    let bytes = build(align);
    check_golden(name, &bytes);
    let (recs, end) = scan(
        &bytes,
        &Expect {
            resource: Some("golden".into()),
            seq: Some(3),
        },
    )
    .unwrap();
    assert_eq!(
        end,
        ScanEnd::Clean {
            end: bytes.len() as u64
        }
    );
    let kinds: Vec<_> = recs
        .iter()
        .map(|r| (r.header.op, r.header.pos, r.header.data_len, r.header.batch))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (RecordOp::Write, 0, 4096, 1),
            (RecordOp::Write, 8192, 512, 1),
            (RecordOp::Discard, 1 << 20, 65536, 2),
            (RecordOp::WriteZeroes, 4096, 4096, 2)
        ]
    );
    assert_eq!(
        recs[0].data,
        (0..4096u32).map(|i| (i % 251) as u8).collect::<Vec<_>>()
    );
    assert!(
        recs[0].header.flags & xio::log::record::FLAG_LZ4 != 0,
        "the pattern compresses"
    );
    assert!(
        recs[1].header.batch_end() && recs[3].header.batch_end() && !recs[0].header.batch_end()
    );
    if align > 0 {
        // v2: records from `align` on, every write (here: batch) starts aligned and is padded.
        let a = align as u64;
        assert_eq!(
            (recs[0].offset, recs[2].offset % a, bytes.len() as u64 % a),
            (a, 0, 0)
        );
        assert_eq!(
            recs[1].end, recs[2].offset,
            "the padding belongs to the record before"
        );
        assert!(recs[1].header.padded() && !recs[0].header.padded());
    }
}

/// The log writer on a real log file writes each batch as one gather write (headers and
/// trailers from its own buffer, payloads from the callers': `pwritev`, or the `O_DIRECT`
/// bounce buffer): the file is the fixture byte for byte, as the one-buffer write to a
/// `MemDisk` above is.
#[test]
fn gather_writes_to_real_log_files_reproduce_the_fixtures() {
    for (name, align) in FORMATS {
        for direct in [false, align != 0] {
            // Not the system temp dir: tmpfs has no O_DIRECT.
            let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let store = FsLogStore::new(dir.path(), "node-a")
                .unwrap()
                .with_direct(direct);
            let out = store.create(3).unwrap();
            let (_, end) = build_on(&*out, header(align));
            let path = dir.path().join(store.name(3).unwrap().to_string());
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(bytes.len() as u64, end, "{name} direct {direct}");
            let want = std::fs::read(fixture(name)).unwrap();
            assert!(
                bytes == want,
                "{name} direct {direct}: the gather write differs from the fixture"
            );
        }
    }
}

#[test]
fn state_file_fixture_is_stable() {
    let s = LogState {
        min_pos: LogPos::new(3, 4096),
        hole: Some(LogPos::new(4, 512)),
    };
    check_golden("log-v1-state.bin", &s.encode());
    assert_eq!(
        LogState::decode(&std::fs::read(fixture("log-v1-state.bin")).unwrap()).unwrap(),
        s
    );
}

#[test]
fn trailing_zeroes_are_a_clean_end() {
    for (_, align) in FORMATS {
        let mut bytes = build(align);
        let n = bytes.len() as u64;
        bytes.resize(bytes.len() + 10_000, 0);
        let (recs, end) = scan(&bytes, &Expect::default()).unwrap();
        assert_eq!((recs.len(), end), (4, ScanEnd::Clean { end: n }));
    }
}

#[test]
fn unknown_version_and_wrong_resource_are_errors() {
    let bytes = build(0);
    let err = scan(
        &bytes,
        &Expect {
            resource: Some("other".into()),
            seq: None,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, LogError::WrongResource { ref found, .. } if found == "golden"),
        "{err}"
    );
    let mut v3 = bytes.clone();
    v3[8] = 3;
    let crc = crc32c::crc32c(&v3[..508]);
    v3[508..512].copy_from_slice(&crc.to_le_bytes());
    let err = scan(&v3, &Expect::default()).unwrap_err();
    assert!(
        matches!(err, LogError::UnknownVersion { version: 3, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("upgrade"),
        "the message says what to do: {err}"
    );
}

#[test]
fn interrupted_creation_is_a_torn_tail_at_zero() {
    let mut bytes = build(4096);
    bytes.truncate(300);
    let mut padded = bytes.clone();
    padded.resize(4096, 0);
    for b in [bytes, padded, Vec::new()] {
        let (recs, end) = scan(&b, &Expect::default()).unwrap();
        assert!(recs.is_empty());
        assert!(matches!(end, ScanEnd::TornTail { end: 0, .. }), "{end:?}");
    }
}

/// A file reused for a new log (same sequence number, a new nonce) still holds the old file's
/// records after the new valid end: the old file began with the same records, so the stale
/// ones continue the new file's numbering exactly (record 5 of batch 3) and pass every check
/// but one: they carry the old nonce. The scanner never takes them for the new file's.
#[test]
fn stale_records_of_an_earlier_file_past_the_end_are_never_read() {
    for (_, align) in FORMATS {
        let old_disk = MemDisk::new("old", 1 << 20, MemDiskMode::Inline);
        let mut old_header = header(align);
        old_header.nonce ^= 0xdead_beef;
        let (mut w, _) = build_on(&*old_disk, old_header);
        let data = vec![0x5au8; 4096];
        let recs: Vec<RecordIn<'_>> = (0..20u64)
            .map(|i| RecordIn {
                op: RecordOp::Write,
                pos: i * 4096,
                len: 4096,
                data: &data,
                stamp: i,
                flags: 0,
                data_crc: None,
            })
            .collect();
        let end = w.write_batch(&*old_disk, &recs).unwrap().end;
        let mut file = brick_core::read_all(&*old_disk, 0, end as usize).unwrap();
        let new = build(align);
        assert!(new.len() < file.len());
        file[..new.len()].copy_from_slice(&new);
        let (got, end) = scan(&file, &Expect::default()).unwrap();
        assert_eq!(got.len(), 4, "align {align}: only the new file's records");
        assert!(got.iter().all(|r| r.header.nonce == header(align).nonce));
        assert_eq!(end.end(), new.len() as u64, "align {align}: {end:?}");
    }
}

/// A file the writer rotated away from ends with its end-of-file record (fixtures
/// `log-v{1,2}-ended.bin`, whose headers also carry `prev_end`): the scan ends cleanly there
/// whatever follows, stale records of an earlier life or garbage. Without that record the
/// same bytes are a torn tail (never corruption); a zeroed header block in front of stale
/// bytes is a recycled file not started yet, any other damaged header there is corruption.
#[test]
fn an_end_record_closes_the_file_and_what_follows_is_never_read() {
    for (name, align) in [("log-v1-ended.bin", 0), ("log-v2-ended.bin", 4096)] {
        let disk = MemDisk::new("ended", 1 << 20, MemDiskMode::Inline);
        let h = FileHeader {
            prev_end: 123_456,
            ..header(align)
        };
        let (mut w, body_end) = build_on(&*disk, h);
        let end = w.finish(&*disk).unwrap();
        assert!(end > body_end);
        let bytes = brick_core::read_all(&*disk, 0, end as usize).unwrap();
        check_golden(name, &bytes);
        assert_eq!(FileHeader::decode(&bytes).unwrap().end_of(2), Some(123_456));
        let stale = {
            let mut old = header(align);
            old.nonce ^= 0xdead_beef;
            let mut b = build(align);
            b[..512].copy_from_slice(&old.encode().unwrap());
            b
        };
        let mut garbage = vec![0xffu8; 3000];
        garbage[100..104].copy_from_slice(b"MREC");
        for tail in [&stale[..], &garbage[..]] {
            let mut file = bytes.clone();
            file.extend_from_slice(tail);
            let mut s = Scanner::open(disk_with(&file), "f", file.len() as u64, &Expect::default())
                .unwrap();
            let mut n = 0;
            while s.next().unwrap().is_some() {
                n += 1;
            }
            assert_eq!(
                (n, s.end().unwrap()),
                (4, &ScanEnd::Clean { end }),
                "{name}"
            );
            assert!(s.closed());
            // The same file without its end-of-file record: a torn tail at the valid end.
            let mut open = bytes[..body_end as usize].to_vec();
            open.extend_from_slice(tail);
            let (recs, e) = scan(&open, &Expect::default()).unwrap();
            assert_eq!(recs.len(), 4);
            assert!(
                matches!(e, ScanEnd::TornTail { end, .. } if end == body_end),
                "{e:?}"
            );
        }
        // A recycled file before its header is written: zero header block, stale bytes.
        let mut recycled = stale.clone();
        recycled[..512].fill(0);
        let (recs, e) = scan(&recycled, &Expect::default()).unwrap();
        assert!(
            recs.is_empty() && matches!(e, ScanEnd::TornTail { end: 0, .. }),
            "{e:?}"
        );
        recycled[7] = 1;
        let err = scan(&recycled, &Expect::default()).unwrap_err();
        assert!(
            matches!(err, LogError::Corruption { offset: 0, .. }),
            "{err}"
        );
    }
}
