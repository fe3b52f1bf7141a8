//! The commands for the hard cases: forced failover (`primary --force`) and `invalidate`,
//! both with `--dry-run` (what would be lost or discarded, and how much).

use super::{local_logs, Daemon};
use crate::control::Response;
use mars_strategy::strategy::split_brain;
use mars_strategy::views::Switch;

impl Daemon {
    /// `primary --force`: only after `pause-fetch`, only while the old primary is unreachable
    /// (else a planned handover loses nothing), only on a consistent replica.
    pub(super) fn force_primary(&mut self, res: &str, dry_run: bool) -> Result<Response, Response> {
        let me = self.me();
        let s = self.member(res)?;
        let m = s.mine().expect("member");
        if m.switch(Switch::Connect) {
            return Err(Response::refused(format!(
                "forced failover gives up what is not fetched yet: run `marsadm pause-fetch {res}` first, then `marsadm primary --force {res}`"
            )));
        }
        let st = mars_strategy::strategy::replica_state(&s, &me);
        if !st.consistent {
            return Err(Response::refused(format!(
                "{res} on {me} is not consistent ({}): it cannot become primary, even by force; use a consistent replica",
                st.disk
            )));
        }
        if !m.switch(Switch::Attach) {
            return Err(Response::refused(format!(
                "{res} is detached here: run `marsadm up {res}` first"
            )));
        }
        let old = s.primary.clone().filter(|p| *p != me);
        if let Some(o) = &old {
            if self.runner.net().connected(o) {
                return Err(Response::refused(format!(
                    "the primary {o} is reachable: use a planned handover (`marsadm resume-fetch {res}` and `marsadm primary {res}`), which loses nothing"
                )));
            }
        }
        let lost = match (
            &m.replay,
            old.as_ref()
                .and_then(|o| s.members.get(o))
                .and_then(|x| x.replay.as_ref()),
        ) {
            (Some(mine), Some(theirs)) if mine.log == theirs.log => {
                format!(
                    "{} bytes of log {} that {} wrote and this node has not replayed",
                    theirs.pos.saturating_sub(mine.pos),
                    mine.log,
                    old.as_deref().unwrap_or("?")
                )
            }
            (Some(mine), Some(theirs)) => format!(
                "everything {} wrote after {},{} (it was last seen at {},{})",
                old.as_deref().unwrap_or("?"),
                mine.log,
                mine.pos,
                theirs.log,
                theirs.pos
            ),
            _ => "whatever the old primary wrote that is not here".to_string(),
        };
        if dry_run {
            return Ok(Response::ok(format!(
                "dry run: primary --force {res} would make {me} primary without {}; lost: at least {lost}; if {} keeps writing, the history forks (split brain: resolve with `marsadm invalidate {res}` on the losers)",
                old.as_deref().unwrap_or("the old primary"),
                old.as_deref().unwrap_or("it")
            )));
        }
        // Written anew even where the value is unchanged: the decision must carry a stamp
        // newer than anything the unreachable side wrote meanwhile.
        for k in ["forced-primary", "primary"] {
            self.runner
                .node_mut()
                .set(&format!("resource-{res}/{k}"), &me)
                .map_err(|e| Response::failed(e.to_string()))?;
        }
        tracing::warn!(%res, "forced failover to {me}: lost {lost}");
        Ok(Response::ok(format!(
            "{me} becomes primary of {res} by force; lost: {lost}"
        )))
    }

    /// `invalidate`: this replica's history and data are discarded; it starts again like a
    /// fresh join (fast full sync from the primary, then fetch and replay).
    pub(super) fn invalidate(&mut self, res: &str, dry_run: bool) -> Result<Response, Response> {
        let me = self.me();
        let s = self.member(res)?;
        let Some(primary) = s.primary.clone() else {
            return Err(Response::refused(format!(
                "{res} has no designated primary to sync from: make one primary first (`marsadm primary {res}` on the node with the good data)"
            )));
        };
        if primary == me {
            return Err(Response::refused(format!(
                "{me} is the primary of {res}: invalidate the other side, or make another node primary first"
            )));
        }
        if s.members
            .get(&primary)
            .is_some_and(|p| p.led("is-emergency"))
        {
            return Err(Response::refused(format!(
                "the primary {primary} is in emergency mode (its log is full): a sync now would be outdated at once; free space in {primary}'s mars directory and run `marsadm cron` there first"
            )));
        }
        let (files, bytes) = local_logs(&self.opts.dir, res);
        let size = s.size.unwrap_or(0);
        let divergent = split_brain(&s)
            .and_then(|sb| sb.divergent.get(&me).copied())
            .unwrap_or(0);
        if dry_run {
            return Ok(Response::ok(format!(
                "dry run: invalidate {res} would discard {me}'s history ({divergent} bytes past the fork, {files} local log file(s), {bytes} bytes) and re-sync its {size}-byte device from {primary} (fast: only differing chunks travel)"
            )));
        }
        if let Some(mut rt) = self.rts.remove(res) {
            rt.shutdown();
        }
        let prefix = format!("resource-{res}/");
        let mine: Vec<String> = self
            .resource_keys(res)
            .into_iter()
            .filter(|k| {
                let rel = &k[prefix.len()..];
                (rel.starts_with("version-") || rel.starts_with("log-"))
                    && rel.ends_with(&format!("-{me}"))
            })
            .collect();
        for k in mine {
            self.write(&k, None);
        }
        for k in ["replay", "syncpos"] {
            self.write(&format!("{prefix}{k}-{me}"), None);
        }
        self.write(&format!("{prefix}syncstatus-{me}"), Some("0"));
        self.write(&format!("{prefix}actual-{me}/msg"), Some("OK"));
        let dir = self.opts.dir.join(format!("resource-{res}"));
        let _ = std::fs::remove_dir_all(&dir);
        tracing::warn!(%res, "invalidated: {divergent} bytes past the fork and {files} log file(s) discarded; full sync from {primary}");
        Ok(Response::ok(format!(
            "{res} on {me} invalidated: history discarded ({files} log file(s), {bytes} bytes); full sync from {primary} follows"
        )))
    }
}
