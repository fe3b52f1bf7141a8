//! In-process tests of the server over `MemDisk` with the bundled client: both socket kinds,
//! named exports, many pipelined requests, structured replies, requests split at device
//! boundaries, read-only exports, refusals and violations. Reply order and shutdown with
//! requests held in flight are in `tests_gated.rs`.

use super::client::{Client, Payload};
use super::proto::{cflag, cmd, errno, tflag};
use super::{Export, NbdServer, ServerConfig};
use brick_core::bricks::{MemDisk, MemDiskMode};
use std::sync::Arc;
use std::time::Duration;

struct Rig {
    server: NbdServer,
    sock: std::path::PathBuf,
    disk: Arc<MemDisk>,
    _dir: tempfile::TempDir,
}

fn rig(max_inflight: usize) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nbd.sock");
    let disk = MemDisk::new("disk", 8 << 20, MemDiskMode::Threaded(4));
    let split = MemDisk::with_boundary("split", 1 << 20, MemDiskMode::Threaded(3), 8192);
    let server = NbdServer::new(ServerConfig {
        max_inflight,
        ..ServerConfig::default()
    });
    server
        .add_export(
            Export::new("disk", disk.clone())
                .unwrap()
                .multi_conn(true)
                .description("test disk"),
        )
        .unwrap();
    server
        .add_export(Export::new("split", split).unwrap())
        .unwrap();
    server
        .add_export(Export::new("ro", disk.clone()).unwrap().read_only(true))
        .unwrap();
    server.listen_unix(&sock).unwrap();
    Rig {
        server,
        sock,
        disk,
        _dir: dir,
    }
}

/// A client whose waits for replies are bounded: a lost reply fails the test, not hangs it.
pub(super) fn client(
    sock: &std::path::Path,
    name: &str,
    structured: bool,
) -> std::io::Result<Client> {
    let c = Client::unix(sock, name, structured)?;
    c.set_reply_timeout(Duration::from_secs(30))?;
    Ok(c)
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) >> 2) as u8)
        .collect()
}

#[test]
fn list_and_geometry() {
    let r = rig(16);
    assert_eq!(Client::list_unix(&r.sock).unwrap(), ["disk", "split", "ro"]);
    let c = client(&r.sock, "disk", false).unwrap();
    assert_eq!(c.size, 8 << 20);
    assert_eq!(c.block_size, Some((512, 4096, 32 << 20)));
    for f in [
        tflag::HAS_FLAGS,
        tflag::SEND_FLUSH,
        tflag::SEND_FUA,
        tflag::SEND_TRIM,
        tflag::SEND_WRITE_ZEROES,
        tflag::CAN_MULTI_CONN,
    ] {
        assert!(c.flags & f != 0, "flag {f:#x} missing");
    }
    assert_eq!(c.flags & tflag::READ_ONLY, 0);
    let ro = client(&r.sock, "ro", false).unwrap();
    assert!(ro.flags & tflag::READ_ONLY != 0);
    assert_eq!(ro.flags & tflag::CAN_MULTI_CONN, 0);
    // The default export is the first one.
    assert_eq!(client(&r.sock, "", false).unwrap().size, 8 << 20);
    assert!(client(&r.sock, "nope", false).is_err());
}

#[test]
fn many_pipelined_requests_keep_their_data_with_both_reply_kinds() {
    let r = rig(64);
    for structured in [false, true] {
        let mut c = client(&r.sock, "disk", structured).unwrap();
        assert_eq!(c.structured, structured);
        let n = 200u64;
        let mut cookies = Vec::new();
        for i in 0..n {
            let d = pattern(i, 4096);
            cookies.push(c.send(cmd::WRITE, 0, i * 4096, Payload::Data(&d)).unwrap());
        }
        let mut order = Vec::new();
        for _ in 0..n {
            let rep = c.recv().unwrap();
            assert_eq!(rep.error, 0);
            order.push(rep.cookie);
        }
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, cookies);
        assert_eq!(c.flush().unwrap(), 0);
        for i in 0..n {
            c.send(cmd::READ, 0, i * 4096, Payload::Len(4096)).unwrap();
        }
        for _ in 0..n {
            let rep = c.recv().unwrap();
            assert_eq!(rep.error, 0);
            let i = cookies
                .iter()
                .position(|&k| k + n + 1 == rep.cookie)
                .unwrap() as u64;
            assert_eq!(rep.data, pattern(i, 4096), "read {i}");
        }
        c.disconnect().unwrap();
    }
    assert_eq!(&r.disk.contents()[..4096], &pattern(0, 4096)[..]);
}

