//! Log fetch with record verification as records arrive: a real log (written by `LogWriter`
//! while it is fetched) verifies and arrives byte for byte; a corrupted record stops the fetch
//! with an error naming the offset.

mod remote_common;
use remote_common::*;
use std::path::Path;
use std::time::Duration;
use xio::file::{self, Backend, FileOptions};
use xio::log::{FileHeader, LogWriter, RecordIn, RecordOp};
use xio::remote::*;

const NAME: &str = "log-000000001-alice";

/// Write `batches` batches of records into `dir/NAME`, pausing between batches.
/// `align`: 0 for format v1, else v2 with this alignment.
fn write_log(dir: &Path, batches: usize, pause: Duration, align: u32) {
    let out = file::open(
        dir.join(NAME),
        Backend::Sync,
        &FileOptions {
            create_size: Some(0),
            growable: true,
            ..FileOptions::default()
        },
    )
    .unwrap();
    let header = FileHeader {
        seq: 1,
        nonce: 0x1234,
        created: 1,
        resource: "r".into(),
        node: "n".into(),
        align,
        prev_end: 0,
    };
    let mut w = LogWriter::create(&*out, NAME, header, false).unwrap();
    for b in 0..batches {
        let data: Vec<Vec<u8>> = (0..5)
            .map(|i| pattern((b * 5 + i) as u64, 1000 + 3000 * i))
            .collect();
        let recs: Vec<RecordIn<'_>> = data
            .iter()
            .enumerate()
            .map(|(i, d)| RecordIn {
                op: RecordOp::Write,
                pos: (i as u64) << 20,
                len: d.len() as u32,
                data: d,
                stamp: b as u64,
                flags: 0,
                data_crc: None,
            })
            .collect();
        w.write_batch(&*out, &recs).unwrap();
        std::thread::sleep(pause);
    }
}

#[test]
fn a_growing_real_log_verifies_as_it_arrives() {
    for align in [0, 4096] {
        growing_log_verifies(align);
    }
}

fn growing_log_verifies(align: u32) {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join(NAME), b"").unwrap();
    let node = Exports::new(Some(src.path().into()))
        .listen("127.0.0.1:0", net("p"))
        .unwrap();
    let dir = src.path().to_path_buf();
    let writer = std::thread::spawn(move || {
        write_log(&dir, 200, Duration::from_millis(2), align);
        std::fs::write(dir.join("log-000000002-alice"), started_header(2)).unwrap();
    });
    let client = RemoteClient::start(
        "log",
        client_cfg(node.local_addr(), Target::Log(NAME.into())),
    );
    let mut cfg = FetchConfig::new(dst.path().join(NAME), NAME);
    // Chunks that end inside records and inside v2 padding.
    cfg.chunk = 64 << 10 | 100;
    cfg.follow_wait_ms = 50;
    cfg.verify = Some(log_verifier(Some(1)));
    let f = LogFetch::new(client, cfg);
    let p = run_bounded(&f, Duration::from_secs(60)).unwrap();
    writer.join().unwrap();
    let want = std::fs::read(src.path().join(NAME)).unwrap();
    assert_eq!(p.local, want.len() as u64);
    assert_eq!(p.verified, p.local, "every record verified");
    assert!(std::fs::read(dst.path().join(NAME)).unwrap() == want);
}

#[test]
fn a_corrupt_record_stops_the_fetch_with_its_offset() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    write_log(src.path(), 20, Duration::ZERO, 0);
    std::fs::write(src.path().join("log-000000002-alice"), started_header(2)).unwrap();
    let mut bytes = std::fs::read(src.path().join(NAME)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(src.path().join(NAME), &bytes).unwrap();
    let node = Exports::new(Some(src.path().into()))
        .listen("127.0.0.1:0", net("p"))
        .unwrap();
    let client = RemoteClient::start(
        "log",
        client_cfg(node.local_addr(), Target::Log(NAME.into())),
    );
    let mut cfg = FetchConfig::new(dst.path().join(NAME), NAME);
    cfg.verify = Some(log_verifier(Some(1)));
    let f = LogFetch::new(client, cfg);
    let e = f.run().unwrap_err();
    assert!(matches!(e, RemoteError::Verify { .. }), "{e}");
    assert!(e.to_string().contains("record at"), "{e}");
    assert!(f.progress().verified <= mid as u64);
    // The wrong sequence number is caught too.
    let dst2 = tempfile::tempdir().unwrap();
    std::fs::write(
        src.path().join(NAME),
        &std::fs::read(src.path().join(NAME)).unwrap()[..512],
    )
    .unwrap();
    let client = RemoteClient::start(
        "log",
        client_cfg(node.local_addr(), Target::Log(NAME.into())),
    );
    let mut cfg = FetchConfig::new(dst2.path().join(NAME), NAME);
    cfg.verify = Some(log_verifier(Some(7)));
    let e = LogFetch::new(client, cfg).run().unwrap_err();
    assert!(e.to_string().contains("where 7 was expected"), "{e}");
}

/// A local copy damaged in the middle verifies up to the end of its last good record (not 0),
/// in both formats (v2: where the damaged record starts, after the padding): only the rest
/// is fetched again.
#[test]
fn a_damaged_copy_verifies_up_to_its_last_good_record() {
    for align in [0, 4096] {
        damaged_copy_verifies_up_to_its_last_good_record(align);
    }
}

fn damaged_copy_verifies_up_to_its_last_good_record(align: u32) {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 20, Duration::ZERO, align);
    let path = dir.path().join(NAME);
    let log = xio::log::LogName::parse(NAME).unwrap();
    let whole = std::fs::read(&path).unwrap();
    assert_eq!(
        xio::replica::verified_prefix(&path, &log),
        whole.len() as u64
    );
    let mid = whole.len() / 2;
    let mut bytes = whole.clone();
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let good = xio::replica::verified_prefix(&path, &log);
    assert!(
        good > 512 && good <= mid as u64,
        "align {align}: {good} of {}",
        whole.len()
    );
    // It is a record boundary: the file cut there verifies completely, and the next record
    // would have reached past the damage.
    std::fs::write(&path, &whole[..good as usize]).unwrap();
    assert_eq!(xio::replica::verified_prefix(&path, &log), good);
    std::fs::write(&path, &whole[..mid + 1]).unwrap();
    assert_eq!(xio::replica::verified_prefix(&path, &log), good);
}
