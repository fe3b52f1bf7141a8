//! A request through a chain of bricks: private aspects, LIFO completion, error propagation,
//! `prepare` shortening and rejection on an unconnected input.

use brick_core::bricks::{MemDisk, MemDiskMode, Probe};
use brick_core::prelude::*;
use parking_lot::Mutex;
use std::sync::Arc;

/// Aspect of a `Tagger`: which brick instance wrote it, and how often it was reset to default.
#[derive(Default, Debug)]
struct TagAspect {
    owner: u32,
    touched: u32,
}
impl Aspect for TagAspect {}

struct TagCore {
    id: u32,
    slot: Slot<TagAspect>,
    log: Arc<Mutex<Vec<String>>>,
    rewrite_error: bool,
}

impl Completer for TagCore {
    fn complete(&self, mut req: Box<Aio>) {
        let a = req.aspect(&self.slot);
        // Only this brick ever wrote this aspect.
        assert_eq!(
            a.owner, self.id,
            "aspect of brick {} was touched by another",
            self.id
        );
        assert_eq!(a.touched, 1);
        self.log.lock().push(format!(
            "complete {} err={}",
            self.id,
            req.error.as_ref().map_or("none".into(), |e| e.to_string())
        ));
        if self.rewrite_error && req.error.is_some() {
            req.error = Some(Error::Invalid("rewritten by a hook"));
        }
        req.complete();
    }
}

/// Test brick: stamps its own aspect on the way down and checks it on the way up.
struct Tagger {
    core: Arc<TagCore>,
    input: Input,
}

impl Tagger {
    fn new(id: u32, below: Arc<dyn Output>, log: Arc<Mutex<Vec<String>>>) -> Arc<Self> {
        Self::with(id, below, log, false)
    }
    fn with(
        id: u32,
        below: Arc<dyn Output>,
        log: Arc<Mutex<Vec<String>>>,
        rewrite: bool,
    ) -> Arc<Self> {
        Arc::new(Tagger {
            core: Arc::new(TagCore {
                id,
                slot: Slot::new(),
                log,
                rewrite_error: rewrite,
            }),
            input: Input::connected(format!("tagger-{id}"), below),
        })
    }
}

impl Output for Tagger {
    fn info(&self) -> Result<Info> {
        self.input.info()
    }
    fn prepare(&self, req: &mut Aio) -> Result<()> {
        self.input.prepare(req)
    }
    fn submit(&self, mut req: Box<Aio>) -> Result<(), Rejected> {
        let a = req.aspect(&self.core.slot);
        assert_eq!(
            (a.owner, a.touched),
            (0, 0),
            "aspect must start at its default"
        );
        a.owner = self.core.id;
        a.touched += 1;
        self.core
            .log
            .lock()
            .push(format!("submit {}", self.core.id));
        req.push_hook(self.core.clone());
        self.input.submit(req).map_err(|mut r| {
            r.req.pop_hook();
            r
        })
    }
}

fn chain(n: u32, bottom: Arc<dyn Output>, log: &Arc<Mutex<Vec<String>>>) -> Arc<dyn Output> {
    let mut top = bottom;
    for id in 1..=n {
        top = Tagger::new(id, top, log.clone());
    }
    top
}

#[test]
fn each_of_six_bricks_sees_only_its_own_aspect_and_completion_is_lifo() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let disk = MemDisk::new("disk", 1 << 16, MemDiskMode::Threaded(2));
    let top = chain(6, disk, &log);
    let pool = AioPool::new(4);
    let cq = CompletionQueue::new();
    for round in 0..50u64 {
        log.lock().clear();
        let mut req = pool.get(Op::Write, round * 512, 512);
        req.data.resize(512, round as u8);
        cq.submit(&*top, req).unwrap();
        let done = cq.recv();
        assert!(done.error.is_none());
        let got = log.lock().clone();
        let want: Vec<String> = (1..=6)
            .rev()
            .map(|i| format!("submit {i}"))
            .chain((1..=6).map(|i| format!("complete {i} err=none")))
            .collect();
        assert_eq!(got, want, "round {round}");
        // Recycled requests must see fresh aspects again (checked inside the bricks).
        pool.put(done);
    }
}

