//! Manual pages: roles (primary, secondary) and replication control (switches, invalidate).

use super::{page, Page};

pub const PRIMARY: Page = page! {
    about: "    Planned handover: makes this node the designated primary of RES and waits until it runs
    as primary. The old primary stops its export once its NBD clients disconnected; this node
    replays the old primary's logs to their end, then starts its own log and export. Nothing
    acknowledged is lost.

    With --force (forced failover, for a primary that is dead or cut off): this node starts
    at once with what it has replayed; what the old primary wrote and this node did not fetch
    is lost, and if the old primary comes back its history forks (split brain: `view` reports
    it on every node, `invalidate` on the losers resolves it). --dry-run says what would
    happen and how much would be lost.",
    refuses: "    - the node is not a member of RES, or RES is detached here (`up RES`);
    - the replica is not complete (full sync still running: wait-resource RES is-uptodate);
    - the old primary still has NBD clients (disconnect them there, then retry);
    - --force without `pause-fetch RES` first (forcing gives up what is not fetched);
    - --force while the old primary is reachable (use the planned handover);
    - --force on a replica that is not consistent.",
    upstream: "    marsadm primary RES; marsadm primary --force RES (upstream's `primary --force` after
    `pause-fetch`, as in its manual's failover section).",
    examples: "    bob$ marsadm primary r0
    carol$ marsadm pause-fetch r0
    carol$ marsadm primary --force --dry-run r0
    carol$ marsadm primary --force r0",
};

pub const SECONDARY: Page = page! {
    about: "    Gives up the primary role of RES: RES has no designated primary afterwards; the export
    here stops once its NBD clients disconnected. Usually not needed: `primary RES` on the
    new node does the whole handover.",
    refuses: "    - the node is not a member of RES (if it is not the designated primary, nothing
      happens and it says so).",
    upstream: "    marsadm secondary RES.",
    examples: "    alice$ marsadm secondary r0",
};

pub const UP: Page = page! {
    about: "    Switches everything of RES on here: attach the data device, sync, fetch and replay
    (the four switches todo-<node>/{attach,connect,sync,allow-replay}).",
    refuses: "    - the node is not a member of RES.",
    upstream: "    marsadm up RES.",
    examples: "    bob$ marsadm up r0",
};

pub const DOWN: Page = page! {
    about: "    Switches everything of RES off here and waits until the device is detached: a
    secondary stops syncing, fetching and replaying; a primary stops its export (after its
    clients left) and its logger. The metadata stays: `up RES` resumes.",
    refuses: "    - the node is not a member of RES; fails after --timeout if the device does not
      detach (e.g. a primary whose NBD clients stay connected).",
    upstream: "    marsadm down RES.",
    examples: "    bob$ marsadm down r0",
};

pub const ATTACH: Page = page! {
    about: "    Attaches the local data device of RES (switch todo-<node>/attach on): marsd opens it
    again after a `detach`, and the other switches (sync, fetch, replay) take effect again.",
    refuses: "    - the node is not a member of RES.",
    upstream: "    marsadm attach RES.",
    examples: "    bob$ marsadm attach r0",
};

pub const DETACH: Page = page! {
    about: "    Detaches the local data device of RES (switch todo-<node>/attach off): what uses the
    device here stops and the device is closed, e.g. for maintenance of the disk. `view`
    says Detached once it is; `attach RES` or `up RES` reopens it.",
    refuses: "    - the node is not a member of RES.",
    upstream: "    marsadm detach RES.",
    examples: "    bob$ marsadm detach r0",
};

pub const PAUSE_SYNC: Page = page! {
    about: "    Pauses the full sync of RES on this node (switch sync off); it resumes where it stopped.
    `view` says PausedSync.",
    refuses: "    - the node is not a member of RES.",
    upstream: "    marsadm pause-sync RES.",
    examples: "    bob$ marsadm pause-sync r0",
};

pub const RESUME_SYNC: Page = page! {
    about: "    Resumes the full sync of RES on this node from its restart point (DIR/resource-RES/
    sync.restart): what was already copied is not copied again.",
    refuses: "    - the node is not a member of RES.",
    upstream: "    marsadm resume-sync RES.",
    examples: "    bob$ marsadm resume-sync r0",
};

pub const PAUSE_FETCH: Page = page! {
    about: "    Stops fetching logs of RES from the primary (switch connect off). Replay goes on up to
    what was fetched; `view` says PausedFetch. Required before `primary --force`: it fixes
    what this node will have when it takes over.",
    refuses: "    - the node is not a member of RES.",
    upstream: "    marsadm pause-fetch RES (upstream: disconnect).",
    examples: "    carol$ marsadm pause-fetch r0",
};

pub const RESUME_FETCH: Page = page! {
    about: "    Resumes fetching logs of RES from the primary (switch connect on); fetch continues where
    the local copy of the log ends.",
    refuses: "    - the node is not a member of RES.",
    upstream: "    marsadm resume-fetch RES (upstream: connect).",
    examples: "    carol$ marsadm resume-fetch r0",
};

pub const PAUSE_REPLAY: Page = page! {
    about: "    Stops applying fetched logs of RES to the data device (switch allow-replay off): the
    device stays at a consistent older state while logs keep arriving; `view` says
    PausedReplay.",
    refuses: "    - the node is not a member of RES.",
    upstream: "    marsadm pause-replay RES.",
    examples: "    bob$ marsadm pause-replay r0",
};

pub const RESUME_REPLAY: Page = page! {
    about: "    Resumes applying the fetched logs of RES to the data device (switch allow-replay on),
    from the replay position this node last published.",
    refuses: "    - the node is not a member of RES.",
    upstream: "    marsadm resume-replay RES.",
    examples: "    bob$ marsadm resume-replay r0",
};

pub const INVALIDATE: Page = page! {
    about: "    Discards this replica's data and history of RES and full-syncs it from the designated
    primary; waits until the replica is consistent again. This is how a split brain is
    resolved on each node whose data is to be thrown away, and how a secondary left Orphan by
    the primary's emergency mode catches up. --dry-run says what would be discarded (bytes
    past the fork, local log files) and where the sync comes from.",
    refuses: "    - the node is not a member of RES;
    - RES has no designated primary (make the node with the good data primary first);
    - this node is the primary (invalidate the other side);
    - the primary is in emergency mode (free space there and run `cron` first).",
    upstream: "    marsadm invalidate RES.",
    examples: "    bob$ marsadm view-is-split-brain r0
    bob$ marsadm invalidate --dry-run r0
    bob$ marsadm invalidate r0",
};
