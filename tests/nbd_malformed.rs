//! Malformed-input campaign against an in-process NBD server over `MemDisk` (threaded, so
//! replies come back out of order): ≥ 10⁵ random and mutated requests — bad magics, huge
//! lengths, offsets past the end, unknown commands and flags, truncated headers and payloads,
//! garbage during the handshake, disconnects with requests in flight. Every reply is checked
//! against an oracle written from `doc/proto.md` (independently of the server's own check),
//! every violation must close exactly that connection, and a well-behaved client on another
//! export keeps reading back what it wrote the whole time.
//!
//! Default: 10⁵ requests (a few seconds); `MARS_LONG_TESTS=1`: 10⁶.

use brick_core::bricks::{MemDisk, MemDiskMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use xio::nbd::client::{Client, Payload};
use xio::nbd::proto::{cflag, cmd, errno};
use xio::nbd::{Export, NbdServer, ServerConfig};

const SIZE: u64 = 4 << 20;
const MAX_PAYLOAD: u32 = 32 << 20;
const TIMEOUT: Duration = Duration::from_secs(20);

/// What the protocol says the server must do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Reply(u32),
    Close,
    Disc,
}

/// The oracle, from doc/proto.md: unknown commands/flags EINVAL; writes past the end ENOSPC,
/// reads and trims EINVAL; unaligned EINVAL (minimum block 512); oversized write payloads
/// close the connection; oversized reads EINVAL (EOVERFLOW with structured replies).
fn expect(kind: u16, flags: u16, off: u64, len: u32, structured: bool) -> Expect {
    if kind == cmd::WRITE && len > MAX_PAYLOAD {
        return Expect::Close;
    }
    let allowed = match kind {
        cmd::READ | cmd::WRITE | cmd::FLUSH | cmd::TRIM => cflag::FUA,
        cmd::WRITE_ZEROES => cflag::FUA | cflag::NO_HOLE,
        cmd::DISC => return Expect::Disc,
        _ => return Expect::Reply(errno::EINVAL),
    };
    if flags & !allowed != 0 {
        return Expect::Reply(errno::EINVAL);
    }
    if kind == cmd::FLUSH {
        return Expect::Reply(0);
    }
    if kind == cmd::READ && len > MAX_PAYLOAD {
        return Expect::Reply(if structured {
            errno::EOVERFLOW
        } else {
            errno::EINVAL
        });
    }
    let past_end = off.checked_add(u64::from(len)).is_none_or(|e| e > SIZE);
    if past_end {
        let e = if matches!(kind, cmd::WRITE | cmd::WRITE_ZEROES) {
            errno::ENOSPC
        } else {
            errno::EINVAL
        };
        return Expect::Reply(e);
    }
    if !off.is_multiple_of(512) || !len.is_multiple_of(512) {
        return Expect::Reply(errno::EINVAL);
    }
    Expect::Reply(0)
}

fn random_request(rng: &mut StdRng) -> (u16, u16, u64, u32) {
    let kind = match rng.gen_range(0..100) {
        0..=29 => cmd::READ,
        30..=59 => cmd::WRITE,
        60..=66 => cmd::FLUSH,
        67..=74 => cmd::TRIM,
        75..=84 => cmd::WRITE_ZEROES,
        85..=89 => cmd::CACHE,
        90..=93 => cmd::BLOCK_STATUS,
        _ => rng.gen(),
    };
    let kind = if kind == cmd::DISC { cmd::READ } else { kind };
    let flags = match rng.gen_range(0..10) {
        0..=5 => 0,
        6 => cflag::FUA,
        7 => cflag::NO_HOLE,
        8 => 1 << rng.gen_range(0..16),
        _ => rng.gen(),
    };
    let len: u32 = match rng.gen_range(0..20) {
        0 => 0,
        1 => rng.gen_range(1..4096),
        2 => u32::MAX,
        3 if kind != cmd::WRITE => rng.gen(),
        4 => MAX_PAYLOAD,
        5 if kind != cmd::WRITE => MAX_PAYLOAD + 512,
        6 => 512 * rng.gen_range(1..2048),
        _ => 512 * rng.gen_range(1..64),
    };
    // Large write payloads are costly to send: keep them rare.
    let len = if kind == cmd::WRITE && len > (1 << 20) && rng.gen_range(0..50) != 0 {
        4096
    } else {
        len
    };
    let off: u64 = match rng.gen_range(0..12) {
        0 => SIZE,
        1 => SIZE.saturating_sub(u64::from(len)) + 512 * rng.gen_range(0..4),
        2 => u64::MAX - rng.gen_range(0..4096),
        3 => rng.gen(),
        4 => rng.gen_range(0..SIZE),
        _ => 512 * rng.gen_range(0..SIZE / 512),
    };
    (kind, flags, off, len)
}

