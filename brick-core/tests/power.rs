//! Power states: switching off refuses new IO, drains in-flight IO and never loses a completion.

use brick_core::bricks::Probe;
use brick_core::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// A terminal brick that parks requests until released, to hold IO in flight.
struct Parking {
    power: Power,
    parked: parking_lot::Mutex<Vec<Box<Aio>>>,
}

impl Output for Parking {
    fn info(&self) -> Result<Info> {
        Ok(Info::new(1 << 20))
    }
    fn submit(&self, req: Box<Aio>) -> Result<(), Rejected> {
        if let Err(e) = self.power.enter("parking") {
            return Err(Rejected::new(req, e));
        }
        self.parked.lock().push(req);
        Ok(())
    }
}

impl Parking {
    fn release_all(&self) {
        let reqs: Vec<_> = self.parked.lock().drain(..).collect();
        for r in reqs {
            self.power.leave();
            r.finish(Ok(()));
        }
    }
}

#[test]
fn switch_off_with_io_in_flight_is_busy_then_off_after_drain() {
    let park = Arc::new(Parking {
        power: Power::on(),
        parked: Default::default(),
    });
    let probe = Probe::new("probe", park.clone());
    let cq = CompletionQueue::new();
    for i in 0..10 {
        cq.submit(&*probe, Aio::read(i * 512, 512)).unwrap();
    }
    assert_eq!(probe.power(), PowerState::On);
    let err = probe.switch(false).unwrap_err();
    assert_eq!(
        err,
        Error::Busy {
            brick: "probe".into(),
            inflight: 10
        }
    );
    assert_eq!(probe.power(), PowerState::SwitchingOff);
    // New IO is refused while switching off, and handed back.
    let rej = probe.submit(Aio::read(0, 512)).unwrap_err();
    assert!(matches!(rej.error, Error::Off { .. }));
    park.release_all();
    for _ in 0..10 {
        assert!(cq.recv().error.is_none(), "in-flight IO completes normally");
    }
    probe.switch(false).unwrap();
    assert_eq!(probe.power(), PowerState::Off);
    probe.switch(false).unwrap(); // idempotent
    probe.switch(true).unwrap();
    assert_eq!(probe.power(), PowerState::On);
    probe.switch(true).unwrap(); // idempotent
}

#[test]
fn switch_off_drains_concurrently_completing_io() {
    let park = Arc::new(Parking {
        power: Power::on(),
        parked: Default::default(),
    });
    let probe = Probe::new("probe", park.clone());
    let cq = CompletionQueue::new();
    for i in 0..200 {
        cq.submit(&*probe, Aio::read(i * 512, 512)).unwrap();
    }
    // Nothing can complete before the first press: the drain below is really concurrent.
    assert!(matches!(
        probe.switch(false),
        Err(Error::Busy { inflight: 200, .. })
    ));
    let releaser = {
        let park = park.clone();
        std::thread::spawn(move || {
            for _ in 0..200 {
                let req = park.parked.lock().pop().expect("a parked request");
                park.power.leave();
                req.finish(Ok(()));
            }
        })
    };
    // Switching is idempotent: the strategy presses the button every round until the LED agrees.
    let mut rounds = 0;
    while probe.switch(false).is_err() {
        rounds += 1;
        assert!(rounds < 100_000, "switch-off never finished draining");
        std::thread::sleep(Duration::from_micros(100));
    }
    assert_eq!(probe.power(), PowerState::Off);
    releaser.join().unwrap();
    for _ in 0..200 {
        let done = cq
            .recv_timeout(Duration::from_secs(10))
            .expect("no completion lost");
        assert!(done.error.is_none());
    }
    assert!(cq.try_recv().is_none(), "no completion duplicated");
}

/// `switch_off_wait` blocks while IO is in flight and returns once the last request leaves,
/// which happens only after the wait has begun (the leaver waits for the switching-off LED).
#[test]
fn switch_off_wait_waits_for_in_flight_io() {
    let p = Arc::new(Power::on());
    for _ in 0..5 {
        p.enter("x").unwrap();
    }
    let leaver = {
        let p = p.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while p.state() != PowerState::SwitchingOff {
                assert!(std::time::Instant::now() < deadline, "no switch-off began");
                std::thread::sleep(Duration::from_millis(1));
            }
            for _ in 0..5 {
                p.leave();
            }
        })
    };
    p.switch_off_wait("x", Duration::from_secs(10), || Ok(()))
        .unwrap();
    assert_eq!(p.state(), PowerState::Off);
    assert_eq!(p.inflight(), 0);
    leaver.join().unwrap();
}

#[test]
fn startup_failure_leaves_the_brick_switching_on() {
    let p = Power::new();
    let err = p
        .switch_on(|| Err(Error::Invalid("no device")))
        .unwrap_err();
    assert_eq!(err, Error::Invalid("no device"));
    assert_eq!(p.state(), PowerState::SwitchingOn);
    assert!(p.enter("b").is_err());
    p.switch_on(|| Ok(())).unwrap();
    assert!(p.enter("b").is_ok());
    p.leave();
}