#[test]
fn requests_are_split_at_device_boundaries() {
    let r = rig(8);
    for structured in [false, true] {
        let mut c = client(&r.sock, "split", structured).unwrap();
        let d = pattern(9, 100 * 1024);
        assert_eq!(c.write(4096, &d).unwrap(), 0);
        assert_eq!(c.read(4096, d.len() as u32).unwrap().unwrap(), d);
        let z = c
            .call(cmd::WRITE_ZEROES, cflag::FUA, 8192, Payload::Len(32768))
            .unwrap();
        assert_eq!(z.error, 0);
        let back = c.read(4096, d.len() as u32).unwrap().unwrap();
        assert!(back[4096..4096 + 32768].iter().all(|&b| b == 0));
        assert_eq!(&back[..4096], &d[..4096]);
    }
}

#[test]
fn bad_requests_get_error_replies_and_the_connection_keeps_working() {
    let r = rig(8);
    for structured in [false, true] {
        let mut c = client(&r.sock, "disk", structured).unwrap();
        let size = c.size;
        let e = |c: &mut Client, kind, flags, off, p| c.call(kind, flags, off, p).unwrap().error;
        assert_eq!(
            e(&mut c, cmd::READ, 0, size, Payload::Len(512)),
            errno::EINVAL
        );
        assert_eq!(
            e(&mut c, cmd::WRITE, 0, size - 512, Payload::Data(&[1; 1024])),
            errno::ENOSPC
        );
        assert_eq!(
            e(
                &mut c,
                cmd::WRITE_ZEROES,
                0,
                u64::MAX - 511,
                Payload::Len(1024)
            ),
            errno::ENOSPC
        );
        assert_eq!(
            e(&mut c, cmd::TRIM, 0, u64::MAX, Payload::Len(512)),
            errno::EINVAL
        );
        assert_eq!(e(&mut c, cmd::READ, 0, 1, Payload::Len(512)), errno::EINVAL);
        assert_eq!(e(&mut c, 42, 0, 0, Payload::Len(0)), errno::EINVAL);
        assert_eq!(
            e(&mut c, cmd::BLOCK_STATUS, 0, 0, Payload::Len(512)),
            errno::EINVAL
        );
        assert_eq!(
            e(&mut c, cmd::READ, 0x8000, 0, Payload::Len(512)),
            errno::EINVAL
        );
        assert_eq!(
            e(
                &mut c,
                cmd::WRITE,
                cflag::NO_HOLE,
                0,
                Payload::Data(&[7; 512])
            ),
            errno::EINVAL
        );
        let big = e(&mut c, cmd::READ, 0, 0, Payload::Len(u32::MAX));
        assert_eq!(
            big,
            if structured {
                errno::EOVERFLOW
            } else {
                errno::EINVAL
            }
        );
        assert_eq!(e(&mut c, cmd::READ, 0, 0, Payload::Len(0)), 0);
        // Still fine afterwards, and nothing was written by the refused requests.
        assert_eq!(c.write(0, &[3; 512]).unwrap(), 0);
        assert_eq!(c.read(0, 512).unwrap().unwrap(), vec![3; 512]);
    }
    let mut ro = client(&r.sock, "ro", true).unwrap();
    assert_eq!(ro.write(0, &[9; 512]).unwrap(), errno::EPERM);
    assert_eq!(
        ro.call(cmd::TRIM, 0, 0, Payload::Len(512)).unwrap().error,
        errno::EPERM
    );
    assert_eq!(ro.read(0, 512).unwrap().unwrap(), vec![3; 512]);
    assert!(r.server.stats().refused >= 20);
}