fn connect(sock: &Path, export: &str, structured: bool) -> Client {
    let mut c = Client::unix(sock, export, structured).expect("connecting to the server");
    c.raw().set_read_timeout(Some(TIMEOUT)).unwrap();
    c
}

/// After a violation the server must close: reads end in EOF (or a reset), never hang.
/// A raw request header at offset 0 (flags 0, cookie 1), for violations written byte by byte.
fn request_header(kind: u16, length: u32) -> [u8; xio::nbd::proto::REQUEST_LEN] {
    xio::nbd::proto::Request {
        flags: 0,
        kind,
        cookie: 1,
        offset: 0,
        length,
    }
    .encode()
}

fn assert_closed(c: &mut Client, what: &str) {
    let mut b = [0u8; 64];
    match c.raw().read(&mut b) {
        Ok(0) => {}
        Ok(_) => panic!("server sent data after {what} instead of closing"),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("server did not close after {what}: {e}"),
    }
}

struct Tally {
    requests: AtomicU64,
    violations: AtomicU64,
}

/// One fuzz session: batches of random requests with replies checked against the oracle,
/// ended by a random terminal event.
fn session(sock: &Path, rng: &mut StdRng, tally: &Tally, budget: u64) {
    let structured = rng.gen_bool(0.5);
    let mut c = connect(sock, "fuzz", structured);
    let mut payload = vec![0u8; 64 << 10];
    rng.fill(&mut payload[..]);
    let mut sent = 0u64;
    while sent < budget {
        let batch = rng.gen_range(1..=32);
        let mut want = std::collections::HashMap::new();
        // Like real clients, never have more than a socket buffer's worth of payload and reply
        // data outstanding: a client that neither reads nor lets the server read would block
        // both sides (the server then only drops it at its write timeout).
        let mut outstanding = 0u64;
        for _ in 0..batch {
            let (kind, flags, off, len) = random_request(rng);
            let e = expect(kind, flags, off, len, structured);
            if e == Expect::Close {
                continue; // terminal events are sent below
            }
            let bytes = match (kind, e) {
                (cmd::WRITE, _) | (cmd::READ, Expect::Reply(0)) => u64::from(len),
                _ => 0,
            };
            if outstanding > 0 && outstanding + bytes > 96 << 10 {
                break;
            }
            outstanding += bytes;
            let cookie = if kind == cmd::WRITE {
                if payload.len() < len as usize {
                    payload.resize(len as usize, 0x5a);
                }
                c.send(kind, flags, off, Payload::Data(&payload[..len as usize]))
                    .unwrap()
            } else {
                c.send(kind, flags, off, Payload::Len(len)).unwrap()
            };
            want.insert(cookie, (e, kind, len));
            sent += 1;
        }
        for _ in 0..want.len() {
            let r = c
                .recv()
                .unwrap_or_else(|e| panic!("server failed to reply: {e}"));
            let (e, kind, len) = want
                .remove(&r.cookie)
                .expect("reply for a cookie not in flight");
            assert_eq!(
                Expect::Reply(r.error),
                e,
                "cmd {kind} len {len}: wrong reply"
            );
            if kind == cmd::READ && r.error == 0 && len > 0 {
                assert_eq!(r.data.len(), len as usize, "short read reply");
            }
        }
    }
    tally.requests.fetch_add(sent, Ordering::Relaxed);
    // Terminal event.
    match rng.gen_range(0..7) {
        0 => c.disconnect().unwrap(),
        1 => {
            let mut h = request_header(cmd::READ, 512);
            let i = rng.gen_range(0..4);
            h[i] ^= 1 << rng.gen_range(0..8);
            c.raw().write_all(&h).unwrap();
            assert_closed(&mut c, "a bad request magic");
            tally.violations.fetch_add(1, Ordering::Relaxed);
        }
        2 => {
            let h = request_header(cmd::WRITE, rng.gen_range(MAX_PAYLOAD + 1..=u32::MAX));
            c.raw().write_all(&h).unwrap();
            assert_closed(&mut c, "an oversized write");
            tally.violations.fetch_add(1, Ordering::Relaxed);
        }
        3 => {
            let h = request_header(cmd::READ, 512);
            let cut = rng.gen_range(1..h.len());
            c.raw().write_all(&h[..cut]).unwrap();
            c.raw().shutdown(Shutdown::Write);
            assert_closed(&mut c, "a truncated header");
            tally.violations.fetch_add(1, Ordering::Relaxed);
        }
        4 => {
            let h = request_header(cmd::WRITE, 8192);
            c.raw().write_all(&h).unwrap();
            c.raw()
                .write_all(&payload[..rng.gen_range(0..8192)])
                .unwrap();
            c.raw().shutdown(Shutdown::Write);
            assert_closed(&mut c, "a truncated write payload");
            tally.violations.fetch_add(1, Ordering::Relaxed);
        }
        5 => {
            // Vanish with requests in flight.
            for i in 0..rng.gen_range(1..8u64) {
                let _ = c.send(cmd::WRITE, 0, i * 4096, Payload::Data(&payload[..4096]));
                let _ = c.send(cmd::READ, 0, i * 4096, Payload::Len(65536));
            }
        }
        _ => {
            // Random garbage instead of a request header.
            let mut g = vec![0u8; rng.gen_range(28..200)];
            rng.fill(&mut g[..]);
            g[0] = 0xff; // never the request magic
            c.raw().write_all(&g).unwrap();
            assert_closed(&mut c, "garbage");
            tally.violations.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Garbage during the handshake: random options (answered with errors, the next one still
/// parses), then a random way to end.
fn handshake_session(sock: &Path, rng: &mut StdRng) {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).unwrap();
    if rng.gen_bool(0.2) {
        s.write_all(&(rng.gen::<u32>() | 4).to_be_bytes()).unwrap(); // unknown client flag
        let mut b = [0u8; 1];
        assert!(
            matches!(s.read(&mut b), Ok(0) | Err(_)),
            "server accepted unknown client flags"
        );
        return;
    }
    s.write_all(&3u32.to_be_bytes()).unwrap();
    for _ in 0..rng.gen_range(1..20) {
        let option: u32 = match rng.gen_range(0..4) {
            0 => 9, // LIST_META_CONTEXT
            1 => rng.gen_range(11..1000),
            2 => 6, // INFO with random data
            _ => rng.gen(),
        };
        let option = if matches!(option, 1 | 2 | 3 | 7 | 8) {
            4
        } else {
            option
        };
        let mut data = vec![0u8; rng.gen_range(0..300)];
        rng.fill(&mut data[..]);
        let mut m = 0x4948_4156_454F_5054u64.to_be_bytes().to_vec();
        m.extend_from_slice(&option.to_be_bytes());
        m.extend_from_slice(&(data.len() as u32).to_be_bytes());
        m.extend_from_slice(&data);
        s.write_all(&m).unwrap();
        let mut r = [0u8; 20];
        s.read_exact(&mut r).unwrap();
        assert_eq!(&r[0..8], &0x0003_e889_0455_65a9u64.to_be_bytes());
        assert_eq!(u32::from_be_bytes(r[8..12].try_into().unwrap()), option);
        let kind = u32::from_be_bytes(r[12..16].try_into().unwrap());
        assert!(
            kind & 0x8000_0000 != 0,
            "option {option} with random data must be refused"
        );
        let mut rest = vec![0u8; u32::from_be_bytes(r[16..20].try_into().unwrap()) as usize];
        s.read_exact(&mut rest).unwrap();
    }
    if rng.gen_bool(0.5) {
        s.write_all(&rng.gen::<u64>().to_be_bytes()).unwrap(); // bad option magic
        s.write_all(&[0u8; 8]).unwrap();
        let mut b = [0u8; 1];
        assert!(
            matches!(s.read(&mut b), Ok(0) | Err(_)),
            "server accepted a bad option magic"
        );
    }
}

/// A well-behaved client on its own export, verifying everything it reads.
fn good_client(sock: PathBuf, stop: Arc<AtomicBool>) -> u64 {
    let mut c = connect(&sock, "good", true);
    let mut model = vec![0u8; 1 << 20];
    let mut rng = StdRng::seed_from_u64(7);
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) || rounds < 10 {
        let off = 4096 * rng.gen_range(0..255u64);
        let data: Vec<u8> = (0..4096).map(|_| rng.gen()).collect();
        assert_eq!(c.write(off, &data).unwrap(), 0);
        model[off as usize..off as usize + 4096].copy_from_slice(&data);
        let roff = 4096 * rng.gen_range(0..240u64);
        let got = c.read(roff, 65536).unwrap().expect("good read failed");
        assert_eq!(
            got,
            &model[roff as usize..roff as usize + 65536],
            "good client read wrong data"
        );
        rounds += 1;
    }
    c.disconnect().unwrap();
    rounds
}

#[test]
fn hundred_thousand_malformed_requests_do_not_hurt_the_server() {
    let long = std::env::var("MARS_LONG_TESTS").is_ok_and(|v| v == "1");
    let total: u64 = if long { 1_000_000 } else { 100_000 };
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fuzz.sock");
    let server = NbdServer::new(ServerConfig {
        max_inflight: 16,
        ..ServerConfig::default()
    });
    let fuzz = MemDisk::new("fuzz", SIZE as usize, MemDiskMode::Threaded(3));
    let good = MemDisk::new("good", 1 << 20, MemDiskMode::Threaded(2));
    server
        .add_export(Export::new("fuzz", fuzz).unwrap().multi_conn(true))
        .unwrap();
    server
        .add_export(Export::new("good", good).unwrap())
        .unwrap();
    server.listen_unix(&sock).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let good = {
        let (sock, stop) = (sock.clone(), stop.clone());
        std::thread::spawn(move || good_client(sock, stop))
    };
    let tally = Arc::new(Tally {
        requests: AtomicU64::new(0),
        violations: AtomicU64::new(0),
    });
    let workers: Vec<_> = (0..2u64)
        .map(|w| {
            let (sock, tally) = (sock.clone(), tally.clone());
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(0x5eed + w);
                let mut sessions = 0u64;
                while tally.requests.load(Ordering::Relaxed) < total {
                    if rng.gen_range(0..8) == 0 {
                        handshake_session(&sock, &mut rng);
                    } else {
                        let budget = rng.gen_range(1..600);
                        session(&sock, &mut rng, &tally, budget);
                    }
                    sessions += 1;
                }
                sessions
            })
        })
        .collect();
    let sessions: u64 = workers
        .into_iter()
        .map(|w| w.join().expect("fuzz worker panicked"))
        .sum();
    stop.store(true, Ordering::Relaxed);
    let rounds = good
        .join()
        .expect("the good client failed while the server was being fuzzed");
    assert!(rounds >= 10);
    let requests = tally.requests.load(Ordering::Relaxed);
    assert!(requests >= total, "only {requests} requests sent");
    // The server counted every closed-for-cause connection, and still serves new clients.
    let stats = server.stats();
    assert!(
        stats.violations >= tally.violations.load(Ordering::Relaxed),
        "{stats:?}"
    );
    assert!(stats.refused > requests / 4, "{stats:?}");
    let mut c = connect(&sock, "fuzz", false);
    assert_eq!(c.write(0, &[1; 4096]).unwrap(), 0);
    assert_eq!(c.read(0, 4096).unwrap().unwrap(), vec![1; 4096]);
    c.disconnect().unwrap();
    eprintln!("{sessions} sessions, {requests} checked requests, {stats:?}");
    assert!(
        server.shutdown(Duration::from_secs(20)),
        "connections left behind"
    );
}
