//! [`replica_state`]: what `marsadm view` says about one replica, from the metadata alone
//! (every node publishes its LEDs and links, so any node tells the truth about all of them).

use super::snapshot::Snapshot;
use crate::views::{ReplayLink, Switch};

/// The view of one replica, in upstream's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// `UpToDate`, `OutDated[R]`, `InConsistent`, `Detached`, `NotJoined`.
    pub disk: String,
    /// `Replicating`, `Replaying`, `Syncing`, `PausedSync`, `PausedFetch`, `PausedReplay`,
    /// `NotYetPrimary`, `NoPrimaryDesignated`, `NotJoined`, `SplitBrain` (on the losing side
    /// of a fork: `invalidate` it).
    pub repl: String,
    /// Six flags: device, consistent, attach, sync, fetch, replay (`-` when off).
    pub flags: String,
    /// `Primary`, `RemainsPrimary`, `NotYetPrimary`, `Secondary`, `None`.
    pub role: String,
    /// Whether the replica is consistent (sync complete and replay past the sync position).
    pub consistent: bool,
    /// Whether it equals the primary's current position.
    pub up_to_date: bool,
}

fn order(l: &ReplayLink) -> (u64, u64) {
    (l.log.seq, l.pos)
}

/// The state of replica `h` of the snapshot's resource.
pub fn replica_state(s: &Snapshot, h: &str) -> ReplicaState {
    let Some(m) = s.members.get(h) else {
        return ReplicaState {
            disk: "NotJoined".into(),
            repl: "NotJoined".into(),
            flags: "------".into(),
            role: "None".into(),
            consistent: false,
            up_to_date: false,
        };
    };
    let size = s.size.unwrap_or(0);
    let designated = s.primary.as_deref() == Some(h);
    let is_primary = m.led("is-primary");
    let synced = m.syncstatus >= size;
    let past_syncpos = match (&m.syncpos, &m.replay) {
        (None, _) => true,
        (Some(p), Some(r)) => order(r) >= order(p),
        (Some(_), None) => false,
    };
    let consistent = synced && past_syncpos;
    let primary_pos = s
        .primary
        .as_ref()
        .and_then(|p| s.members.get(p))
        .and_then(|p| p.replay.as_ref());
    let loser = super::split::split_brain(s).is_some_and(|sb| super::split::is_loser(s, &sb, h));
    let up_to_date = consistent
        && !s.orphaned(h)
        && !loser
        && (is_primary
            // A resource created just now: its designated primary's data is all there is.
            || (designated && s.logs.is_empty() && m.replay.is_none())
            || matches!((&m.replay, primary_pos), (Some(r), Some(p)) if order(r) >= order(p)));
    let attach = m.switch(Switch::Attach);
    let orphan = s.orphaned(h);
    let emergency = is_primary && m.led("is-emergency");
    let disk = if orphan {
        "Orphan"
    } else if emergency {
        "EmergencyMode"
    } else if !attach {
        if m.led("is-attached") {
            "Detaching"
        } else {
            "Detached"
        }
    } else if !consistent {
        "InConsistent"
    } else if up_to_date {
        "UpToDate"
    } else {
        "OutDated[R]"
    };
    let role = match (is_primary, designated) {
        (true, true) => "Primary",
        (true, false) => "RemainsPrimary",
        (false, true) => "NotYetPrimary",
        (false, false) if m.led("is-attached") => "Secondary",
        (false, false) => "None",
    };
    let repl = if orphan {
        "Orphan"
    } else if emergency {
        "EmergencyMode"
    } else if loser {
        "SplitBrain"
    } else if is_primary && designated {
        "Replicating"
    } else if designated {
        "NotYetPrimary"
    } else if s.primary.is_none() {
        "NoPrimaryDesignated"
    } else if !synced && !m.switch(Switch::Sync) {
        "PausedSync"
    } else if !synced {
        "Syncing"
    } else if !m.switch(Switch::Connect) {
        "PausedFetch"
    } else if !m.switch(Switch::AllowReplay) {
        "PausedReplay"
    } else {
        "Replaying"
    };
    let ch = |on: bool, up: char, low: char| if on { up } else { low };
    let flags: String = [
        // Upstream: `D` the device (our NBD export) is present, `d` only the disk is
        // attached, `-` neither.
        if is_primary {
            'D'
        } else if m.led("is-attached") {
            'd'
        } else {
            '-'
        },
        ch(consistent, 'C', '-'),
        ch(attach, 'A', '-'),
        if synced {
            'S'
        } else {
            ch(m.switch(Switch::Sync), 's', '-')
        },
        ch(m.switch(Switch::Connect), 'F', '-'),
        ch(m.switch(Switch::AllowReplay), 'R', '-'),
    ]
    .into_iter()
    .collect();
    ReplicaState {
        disk: disk.into(),
        repl: repl.into(),
        flags,
        role: role.into(),
        consistent,
        up_to_date,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(pairs: &[(&str, &str)]) -> Snapshot {
        Snapshot::from_pairs("alice", "r0", pairs.iter().copied())
    }

    #[test]
    fn a_just_created_primary_is_up_to_date_before_its_logger_runs() {
        let keys = [
            ("size", "1048576"),
            ("primary", "alice"),
            ("data-alice", "/dev/a"),
            ("syncstatus-alice", "1048576"),
        ];
        let st = replica_state(&snap(&keys), "alice");
        assert_eq!(
            (st.disk.as_str(), st.role.as_str()),
            ("UpToDate", "NotYetPrimary")
        );
        // Once logs exist, a designated primary without a replay position is not.
        let mut more = keys.to_vec();
        more.push(("log-000000001-bob", "4096"));
        let st = replica_state(&snap(&more), "alice");
        assert_eq!(st.disk, "OutDated[R]");
    }
}
