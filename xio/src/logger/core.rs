//! The shared state of one trans_logger and its request paths (read, write, flush); the two
//! worker threads live in `log_thread` and `writeback`.
//!
//! Completion semantics (the rule, unlike upstream): a write without FUA completes as
//! soon as it is in the index (readable) and queued for the log; a FUA write and a FLUSH
//! complete only when every write accepted before them is durable in the log.

use super::config::LoggerConfig;
use super::index::{Index, Version};
use super::mode::{IllegalTransition, LoggerMode, ModeEvent, ModeState};
use super::payload::Payload;
use super::store::LogStore;
use crate::log::{LogPos, RecordOp};
use brick_core::{
    Aio, Aspect, Completer, Error, Flags, Info, Input, LamportClock, MemBudget, Op, Output, Power,
    Rejected, Result, Slot, Stats,
};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// A record waiting for the log thread.
pub(crate) struct Pending {
    pub seq: u64,
    pub op: RecordOp,
    pub pos: u64,
    pub len: u32,
    pub data: Arc<Payload>,
    pub stamp: u64,
    pub flags: u8,
    pub since: Instant,
}

pub(crate) struct Shared {
    pub index: Index,
    pub next_seq: u64,
    pub pending: VecDeque<Pending>,
    pub pending_bytes: usize,
    /// Every version with `seq <= durable_seq` is durable in the log.
    pub durable_seq: u64,
    /// End of the last durable batch.
    pub durable_end: LogPos,
    /// FUA writes and flushes: complete once `durable_seq >= target`.
    pub waiters: Vec<(u64, Box<Aio>)>,
    /// Changed only through [`Core::change_mode`].
    pub mode: ModeState,
    pub stop: bool,
    pub kill: bool,
    pub rotate_req: bool,
    /// Write back everything durable now (close, `writeback_all`).
    pub wb_force: bool,
    pub wb_busy: bool,
    /// The data device refused writeback for lack of space: the writes stay in the index and
    /// the log, writeback retries (see `writeback.rs`).
    pub wb_error: Option<Error>,
    /// The data-device flush that was requested and has not completed yet (the flusher
    /// thread runs it): the writeback epoch it covers.
    pub flush: Option<u64>,
    /// The writeback thread has ended (the flusher ends after it).
    pub wb_done: bool,
    /// Emergency: the state file says "do not replay"; non-durable data may be written back.
    pub skip_persisted: bool,
    pub min_pos: LogPos,
    /// Oldest log file not yet deleted.
    pub oldest_file: u64,
    pub rotations: u64,
    pub batches: u64,
    /// Records written to the log (all batches).
    pub records_logged: u64,
    /// Time the log thread spent in log writes and flushes.
    pub log_io_time: std::time::Duration,
    pub wb_rounds: u64,
    pub log_threads_done: bool,
    /// Bypass writes and flushes forwarded to the data device and not completed yet (a
    /// resume waits for them before it flushes the device).
    pub bypass_inflight: u64,
    /// `TransLogger::resume_logging` asked the log thread to leave bypass.
    pub resume_req: bool,
    /// How the last resume ended (the caller waits for it).
    pub resume_outcome: Option<std::result::Result<LogPos, super::LoggerError>>,
    /// The hole of an emergency this logger left by resuming (still reported: replicas fed
    /// from this log need a full sync).
    pub resumed_hole: Option<LogPos>,
}

#[derive(Default)]
pub(crate) struct ReqAspect {
    started: Option<Instant>,
    /// Forwarded to the data device in bypass: counted in `Shared::bypass_inflight`.
    bypass: bool,
}
impl Aspect for ReqAspect {}

