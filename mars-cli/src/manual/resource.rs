//! Manual pages: the resource commands.

use super::{page, Page};

pub const CREATE_RESOURCE: Page = page! {
    about: "    Creates resource RES with DEV (a block device or a file) as its data device on this node,
    which becomes its primary: marsd starts the transaction logger and exports RES over NBD on
    the Unix socket DIR/nbd/RES.sock (and on TCP under the export name RES with marsd
    --nbd-listen). The existing content of DEV is the resource's initial content.",
    refuses: "    - the node is not in a cluster;
    - RES exists already, or is not a valid name (letters, digits, '.', '_', '-');
    - DEV cannot be opened, or is already the data device of another resource here;
    - --size is more than DEV holds, or not more than 64 KiB.",
    upstream: "    marsadm create-resource RES DEV (upstream then shows /dev/mars/RES; here the export is
    NBD: attach it with nbd-client or qemu, see docs/operations.md).",
    examples: "    alice$ marsadm create-resource r0 /dev/vg/r0
    alice$ marsadm create-resource r1 /srv/r1.img --size 10G
    alice$ qemu-io -f raw -c 'write 0 1M' 'nbd+unix:///r0?socket=/var/lib/mars/nbd/r0.sock'",
};

pub const JOIN_RESOURCE: Page = page! {
    about: "    Makes this node a secondary of RES with DEV as its data device: a fast full sync from
    the primary (only chunks that differ travel), then it fetches the primary's logs and
    replays them. Waits until the node appears as a member; `wait-resource RES is-uptodate`
    waits for the end of the sync. While it syncs the replica is InConsistent; afterwards it
    is always consistent (possibly outdated).",
    refuses: "    - the node is not in a cluster, or RES does not exist;
    - the node is already a member of RES;
    - DEV cannot be opened, is smaller than RES, or holds another resource here.",
    upstream: "    marsadm join-resource RES DEV.",
    examples: "    bob$ marsadm join-resource r0 /dev/vg/r0
    bob$ marsadm wait-resource r0 is-uptodate --timeout 3600",
};

pub const LEAVE_RESOURCE: Page = page! {
    about: "    Ends this node's membership of RES: its logs of RES are deleted, DEV keeps its data but
    is no longer replicated. Run `down RES` first.",
    refuses: "    - the node is not a member of RES;
    - the node is the primary of RES: hand over first (`primary RES` elsewhere), or
      delete-resource;
    - RES is attached here (run `down RES` and wait until `view` says Detached).",
    upstream: "    marsadm leave-resource RES (upstream's way to keep a split-brain loser's data: down,
    leave-resource, then use the device under a new name).",
    examples: "    carol$ marsadm down r0
    carol$ marsadm leave-resource --dry-run r0
    carol$ marsadm leave-resource r0",
};

pub const DELETE_RESOURCE: Page = page! {
    about: "    Deletes RES from the cluster: its metadata and this node's logs go; the data device
    keeps its content. The last member runs it, after every other member left.",
    refuses: "    - the node is not a member of RES;
    - other members remain (the message lists them: `down` + `leave-resource` there);
    - RES is attached here (run `down RES` first and wait until it is Detached).",
    upstream: "    marsadm delete-resource RES.",
    examples: "    alice$ marsadm down r0
    alice$ marsadm delete-resource --dry-run r0
    alice$ marsadm delete-resource r0",
};

pub const MIGRATE_RESOURCE: Page = page! {
    about: "    Moves a replica of RES from one node (--from, default: the primary) to another (--to):
    the target joins and full-syncs, once it is UpToDate the primary role moves to it (if the
    source was primary; that waits until the source has no NBD clients), then the source
    goes down and leaves. The steps are recorded in the metadata (migrations/RES) and every
    node carries out its part, so an interrupted marsadm loses nothing: run the same command
    again to follow it. `view` shows the migration and, if a step failed, why.",
    refuses: "    - NODE is not in the cluster, or another migration of RES is under way;
    - RES has no primary and --from is missing; --from equals --to; --from holds no replica;
    - without --dev, the target's published free space (actual-NODE/rest-space) is smaller
      than RES (free space there, or give --dev of a device on the target).",
    upstream: "    no single command upstream: join-resource on the target, primary there, leave-resource
    on the source.",
    examples: "    alice$ marsadm migrate-resource r0 --to carol --dev /dev/vg/r0
    alice$ marsadm migrate-resource r0 --to carol     # again, to follow it",
};

pub const RESIZE: Page = page! {
    about: "    Grows RES online to SIZE (bytes, or with K/M/G/T; default: the smallest member device).
    Run it on the primary; the NBD export grows at once, the secondaries sync the new tail.
    Grow every member's device first (lvextend, or truncate for files): marsd publishes each
    device's size as actsize-<node>.",
    refuses: "    - this node is not the running primary of RES (the message names it);
    - SIZE is smaller than RES (resize only grows), or no SIZE and no larger devices;
    - SIZE is more than a member's device holds (the message names the member).",
    upstream: "    marsadm resize RES [SIZE].",
    examples: "    all$   lvextend -L +10G /dev/vg/r0
    alice$ marsadm resize r0
    alice$ marsadm resize r0 20G",
};
