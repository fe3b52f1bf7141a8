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

/// A disk that takes requests of at most `max` bytes: `prepare` shortens longer ones, and
/// `submit` fails them.
struct Short {
    inner: Arc<MemDisk>,
    max: usize,
}

impl Output for Short {
    fn info(&self) -> Result<Info> {
        self.inner.info()
    }
    fn prepare(&self, req: &mut Aio) -> Result<()> {
        if req.len > self.max {
            req.shorten(self.max);
        }
        Ok(())
    }
    fn submit(&self, req: Box<Aio>) -> std::result::Result<(), Rejected> {
        if req.len > self.max {
            req.finish(Err(Error::Invalid("longer than max: call prepare")));
            return Ok(());
        }
        self.inner.submit(req)
    }
}

#[test]
fn without_a_gather_write_the_pieces_are_written_as_a_copy() {
    let pieces: Vec<Vec<u8>> = (0..20u8)
        .map(|i| vec![i + 1; 1 + i as usize * 13])
        .collect();
    let bufs: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
    let want = pieces.concat();
    // Whole, and in pieces where `prepare` shortens requests to 256 bytes.
    for max in [usize::MAX, 256] {
        let inner = MemDisk::new("d", 8192, MemDiskMode::Inline);
        let disk = Short {
            inner: inner.clone(),
            max,
        };
        brick_core::write_gather(&disk, 100, &bufs).unwrap();
        let got = brick_core::read_all(&*inner, 100, want.len()).unwrap();
        assert!(got == want, "max {max}");
    }
}