pub(crate) struct Core {
    pub name: String,
    pub cfg: LoggerConfig,
    pub data: Input,
    pub log: Input,
    pub next_log: Input,
    pub next_log_seq: Mutex<Option<u64>>,
    pub store: Option<Arc<dyn LogStore>>,
    pub shared: Mutex<Shared>,
    pub log_cv: Condvar,
    pub wb_cv: Condvar,
    pub flush_cv: Condvar,
    /// The last watermark persisted, and whether "do not replay" was persisted (then nothing
    /// else may be). Held while persisting, so the state file is written by one thread at a time.
    pub published: Mutex<(LogPos, bool)>,
    pub mode_cv: Condvar,
    pub budget: Arc<MemBudget>,
    pub clock: Arc<LamportClock>,
    pub power: Power,
    pub stats: Stats,
    pub info: Info,
    /// The device size now (`info.size` at start; grows with [`super::TransLogger::grow`]).
    pub size: std::sync::atomic::AtomicU64,
    slot: Slot<ReqAspect>,
    pub bufs: Arc<super::bufpool::BufPool>,
}

/// Adapts an [`Input`] to the [`Output`] helpers of brick-core.
pub(crate) struct Via<'a>(pub &'a Input);

impl Output for Via<'_> {
    fn info(&self) -> Result<Info> {
        self.0.info()
    }
    fn prepare(&self, req: &mut Aio) -> Result<()> {
        self.0.prepare(req)
    }
    fn submit(&self, req: Box<Aio>) -> Result<(), Rejected> {
        self.0.submit(req)
    }
    fn write_gather(&self, pos: u64, bufs: &[std::io::IoSlice<'_>]) -> Option<Result<()>> {
        self.0.write_gather(pos, bufs)
    }
}

