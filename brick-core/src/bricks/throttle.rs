//! `Throttle`: a pass-through brick that holds requests back to a [`Limiter`]'s rates. The
//! delay is spent on the submitting thread (the caller is the one being throttled).

use crate::{
    Aio, Brick, Info, Input, Limiter, Output, PowerState, Rejected, Result, Stats, StatsSnapshot,
};
use std::sync::Arc;

/// Rate-limiting pass-through.
pub struct Throttle {
    name: String,
    limiter: Arc<Limiter>,
    input: Input,
    stats: Stats,
}

impl Throttle {
    /// A throttle in front of `below`.
    pub fn new(
        name: impl Into<String>,
        limiter: Arc<Limiter>,
        below: Arc<dyn Output>,
    ) -> Arc<Self> {
        Arc::new(Throttle {
            name: name.into(),
            limiter,
            input: Input::connected("below", below),
            stats: Stats::new(),
        })
    }

    /// The limiter (to change rates at runtime).
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }
}

impl Output for Throttle {
    fn info(&self) -> Result<Info> {
        self.input.info()
    }
    fn prepare(&self, req: &mut Aio) -> Result<()> {
        self.input.prepare(req)
    }
    fn submit(&self, req: Box<Aio>) -> Result<(), Rejected> {
        let bytes = if req.op == crate::Op::Flush {
            0
        } else {
            req.len as u64
        };
        self.limiter.wait(1, bytes);
        self.stats.on_submit();
        self.input.submit(req)
    }
}

impl Brick for Throttle {
    fn name(&self) -> &str {
        &self.name
    }
    fn switch(&self, _on: bool) -> Result<()> {
        Ok(())
    }
    fn power(&self) -> PowerState {
        PowerState::On
    }
    fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}
