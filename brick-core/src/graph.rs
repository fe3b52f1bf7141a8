//! A graph of bricks keyed by path, reconciled idempotently (upstream's `make_brick_all`): the
//! daemon calls [`Graph::ensure`] every round with what *should* exist, and the graph creates
//! only what is missing. It enforces upstream's power ordering: a brick switches **on** only
//! when all its predecessors are on, and **off** only when all its successors are off; a brick
//! is removed only when it is off and nothing depends on it.

use crate::brick::Brick;
use crate::error::{Error, Result};
use crate::power::PowerState;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Node {
    brick: Arc<dyn Brick>,
    preds: Vec<String>,
}

/// The bricks of one daemon, by path.
#[derive(Default)]
pub struct Graph {
    nodes: Mutex<BTreeMap<String, Node>>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Graph::default()
    }

    /// The brick at `path`, creating it with `make(predecessors)` if it does not exist.
    /// `make` wires the predecessors into the new brick's inputs. A second call with the same
    /// path returns the same brick and adds no edges.
    pub fn ensure(
        &self,
        path: &str,
        preds: &[&str],
        make: impl FnOnce(&[Arc<dyn Brick>]) -> Result<Arc<dyn Brick>>,
    ) -> Result<Arc<dyn Brick>> {
        let mut nodes = self.nodes.lock();
        if let Some(n) = nodes.get(path) {
            return Ok(n.brick.clone());
        }
        let mut pred_bricks = Vec::with_capacity(preds.len());
        for p in preds {
            match nodes.get(*p) {
                Some(n) => pred_bricks.push(n.brick.clone()),
                None => {
                    return Err(Error::Brick {
                        brick: path.to_string(),
                        message: format!("predecessor `{p}` does not exist: create it first"),
                    })
                }
            }
        }
        let brick = make(&pred_bricks)?;
        nodes.insert(
            path.to_string(),
            Node {
                brick: brick.clone(),
                preds: preds.iter().map(|p| p.to_string()).collect(),
            },
        );
        Ok(brick)
    }

    /// The brick at `path`.
    pub fn get(&self, path: &str) -> Option<Arc<dyn Brick>> {
        self.nodes.lock().get(path).map(|n| n.brick.clone())
    }

    /// Paths of all bricks, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.nodes.lock().keys().cloned().collect()
    }

    fn successors(nodes: &BTreeMap<String, Node>, path: &str) -> Vec<String> {
        nodes
            .iter()
            .filter(|(_, n)| n.preds.iter().any(|p| p == path))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Press the power button of `path`, respecting the ordering rules. Idempotent.
    pub fn switch(&self, path: &str, on: bool) -> Result<()> {
        let nodes = self.nodes.lock();
        let node = nodes.get(path).ok_or_else(|| Error::Brick {
            brick: path.to_string(),
            message: "no such brick".into(),
        })?;
        let refuse = |reason: String| Error::PowerOrder {
            brick: path.to_string(),
            on,
            reason,
        };
        if on {
            for p in &node.preds {
                if nodes[p].brick.power() != PowerState::On {
                    return Err(refuse(format!("predecessor `{p}` is not on yet")));
                }
            }
        } else {
            for s in Self::successors(&nodes, path) {
                if nodes[&s].brick.power() != PowerState::Off {
                    return Err(refuse(format!("successor `{s}` is not off yet")));
                }
            }
        }
        let brick = node.brick.clone();
        drop(nodes);
        brick.switch(on)
    }

    /// Remove `path`: refused while it is not off or while another brick depends on it.
    pub fn remove(&self, path: &str) -> Result<Arc<dyn Brick>> {
        let mut nodes = self.nodes.lock();
        let Some(node) = nodes.get(path) else {
            return Err(Error::Brick {
                brick: path.to_string(),
                message: "no such brick".into(),
            });
        };
        let succ = Self::successors(&nodes, path);
        if !succ.is_empty() {
            return Err(Error::Brick {
                brick: path.to_string(),
                message: format!("still used by {succ:?}: remove those first"),
            });
        }
        if node.brick.power() != PowerState::Off {
            return Err(Error::Brick {
                brick: path.to_string(),
                message: "still switched on: switch it off first".into(),
            });
        }
        Ok(nodes.remove(path).expect("checked above").brick)
    }

    /// Switch everything off, successors first, and remove it, waiting up to `timeout` for
    /// bricks to drain.
    pub fn kill_all(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let leaves: Vec<String> = {
                let nodes = self.nodes.lock();
                nodes
                    .keys()
                    .filter(|k| Self::successors(&nodes, k).is_empty())
                    .cloned()
                    .collect()
            };
            if leaves.is_empty() {
                return Ok(());
            }
            let mut progressed = false;
            for leaf in leaves {
                let _ = self.switch(&leaf, false);
                if self.remove(&leaf).is_ok() {
                    progressed = true;
                }
            }
            if !progressed {
                if Instant::now() >= deadline {
                    return Err(Error::Timeout {
                        context: "switching off all bricks",
                        millis: timeout.as_millis() as u64,
                    });
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
