//! Fuzz of the frame decoder: arbitrary bytes (and mutated valid frames) never panic and never
//! make the decoder allocate more than the limits. A counting global allocator records the
//! largest single allocation. 10^5 cases by default (fast); 10^6 with `MARS_LONG_TESTS=1`.

// The only unsafe here: a test-only counting allocator that forwards to `System`; there is no
// safe way to observe allocation sizes.
#![allow(unsafe_code)]

use mars_net::frame::{self, Limits};
use mars_net::*;
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: forwarding the caller's layout unchanged to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` was allocated by `System` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Ordering::Relaxed);
        // SAFETY: `p`/`l` come from this allocator; forwarded unchanged.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const LIMITS: Limits = Limits {
    max_control: 4096,
    max_payload: 8192,
};

fn cases() -> u32 {
    if std::env::var_os("MARS_LONG_TESTS").is_some() {
        1_000_000
    } else {
        100_000
    }
}

fn valid() -> Vec<u8> {
    let mut v = Vec::new();
    frame::write_frame(
        &mut v,
        &Message::Request {
            id: 77,
            body: vec![1; 20],
        },
        &[5u8; 700],
        true,
        &LIMITS,
    )
    .unwrap();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decoder_survives_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200), hdr in any::<[u8; 24]>(), use_hdr: bool) {
        // Either pure noise or a noisy header (so that length fields take every value).
        let mut input = Vec::new();
        if use_hdr {
            input.extend_from_slice(b"MRSF");
            input.extend_from_slice(&hdr[4..]);
            input[4] = 1;
        }
        input.extend_from_slice(&bytes);
        let before = LARGEST.swap(0, Ordering::Relaxed);
        let _ = frame::read_frame(&mut &input[..], &LIMITS);
        let largest = LARGEST.swap(before, Ordering::Relaxed);
        // proptest's own bookkeeping stays far below this.
        prop_assert!(largest <= (LIMITS.max_payload as usize).max(64 << 10), "allocated {largest}");
    }

    #[test]
    fn mutated_valid_frames_do_not_panic(pos in 0usize..800, val: u8, cut in 0usize..800) {
        let mut v = valid();
        let p = pos % v.len();
        v[p] = val;
        v.truncate(cut.max(1).min(v.len()));
        let _ = frame::read_frame(&mut &v[..], &LIMITS);
    }
}