#[test]
fn two_instances_of_one_type_have_distinct_slots() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let a = Tagger::new(1, MemDisk::new("d", 4096, MemDiskMode::Inline), log.clone());
    let b = Tagger::new(2, a.clone(), log.clone());
    assert_ne!(a.core.slot.index(), b.core.slot.index());
    brick_core::run(&*b, Aio::read(0, 512)).unwrap();
}

#[test]
fn every_hook_sees_the_terminal_error_and_may_rewrite_it() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let disk = MemDisk::new("disk", 4096, MemDiskMode::Inline);
    let low = Tagger::new(1, disk, log.clone());
    let mid = Tagger::with(2, low, log.clone(), true);
    let top = Tagger::new(3, mid, log.clone());
    // Out of range: the terminal brick completes with an error.
    let done = brick_core::submit_wait(&*top, Aio::read(4000, 512)).unwrap();
    assert_eq!(done.error, Some(Error::Invalid("rewritten by a hook")));
    let got = log.lock().clone();
    assert!(
        got[3].starts_with("complete 1 err=request out of range"),
        "{got:?}"
    );
    assert!(
        got[4].starts_with("complete 2 err=request out of range"),
        "{got:?}"
    );
    assert_eq!(
        got[5],
        "complete 3 err=invalid request: rewritten by a hook"
    );
}

#[test]
fn prepare_shortens_and_callers_loop_over_the_whole_range() {
    let disk = MemDisk::with_boundary("disk", 1 << 20, MemDiskMode::Threaded(3), 4096);
    let top = Probe::new("probe", disk.clone());
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    brick_core::write_all(&*top, 1000, &data).unwrap();
    assert_eq!(brick_core::read_all(&*top, 1000, data.len()).unwrap(), data);
    // 1000..51000 crosses 13 4-KiB boundaries: 13 pieces each way.
    assert_eq!(top.stats().completed, 26);
    let mut req = Aio::read(4000, 8192);
    top.prepare(&mut req).unwrap();
    assert_eq!(
        req.len, 96,
        "shortened to the next boundary, never lengthened"
    );
}

#[test]
fn unconnected_input_hands_the_request_back() {
    let input = Input::new("log2");
    let mut req = Aio::write(42, vec![1, 2, 3]);
    req.tag = 7;
    let rej = input.submit(req).unwrap_err();
    assert_eq!(
        rej.error,
        Error::NotConnected {
            input: "log2".into()
        }
    );
    assert_eq!(
        (rej.req.tag, rej.req.pos, rej.req.data.clone()),
        (7, 42, vec![1, 2, 3])
    );
    assert_eq!(rej.req.hook_depth(), 0, "no hook left behind");
    assert!(rej.error.is_retryable());
}

#[test]
fn rejection_deep_in_a_chain_unwinds_every_hook() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let disk = MemDisk::new("disk", 4096, MemDiskMode::Inline);
    disk.switch(false).unwrap();
    let top = chain(5, disk, &log);
    let rej = top.submit(Aio::read(0, 512)).unwrap_err();
    assert!(matches!(rej.error, Error::Off { .. }));
    assert_eq!(rej.req.hook_depth(), 0);
}

#[test]
fn connecting_twice_is_refused() {
    let d1 = MemDisk::new("d1", 4096, MemDiskMode::Inline);
    let d2 = MemDisk::new("d2", 4096, MemDiskMode::Inline);
    let input = Input::new("data");
    input.connect(d1).unwrap();
    assert!(matches!(
        input.connect(d2),
        Err(Error::AlreadyConnected { .. })
    ));
}
