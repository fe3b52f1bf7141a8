//! Hot re-wiring under concurrent load: while several threads submit through an input, a
//! controller keeps swapping its output (and sometimes disconnects it). Every request completes
//! exactly once, none is duplicated, and no request overtakes an earlier one of the same thread.

use brick_core::prelude::*;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Terminal brick that records arrivals and completes on a worker thread after a short delay,
/// so that requests are in flight while the wiring changes.
struct Recorder {
    name: u8,
    arrivals: Arc<Mutex<Vec<(u8, u64)>>>,
    tx: crossbeam_channel::Sender<Box<Aio>>,
}

impl Recorder {
    fn new(name: u8, arrivals: Arc<Mutex<Vec<(u8, u64)>>>) -> Arc<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<Box<Aio>>();
        std::thread::spawn(move || {
            for (i, req) in rx.into_iter().enumerate() {
                if i.is_multiple_of(64) {
                    std::thread::sleep(Duration::from_micros(200));
                }
                req.finish(Ok(()));
            }
        });
        Arc::new(Recorder { name, arrivals, tx })
    }
}

impl Output for Recorder {
    fn info(&self) -> Result<Info> {
        Ok(Info::new(1 << 30))
    }
    fn submit(&self, req: Box<Aio>) -> Result<(), Rejected> {
        // Arrival order is recorded under one lock for all outputs: a global order.
        self.arrivals.lock().push((self.name, req.tag));
        self.tx.send(req).expect("worker alive");
        Ok(())
    }
}

fn run_campaign(seconds: f64, threads: u64, per_thread: u64) {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let outs: Vec<Arc<dyn Output>> = (0..3)
        .map(|i| Recorder::new(i, arrivals.clone()) as Arc<dyn Output>)
        .collect();
    let input = Arc::new(Input::connected("log", outs[0].clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let completions = Arc::new(Mutex::new(HashMap::<u64, u32>::new()));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);

    let controller = {
        let (input, stop, outs) = (input.clone(), stop.clone(), outs.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            let mut drains = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let drain = if i.is_multiple_of(5) {
                    let d = input.disconnect();
                    std::thread::sleep(Duration::from_micros(300));
                    input.connect(outs[i % 3].clone()).unwrap();
                    d
                } else {
                    input.rewire(outs[i % 3].clone())
                };
                if let Some(d) = drain {
                    d.wait(Duration::from_secs(10)).expect("old output drains");
                    assert_eq!(d.inflight(), 0);
                    drains += 1;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            drains
        })
    };

    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (input, completions) = (input.clone(), completions.clone());
            std::thread::spawn(move || {
                let cq = CompletionQueue::new();
                let mut inflight = 0;
                let mut sent = 0;
                while sent < per_thread && Instant::now() < deadline {
                    let mut req = Aio::read(sent * 512, 512);
                    req.tag = t << 32 | sent;
                    req.push_hook(cq.hook());
                    match input.submit(req) {
                        Ok(()) => {
                            inflight += 1;
                            sent += 1;
                        }
                        Err(mut rej) => {
                            // Handed back intact; retry the same request later.
                            assert!(rej.error.is_retryable());
                            rej.req.pop_hook();
                            std::thread::yield_now();
                            continue;
                        }
                    }
                    while inflight >= 16 {
                        let done = cq.recv();
                        *completions.lock().entry(done.tag).or_default() += 1;
                        inflight -= 1;
                    }
                }
                while inflight > 0 {
                    let done = cq
                        .recv_timeout(Duration::from_secs(10))
                        .expect("lost a completion");
                    *completions.lock().entry(done.tag).or_default() += 1;
                    inflight -= 1;
                }
                sent
            })
        })
        .collect();
    let sent: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    stop.store(true, Ordering::SeqCst);
    let drains = controller.join().unwrap();
    assert!(
        drains > 3,
        "the campaign must actually rewire (did {drains})"
    );

    let completions = completions.lock();
    let arrivals = arrivals.lock();
    let total: u64 = sent.iter().sum();
    assert_eq!(completions.len() as u64, total, "every request completed");
    assert!(completions.values().all(|&n| n == 1), "each exactly once");
    assert_eq!(
        arrivals.len() as u64,
        total,
        "each reached exactly one output once"
    );
    // Per thread, requests reach the outputs in submission order.
    let mut last: HashMap<u64, u64> = HashMap::new();
    for &(_, tag) in arrivals.iter() {
        let (t, seq) = (tag >> 32, tag & 0xffff_ffff);
        if let Some(prev) = last.insert(t, seq) {
            assert_eq!(seq, prev + 1, "thread {t}: {seq} arrived after {prev}");
        }
    }
}

#[test]
fn rewire_under_load_loses_duplicates_and_reorders_nothing() {
    let long = std::env::var("MARS_LONG_TESTS").is_ok();
    run_campaign(
        if long { 20.0 } else { 1.5 },
        4,
        if long { 5_000_000 } else { 200_000 },
    );
}
