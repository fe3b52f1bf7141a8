//! Brick-core's claim, measured: a request recycled through an [`AioPool`] passes a chain of 5
//! `Probe` bricks over an Inline `MemDisk` and comes back **without a single heap allocation**
//! in steady state (aspects, hook stacks and data buffers all survive recycling).
//!
//! A counting `#[global_allocator]` counts allocations made on the measuring thread only, so
//! the test harness's own threads do not disturb the figure.

// A global allocator cannot be written without `unsafe`; it only forwards to `System`.
#![allow(unsafe_code)]

use brick_core::bricks::{MemDisk, MemDiskMode, Probe};
use brick_core::{Aio, AioPool, Brick, Completer, Op, Output};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Mutex};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
            let _ = BYTES.try_with(|b| b.set(b.get() + size as u64));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Completion lands in a pre-allocated slot (a channel would allocate its own blocks).
struct Park(Mutex<Option<Box<Aio>>>);

impl Completer for Park {
    fn complete(&self, req: Box<Aio>) {
        *self.0.lock().unwrap() = Some(req);
    }
}

/// Allocations and bytes made on this thread while `f` runs.
fn measure(f: impl FnOnce()) -> (u64, u64) {
    ALLOCS.with(|a| a.set(0));
    BYTES.with(|b| b.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    (ALLOCS.with(Cell::get), BYTES.with(Cell::get))
}

#[test]
fn five_probe_chain_allocates_nothing_per_request() {
    let disk = MemDisk::new("disk", 1 << 20, MemDiskMode::Inline);
    let mut top: Arc<dyn Output> = disk.clone();
    let mut probes = Vec::new();
    for i in 0..5 {
        let p = Probe::new(format!("probe{i}"), top);
        probes.push(p.clone());
        top = p;
    }
    let pool = AioPool::new(4);
    let park: Arc<Park> = Arc::new(Park(Mutex::new(None)));
    let hook: Arc<dyn Completer> = park.clone();
    let payload = vec![0xabu8; 4096];

    let one = |i: u64| {
        let op = if i & 1 == 0 { Op::Write } else { Op::Read };
        let pos = (i * 4096) % (1 << 20);
        let mut req = pool.get(op, pos, 4096);
        if op == Op::Write {
            req.data.extend_from_slice(&payload);
        }
        req.push_hook(hook.clone());
        top.submit(req).expect("accepted");
        let done = park
            .0
            .lock()
            .unwrap()
            .take()
            .expect("Inline completes in submit");
        assert!(done.error.is_none());
        pool.put(done);
    };

    // Warm-up: the pool fills, aspect tables and hook stacks reach their size.
    for i in 0..64 {
        one(i);
    }
    let n = 10_000;
    let (allocs, bytes) = measure(|| {
        for i in 0..n {
            one(i);
        }
    });
    eprintln!(
        "5-probe chain over Inline MemDisk: {allocs} allocations, {bytes} bytes in {n} requests"
    );
    assert_eq!(allocs, 0, "allocations per request in steady state");
    assert_eq!(bytes, 0);
    for p in &probes {
        assert_eq!(p.stats().completed, 64 + n);
    }
}

#[test]
fn the_counter_sees_allocations() {
    // Guard against a counter that cannot fail: a fresh request does allocate.
    let (allocs, bytes) = measure(|| drop(Aio::new(Op::Read, 0, 1)));
    assert!(allocs >= 1 && bytes > 0, "{allocs} {bytes}");
}
