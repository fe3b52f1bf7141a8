//! The memory budget's metrics: the node's (`marsd --mem-budget`) and each primary's share.

use super::Out;
use crate::view::{MemoryStatus, NodeStatus};

type MemValue = fn(&MemoryStatus) -> u64;

/// (suffix, kind, help of the node's, help of a resource's, value)
const FIELDS: [(&str, &str, &str, &str, MemValue); 4] = [
    (
        "used_bytes",
        "gauge",
        "Bytes of the node's memory budget held (written, not yet written back).",
        "Bytes of the node's memory budget the primary holds.",
        |m| m.used,
    ),
    (
        "limit_bytes",
        "gauge",
        "The node's memory budget (--mem-budget).",
        "The most of the node's budget the primary may hold.",
        |m| m.limit,
    ),
    (
        "floor_bytes",
        "gauge",
        "The sum of the primaries' floors.",
        "What the primary can always get of the node's budget.",
        |m| m.floor,
    ),
    (
        "waits_total",
        "counter",
        "Writes that waited for memory, on any primary of the node.",
        "Writes of the primary that waited for memory.",
        |m| m.waits,
    ),
];

pub(super) fn render(o: &mut Out, s: &NodeStatus) {
    for (suffix, kind, node_help, res_help, f) in FIELDS {
        let name = format!("mars_memory_{suffix}");
        o.family(&name, kind, node_help);
        o.sample(&name, &[], f(&s.memory));
        let name = format!("mars_resource_memory_{suffix}");
        o.family(&name, kind, res_help);
        for r in &s.resources {
            if let Some(m) = &r.memory {
                o.sample(&name, &[("resource", &r.name)], f(m));
            }
        }
    }
}
