//! Checksums in the daemon: `scrub` requests, what a finished scrub records
//! (`actual-<me>/scrub` = `<unix secs> <bytes> <damaged> <checksum-file errors> <repair>`) and
//! the repair that follows it, the per-resource `verify-reads` switch, and the checksum file's
//! lifecycle (a new device starts a new file; leaving the resource removes it).

use super::Daemon;
use crate::control::Response;
use crate::runtime::ResourceRt;
use mars_strategy::strategy::Snapshot;

impl Daemon {
    /// `scrub RES`: start the pass (or say that one runs).
    pub(super) fn scrub_request(
        &mut self,
        res: &str,
        repair: bool,
        rate: u64,
        restart: bool,
    ) -> Result<Response, Response> {
        let s = self.member(res)?;
        let me = self.me();
        if !s
            .mine()
            .is_some_and(|m| m.switch(mars_strategy::views::Switch::Attach))
        {
            return Err(Response::refused(format!(
                "{res} is not attached on {me}: run `marsadm up {res}` first"
            )));
        }
        let rt = self
            .rts
            .entry(res.to_string())
            .or_insert_with(|| ResourceRt::new(&self.opts.dir, res, &self.live_ends));
        rt.start_scrub(&s, rate, repair, restart)
            .map_err(Response::refused)?;
        let limit = if rate == 0 {
            "unthrottled".to_string()
        } else {
            format!("at most {} MiB/s", rate >> 20)
        };
        Ok(Response::ok(format!(
            "{res}: scrub of {me}'s data device started ({limit}{})",
            if repair { ", with repair" } else { "" }
        )))
    }

    /// Per round: the verify-reads switch, and a scrub that ended: its record. Returns whether
    /// a repair from the primary must follow (`--repair` on a secondary with damaged blocks).
    pub(super) fn checksum_round(&mut self, res: &str, rt: &mut ResourceRt, s: &Snapshot) -> bool {
        let me = self.me();
        let verify = self
            .runner
            .node()
            .store()
            .get(&format!("resource-{res}/verify-reads"))
            .is_none_or(|v| v != "0");
        rt.set_verify_reads(verify);
        let Some(end) = rt.take_scrub_end() else {
            return false;
        };
        let p = end.progress;
        self.write(&format!("resource-{res}/actual-{me}/scrub-progress"), None);
        if let Some(why) = &p.failed {
            self.write(
                &format!("resource-{res}/actual-{me}/msg"),
                Some(&format!(
                    "scrub stopped: {why}; run `marsadm scrub {res}` again to continue"
                )),
            );
            return false;
        }
        let now = super::unix_secs();
        self.write(
            &format!("resource-{res}/actual-{me}/scrub"),
            Some(&format!("{now} {}", p.record())),
        );
        if !p.repair || p.damaged_count == 0 {
            return false;
        }
        let primary = s.primary.clone().unwrap_or_default();
        if primary == me {
            self.write(
                &format!("resource-{res}/actual-{me}/msg"),
                Some(&format!(
                    "scrub found {} damaged block(s) on the primary's own device: older replicas cannot repair them in place; hand over to a healthy secondary (`marsadm primary {res}` there), then run `marsadm scrub {res} --repair` here",
                    p.damaged_count
                )),
            );
            return false;
        }
        tracing::warn!(%res, damaged = p.damaged_count, "scrub --repair: re-syncing the damaged blocks from {primary} (fast full sync: only differing chunks travel)");
        true
    }

    /// `scrub --repair` found damaged blocks on this secondary: re-sync them from the primary
    /// (`invalidate`: a fast full sync, only differing chunks travel; the checksum file stays).
    pub(super) fn repair_from_primary(&mut self, res: &str) {
        let me = self.me();
        if let Err(r) = self.invalidate(res, false) {
            tracing::error!(%res, "scrub --repair could not start the re-sync: {}", r.message);
            self.write(
                &format!("resource-{res}/actual-{me}/msg"),
                Some(&format!(
                    "scrub --repair could not start the re-sync: {}",
                    r.message
                )),
            );
        }
    }

    /// A new device for `res` here: its old checksum file (of another device) goes.
    pub(super) fn forget_checksums(&self, res: &str) {
        let path = crate::runtime::csum_path(&self.opts.dir, res);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("scrub"));
    }
}
