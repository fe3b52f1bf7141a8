//! `Probe`: a pass-through brick that counts requests and measures their latency, optionally
//! holding them back to a [`Limiter`]'s rates (the delay is spent on the submitting thread: the
//! caller is the one being throttled). The template for a brick with an aspect and a
//! completion hook.

use crate::{
    Aio, Aspect, Brick, Completer, Info, Input, Limiter, Op, Output, Power, PowerState, Rejected,
    Result, Slot, Stats, StatsSnapshot,
};
use std::sync::Arc;
use std::time::Instant;

/// Per-request state of a probe: when the request passed it.
#[derive(Debug)]
pub struct ProbeAspect {
    started: Instant,
    passes: u32,
}

impl Default for ProbeAspect {
    fn default() -> Self {
        ProbeAspect {
            started: Instant::now(),
            passes: 0,
        }
    }
}

impl Aspect for ProbeAspect {}

struct Core {
    name: String,
    slot: Slot<ProbeAspect>,
    stats: Stats,
    power: Power,
    limiter: Option<Arc<Limiter>>,
}

impl Completer for Core {
    fn complete(&self, mut req: Box<Aio>) {
        let started = req.aspect(&self.slot).started;
        self.stats
            .on_complete(req.len as u64, started.elapsed(), req.error.is_some());
        self.power.leave();
        req.complete();
    }
}

/// Counting, timing and (optionally) rate-limiting pass-through.
pub struct Probe {
    core: Arc<Core>,
    input: Input,
}

impl Probe {
    /// A probe called `name` in front of `below`, switched on.
    pub fn new(name: impl Into<String>, below: Arc<dyn Output>) -> Arc<Self> {
        Probe::build(name.into(), None, below)
    }

    /// A probe that also holds requests back to `limiter`'s rates (upstream's limiter in front
    /// of a brick), switched on.
    pub fn throttled(
        name: impl Into<String>,
        limiter: Arc<Limiter>,
        below: Arc<dyn Output>,
    ) -> Arc<Self> {
        Probe::build(name.into(), Some(limiter), below)
    }

    fn build(name: String, limiter: Option<Arc<Limiter>>, below: Arc<dyn Output>) -> Arc<Self> {
        Arc::new(Probe {
            core: Arc::new(Core {
                name,
                slot: Slot::new(),
                stats: Stats::new(),
                power: Power::on(),
                limiter,
            }),
            input: Input::connected("below", below),
        })
    }

    /// The limiter, if this probe throttles (to change rates at runtime).
    pub fn limiter(&self) -> Option<&Arc<Limiter>> {
        self.core.limiter.as_ref()
    }

    /// The input (for rewiring).
    pub fn input(&self) -> &Input {
        &self.input
    }

    /// How many times this probe saw the request (its own aspect; 1 unless resubmitted).
    pub fn passes(&self, req: &mut Aio) -> u32 {
        req.aspect(&self.core.slot).passes
    }
}

impl Output for Probe {
    fn info(&self) -> Result<Info> {
        self.input.info()
    }

    fn prepare(&self, req: &mut Aio) -> Result<()> {
        self.input.prepare(req)
    }

    fn submit(&self, mut req: Box<Aio>) -> Result<(), Rejected> {
        let core = &self.core;
        if let Some(limiter) = &core.limiter {
            crate::debug_assert_may_block(&core.name);
            let bytes = if req.op == Op::Flush {
                0
            } else {
                req.len as u64
            };
            limiter.wait(1, bytes);
        }
        if let Err(e) = core.power.enter(&core.name) {
            return Err(Rejected::new(req, e));
        }
        let a = req.aspect(&core.slot);
        a.started = Instant::now();
        a.passes += 1;
        core.stats.on_submit();
        req.push_hook(core.clone());
        self.input.submit(req).map_err(|mut rej| {
            rej.req.pop_hook();
            core.power.leave();
            rej
        })
    }
}

impl Brick for Probe {
    fn name(&self) -> &str {
        &self.core.name
    }
    fn switch(&self, on: bool) -> Result<()> {
        if on {
            self.core.power.switch_on(|| Ok(()))
        } else {
            self.core.power.switch_off(&self.core.name, || Ok(()))
        }
    }
    fn power(&self) -> PowerState {
        self.core.power.state()
    }
    fn stats(&self) -> StatsSnapshot {
        self.core.stats.snapshot()
    }
}
