//! `migrate-resource` (the seed's pool-wide data migration, which upstream never had): a
//! shared record `migrations/<res>` = `to=<node> from=<node> dev=<path|->` that every node
//! sees, and [`migrate_step`], the pure rule that says what this node does next for it.
//! The steps: join on the target; wait until it is UpToDate; if the source is the primary,
//! hand over once the source has no NBD clients; then the source goes down and leaves; then
//! the record is removed. Because the record lives in the metadata, an interrupted
//! `marsadm migrate-resource` loses nothing: the nodes go on, and running it again waits.

use super::snapshot::Snapshot;
use super::state::replica_state;
use std::fmt;

/// One migration, as recorded in `migrations/<res>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The node that gets a replica.
    pub to: String,
    /// The node that gives its replica up.
    pub from: String,
    /// The target's device (`None`: a sparse file in its mars directory).
    pub dev: Option<String>,
}

impl Migration {
    /// Parse the record's value.
    pub fn parse(v: &str) -> Option<Migration> {
        let mut to = None;
        let mut from = None;
        let mut dev = None;
        for part in v.split_whitespace() {
            match part.split_once('=')? {
                ("to", x) => to = Some(x.to_string()),
                ("from", x) => from = Some(x.to_string()),
                ("dev", "-") => {}
                ("dev", x) => dev = Some(x.to_string()),
                _ => return None,
            }
        }
        Some(Migration {
            to: to?,
            from: from?,
            dev,
        })
    }
}

impl fmt::Display for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "to={} from={} dev={}",
            self.to,
            self.from,
            self.dev.as_deref().unwrap_or("-")
        )
    }
}

/// What this node does next for a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrateStep {
    /// Nothing (not involved, or waiting for another node).
    Wait(String),
    /// Target: join the resource with this device (`None`: make one).
    Join(Option<String>),
    /// Target: become the designated primary (the source is idle).
    TakeOver,
    /// Source: stop everything here (`down`).
    Down,
    /// Source: leave the resource (it is detached).
    Leave,
    /// The migration is complete: remove its record.
    Done,
}

/// The next step of migration `m` of the snapshot's resource for node `s.me`.
/// `detached_here`: nothing of the resource runs on this node any more.
pub fn migrate_step(s: &Snapshot, m: &Migration, detached_here: bool) -> MigrateStep {
    let me = s.me.as_str();
    let target = s.members.get(&m.to);
    let target_ready = target.is_some() && replica_state(s, &m.to).up_to_date;
    let source_member = s.members.contains_key(&m.from);
    let source_primary = s.primary.as_deref() == Some(m.from.as_str());
    if me == m.to {
        if target.is_none() {
            return MigrateStep::Join(m.dev.clone());
        }
        if !target_ready {
            return MigrateStep::Wait(format!("{} is syncing and replaying", m.to));
        }
        if source_primary {
            let clients = s.members.get(&m.from).map_or(0, |x| x.count("open-count"));
            if clients > 0 {
                return MigrateStep::Wait(format!(
                    "waiting for {clients} NBD client(s) of {} to disconnect before the handover",
                    m.from
                ));
            }
            return MigrateStep::TakeOver;
        }
        if !source_member {
            return MigrateStep::Done;
        }
        return MigrateStep::Wait(format!("{} is leaving", m.from));
    }
    if me == m.from && source_member {
        let moved = !source_primary
            && (s.primary.as_deref() != Some(m.to.as_str())
                || target.is_some_and(|t| t.led("is-primary")));
        if !target_ready || !moved {
            return MigrateStep::Wait(format!("waiting for {} to take over", m.to));
        }
        if s.mine()
            .is_some_and(|x| x.switch(crate::views::Switch::Attach))
            || !detached_here
        {
            return MigrateStep::Down;
        }
        return MigrateStep::Leave;
    }
    MigrateStep::Wait(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(me: &str, extra: &[(&str, &str)]) -> Snapshot {
        let mut kv = vec![
            ("size", "100"),
            ("primary", "a"),
            ("data-a", "/a"),
            ("syncstatus-a", "100"),
            ("actual-a/is-primary", "1"),
            ("replay-a", "log-000000001-a,700,0"),
        ];
        kv.extend_from_slice(extra);
        Snapshot::from_pairs(me, "r", kv)
    }

    const C: &[(&str, &str)] = &[
        ("data-c", "/c"),
        ("syncstatus-c", "100"),
        ("replay-c", "log-000000001-a,700,0"),
    ];

    #[test]
    fn record_roundtrip() {
        let m = Migration::parse("to=c from=a dev=-").unwrap();
        assert_eq!(m.dev, None);
        assert_eq!(m.to_string(), "to=c from=a dev=-");
        assert!(Migration::parse("to=c").is_none());
        assert!(Migration::parse("to=c from=a what=x").is_none());
    }

    #[test]
    fn the_steps_in_order() {
        let m = Migration::parse("to=c from=a dev=/dev/x").unwrap();
        // The target joins, then waits for its sync and replay.
        assert_eq!(
            migrate_step(&snap("c", &[]), &m, true),
            MigrateStep::Join(Some("/dev/x".into()))
        );
        let syncing = [("data-c", "/c"), ("syncstatus-c", "10")];
        assert!(matches!(
            migrate_step(&snap("c", &syncing), &m, true),
            MigrateStep::Wait(_)
        ));
        // Up to date: hand over, but only once the source has no NBD clients.
        let mut busy = C.to_vec();
        busy.push(("actual-a/open-count", "2"));
        match migrate_step(&snap("c", &busy), &m, true) {
            MigrateStep::Wait(w) => assert!(w.contains("2 NBD client(s) of a"), "{w}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(migrate_step(&snap("c", C), &m, true), MigrateStep::TakeOver);
        // The source waits while it is still primary, then goes down and leaves.
        assert!(matches!(
            migrate_step(&snap("a", C), &m, false),
            MigrateStep::Wait(_)
        ));
        let mut moved: Vec<(&str, &str)> = C.to_vec();
        moved.extend([
            ("primary", "c"),
            ("actual-c/is-primary", "1"),
            ("actual-a/is-primary", "0"),
        ]);
        assert_eq!(
            migrate_step(&snap("a", &moved), &m, false),
            MigrateStep::Down
        );
        let mut down = moved.clone();
        down.push(("todo-a/attach", "0"));
        assert_eq!(
            migrate_step(&snap("a", &down), &m, true),
            MigrateStep::Leave
        );
        // When the source is gone, the target removes the record.
        let gone = [
            ("primary", "c"),
            ("data-c", "/c"),
            ("syncstatus-c", "100"),
            ("actual-c/is-primary", "1"),
            ("replay-c", "log-000000002-c,512,0"),
        ];
        let s = Snapshot::from_pairs("c", "r", [("size", "100")].into_iter().chain(gone));
        assert_eq!(migrate_step(&s, &m, true), MigrateStep::Done);
        // Others are not involved.
        assert_eq!(
            migrate_step(&snap("b", C), &m, true),
            MigrateStep::Wait(String::new())
        );
    }
}
