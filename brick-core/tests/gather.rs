//! Gather writes (`Output::write_gather`, `brick_core::write_gather`): an output's own gather
//! write is used through an `Input`; an output without one gets a copy through `submit`, in
//! pieces where its `prepare` shortens requests.

use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::{Aio, Error, Info, Input, Output, Rejected, Result};
use parking_lot::Mutex;
use std::io::IoSlice;
use std::sync::Arc;

/// An output with a gather write that records the pieces it got (and no other IO).
#[derive(Default)]
struct Gathering {
    calls: Mutex<Vec<(u64, Vec<Vec<u8>>)>>,
}

impl Output for Gathering {
    fn info(&self) -> Result<Info> {
        Ok(Info::new(1 << 20))
    }
    fn submit(&self, req: Box<Aio>) -> std::result::Result<(), Rejected> {
        Err(Rejected::new(
            req,
            Error::Invalid("only gather writes here"),
        ))
    }
    fn write_gather(&self, pos: u64, bufs: &[IoSlice<'_>]) -> Option<Result<()>> {
        let pieces = bufs.iter().map(|b| b.to_vec()).collect();
        self.calls.lock().push((pos, pieces));
        Some(Ok(()))
    }
}

#[test]
fn an_input_forwards_a_gather_write_to_its_output() {
    let (a, b) = (b"head".to_vec(), vec![7u8; 300]);
    let bufs = [IoSlice::new(&a), IoSlice::new(&b)];
    let out = Arc::new(Gathering::default());
    let input = Input::connected("log", out.clone());
    input.write_gather(512, &bufs).unwrap().unwrap();
    assert_eq!(*out.calls.lock(), vec![(512, vec![a.clone(), b.clone()])]);
    assert_eq!(input.inflight(), 0, "the write left the connection");
    // Rewired to an output without a gather write: the caller is told to copy.
    let disk = MemDisk::new("d", 4096, MemDiskMode::Inline);
    let drain = input.rewire(disk).unwrap();
    assert_eq!(drain.inflight(), 0);
    assert!(input.write_gather(0, &bufs).is_none());
    drop(input.disconnect());
    match input.write_gather(0, &bufs) {
        Some(Err(Error::NotConnected { .. })) => {}
        other => panic!("expected NotConnected, got {other:?}"),
    }
}

#[test]
fn without_a_gather_write_the_pieces_are_written_as_a_copy() {
    let pieces: Vec<Vec<u8>> = (0..20u8)
        .map(|i| vec![i + 1; 1 + i as usize * 13])
        .collect();
    let bufs: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
    let want = pieces.concat();
    // Whole, and in pieces where `prepare` shortens requests at every 256 bytes.
    for boundary in [0, 256] {
        let disk = MemDisk::with_boundary("d", 8192, MemDiskMode::Inline, boundary);
        brick_core::write_gather(&*disk, 100, &bufs).unwrap();
        let got = brick_core::read_all(&*disk, 100, want.len()).unwrap();
        assert!(got == want, "boundary {boundary}");
    }
}
