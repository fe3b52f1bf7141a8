//! Manual pages: queries and maintenance.

use super::{page, Page};

/// A `view-*` command printing one field of this node's replica.
macro_rules! view_field {
    ($what:literal, $values:literal, $example:literal) => {
        page! {
            about: concat!("    Prints ", $what, " of this node's replica of RES (one word; NotJoined if this
    node is not a member). With --json, a JSON string.
    Values: ", $values, "."),
            refuses: "    - RES does not exist in this cluster.",
            upstream: concat!("    marsadm ", $example, " RES (same words as upstream's view)."),
            examples: concat!("    bob$ marsadm ", $example, " r0"),
        }
    };
}

pub const VIEW: Page = page! {
    about: "    Shows the resources (RES; `all`: every resource of the cluster; none: every resource
    with a replica here) with every replica, in upstream's words: per replica
    `HOST: RES [replicas/nodes] DISKSTATE REPLSTATE FLAGS ROLE PRIMARY [no contact N s]`, then
    progress lines for sync, fetch and replay (bar, percent, rate, ETA, lag in bytes and
    seconds), scrubs and checksum errors, NBD clients, and messages (errors, warnings, infos:
    why a replica waits, what went wrong), plus split brain, emergency mode and migrations
    with the command that resolves them.
    FLAGS has six places: D device, C consistent, A attach, S sync, F fetch, R replay (lower
    case or '-' when off).
    With --json: the daemon's status as JSON (schema in mars-cli/src/FORMAT.md).",
    refuses: "    - RES does not exist; the node is not in a cluster (it says so and which command to
      run).",
    upstream: "    marsadm view [RES|all] (the default macro).",
    examples: "    bob$ marsadm view
    bob$ marsadm view all
    bob$ marsadm view r0 --json",
};

pub const EVENTS: Page = page! {
    about: "    Streams state changes as they happen, one line each (like drbdsetup events2): first
    the current state (type `exists`), then a `change` line per difference the daemon sees in
    a round: roles, disk and replication states, the primary, split brain, emergency mode,
    peer connections, sync milestones, messages. With --json one JSON object per line
    (schema in mars-cli/src/FORMAT.md). Runs until interrupted, --count events, or --timeout.
    A subscriber that stops reading is dropped by marsd (never waited for) with a final
    `dropped` line.",
    refuses: "    - RES does not exist; marsd is not running.",
    upstream: "    none (drbdsetup events2 in DRBD).",
    examples: "    alice$ marsadm events
    alice$ marsadm events r0 --json --count 10",
};

pub const VERIFY: Page = page! {
    about: "    Compares every consistent secondary of RES with the primary, online, while the resource
    is in use: each secondary holds its replay for a moment, takes its checksum table at its
    replay position and serves it; the primary compares it with its own table, leaving out the
    blocks that any log record at or after the older of that position and its own writeback
    watermark touches (there the replicas may legitimately differ) and blocks whose checksum
    is unknown on either side. Reports, per secondary, the differing ranges (byte offsets),
    how many blocks were compared and how many were not judged. The table travels throttled
    by --rate (counted in data bytes covered; the table is 1/1024 of that). The result is
    recorded for every node's `view` (\"last verify: 3 min ago, 0 differences\"); an
    interrupted verify (a node restarting) is answered again when the primary runs again.
    --repair: a secondary that differs re-syncs from the primary (fast full sync: only
    differing chunks travel; consistent again once replay passed the sync).
    verify compares replicas with each other; `scrub` compares one replica's data with its
    own checksums: run both.",
    refuses: "    - the node is not a member of RES;
    - RES has no designated primary, or no secondary.",
    upstream: "    none (DRBD's online verify).",
    examples: "    alice$ marsadm verify r0
    bob$ marsadm verify r0 --repair",
    exit: "    0 done, no differences (or repaired); 1 differences found without --repair, refused
    or failed; 2 usage error.",
};

pub const SCRUB: Page = page! {
    about: "    Re-reads the local data device of RES and compares every 4 KiB block with the checksum
    stored when it was written (DIR/checksums/RES.csum). Reports the damaged blocks (their
    byte offsets) and checksum-file errors (a damaged page of the checksum file: those blocks
    are not judged). Unknown checksums (blocks never written through marsd) are learnt from
    the data. Throttled by --rate; shows progress and rate while it waits; interrupted (marsd
    stopped, --timeout, a crash), the next scrub continues from its restart point unless
    --restart. The result is recorded for every node's `view` (\"last scrub: 3 h ago, 0
    differences\").
    --repair: on a secondary, damaged blocks are re-synced from the primary (a fast full
    sync: only differing chunks travel; the replica is consistent again once replay passed
    the sync); damaged checksum-file pages are rebuilt from the data (the data is never
    changed from checksums). On the primary, damaged blocks cannot be repaired from older
    replicas: hand over first, then scrub --repair on the old primary.",
    refuses: "    - the node is not a member of RES, or RES is not attached here;
    - a scrub of RES runs already (wait for it: `marsadm view RES`).",
    upstream: "    none (the seed's md5 checksums of 4k blocks; DRBD's verify).",
    examples: "    bob$ marsadm scrub r0
    bob$ marsadm scrub r0 --repair
    bob$ marsadm scrub r0 --rate 50M",
    exit: "    0 done, nothing damaged (or repaired); 1 damaged blocks found without --repair, refused
    or failed; 2 usage error.",
};

