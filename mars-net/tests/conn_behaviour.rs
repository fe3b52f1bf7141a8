//! Connection behaviour: garbage peers, keepalive, timeouts, large payloads, other peers
//! unaffected, and the fault proxy.

mod common;
use common::*;
use mars_net::fault::{Direction, FaultPlan, FaultProxy};
use mars_net::frame;
use mars_net::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn garbage_peer_is_cut_and_others_keep_working() {
    let node = echo_node();
    let mut good = connect(node.local_addr(), &cfg("good"), ChannelKind::Meta).unwrap();
    // Garbage instead of a hello.
    let mut g = TcpStream::connect(node.local_addr()).unwrap();
    g.write_all(&[0x55; 4096]).unwrap();
    // A huge length claim from a "frame".
    let mut h = TcpStream::connect(node.local_addr()).unwrap();
    let mut hdr = b"MRSF\x01\x00\x00\x00".to_vec();
    hdr.extend_from_slice(&u32::MAX.to_le_bytes());
    hdr.extend_from_slice(&[0; 12]);
    h.write_all(&hdr).unwrap();
    let t = Instant::now();
    while node.stats().refused < 2 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = node.recent_refusals();
    assert!(
        r.iter().any(|s| s.contains("not speaking mars-net")),
        "{r:?}"
    );
    assert!(r.iter().any(|s| s.contains("exceeds the limit")), "{r:?}");
    assert_eq!(
        good.request(b"still".to_vec(), &[]).unwrap().payload.len(),
        0
    );
}

#[test]
fn garbage_after_handshake_disconnects_that_peer_only() {
    let node = echo_node();
    let mut good = connect(node.local_addr(), &cfg("good"), ChannelKind::Meta).unwrap();
    // Authenticate through a proxy that corrupts a byte after the handshake.
    let proxy = FaultProxy::start(
        node.local_addr(),
        FaultPlan {
            corrupt_at: Some((Direction::ToServer, 400)),
            ..Default::default()
        },
    )
    .unwrap();
    let mut bad = connect(proxy.addr(), &cfg("bad"), ChannelKind::Meta).unwrap();
    let err = bad.request(vec![0; 500], &[]).err().unwrap();
    assert!(err.is_retryable(), "{err}");
    assert!(good.request(b"ok".to_vec(), &[]).is_ok());
}

#[test]
fn big_payloads_and_compression() {
    let node = echo_node();
    let mut c = cfg("c");
    c.compress = true;
    let mut conn = connect(node.local_addr(), &c, ChannelKind::Meta).unwrap();
    let data: Vec<u8> = (0..(8 << 20)).map(|i: u32| (i / 1000) as u8).collect();
    let r = conn.request(vec![], &data).unwrap();
    assert_eq!(r.payload, data);
    assert!(conn.sender().sent_bytes() < data.len() as u64 / 4);
}

#[test]
fn keepalive_keeps_an_idle_connection_and_silence_kills_it() {
    let node = echo_node();
    let mut c = cfg("c");
    c.keepalive = Duration::from_millis(50);
    c.dead_after = Duration::from_millis(400);
    let mut conn = connect(node.local_addr(), &c, ChannelKind::Meta).unwrap();
    // An idle receiver on our side pings; the server answers: nothing dies for a while.
    let sender = conn.sender();
    let waiter = std::thread::spawn(move || conn.recv().map(|f| f.msg));
    // Wait for the event "10 pings sent": pings go out at least `keepalive` apart and only
    // after `keepalive` of silence, so the connection has been idle for at least 500 ms, longer
    // than `dead_after`: only the pongs can have kept it alive.
    let ping = frame::write_frame(
        &mut Vec::new(),
        &Message::Ping { seq: 1 },
        &[],
        c.compress,
        &Limits::default(),
    )
    .unwrap() as u64;
    let before = sender.sent_bytes();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sender.sent_bytes() < before + 10 * ping {
        assert!(
            !waiter.is_finished(),
            "the idle connection died: {:?}",
            waiter.join().unwrap()
        );
        assert!(Instant::now() < deadline, "the idle receiver sent no pings");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!waiter.is_finished(), "the idle connection died");
    sender.notify(b"x".to_vec(), &[]).unwrap(); // the echo node ignores notifies
    sender.request(9, b"wake".to_vec(), &[]).unwrap();
    assert_eq!(
        waiter.join().unwrap().unwrap(),
        Message::Reply {
            id: 9,
            body: b"wake".to_vec()
        }
    );

    // A silent server (accepts, handshakes, never reads again) is declared dead: a timeout,
    // not the close (the handler holds the connection until the end of the test).
    let (_hold, held) = crossbeam_channel::bounded::<()>(0);
    let h = Handlers::new().on(ChannelKind::Rpc, move |conn: Connection| {
        let _ = held.recv_timeout(Duration::from_secs(60));
        drop(conn);
    });
    let mute = Node::listen("127.0.0.1:0", cfg("mute"), h).unwrap();
    let mut conn = connect(mute.local_addr(), &c, ChannelKind::Rpc).unwrap();
    let e = conn.recv().err().unwrap();
    assert!(matches!(e, NetError::Timeout { .. }), "{e}");
}

