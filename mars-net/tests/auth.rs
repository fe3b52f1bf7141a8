//! Handshake and authentication: the correct secret is accepted; a wrong secret, no secret, a
//! replayed handshake and a different cluster are refused with a clear log line.

mod common;
use common::*;
use mars_net::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn logs() -> &'static LogCapture {
    static CAP: OnceLock<LogCapture> = OnceLock::new();
    CAP.get_or_init(LogCapture::install)
}

fn wait_refusals(node: &Node, n: u64) {
    let t = Instant::now();
    while node.stats().refused < n && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        node.stats().refused,
        n,
        "refusals: {:?}",
        node.recent_refusals()
    );
}

#[test]
fn correct_secret_is_accepted() {
    let node = echo_node();
    let mut c = connect(node.local_addr(), &cfg("client"), ChannelKind::Meta).unwrap();
    let r = c.request(b"ping".to_vec(), &[1, 2, 3]).unwrap();
    assert_eq!(r.payload, vec![1, 2, 3]);
    assert_eq!(c.peer().node, "server");
    assert_eq!(c.peer().version, ProtocolVersion::V1);
    assert_eq!(node.stats().accepted, 1);
}

#[test]
fn wrong_secret_is_refused_on_both_sides() {
    let log = logs();
    let node = echo_node();
    let mut bad = cfg("intruder");
    bad.secret = Secret::new("some other secret of enough length").unwrap();
    let err = connect(node.local_addr(), &bad, ChannelKind::Meta)
        .err()
        .unwrap();
    // The client checks the server's proof first and refuses it.
    assert!(matches!(err, NetError::AuthFailed { .. }), "{err}");
    assert!(err.to_string().contains("cluster secrets differ"), "{err}");
    wait_refusals(&node, 1);
    assert!(
        node.recent_refusals()[0].contains("refused"),
        "{:?}",
        node.recent_refusals()
    );
    assert!(log.text().contains("refusing server"), "{}", log.text());
    assert!(log.text().contains("refused connection"), "{}", log.text());
}

/// A client without the secret can only send a hello and a made-up proof.
fn raw_client(addr: std::net::SocketAddr, cluster: ClusterId, mac: [u8; 32]) -> Message {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let hello = Hello {
        version: 1,
        cluster,
        node: "nosecret".into(),
        kind: ChannelKind::Meta,
        nonce: [9; 32],
    };
    let lim = Limits::default();
    frame::write_frame(&mut s, &Message::Hello(hello), &[], false, &lim).unwrap();
    let f = frame::read_frame(&mut s, &lim).unwrap();
    if !matches!(f.msg, Message::Challenge(_)) {
        return f.msg;
    }
    frame::write_frame(&mut s, &Message::Proof { mac }, &[], false, &lim).unwrap();
    frame::read_frame(&mut s, &lim).unwrap().msg
}

#[test]
fn no_secret_is_refused() {
    let log = logs();
    let node = echo_node();
    let reply = raw_client(node.local_addr(), CLUSTER, [0; 32]);
    match reply {
        Message::Refused { reason } => assert!(reason.contains("proof does not match"), "{reason}"),
        other => panic!("expected refusal, got {other:?}"),
    }
    wait_refusals(&node, 1);
    assert!(
        log.text().contains("wrong or missing cluster secret"),
        "{}",
        log.text()
    );
}

#[test]
fn other_cluster_is_refused() {
    let log = logs();
    let node = echo_node();
    let mut other = cfg("stranger");
    other.cluster = ClusterId([0x17; 16]);
    let err = connect(node.local_addr(), &other, ChannelKind::Meta)
        .err()
        .unwrap();
    assert!(matches!(err, NetError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("check the cluster uuid"), "{err}");
    wait_refusals(&node, 1);
    assert!(log.text().contains("17171717-1717"), "{}", log.text());
    // And the raw path gets a refusal before any challenge.
    assert!(matches!(
        raw_client(node.local_addr(), ClusterId([1; 16]), [0; 32]),
        Message::Refused { .. }
    ));
}

#[test]
fn replayed_handshake_is_refused() {
    let log = logs();
    let node = echo_node();
    // A recording proxy: captures everything the client sends during a good handshake.
    let rec = TcpListener::bind("127.0.0.1:0").unwrap();
    let rec_addr = rec.local_addr().unwrap();
    let target = node.local_addr();
    let recorder = std::thread::spawn(move || {
        let (mut c, _) = rec.accept().unwrap();
        let mut s = TcpStream::connect(target).unwrap();
        let mut s2 = s.try_clone().unwrap();
        let mut c2 = c.try_clone().unwrap();
        let back = std::thread::spawn(move || {
            let _ = std::io::copy(&mut s2, &mut c2);
        });
        let mut recorded = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    recorded.extend_from_slice(&buf[..n]);
                    s.write_all(&buf[..n]).unwrap();
                }
            }
        }
        let _ = s.shutdown(Shutdown::Both);
        back.join().unwrap();
        recorded
    });
    let conn = connect(rec_addr, &cfg("client"), ChannelKind::Meta).unwrap();
    conn.close("done");
    drop(conn);
    let recorded = recorder.join().unwrap();
    assert!(recorded.len() > 100);
    assert_eq!(node.stats().accepted, 1);
    // Replay the client's bytes verbatim on a new connection.
    let mut s = TcpStream::connect(target).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(&recorded);
    let lim = Limits::default();
    let first = frame::read_frame(&mut s, &lim).unwrap();
    assert!(matches!(first.msg, Message::Challenge(_)));
    let second = frame::read_frame(&mut s, &lim).unwrap();
    assert!(matches!(second.msg, Message::Refused { .. }), "{second:?}");
    wait_refusals(&node, 1);
    assert_eq!(node.stats().accepted, 1);
    assert!(log.text().contains("replayed handshake"), "{}", log.text());
}

#[test]
fn unserved_channel_kind_is_refused() {
    let node = echo_node();
    let err = connect(node.local_addr(), &cfg("c"), ChannelKind::Sync)
        .err()
        .unwrap();
    assert!(err.to_string().contains("serves no sync channel"), "{err}");
}

#[test]
fn short_secret_is_a_config_error() {
    let e = Secret::new("short").unwrap_err();
    assert!(matches!(e, NetError::Config(_)));
    assert!(!format!("{:?}", secret()).contains("horse"));
}
