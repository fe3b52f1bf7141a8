//! One metadata entry and the merge rule.
//!
//! Invariants (tested here and by the proptests in `tests/meta_prop.rs`):
//! - The merge is a join: commutative, associative, idempotent, so replicas that received the
//!   same set of entries (in any order, duplicated) hold the same entry.
//! - Order of writes: `(stamp, origin, value)`; a newer stamp wins, ties by origin, then by
//!   value (only a misbehaving origin reuses a stamp).
//! - For the same write, tombstone acknowledgements are unioned; `Acks::All` absorbs.

use crate::names::{fnv64, NodeName};
use brick_core::Stamp;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Who has acknowledged a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acks {
    /// The members listed have stored the tombstone.
    Some(BTreeSet<NodeName>),
    /// Every member has stored it: it may be garbage-collected.
    All,
}

impl Acks {
    fn union(&self, other: &Acks) -> Acks {
        match (self, other) {
            (Acks::All, _) | (_, Acks::All) => Acks::All,
            (Acks::Some(a), Acks::Some(b)) => Acks::Some(a.union(b).cloned().collect()),
        }
    }
}

/// The value of an entry: a string, or a tombstone (reads as absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// A live value.
    Set(Arc<str>),
    /// A deletion marker with its acknowledgements.
    Tombstone(Acks),
}

/// A metadata entry: value, Lamport stamp of the write, and the node that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The value or tombstone.
    pub value: Value,
    /// Lamport stamp of the write (nanoseconds since the epoch).
    #[serde(with = "stamp_serde")]
    pub stamp: Stamp,
    /// The node that wrote it.
    pub origin: NodeName,
}

mod stamp_serde {
    use brick_core::Stamp;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(s: &Stamp, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_u64(s.0)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Stamp, D::Error> {
        u64::deserialize(d).map(Stamp)
    }
}

/// What merging a remote entry into a local one gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// The local entry stays as it is.
    Keep,
    /// The local entry is replaced (or created) by this one.
    Take(Entry),
}

impl Entry {
    /// A live value.
    pub fn set(value: &str, stamp: Stamp, origin: NodeName) -> Entry {
        Entry {
            value: Value::Set(Arc::from(value)),
            stamp,
            origin,
        }
    }

    /// A tombstone acknowledged by its origin.
    pub fn tombstone(stamp: Stamp, origin: NodeName) -> Entry {
        let acks = Acks::Some(BTreeSet::from([origin.clone()]));
        Entry {
            value: Value::Tombstone(acks),
            stamp,
            origin,
        }
    }

    /// The live value, or `None` for a tombstone.
    pub fn live(&self) -> Option<&str> {
        match &self.value {
            Value::Set(v) => Some(v),
            Value::Tombstone(_) => None,
        }
    }

    /// Whether this is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        matches!(self.value, Value::Tombstone(_))
    }

    /// The write order: `(stamp, origin, value)`; acknowledgements do not take part.
    pub fn write_order(&self, other: &Entry) -> Ordering {
        self.stamp
            .cmp(&other.stamp)
            .then_with(|| self.origin.cmp(&other.origin))
            .then_with(|| value_rank(&self.value).cmp(&value_rank(&other.value)))
    }

    /// Merge `remote` into `local` (`None` = key absent locally).
    pub fn merge(local: Option<&Entry>, remote: &Entry) -> Merged {
        let Some(local) = local else {
            return Merged::Take(remote.clone());
        };
        match remote.write_order(local) {
            Ordering::Greater => Merged::Take(remote.clone()),
            Ordering::Less => Merged::Keep,
            Ordering::Equal => match (&local.value, &remote.value) {
                (Value::Tombstone(a), Value::Tombstone(b)) => {
                    let u = a.union(b);
                    if &u == a {
                        Merged::Keep
                    } else {
                        Merged::Take(Entry {
                            value: Value::Tombstone(u),
                            ..local.clone()
                        })
                    }
                }
                _ => Merged::Keep,
            },
        }
    }

    /// Add an acknowledgement to a tombstone; `true` if that changed it.
    pub fn ack(&mut self, node: &NodeName) -> bool {
        match &mut self.value {
            Value::Tombstone(Acks::Some(set)) => set.insert(node.clone()),
            _ => false,
        }
    }

    /// Hash of the whole entry (including acknowledgements), for digests.
    pub fn digest(&self, key: &str) -> u64 {
        let mut h = blake3::Hasher::new();
        h.update(key.as_bytes());
        h.update(&[0]);
        h.update(&self.stamp.0.to_le_bytes());
        h.update(self.origin.as_bytes());
        h.update(&[0]);
        match &self.value {
            Value::Set(v) => {
                h.update(b"S");
                h.update(v.as_bytes());
            }
            Value::Tombstone(Acks::All) => {
                h.update(b"A");
            }
            Value::Tombstone(Acks::Some(set)) => {
                h.update(b"T");
                for n in set {
                    h.update(n.as_bytes());
                    h.update(&[0]);
                }
            }
        }
        let out = h.finalize();
        u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8 bytes"))
    }
}

/// Rank of a value for the (pathological) equal-stamp-equal-origin tie: tombstones first, then
/// values by bytes. Acks do not take part so that ack unions stay the same write.
fn value_rank(v: &Value) -> (u8, u64, &str) {
    match v {
        Value::Tombstone(_) => (0, 0, ""),
        Value::Set(s) => (1, fnv64(s.as_bytes()), s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeName {
        Arc::from(s)
    }

    #[test]
    fn newer_wins_ties_by_origin() {
        let a = Entry::set("1", Stamp(5), n("a"));
        let b = Entry::set("2", Stamp(5), n("b"));
        let c = Entry::set("3", Stamp(6), n("a"));
        assert_eq!(Entry::merge(Some(&a), &b), Merged::Take(b.clone()));
        assert_eq!(Entry::merge(Some(&b), &a), Merged::Keep);
        assert_eq!(Entry::merge(Some(&b), &c), Merged::Take(c.clone()));
        assert_eq!(Entry::merge(Some(&c), &c), Merged::Keep);
    }

    #[test]
    fn acks_union_for_the_same_write() {
        let mut t1 = Entry::tombstone(Stamp(9), n("a"));
        let mut t2 = t1.clone();
        assert!(t1.ack(&n("b")));
        assert!(t2.ack(&n("c")));
        let Merged::Take(u) = Entry::merge(Some(&t1), &t2) else {
            panic!("union expected")
        };
        let Value::Tombstone(Acks::Some(set)) = &u.value else {
            panic!()
        };
        assert_eq!(set.len(), 3);
        assert_eq!(Entry::merge(Some(&u), &t1), Merged::Keep);
        assert_ne!(u.digest("k"), t1.digest("k"));
    }
}
