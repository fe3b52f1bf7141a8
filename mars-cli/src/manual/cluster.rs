//! Manual pages: the cluster commands. Bodies are indented by four spaces as printed.

use super::{page, Page};

pub const CREATE_CLUSTER: Page = page! {
    about: "    Makes the local node the first member of a new cluster. The cluster gets a uuid
    (<node>_<time>) and the node's address (its marsd --listen) is recorded as ips/ip-<node>.
    Other nodes then join with `join-cluster HOST:PORT` using the same secret file.",
    refuses: "    - the node is already in a cluster (nothing to do).",
    upstream: "    marsadm create-cluster (same name; no /mars file system to prepare here: marsd creates
    its --mars-dir).",
    examples: "    alice$ marsadm create-cluster
    created cluster alice_1718000000.123 with node alice at 10.0.0.1:7777",
};

pub const JOIN_CLUSTER: Page = page! {
    about: "    Asks the node at HOST:PORT (a marsd --listen address of any member) to let this node
    into its cluster, and waits until the cluster's metadata arrived. The connection is
    authenticated both ways with the cluster secret (HMAC-SHA256): a node with another secret
    is refused at the handshake.",
    refuses: "    - this node is already in a cluster (run `leave-cluster` first);
    - PEER is not HOST:PORT, or nothing answers there, or the secrets differ (the message
      names which);
    - the answer does not arrive within --timeout (exit 1, the request may still complete:
      check with `marsadm view`).",
    upstream: "    marsadm join-cluster HOST (upstream uses ssh and rsync to copy /mars; here the
    metadata comes over the authenticated mars-net connection).",
    examples: "    bob$ marsadm join-cluster 10.0.0.1:7777
    bob$ marsadm wait-cluster",
};

pub const LEAVE_CLUSTER: Page = page! {
    about: "    Removes this node from its cluster; the other members forget it. The node can then
    create or join another cluster.",
    refuses: "    - the node is not in a cluster;
    - the node still holds data of a resource: run `down RES` and `leave-resource RES` for
      each first.",
    upstream: "    marsadm leave-cluster.",
    examples: "    carol$ marsadm down r0 && marsadm leave-resource r0
    carol$ marsadm leave-cluster",
};

pub const MERGE_CLUSTER: Page = page! {
    about: "    Merges this node's cluster with the cluster of the node at HOST:PORT: afterwards every
    node of both is a member of one cluster and every resource keeps replicating as before.
    Waits for the other cluster's answer.",
    refuses: "    - this node is not in a cluster;
    - PEER cannot be reached or has another secret;
    - a resource name exists in both clusters: the answer lists them; rename or delete them on
      one side first. A refused merge changes nothing.",
    upstream: "    marsadm merge-cluster HOST.",
    examples: "    alice$ marsadm merge-cluster 10.0.1.1:7777
    merged with the cluster of dave",
};

pub const WAIT_CLUSTER: Page = page! {
    about: "    Waits until this node is in a cluster and has a metadata connection to every other
    node of it. Prints the nodes not connected yet while it waits (on stderr).",
    refuses: "    - nothing; it fails when --timeout passes first (exit 1, with the nodes still not
      connected).",
    upstream: "    marsadm wait-cluster.",
    examples: "    bob$ marsadm wait-cluster --timeout 30",
};
