//! Power state of a brick: the "todo/actual" pattern of upstream (a button that says what is
//! wanted, LEDs that say what is true) plus a gate that counts IO in flight, so that switching
//! off drains (or fails) every request and never loses a completion.
//!
//! Switching is idempotent and may take several calls: `switch_off` returns
//! [`crate::Error::Busy`] while requests are still in flight and succeeds on a later call.

use crate::error::{Error, Result};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// What the LEDs show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    /// Off and idle.
    Off,
    /// Button pressed on, not ready yet.
    SwitchingOn,
    /// On and accepting IO.
    On,
    /// Button pressed off, draining.
    SwitchingOff,
}

/// Button, LEDs and in-flight gate of one brick.
#[derive(Debug)]
pub struct Power {
    button: AtomicBool,
    led_on: AtomicBool,
    led_off: AtomicBool,
    inflight: AtomicUsize,
    lock: Mutex<()>,
    idle: Condvar,
}

impl Default for Power {
    fn default() -> Self {
        Power::new()
    }
}

impl Power {
    /// A switched-off brick.
    pub fn new() -> Self {
        Power {
            button: AtomicBool::new(false),
            led_on: AtomicBool::new(false),
            led_off: AtomicBool::new(true),
            inflight: AtomicUsize::new(0),
            lock: Mutex::new(()),
            idle: Condvar::new(),
        }
    }

    /// A brick that starts switched on.
    pub fn on() -> Self {
        let p = Power::new();
        p.button.store(true, SeqCst);
        p.led_off.store(false, SeqCst);
        p.led_on.store(true, SeqCst);
        p
    }

    /// The state the LEDs show.
    pub fn state(&self) -> PowerState {
        match (
            self.button.load(SeqCst),
            self.led_on.load(SeqCst),
            self.led_off.load(SeqCst),
        ) {
            (true, true, _) => PowerState::On,
            (true, false, _) => PowerState::SwitchingOn,
            (false, _, true) => PowerState::Off,
            (false, _, false) => PowerState::SwitchingOff,
        }
    }

    /// Whether the brick accepts IO.
    pub fn is_on(&self) -> bool {
        self.state() == PowerState::On
    }

    /// Requests admitted and not yet finished.
    pub fn inflight(&self) -> usize {
        self.inflight.load(SeqCst)
    }

    /// Switch on: run `startup` (once per off→on transition) and light the on-LED when it
    /// succeeds. Idempotent.
    pub fn switch_on(&self, startup: impl FnOnce() -> Result<()>) -> Result<()> {
        if self.is_on() {
            return Ok(());
        }
        self.button.store(true, SeqCst);
        self.led_off.store(false, SeqCst);
        startup()?;
        self.led_on.store(true, SeqCst);
        Ok(())
    }

    /// Switch off: refuse new IO at once; once nothing is in flight run `shutdown` and light
    /// the off-LED. While IO is in flight returns [`Error::Busy`]; call again (idempotent) or use
    /// [`Power::switch_off_wait`].
    pub fn switch_off(&self, brick: &str, shutdown: impl FnOnce() -> Result<()>) -> Result<()> {
        self.button.store(false, SeqCst);
        self.led_on.store(false, SeqCst);
        if self.led_off.load(SeqCst) {
            return Ok(());
        }
        let inflight = self.inflight();
        if inflight > 0 {
            return Err(Error::Busy {
                brick: brick.to_string(),
                inflight,
            });
        }
        shutdown()?;
        self.led_off.store(true, SeqCst);
        Ok(())
    }

    /// Switch off, waiting up to `timeout` for in-flight IO to drain.
    pub fn switch_off_wait(
        &self,
        brick: &str,
        timeout: Duration,
        shutdown: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        self.button.store(false, SeqCst);
        self.led_on.store(false, SeqCst);
        let deadline = Instant::now() + timeout;
        let mut g = self.lock.lock();
        while self.inflight() > 0 {
            if self.idle.wait_until(&mut g, deadline).timed_out() {
                break;
            }
        }
        drop(g);
        self.switch_off(brick, shutdown)
    }

    /// Admit one request; fails with [`Error::Off`] unless the brick is on. Every successful
    /// `enter` must be paired with exactly one [`Power::leave`] when the request completes.
    pub fn enter(&self, brick: &str) -> Result<()> {
        self.inflight.fetch_add(1, SeqCst);
        // Same handshake as in `Input::submit`: a concurrent switch-off either sees our count or
        // we see its cleared LED.
        if !self.led_on.load(SeqCst) {
            self.leave();
            return Err(Error::Off {
                brick: brick.to_string(),
            });
        }
        Ok(())
    }

    /// Finish one admitted request.
    pub fn leave(&self) {
        if self.inflight.fetch_sub(1, SeqCst) == 1 && !self.button.load(SeqCst) {
            let _g = self.lock.lock();
            self.idle.notify_all();
        }
    }
}