/// Debug-level tracing of the current thread, captured (connect_retry says when it retries).
fn capture_debug() -> (LogCapture, tracing::subscriber::DefaultGuard) {
    let cap = LogCapture::default();
    let c2 = cap.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || c2.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    (cap, tracing::subscriber::set_default(sub))
}

#[test]
fn connect_retry_waits_for_a_late_server() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let (logs, _guard) = capture_debug();
    // The server starts only after the client's first attempt was refused (the event is the
    // client's "retrying" line), so success proves a retry.
    let starter = {
        let logs = logs.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !logs.text().contains("retrying") {
                assert!(Instant::now() < deadline, "the client never retried");
                std::thread::sleep(Duration::from_millis(5));
            }
            let h = Handlers::new().on(ChannelKind::Rpc, |c: Connection| drop(c));
            Node::listen(addr, cfg("late"), h).unwrap()
        })
    };
    let mut b = Backoff::new(Duration::from_millis(20), Duration::from_millis(100));
    let c = connect_retry(
        addr,
        &cfg("c"),
        ChannelKind::Rpc,
        &mut b,
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(c.peer().node, "late");
    let _node = starter.join().unwrap();
    // Authentication errors are not retried.
    let mut bad = cfg("c");
    bad.secret = Secret::new("another secret entirely, long").unwrap();
    logs.0.lock().clear();
    let e = connect_retry(
        addr,
        &bad,
        ChannelKind::Rpc,
        &mut b,
        Duration::from_secs(10),
    )
    .err()
    .unwrap();
    assert!(!e.is_retryable(), "{e}");
    assert!(!logs.text().contains("retrying"), "{}", logs.text());
}

#[test]
fn fault_proxy_drop_after_and_bandwidth_cap() {
    let node = echo_node();
    let proxy = FaultProxy::start(
        node.local_addr(),
        FaultPlan {
            drop_after: Some((Direction::ToClient, 100_000)),
            ..Default::default()
        },
    )
    .unwrap();
    let mut conn = connect(proxy.addr(), &cfg("c"), ChannelKind::Meta).unwrap();
    let e = conn.request(vec![], &vec![1u8; 300_000]).err().unwrap();
    assert!(e.is_retryable(), "{e}");

    // Bandwidth cap: 2 MB/s, 1 MB of echo must take at least ~0.4 s per direction.
    proxy.set_plan(FaultPlan {
        bytes_per_sec: 2_000_000,
        ..Default::default()
    });
    let mut conn = connect(proxy.addr(), &cfg("c"), ChannelKind::Meta).unwrap();
    let t = Instant::now();
    let r = conn.request(vec![], &vec![3u8; 1_000_000]).unwrap();
    assert_eq!(r.payload.len(), 1_000_000);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );

    // Link down: new connections fail until it is up again.
    proxy.set_down(true);
    assert!(conn.request(vec![], &[]).is_err());
    assert!(connect(proxy.addr(), &cfg("c"), ChannelKind::Meta).is_err());
    proxy.set_down(false);
    proxy.set_plan(FaultPlan::default());
    let mut conn = connect(proxy.addr(), &cfg("c"), ChannelKind::Meta).unwrap();
    assert!(conn.request(vec![], &[]).is_ok());
}
