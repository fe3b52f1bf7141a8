//! `verify` in the daemon, coordinated through the metadata:
//! 1. any member writes `resource-<r>/verify-req` = `<id> <repair 0|1> <rate>`;
//! 2. each secondary holds its replay, snapshots its checksum table at its replay position,
//!    serves it as device `csum-<r>` and publishes `actual-<me>/verify-ready` = `<id> <link>`;
//! 3. the running primary compares each ready secondary's table with its own (a
//!    [`VerifyJob`] each) and publishes `actual-<me>/verify` = `<id> <unix secs> <entries>`,
//!    an entry per secondary (`host:blocks:compared:unjudged:first+n,...` or `host:failed`);
//! 4. a secondary that finds its entry lets replay go on and, with repair and differences,
//!    re-syncs from the primary (fast full sync).

use super::Daemon;
use crate::control::Response;
use crate::runtime::ResourceRt;
use crate::verify::{VerifyHold, VerifyInput, VerifyJob};
use mars_net::ChannelKind;
use mars_strategy::strategy::Snapshot;
use std::time::{Duration, Instant};
use xio::log::LogPos;
use xio::remote::{ClientConfig, Target};

/// A secondary holds its replay for a verify at most this long.
const HOLD_LIMIT: Duration = Duration::from_secs(300);
/// Differing ranges kept per entry of the record.
const RANGES_KEPT: usize = 16;

/// A verify request (`verify-req`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct VerifyReq {
    pub id: u64,
    pub repair: bool,
    pub rate: u64,
}

impl VerifyReq {
    fn parse(v: &str) -> Option<VerifyReq> {
        let n: Vec<u64> = v.split_whitespace().map_while(|x| x.parse().ok()).collect();
        match n[..] {
            [id, repair, rate] => Some(VerifyReq {
                id,
                repair: repair == 1,
                rate,
            }),
            _ => None,
        }
    }
}

/// What the primary keeps of a verify under way.
#[derive(Default)]
pub(super) struct PrimaryVerify {
    id: u64,
    jobs: Vec<(String, VerifyJob)>,
    entries: Vec<String>,
}

/// The entry of `host` in a verify record: `(blocks differing, failed)`.
pub(super) fn entry_of(record: &str, id: u64, host: &str) -> Option<(u64, bool)> {
    let mut it = record.splitn(3, ' ');
    if it.next()?.parse::<u64>().ok()? != id {
        return None;
    }
    let _at = it.next()?;
    it.next()?.split(';').find_map(|e| {
        let mut f = e.split(':');
        (f.next()? == host).then_some(())?;
        match f.next()? {
            "failed" => Some((0, true)),
            n => Some((n.parse().ok()?, false)),
        }
    })
}

impl Daemon {
    /// `verify RES`: ask every member (through the metadata).
    pub(super) fn verify_request(
        &mut self,
        res: &str,
        repair: bool,
        rate: u64,
    ) -> Result<Response, Response> {
        let s = self.member(res)?;
        let Some(primary) = s.primary.clone() else {
            return Err(Response::refused(format!(
                "{res} has no designated primary to compare with: make one primary first"
            )));
        };
        let secondaries = s.members.keys().filter(|h| **h != primary).count();
        if secondaries == 0 {
            return Err(Response::refused(format!(
                "{res} has no secondary to compare {primary} with: join one first (`marsadm join-resource {res} DEV` on another node)"
            )));
        }
        let id = brick_core::TimeSource::now_ns(&brick_core::SystemTimeSource);
        self.write(
            &format!("resource-{res}/verify-req"),
            Some(&format!("{id} {} {rate}", u8::from(repair))),
        );
        Ok(Response::ok(format!(
            "{res}: verify {id} requested: {primary} compares its checksums with its {secondaries} secondary(ies)"
        ))
        .data(serde_json::json!({ "id": id })))
    }

