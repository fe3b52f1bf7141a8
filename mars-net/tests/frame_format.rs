//! Wire format golden fixtures (see `mars-net/FORMAT.md`) and round trips.

use mars_net::frame::{self, Header, Limits, HEADER_LEN, MAGIC};
use mars_net::*;
use proptest::prelude::*;

fn enc(msg: &Message, payload: &[u8], compress: bool) -> Vec<u8> {
    let mut v = Vec::new();
    frame::write_frame(&mut v, msg, payload, compress, &Limits::default()).unwrap();
    v
}

#[test]
fn fixture_ping() {
    // Ping{seq: 5}: variant index 5, varint 5.
    let b = enc(&Message::Ping { seq: 5 }, &[], false);
    let expected: [u8; 26] = [
        b'M', b'R', b'S', b'F', // magic
        1, 0, 0, 0, // frame version, flags, reserved
        2, 0, 0, 0, // control length
        0, 0, 0, 0, // payload length
        0, 0, 0, 0, // raw payload length
        0x8a, 0x94, 0xc2, 0x6d, // crc32c (checked with an independent implementation)
        5, 5, // postcard: variant 5 (Ping), seq 5
    ];
    assert_eq!(b, expected, "{b:02x?}");
    assert_eq!(&b[0..4], &MAGIC.to_le_bytes());
}

#[test]
fn fixture_request_with_payload() {
    let b = enc(
        &Message::Request {
            id: 300,
            body: vec![0xaa, 0xbb],
        },
        b"xyz",
        false,
    );
    let expected: Vec<u8> = vec![
        b'M', b'R', b'S', b'F', 1, 0, 0, 0, //
        6, 0, 0, 0, // control: 6 bytes
        3, 0, 0, 0, 3, 0, 0, 0, // payload 3, raw 3
        0x0d, 0x28, 0x1b, 0x97, // crc32c
        7, 0xac, 0x02, 2, 0xaa, 0xbb, // Request(7), id 300 varint, body len 2, body
        b'x', b'y', b'z',
    ];
    assert_eq!(b, expected, "{b:02x?}");
}

#[test]
fn fixture_hello() {
    let hello = Hello {
        version: 1,
        cluster: ClusterId([1; 16]),
        node: "a".into(),
        kind: ChannelKind::Fetch,
        nonce: [2; 32],
    };
    let b = enc(&Message::Hello(hello), &[], false);
    let mut ctrl = vec![0u8, 1]; // variant Hello, version 1
    ctrl.extend([1u8; 16]); // cluster
    ctrl.extend([1, b'a']); // node
    ctrl.push(1); // kind Fetch
    ctrl.extend([2u8; 32]); // nonce
    assert_eq!(&b[HEADER_LEN..], &ctrl[..]);
    assert_eq!(
        u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize,
        ctrl.len()
    );
}

#[test]
fn compressed_payload_roundtrip_and_flag() {
    let payload = vec![7u8; 100_000];
    let b = enc(&Message::Notify { body: vec![] }, &payload, true);
    assert_eq!(b[5], frame::FLAG_LZ4);
    assert!(b.len() < 2000);
    let f = frame::read_frame(&mut &b[..], &Limits::default()).unwrap();
    assert_eq!(f.payload, payload);
    // Incompressible data goes uncompressed.
    let mut x = 0x9e3779b97f4a7c15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let b = enc(&Message::Notify { body: vec![] }, &noise, true);
    assert_eq!(b[5] & frame::FLAG_LZ4, 0);
}

#[test]
fn limits_are_checked_before_reading() {
    let lim = Limits {
        max_control: 100,
        max_payload: 1000,
    };
    let b = enc(&Message::Notify { body: vec![] }, &[0u8; 2000], false);
    let hb: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
    assert!(matches!(
        Header::parse(&hb, &lim),
        Err(NetError::FrameTooLarge {
            what: "payload",
            ..
        })
    ));
    // Sending is bounded by the same limits.
    let mut sink = Vec::new();
    let e = frame::write_frame(
        &mut sink,
        &Message::Notify { body: vec![0; 200] },
        &[],
        false,
        &lim,
    );
    assert!(matches!(
        e,
        Err(NetError::FrameTooLarge {
            what: "control",
            ..
        })
    ));
}

#[test]
fn corrupt_byte_is_detected() {
    let b = enc(
        &Message::Request {
            id: 1,
            body: vec![1, 2, 3],
        },
        b"payload bytes",
        false,
    );
    for i in 0..b.len() {
        let mut c = b.clone();
        c[i] ^= 0x10;
        assert!(
            frame::read_frame(&mut &c[..], &Limits::default()).is_err(),
            "flip at {i} undetected"
        );
    }
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<u64>().prop_map(|seq| Message::Ping { seq }),
        any::<u64>().prop_map(|seq| Message::Pong { seq }),
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(id, body)| Message::Request { id, body }),
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(id, body)| Message::Reply { id, body }),
        ".{0,40}".prop_map(|reason| Message::Close { reason }),
        Just(Message::Welcome),
    ]
}

proptest! {
    #[test]
    fn roundtrip(msg in arb_message(), payload in proptest::collection::vec(any::<u8>(), 0..3000), compress: bool) {
        let b = enc(&msg, &payload, compress);
        let f = frame::read_frame(&mut &b[..], &Limits::default()).unwrap();
        prop_assert_eq!(f.msg, msg);
        prop_assert_eq!(f.payload, payload);
    }
}