pub const VIEW_DISKSTATE: Page = view_field!(
    "the disk state",
    "UpToDate, OutDated[F|R|FR], InConsistent, Orphan, EmergencyMode, Detached, ...",
    "view-diskstate"
);
pub const VIEW_REPLSTATE: Page = view_field!(
    "the replication state",
    "Replicating, Replaying, Syncing, PausedSync, PausedFetch, PausedReplay, UnResponsive,
    SplitBrain, ...",
    "view-replstate"
);
pub const VIEW_FLAGS: Page = view_field!(
    "the six flags",
    "DCASFR with lower case or '-' for what is off (see `help view`)",
    "view-flags"
);
pub const VIEW_ROLE: Page = view_field!(
    "the role",
    "Primary, Secondary, NotYetPrimary, RemainsPrimary, None",
    "view-role"
);

pub const VIEW_PRIMARYNODE: Page = page! {
    about: "    Prints the designated primary of RES (resource-RES/primary), or (none). The designated
    primary may not run as primary yet: `view-role` on it says NotYetPrimary until it does.",
    refuses: "    - the node is not in a cluster.",
    upstream: "    marsadm view-primarynode RES.",
    examples: "    bob$ marsadm view-primarynode r0",
};

pub const VIEW_IS_SPLIT_BRAIN: Page = page! {
    about: "    Prints 1 if the history of RES forks (split brain), else 0; when it forks, stderr says
    after which log and position, and how many bytes each node holds past the fork. Every
    node reports the same.",
    refuses: "    - the node is not in a cluster.",
    upstream: "    marsadm view-is-split-brain RES.",
    examples: "    bob$ marsadm view-is-split-brain r0",
    exit: "    0 answered (whatever the answer); 1 failed (marsd unreachable); 2 usage error.",
};

pub const WAIT_RESOURCE: Page = page! {
    about: "    Waits until this node's replica of RES is primary (is-primary), secondary
    (is-secondary) or up to date with the primary (is-uptodate). Prints the state while it
    waits (on stderr).",
    refuses: "    - RES does not exist; fails when --timeout passes first.",
    upstream: "    marsadm wait-resource RES is-primary|is-secondary|is-uptodate (a subset).",
    examples: "    bob$ marsadm wait-resource r0 is-uptodate --timeout 600",
    exit: "    0 the state was reached; 1 refused, failed or timed out (with the last state);
    2 usage error.",
};

pub const GET_LINK: Page = page! {
    about: "    Prints the value of one key of the replicated metadata store (upstream calls them
    links), e.g. resource-r0/primary or defaults/emergency-free.",
    refuses: "    - no such key (`lowlevel-ls` lists them).",
    upstream: "    marsadm get-link (upstream reads /mars symlinks).",
    examples: "    alice$ marsadm get-link resource-r0/primary",
};

pub const LOWLEVEL_LS: Page = page! {
    about: "    Lists the keys of the metadata store under PREFIX (all without), with their values.
    With --json, as a JSON list.",
    refuses: "    - nothing.",
    upstream: "    marsadm lowlevel-ls-host-ips and ls -l /mars (the keys are upstream's symlink names).",
    examples: "    alice$ marsadm lowlevel-ls ips/
    alice$ marsadm lowlevel-ls resource-r0/",
};

pub const SET_LINK: Page = page! {
    about: "    Writes a key of the metadata store; it propagates to the cluster like any change. For
    experts and tunables, e.g. the free-space levels defaults/emergency-free,
    defaults/stop-fetch-free, defaults/delete-logs-free (bytes) or
    resource-RES/emergency-limit.",
    refuses: "    - keys owned by another node (-<node> suffix) or malformed keys.",
    upstream: "    marsadm set-link (upstream writes /mars symlinks).",
    examples: "    alice$ marsadm set-link defaults/emergency-free 4294967296",
};

pub const LOG_ROTATE: Page = page! {
    about: "    Starts a new log file of RES on its primary (the current one ends; secondaries switch
    to the new one after it). Logs also rotate by themselves at 256 MiB.",
    refuses: "    - this node is not the running primary of RES (the message names it).",
    upstream: "    marsadm log-rotate RES (deprecated upstream in favour of cron).",
    examples: "    alice$ marsadm log-rotate r0",
};

pub const LOG_DELETE: Page = page! {
    about: "    Deletes this node's log files of RES that no member needs any more (every member
    replayed past them).",
    refuses: "    - the node is not a member of RES.",
    upstream: "    marsadm log-delete RES (deprecated upstream in favour of cron).",
    examples: "    alice$ marsadm log-delete r0",
};

pub const CRON: Page = page! {
    about: "    Housekeeping for every resource here: log-rotate (on primaries), log-delete; and on a
    primary in emergency mode with enough free space again and no NBD client, it restarts
    the logger and export (leaving emergency mode). Run it regularly, e.g. from a systemd
    timer (contrib/marsadm-cron.timer).",
    refuses: "    - the node is not in a cluster.",
    upstream: "    marsadm cron.",
    examples: "    alice$ marsadm cron",
};

pub const HELP: Page = page! {
    about: "    Without COMMAND: the commands by group. With COMMAND: its manual page (the same as
    `marsadm COMMAND --help`).",
    refuses: "    - COMMAND does not exist (exit 2).",
    upstream: "    marsadm --help.",
    examples: "    $ marsadm help
    $ marsadm help primary",
};