    /// Per round: this node's part of the verify of `res`. Returns whether a repair from the
    /// primary must follow.
    pub(super) fn verify_round(&mut self, res: &str, rt: &mut ResourceRt, s: &Snapshot) -> bool {
        let me = self.me();
        let store = self.runner.node().store();
        let Some(req) = store
            .get(&format!("resource-{res}/verify-req"))
            .and_then(VerifyReq::parse)
        else {
            return false;
        };
        if rt.primary().is_some() {
            self.verify_as_primary(res, rt, s, req);
            return false;
        }
        if s.designated_me() || s.mine().is_none() {
            return false;
        }
        // Only a consistent replica has a position to compare at; an old request (a node
        // joining later) is not answered: nobody may be waiting for it any more.
        let now = brick_core::TimeSource::now_ns(&brick_core::SystemTimeSource);
        let stale = now.saturating_sub(req.id) > HOLD_LIMIT.as_nanos() as u64;
        if stale || !mars_strategy::strategy::replica_state(s, &me).consistent {
            if let Some(VerifyHold::Ready(..)) = rt.verify_hold() {
                self.exports.remove_device(&format!("csum-{res}"));
            }
            if !matches!(rt.verify_hold(), Some(VerifyHold::Done(id)) if id >= req.id) {
                rt.set_verify_hold(Some(VerifyHold::Done(req.id)));
            }
            return false;
        }
        let primary = s.primary.clone().unwrap_or_default();
        match rt.verify_hold() {
            Some(VerifyHold::Done(id)) if id >= req.id => false,
            Some(VerifyHold::Holding(id)) if id == req.id => {
                if !rt.replay_idle() {
                    return false;
                }
                let Some(link) = s.mine().and_then(|m| m.replay.clone()) else {
                    return false;
                };
                let at = format!("{},{}", link.log, link.pos);
                match rt.checksums(s) {
                    Ok(d) => {
                        let table = xio::csum::verify::encode_table(&d.snapshot());
                        let dev = brick_core::bricks::MemDisk::new(
                            "verify table",
                            table.len().max(1),
                            brick_core::bricks::MemDiskMode::Inline,
                        );
                        if brick_core::write_all(&*dev, 0, &table).is_ok() {
                            self.exports.add_device(&format!("csum-{res}"), dev);
                            rt.set_verify_hold(Some(VerifyHold::Ready(id, Instant::now())));
                            self.write(
                                &format!("resource-{res}/actual-{me}/verify-ready"),
                                Some(&format!("{id} {at}")),
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%res, "verify: no checksums to offer: {e}");
                        rt.set_verify_hold(Some(VerifyHold::Done(id)));
                    }
                }
                false
            }
            Some(VerifyHold::Ready(id, since)) if id == req.id => {
                let record = s
                    .members
                    .get(&primary)
                    .and_then(|m| m.actual.get("verify"))
                    .cloned()
                    .unwrap_or_default();
                let entry = entry_of(&record, id, &me);
                if entry.is_none() && since.elapsed() < HOLD_LIMIT {
                    return false;
                }
                self.exports.remove_device(&format!("csum-{res}"));
                rt.set_verify_hold(Some(VerifyHold::Done(id)));
                match entry {
                    None => {
                        tracing::warn!(%res, "verify {id}: no result from {primary} within {HOLD_LIMIT:?}; replay goes on");
                        false
                    }
                    Some((blocks, _)) => req.repair && blocks > 0,
                }
            }
            _ => {
                // A new verify: hold replay until the table is taken.
                if let Some(VerifyHold::Ready(..)) = rt.verify_hold() {
                    self.exports.remove_device(&format!("csum-{res}"));
                }
                rt.set_verify_hold(Some(VerifyHold::Holding(req.id)));
                false
            }
        }
    }

    fn verify_as_primary(&mut self, res: &str, rt: &ResourceRt, s: &Snapshot, req: VerifyReq) {
        let me = self.me();
        let mut pv = self.verifies.remove(res).unwrap_or_default();
        if pv.id != req.id {
            pv = PrimaryVerify {
                id: req.id,
                ..PrimaryVerify::default()
            };
        }
        let Some(p) = rt.primary() else { return };
        let csum = p.checksums().cloned();
        for (h, m) in s.members.iter().filter(|(h, _)| **h != me) {
            let started = pv.jobs.iter().any(|(x, _)| x == h)
                || pv.entries.iter().any(|e| e.starts_with(&format!("{h}:")));
            let ready = m.actual.get("verify-ready").and_then(|v| {
                let (id, at) = v.split_once(' ')?;
                let (log, pos) = at.rsplit_once(',')?;
                let log = xio::log::LogName::parse(log).ok()?;
                let pos: u64 = pos.parse().ok()?;
                (id.parse::<u64>().ok()? == req.id).then(|| LogPos::new(log.seq, pos))
            });
            let (Some(at), false, Some(csum)) = (ready, started, csum.clone()) else {
                continue;
            };
            let Some(addr) = self.peer_addr(h) else {
                continue;
            };
            let mut client = ClientConfig::new(
                self.runner.net().config().clone(),
                addr,
                ChannelKind::Sync,
                Target::Device(format!("csum-{res}")),
            );
            client.timeout = Duration::from_secs(10);
            tracing::info!(%res, peer = %h, "verify {}: comparing checksums at {at}", req.id);
            pv.jobs.push((
                h.clone(),
                VerifyJob::start(VerifyInput {
                    peer: h.clone(),
                    client,
                    at,
                    logger: p.logger().clone(),
                    csum,
                    log_dir: rt.log_dir().to_path_buf(),
                    res: res.to_string(),
                    rate: req.rate,
                }),
            ));
        }
        let mut changed = false;
        pv.jobs.retain(|(h, job)| {
            let st = job.state();
            let entry = match (&st.diff, &st.failed) {
                (Some(d), _) => {
                    let ranges: Vec<String> = d
                        .ranges
                        .iter()
                        .take(RANGES_KEPT)
                        .map(|(b, n)| format!("{b}+{n}"))
                        .collect();
                    format!(
                        "{h}:{}:{}:{}:{}",
                        d.blocks(),
                        d.compared,
                        d.unjudged,
                        ranges.join(",")
                    )
                }
                (None, Some(_)) => format!("{h}:failed"),
                (None, None) => return true,
            };
            pv.entries.push(entry);
            changed = true;
            false
        });
        if changed {
            let now = super::unix_secs();
            self.write(
                &format!("resource-{res}/actual-{me}/verify"),
                Some(&format!("{} {now} {}", pv.id, pv.entries.join(";"))),
            );
        }
        self.verifies.insert(res.to_string(), pv);
    }
}

impl Daemon {
    /// The address of node `h` (`ips/ip-<h>`).
    fn peer_addr(&self, h: &str) -> Option<std::net::SocketAddr> {
        self.runner
            .node()
            .store()
            .get(&format!("ips/ip-{h}"))
            .and_then(|v| v.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_requests_parse() {
        let r = "7 1700000000 bob:0:4000:96:;carol:3:3990:107:5+2,90+1;dave:failed";
        assert_eq!(entry_of(r, 7, "bob"), Some((0, false)));
        assert_eq!(entry_of(r, 7, "carol"), Some((3, false)));
        assert_eq!(entry_of(r, 7, "dave"), Some((0, true)));
        assert_eq!(entry_of(r, 8, "bob"), None);
        assert_eq!(entry_of(r, 7, "erin"), None);
        assert_eq!(
            VerifyReq::parse("9 1 1048576"),
            Some(VerifyReq {
                id: 9,
                repair: true,
                rate: 1 << 20
            })
        );
        assert_eq!(VerifyReq::parse("9 1"), None);
    }
}
