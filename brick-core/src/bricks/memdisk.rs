//! `MemDisk`: a terminal brick backed by memory. Used by tests, examples and as the reference
//! model that real backends are checked against.

use crate::{
    Aio, Brick, Error, Info, Op, Output, Power, PowerState, Rejected, Result, Stats, StatsSnapshot,
};
use crossbeam_channel::Sender;
use parking_lot::RwLock;
use std::sync::Arc;
use std::time::Instant;

/// How a [`MemDisk`] completes requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemDiskMode {
    /// On the submitting thread, before `submit` returns.
    Inline,
    /// On `n` worker threads (completions may be reordered).
    Threaded(usize),
}

struct Core {
    name: String,
    data: RwLock<Vec<u8>>,
    boundary: u64,
    power: Power,
    stats: Stats,
}

/// An in-memory disk.
pub struct MemDisk {
    core: Arc<Core>,
    workers: Option<Sender<Box<Aio>>>,
}

impl MemDisk {
    /// A zeroed disk of `size` bytes.
    pub fn new(name: impl Into<String>, size: usize, mode: MemDiskMode) -> Arc<Self> {
        MemDisk::with_boundary(name, size, mode, 0)
    }

    /// A disk whose `prepare` shortens requests at multiples of `boundary` (0: never), to
    /// exercise callers' loops.
    pub fn with_boundary(
        name: impl Into<String>,
        size: usize,
        mode: MemDiskMode,
        boundary: u64,
    ) -> Arc<Self> {
        let core = Arc::new(Core {
            name: name.into(),
            data: RwLock::new(vec![0; size]),
            boundary,
            power: Power::on(),
            stats: Stats::new(),
        });
        let workers = match mode {
            MemDiskMode::Inline => None,
            MemDiskMode::Threaded(n) => {
                let (tx, rx) = crossbeam_channel::unbounded::<Box<Aio>>();
                for i in 0..n.max(1) {
                    let rx = rx.clone();
                    let core = core.clone();
                    std::thread::Builder::new()
                        .name(format!("memdisk-{i}"))
                        .spawn(move || {
                            crate::mark_completion_thread("MemDisk worker");
                            for req in rx {
                                core.execute(req);
                            }
                        })
                        .expect("spawning a memdisk worker");
                }
                Some(tx)
            }
        };
        Arc::new(MemDisk { core, workers })
    }

    /// A copy of the contents.
    pub fn contents(&self) -> Vec<u8> {
        self.core.data.read().clone()
    }
}

impl Drop for MemDisk {
    fn drop(&mut self) {
        // Dropping the sender ends the workers once their queue is empty.
        self.workers.take();
    }
}

impl Core {
    fn execute(&self, mut req: Box<Aio>) {
        let started = Instant::now();
        let size = self.data.read().len() as u64;
        let result = req.check_range(size).map(|()| {
            let (pos, len) = (req.pos as usize, req.len);
            match req.op {
                Op::Read => {
                    req.data.clear();
                    req.data
                        .extend_from_slice(&self.data.read()[pos..pos + len]);
                }
                Op::Write => self.data.write()[pos..pos + len].copy_from_slice(&req.data),
                Op::Discard | Op::WriteZeroes => self.data.write()[pos..pos + len].fill(0),
                Op::Flush => {}
            }
        });
        self.stats
            .on_complete(req.len as u64, started.elapsed(), result.is_err());
        self.power.leave();
        req.finish(result);
    }
}

impl Output for MemDisk {
    fn info(&self) -> Result<Info> {
        Ok(Info::new(self.core.data.read().len() as u64))
    }

    fn prepare(&self, req: &mut Aio) -> Result<()> {
        let b = self.core.boundary;
        if b > 0 && req.len > 0 {
            let room = (b - req.pos % b) as usize;
            if req.len > room {
                req.shorten(room);
            }
        }
        Ok(())
    }

    fn submit(&self, req: Box<Aio>) -> Result<(), Rejected> {
        if let Err(e) = self.core.power.enter(&self.core.name) {
            return Err(Rejected::new(req, e));
        }
        self.core.stats.on_submit();
        match &self.workers {
            None => self.core.execute(req),
            Some(tx) => {
                if let Err(e) = tx.send(req) {
                    self.core.power.leave();
                    return Err(Rejected::new(
                        e.0,
                        Error::Off {
                            brick: self.core.name.clone(),
                        },
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Brick for MemDisk {
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