/// Longest discard / write-zeroes in one record.
pub(crate) const MAX_RANGE_OP: usize = crate::log::record::MAX_RECORD_DATA as usize;

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        cfg: LoggerConfig,
        data: Arc<dyn Output>,
        log: Arc<dyn Output>,
        store: Option<Arc<dyn LogStore>>,
        durable_end: LogPos,
        min_pos: LogPos,
        oldest_file: u64,
    ) -> Result<Core> {
        let dinfo = data.info()?;
        let info = Info {
            max_len: cfg.max_write.min(dinfo.max_len).max(512),
            can_discard: true,
            can_write_zeroes: true,
            ..dinfo
        };
        let clock = cfg
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(LamportClock::new(std::time::Duration::from_secs(10))));
        let budget = cfg
            .budget
            .clone()
            .unwrap_or_else(|| MemBudget::new(cfg.mem_budget));
        Ok(Core {
            name,
            data: Input::connected("data", data),
            log: Input::connected("log", log),
            next_log: Input::new("next-log"),
            next_log_seq: Mutex::new(None),
            store,
            shared: Mutex::new(Shared {
                index: Index::default(),
                next_seq: 1,
                pending: VecDeque::new(),
                pending_bytes: 0,
                durable_seq: 0,
                durable_end,
                waiters: Vec::new(),
                mode: ModeState::new(),
                stop: false,
                kill: false,
                rotate_req: false,
                wb_force: false,
                wb_busy: false,
                wb_error: None,
                flush: None,
                wb_done: false,
                skip_persisted: false,
                min_pos,
                oldest_file,
                rotations: 0,
                batches: 0,
                records_logged: 0,
                log_io_time: std::time::Duration::ZERO,
                wb_rounds: 0,
                log_threads_done: false,
                bypass_inflight: 0,
                resume_req: false,
                resume_outcome: None,
                resumed_hole: None,
            }),
            log_cv: Condvar::new(),
            wb_cv: Condvar::new(),
            flush_cv: Condvar::new(),
            published: Mutex::new((min_pos, false)),
            mode_cv: Condvar::new(),
            clock,
            power: Power::on(),
            stats: Stats::new(),
            size: std::sync::atomic::AtomicU64::new(info.size),
            info,
            slot: Slot::new(),
            // Up to the budget (`bufpool.rs`). Buffers come back when their payload's last
            // holder lets go.
            bufs: Arc::new(super::bufpool::BufPool::new(budget.limit() as usize)),
            budget,
            cfg,
        })
    }

    /// The header of this logger's log file `seq` (rotation, resume).
    pub fn new_header(&self, seq: u64) -> crate::log::FileHeader {
        crate::log::FileHeader {
            created: self.clock.now().0,
            ..crate::log::FileHeader::new(
                seq,
                &self.cfg.resource,
                &self.cfg.node,
                self.cfg.log_align,
            )
        }
    }

    /// At least half of the memory this logger could hold now is in use (less than its
    /// budget when other resources crowd the node): writeback should run now, not wait for
    /// `writeback_delay`.
    pub fn budget_pressure(&self) -> bool {
        self.budget.pressure()
    }

    /// Let go of retired payloads: a buffer nobody else holds goes back to the pool and the
    /// budget it held is released (else when its last holder lets go).
    pub fn retire(&self, payloads: impl Iterator<Item = Arc<Payload>>) {
        payloads.for_each(drop);
    }

    /// Complete a request this brick admitted.
    pub fn done(&self, mut req: Box<Aio>, result: Result<()>) {
        self.account(&mut req, result.is_err());
        req.finish(result);
    }

    fn account(&self, req: &mut Aio, failed: bool) {
        let started = req.aspect(&self.slot).started.take();
        let lat = started.map_or(std::time::Duration::ZERO, |s| s.elapsed());
        self.stats.on_complete(req.len as u64, lat, failed);
        self.power.leave();
    }

    /// Admit a request (power gate, statistics, range checks) and route it.
    pub fn submit(self: &Arc<Self>, mut req: Box<Aio>) -> Result<(), Rejected> {
        // Every request may wait here (budget, draining, a synchronous read of the data
        // device): never from a completion thread (brick_core::Output, "Blocking").
        brick_core::debug_assert_may_block(&self.name);
        if let Err(e) = self.power.enter(&self.name) {
            return Err(Rejected::new(req, e));
        }
        self.stats.on_submit();
        req.aspect(&self.slot).started = Some(Instant::now());
        if let Err(e) = self.check(&req) {
            self.done(req, Err(e));
            return Ok(());
        }
        match req.op {
            Op::Read => self.read(req),
            Op::Flush => self.flush(req),
            Op::Write | Op::Discard | Op::WriteZeroes => self.mutate(req),
        }
        Ok(())
    }

    fn check(&self, req: &Aio) -> Result<()> {
        req.check_range(self.size.load(std::sync::atomic::Ordering::Acquire))?;
        let max = match req.op {
            Op::Write => self.info.max_len,
            Op::Discard | Op::WriteZeroes => MAX_RANGE_OP,
            _ => usize::MAX,
        };
        if req.len > max {
            return Err(Error::Invalid(
                "request longer than the logger's max_len: call prepare and loop",
            ));
        }
        Ok(())
    }

    /// Forward to the data device; completion comes back through `Core::complete`.
    fn forward(self: &Arc<Self>, mut req: Box<Aio>) {
        req.push_hook(self.clone());
        if let Err(mut rej) = self.data.submit(req) {
            rej.req.pop_hook();
            self.bypass_done(&mut rej.req);
            self.done(rej.req, Err(rej.error));
        }
    }

    /// Wait while the index drains or logging resumes; returns the guard in a mode other
    /// than `Draining` and `Resuming`.
    fn settled(&self) -> MutexGuard<'_, Shared> {
        let mut g = self.shared.lock();
        while matches!(g.mode.mode(), LoggerMode::Draining | LoggerMode::Resuming) && !g.kill {
            self.mode_cv.wait(&mut g);
        }
        g
    }

    fn mutate(self: &Arc<Self>, mut req: Box<Aio>) {
        if req.len == 0 {
            return self.done(req, Ok(()));
        }
        let write = req.op == Op::Write;
        let mem = self.budget.acquire(if write { req.len as u64 } else { 64 });
        let bytes = if write {
            // The client's next write is likely of this size: hand back a buffer of its class.
            let len = req.len;
            std::mem::replace(&mut req.data, self.bufs.get_for(len))
        } else {
            Vec::new()
        };
        let data = Payload::new(bytes, mem, Some(self.bufs.clone()));
        let op = match req.op {
            Op::Write => RecordOp::Write,
            Op::Discard => RecordOp::Discard,
            _ => RecordOp::WriteZeroes,
        };
        let flags = record_flags(req.flags);
        let stamp = self.clock.now().0;
        let mut g = self.settled();
        match g.mode.mode() {
            LoggerMode::Logging => {}
            LoggerMode::Failed => {
                let e = g.mode.failure().cloned().unwrap_or_else(|| self.off());
                drop(g);
                restore(&mut req, &data);
                return self.done(req, Err(e));
            }
            LoggerMode::Bypass | LoggerMode::Draining | LoggerMode::Resuming => {
                g.bypass_inflight += 1;
                drop(g);
                restore(&mut req, &data);
                req.aspect(&self.slot).bypass = true;
                return self.forward(req);
            }
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        // One clock read for both (a vDSO call each was ~3% of the client thread's samples).
        let now = Instant::now();
        let version = Version {
            op,
            pos: req.pos,
            len: req.len as u64,
            data: data.clone(),
            flags,
            log: None,
            born: now,
            refs: 0,
            superseded_by: 0,
        };
        g.index.insert(seq, version);
        // A write that covered whole older versions: let go of them here, under the lock
        // (cheap: the budget is an atomic; no allocation for a temporary list).
        self.retire(g.index.drain_retired());
        // Wake the log thread only when it has something new to decide: a first record (it
        // starts the batch delay), a full chunk, or a first waiter. It times its own waits
        // otherwise; a wake-up per request cost a context switch each (2 cores).
        let chunk = self.cfg.chunk_size;
        let fua = req.flags.contains(Flags::FUA);
        let record_bytes = data.len() + crate::log::record::REC_OVERHEAD;
        let wake = g.pending.is_empty()
            || (g.pending_bytes < chunk && g.pending_bytes + record_bytes >= chunk)
            || (fua && g.waiters.is_empty());
        g.pending_bytes += record_bytes;
        g.pending.push_back(Pending {
            seq,
            op,
            pos: req.pos,
            len: req.len as u32,
            data,
            stamp,
            flags,
            since: now,
        });
        let ack = if fua {
            g.waiters.push((seq, req));
            None
        } else {
            Some(req)
        };
        drop(g);
        if wake {
            self.log_cv.notify_one();
        }
        if let Some(req) = ack {
            self.done(req, Ok(()));
        }
    }

    fn flush(self: &Arc<Self>, mut req: Box<Aio>) {
        let mut g = self.settled();
        match g.mode.mode() {
            LoggerMode::Logging => {
                let target = g.next_seq - 1;
                if target <= g.durable_seq {
                    drop(g);
                    return self.done(req, Ok(()));
                }
                let wake = g.waiters.is_empty();
                g.waiters.push((target, req));
                drop(g);
                if wake {
                    self.log_cv.notify_one();
                }
            }
            LoggerMode::Failed => {
                let e = g.mode.failure().cloned().unwrap_or_else(|| self.off());
                drop(g);
                self.done(req, Err(e));
            }
            LoggerMode::Bypass | LoggerMode::Draining | LoggerMode::Resuming => {
                g.bypass_inflight += 1;
                drop(g);
                req.aspect(&self.slot).bypass = true;
                self.forward(req);
            }
        }
    }

    fn read(self: &Arc<Self>, mut req: Box<Aio>) {
        let g = self.shared.lock();
        if let Some(e) = g.mode.failure() {
            let e = e.clone();
            drop(g);
            return self.done(req, Err(e));
        }
        let pieces = g.index.lookup(req.pos, req.len as u64);
        drop(g);
        if pieces.is_empty() {
            return self.forward(req);
        }
        let (pos, len) = (req.pos, req.len);
        let mut buf = std::mem::take(&mut req.data);
        buf.clear();
        buf.resize(len, 0);
        let mut at = pos;
        let mut gaps = Vec::new();
        for p in &pieces {
            if p.start > at {
                gaps.push((at, p.start));
            }
            let dst = &mut buf[(p.start - pos) as usize..(p.end - pos) as usize];
            if let Some((d, off)) = &p.src {
                dst.copy_from_slice(&d[*off..*off + dst.len()]);
            }
            at = p.end;
        }
        if at < pos + len as u64 {
            gaps.push((at, pos + len as u64));
        }
        for (s, e) in gaps {
            match brick_core::read_all(&Via(&self.data), s, (e - s) as usize) {
                Ok(d) => buf[(s - pos) as usize..(e - pos) as usize].copy_from_slice(&d),
                Err(err) => {
                    req.data = buf;
                    return self.done(req, Err(err));
                }
            }
        }
        req.data = buf;
        self.done(req, Ok(()))
    }

    /// Finish waiters whose target is durable (or all of them with `all`), outside the lock.
    pub fn release_waiters(&self, g: &mut MutexGuard<'_, Shared>, all: Option<Result<()>>) {
        let durable = g.durable_seq;
        let (ready, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut g.waiters)
            .into_iter()
            .partition(|(t, _)| all.is_some() || *t <= durable);
        g.waiters = keep;
        if ready.is_empty() {
            return;
        }
        MutexGuard::unlocked(g, || {
            for (_, req) in ready {
                self.done(req, all.clone().unwrap_or(Ok(())));
            }
        });
    }

    /// A forwarded bypass request is done: a resume waiting for the last one may go on.
    fn bypass_done(&self, req: &mut Aio) {
        if std::mem::take(&mut req.aspect(&self.slot).bypass) {
            let mut g = self.shared.lock();
            g.bypass_inflight -= 1;
            if g.bypass_inflight == 0 && g.mode.mode() == LoggerMode::Resuming {
                self.log_cv.notify_all();
            }
        }
    }

    /// The error of a logger that is switched off (killed or closed).
    pub fn off(&self) -> Error {
        Error::Off {
            brick: self.name.clone(),
        }
    }

    /// Take a mode event (the only way the mode changes); everyone waiting for a mode
    /// change is woken.
    pub fn change_mode(
        &self,
        g: &mut Shared,
        event: ModeEvent,
    ) -> std::result::Result<LoggerMode, IllegalTransition> {
        let to = g.mode.apply(event)?;
        self.mode_cv.notify_all();
        Ok(to)
    }

    /// Enter a terminal failure: fail waiters, wake everyone. A logger that failed already
    /// keeps its first error.
    pub fn fail(&self, g: &mut MutexGuard<'_, Shared>, e: Error) {
        if self.change_mode(g, ModeEvent::Fatal(e.clone())).is_err() {
            return;
        }
        tracing::error!(brick = %self.name, error = %e, "trans_logger failed");
        g.pending.clear();
        self.release_waiters(g, Some(Err(e)));
        self.log_cv.notify_all();
        self.wb_cv.notify_all();
        self.flush_cv.notify_all();
    }
}

fn record_flags(flags: Flags) -> u8 {
    let mut f = 0;
    if flags.contains(Flags::FUA) {
        f |= crate::log::record::FLAG_FUA;
    }
    if flags.contains(Flags::NO_HOLE) {
        f |= crate::log::record::FLAG_NO_HOLE;
    }
    f
}

/// Give a write its data back before forwarding it.
fn restore(req: &mut Aio, data: &Payload) {
    if req.op == Op::Write {
        req.data = (**data).clone();
    }
}

impl Completer for Core {
    fn complete(&self, mut req: Box<Aio>) {
        self.bypass_done(&mut req);
        let failed = req.error.is_some();
        self.account(&mut req, failed);
        req.complete();
    }
}
