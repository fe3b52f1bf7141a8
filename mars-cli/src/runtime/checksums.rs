//! The checksum side of a resource's executors: which [`CsumDisk`] guards the data device
//! (the primary's or the secondary's), the scrub job, and what they publish for `view`
//! (`actual-<me>/scrub`, `actual-<me>/scrub-progress`, `actual-<me>/csum-errors`).

use super::{LinkWrite, ResourceRt};
use crate::scrub::{ScrubJob, ScrubProgress};
use mars_strategy::strategy::Snapshot;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use xio::csum::CsumDisk;

/// The checksum file of resource `res`: `DIR/checksums/<res>.csum` (outside the resource's
/// log directory, which `invalidate` discards: the checksums of the local data stay true).
pub fn csum_path(dir: &Path, res: &str) -> PathBuf {
    dir.join("checksums").join(format!("{res}.csum"))
}

/// A scrub under way, and what has been published of it.
pub struct Scrub {
    job: ScrubJob,
    /// Progress published (in 5% steps).
    published_pct: Option<u64>,
}

/// How a scrub ended (for the daemon: a repair may follow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrubEnd {
    /// Its findings.
    pub progress: ScrubProgress,
}

impl ResourceRt {
    /// The checksums guarding the data device here: the primary's, or the secondary's
    /// (opening the device if needed).
    pub fn checksums(&mut self, s: &Snapshot) -> Result<Arc<CsumDisk>, String> {
        if let Some(p) = &self.primary {
            return p.checksums().cloned().ok_or_else(|| {
                "this primary keeps no checksums (started without them)".to_string()
            });
        }
        self.checked_device(s)
    }

    /// Switch verified reads for this resource (`resource-<r>/verify-reads`).
    pub fn set_verify_reads(&mut self, on: bool) {
        if self.verify_reads == on {
            return;
        }
        self.verify_reads = on;
        if let Some(d) = self.open_checksums() {
            d.set_verify_reads(on);
        }
    }

    /// The checksums guarding the data device now, if it is open (the primary's or the
    /// secondary's: never both, a role starts after the other stopped).
    fn open_checksums(&self) -> Option<Arc<CsumDisk>> {
        match &self.primary {
            Some(p) => p.checksums().cloned(),
            None => self.data.as_ref().map(|(_, d)| d.clone()),
        }
    }

    /// Start a scrub (refused while one runs).
    pub fn start_scrub(
        &mut self,
        s: &Snapshot,
        rate: u64,
        repair: bool,
        from_scratch: bool,
    ) -> Result<(), String> {
        if let Some(sc) = &self.scrub {
            let p = sc.job.progress();
            return Err(format!(
                "a scrub of {} runs already ({} of {} bytes): wait for it (`marsadm view {}`)",
                self.res, p.pos, p.size, self.res
            ));
        }
        let disk = self.checksums(s)?;
        let restart = self.csum_path.with_extension("scrub");
        let job = ScrubJob::start(&self.res, disk, restart, rate, repair, from_scratch);
        self.scrub = Some(Scrub {
            job,
            published_pct: None,
        });
        Ok(())
    }

    /// The running scrub's progress.
    pub fn scrub_progress(&self) -> Option<ScrubProgress> {
        self.scrub.as_ref().map(|s| s.job.progress())
    }

    /// Stop a running scrub (its restart point stays).
    pub(super) fn stop_scrub(&mut self) {
        if let Some(s) = self.scrub.take() {
            s.job.stop();
        }
    }

    /// A scrub that ended since the last call (taken).
    pub fn take_scrub_end(&mut self) -> Option<ScrubEnd> {
        let progress = self.scrub.as_ref()?.job.progress();
        if !progress.done && progress.failed.is_none() {
            return None;
        }
        self.scrub = None;
        self.last_scrub = Some(progress.clone());
        Some(ScrubEnd { progress })
    }

    /// The last scrub that ended here.
    pub fn last_scrub(&self) -> Option<&ScrubProgress> {
        self.last_scrub.as_ref()
    }

    /// What the checksums publish this round: scrub progress in 5% steps, the read
    /// mismatches when their count changed.
    pub(super) fn poll_checksums(&mut self, me: &str) -> Vec<LinkWrite> {
        let mut links = Vec::new();
        if let Some(sc) = &mut self.scrub {
            let p = sc.job.progress();
            let pct = (p.pos * 100).checked_div(p.size).unwrap_or(100) / 5 * 5;
            if sc.published_pct != Some(pct) && !p.done {
                sc.published_pct = Some(pct);
                links.push((
                    format!("actual-{me}/scrub-progress"),
                    Some(format!("{} {} {}", p.pos, p.size, p.rate)),
                ));
            }
        }
        if let Some(d) = self.open_checksums() {
            let (count, last) = d.read_errors();
            if count != self.csum_errors_published {
                self.csum_errors_published = count;
                links.push((
                    format!("actual-{me}/csum-errors"),
                    Some(format!("{count} {}", last.unwrap_or_default())),
                ));
            }
        }
        links
    }

    /// This secondary's part of a `verify`.
    pub fn verify_hold(&self) -> Option<crate::verify::VerifyHold> {
        self.verify_hold
    }

    /// Set this secondary's part of a `verify` (replay waits while it holds).
    pub fn set_verify_hold(&mut self, hold: Option<crate::verify::VerifyHold>) {
        self.verify_hold = hold;
    }

    /// No replay step runs now (the device is at the published replay position).
    pub fn replay_idle(&self) -> bool {
        self.replay.is_none()
    }
}