#[test]
fn violations_close_only_that_connection() {
    use std::io::{Read, Write};
    let r = rig(8);
    let mut good = client(&r.sock, "disk", false).unwrap();
    let mut bad = client(&r.sock, "disk", false).unwrap();
    bad.raw().write_all(&[0xde; 28]).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(
        bad.raw().read(&mut b).unwrap(),
        0,
        "server must close the bad connection"
    );
    let mut huge = client(&r.sock, "disk", false).unwrap();
    let hdr = super::proto::Request {
        flags: 0,
        kind: cmd::WRITE,
        cookie: 1,
        offset: 0,
        length: (32 << 20) + 1,
    };
    huge.raw().write_all(&hdr.encode()).unwrap();
    assert_eq!(huge.raw().read(&mut b).unwrap(), 0);
    assert_eq!(good.write(512, &[5; 512]).unwrap(), 0);
    assert_eq!(good.read(512, 512).unwrap().unwrap(), vec![5; 512]);
    assert!(r.server.stats().violations >= 2);
}

#[test]
fn tcp_back_pressure_beyond_the_slot_count_then_shutdown_closes_listeners() {
    let r = rig(4);
    let addr = r.server.listen_tcp("127.0.0.1:0").unwrap();
    let mut c = Client::tcp(addr, "disk", true).unwrap();
    // More requests than slots: the server stops reading until replies drain (back-pressure).
    let n = 64;
    for i in 0..n {
        c.send(
            cmd::WRITE,
            cflag::FUA,
            i * 512,
            Payload::Data(&[i as u8; 512]),
        )
        .unwrap();
    }
    for _ in 0..n {
        assert_eq!(c.recv().unwrap().error, 0);
    }
    assert!(r.server.shutdown(Duration::from_secs(10)));
    assert!(Client::tcp(addr, "disk", false).is_err());
    assert!(!r.sock.exists());
    assert_eq!(r.disk.contents()[63 * 512], 63);
}

#[test]
fn shutdown_does_not_hang_when_the_socket_file_was_removed() {
    let r = rig(4);
    let mut c = client(&r.sock, "disk", false).unwrap();
    assert_eq!(c.write(0, &[1; 512]).unwrap(), 0);
    std::fs::remove_file(&r.sock).unwrap();
    // The listener cannot be woken through the path any more; shutdown must still finish and
    // still close the open connection.
    assert!(r.server.shutdown(Duration::from_secs(10)));
    assert!(c.read(0, 512).is_err());
}

/// Threads of this process named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .count()
}

#[test]
fn unix_listeners_of_many_servers_share_one_accept_thread_and_stop_accepting_at_shutdown() {
    let rigs: Vec<Rig> = (0..8).map(|_| rig(4)).collect();
    for r in &rigs {
        let mut c = client(&r.sock, "disk", false).unwrap();
        assert_eq!(c.write(0, &[7; 512]).unwrap(), 0);
    }
    // Other tests of this binary may run servers too: still one thread for all of them. (A
    // connection thread the acceptor just spawned carries its name until it names itself:
    // wait, bounded, for that to pass.)
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while threads_named("nbd-accept") != 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(threads_named("nbd-accept"), 1);
    let r = &rigs[0];
    // A second name of the listener's socket: after shutdown nothing accepts on it any more.
    let link = r.sock.with_extension("link");
    std::fs::hard_link(&r.sock, &link).unwrap();
    assert!(r.server.shutdown(Duration::from_secs(10)));
    assert!(!r.sock.exists());
    assert!(std::os::unix::net::UnixStream::connect(&link).is_err());
    let mut other = client(&rigs[1].sock, "disk", false).unwrap();
    assert_eq!(other.read(0, 512).unwrap().unwrap(), vec![7; 512]);
}
