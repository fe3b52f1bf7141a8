//! Cluster and resource membership operations on a [`MetaNode`]: create-cluster, join-cluster
//! (via any member), leave-cluster (refused while this node holds resource data),
//! merge-cluster (refused, with the list, when resource names collide), and the minimal
//! resource-membership writes the propagation needs (`resources/<r>` directory entry,
//! `resource-<r>/data-<h>`, `device-<h>`).
//!
//! Every operation only writes keys and queues messages; completion of the remote part is
//! reported through [`NodeEvent`]s.

use crate::error::{Error, Result};
use crate::names::{check_node, NodeName, Scope};
use crate::node::{MetaNode, NodeEvent};
use crate::proto::Body;
use std::sync::Arc;

impl MetaNode {
    fn require_cluster(&self) -> Result<Arc<str>> {
        self.cluster().cloned().ok_or_else(|| Error::NoCluster {
            node: self.me().to_string(),
        })
    }

    fn require_no_cluster(&self) -> Result<()> {
        match self.cluster() {
            Some(u) => Err(Error::AlreadyInCluster {
                node: self.me().to_string(),
                uuid: u.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// create-cluster: a new cluster with this node as its only member reachable at `addr`.
    pub fn create_cluster(&mut self, addr: &str) -> Result<Arc<str>> {
        self.require_no_cluster()?;
        let uuid = format!("{}_{}", self.me(), self.store().clock().peek());
        self.set("uuid", &uuid)?;
        let me = self.me().clone();
        self.set(&format!("ips/ip-{me}"), addr)?;
        Ok(Arc::from(uuid))
    }

    /// join-cluster via any member `contact`: announces `ips/ip-<me>` = `addr`; completion is
    /// [`NodeEvent::Joined`] once the contact's `Welcome` arrived.
    pub fn join_cluster(&mut self, contact: &str, addr: &str) -> Result<()> {
        self.require_no_cluster()?;
        check_node(contact)?;
        let me = self.me().clone();
        let key = format!("ips/ip-{me}");
        self.set(&key, addr)?;
        let e = self.store().entry(&key).cloned().expect("just written");
        let contact: NodeName = Arc::from(contact);
        self.set_pending_join(contact.clone());
        self.send(
            &contact,
            Body::Join {
                entries: vec![(Arc::from(key), e)],
            },
        );
        Ok(())
    }

    /// Resources of which this node holds data (`resource-<r>/data-<me>` live).
    pub fn resources_with_data(&self) -> Vec<String> {
        let me = self.me().clone();
        self.store()
            .resources()
            .into_iter()
            .filter(|r| {
                self.store()
                    .get(&format!("resource-{r}/data-{me}"))
                    .is_some()
            })
            .map(|r| r.to_string())
            .collect()
    }

    /// leave-cluster: tombstones this node's global keys. Refused while it holds resource data.
    pub fn leave_cluster(&mut self) -> Result<()> {
        self.require_cluster()?;
        let held = self.resources_with_data();
        if !held.is_empty() {
            return Err(Error::StillHoldsData {
                node: self.me().to_string(),
                resources: held,
            });
        }
        let me = self.me().clone();
        let mut keys: Vec<String> = vec![format!("ips/ip-{me}")];
        for pre in [format!("actual-{me}/"), format!("defaults-{me}/")] {
            keys.extend(
                self.store()
                    .list(&pre)
                    .into_iter()
                    .map(|(k, _)| k.to_string()),
            );
        }
        for k in keys {
            self.delete(&k)?;
        }
        Ok(())
    }

    /// Live resource names of the cluster directory (`resources/<r>`).
    pub fn resource_directory(&self) -> Vec<Arc<str>> {
        self.store()
            .list("resources/")
            .into_iter()
            .map(|(k, _)| Arc::from(&k["resources/".len()..]))
            .collect()
    }

    /// merge-cluster with the cluster of `contact` (reachable out of band). The contact checks
    /// that resource names are disjoint; completion is [`NodeEvent::MergedWith`] or
    /// [`NodeEvent::MergeRefused`].
    pub fn merge_cluster(&mut self, contact: &str) -> Result<()> {
        self.require_cluster()?;
        check_node(contact)?;
        let contact: NodeName = Arc::from(contact);
        let resources = self.resource_directory();
        let entries = self.store().scope_entries(&Scope::Global);
        self.set_pending_merge(contact.clone());
        self.send(&contact, Body::MergeRequest { resources, entries });
        Ok(())
    }

    pub(crate) fn on_merge_request(
        &mut self,
        from: &NodeName,
        their_cluster: Arc<str>,
        resources: Vec<Arc<str>>,
        entries: Vec<(crate::names::Key, crate::entry::Entry)>,
    ) {
        let Some(mine) = self.cluster().cloned() else {
            return;
        };
        let ours = self.resource_directory();
        let mut conflicts: Vec<String> = resources
            .iter()
            .filter(|r| ours.contains(r))
            .map(|r| r.to_string())
            .collect();
        if their_cluster == mine {
            conflicts.clear();
        }
        if !conflicts.is_empty() {
            tracing::warn!(peer = %from, ?conflicts, "merge-cluster refused: resource names collide");
            self.send(from, Body::MergeRefused { conflicts });
            return;
        }
        if their_cluster != mine && &*their_cluster != crate::proto::NO_CLUSTER {
            // Adopt the requester's uuid; remember ours as an alias so our members accept it.
            let writes = [
                (format!("merged/{mine}"), their_cluster.to_string()),
                ("uuid".to_string(), their_cluster.to_string()),
            ];
            for (k, v) in writes {
                if let Err(e) = self.set(&k, &v) {
                    tracing::warn!(error = %e, "merge-cluster: cannot write {k}");
                    return;
                }
            }
        }
        self.absorb(from, entries);
        let all = self.store().scope_entries(&Scope::Global);
        self.send(from, Body::Welcome { entries: all });
        self.push_event(NodeEvent::MergedWith(from.clone()));
    }

    /// create-resource (metadata part): directory entry, size, primary, own data/device keys.
    pub fn create_resource(&mut self, res: &str, size: u64) -> Result<()> {
        self.require_cluster()?;
        check_node(res)?;
        if self.store().get(&format!("resources/{res}")).is_some() {
            return Err(Error::MergeConflict {
                conflicts: vec![res.to_string()],
            });
        }
        let me = self.me().clone();
        self.set(&format!("resources/{res}"), &me)?;
        self.set(&format!("resource-{res}/size"), &size.to_string())?;
        self.set(&format!("resource-{res}/primary"), &me)?;
        self.set(
            &format!("resource-{res}/data-{me}"),
            &format!("/mars/{res}/data"),
        )?;
        self.set(&format!("resource-{res}/device-{me}"), res)?;
        Ok(())
    }

    /// join-resource (metadata part): own data/device keys, announced to a member `contact`,
    /// which answers with the resource's keys.
    pub fn join_resource(&mut self, res: &str, contact: &str) -> Result<()> {
        self.require_cluster()?;
        check_node(res)?;
        let me = self.me().clone();
        let mut entries = Vec::new();
        for (k, v) in [
            (
                format!("resource-{res}/data-{me}"),
                format!("/mars/{res}/data"),
            ),
            (format!("resource-{res}/device-{me}"), res.to_string()),
        ] {
            self.set(&k, &v)?;
            let e = self.store().entry(&k).cloned().expect("just written");
            entries.push((Arc::from(k), e));
        }
        let contact: NodeName = Arc::from(contact);
        self.send(
            &contact,
            Body::Push {
                entries,
                want: Vec::new(),
            },
        );
        Ok(())
    }

    /// leave-resource (metadata part): tombstones own data/device keys.
    pub fn leave_resource(&mut self, res: &str) -> Result<()> {
        let me = self.me().clone();
        self.delete(&format!("resource-{res}/data-{me}"))?;
        self.delete(&format!("resource-{res}/device-{me}"))?;
        Ok(())
    }
}
