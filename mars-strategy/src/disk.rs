//! Persistence shell: the store's entries and graves in a redb database, one write
//! transaction per logical update ([`DiskStore::apply`] of the changes one call produced), so
//! that a crash leaves either the whole update or none of it, never a torn entry.
//!
//! Tables (format version 1): `entries` key → postcard([`Entry`]); `graves` key → stamp;
//! `info` `node` → node name, `format` → `1`.

use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::names::Key;
use crate::store::{Change, ClockSource, MetaStore};
use brick_core::Stamp;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const GRAVES: TableDefinition<&str, u64> = TableDefinition::new("graves");
const INFO: TableDefinition<&str, &str> = TableDefinition::new("info");
const FORMAT: &str = "1";

/// What [`DiskStore::load`] reads: entries and graves.
pub type Loaded = (Vec<(Key, Entry)>, Vec<(Key, Stamp)>);

/// The on-disk store of one node.
pub struct DiskStore {
    db: Database,
    path: PathBuf,
}

impl DiskStore {
    /// Open (or create) the database at `path` for node `me` and load the store from it.
    /// Refuses a database that belongs to another node or has an unknown format.
    pub fn open(path: &Path, me: &str, clock: ClockSource) -> Result<(DiskStore, MetaStore)> {
        crate::names::check_node(me)?;
        let st = |e: &dyn std::fmt::Display| Error::storage(path, e);
        let db = Database::create(path).map_err(|e| st(&e))?;
        {
            let tx = db.begin_write().map_err(|e| st(&e))?;
            {
                let mut info = tx.open_table(INFO).map_err(|e| st(&e))?;
                let node = info
                    .get("node")
                    .map_err(|e| st(&e))?
                    .map(|g| g.value().to_string());
                let format = info
                    .get("format")
                    .map_err(|e| st(&e))?
                    .map(|g| g.value().to_string());
                match (node, format) {
                    (None, _) => {
                        info.insert("node", me).map_err(|e| st(&e))?;
                        info.insert("format", FORMAT).map_err(|e| st(&e))?;
                    }
                    (Some(n), _) if n != me => {
                        return Err(st(&format!(
                            "belongs to node {n}, not {me} (wrong --mars-dir or --node?)"
                        )))
                    }
                    (Some(_), Some(f)) if f != FORMAT => {
                        return Err(st(&format!("unknown format {f} (newer mars-rs?)")))
                    }
                    _ => {}
                }
                tx.open_table(ENTRIES).map_err(|e| st(&e))?;
                tx.open_table(GRAVES).map_err(|e| st(&e))?;
            }
            tx.commit().map_err(|e| st(&e))?;
        }
        let disk = DiskStore {
            db,
            path: path.to_path_buf(),
        };
        let (entries, graves) = disk.load()?;
        let store = MetaStore::restore(me, clock, entries, graves)?;
        Ok((disk, store))
    }

    /// Read every entry and grave; an undecodable record is an error naming its key.
    pub fn load(&self) -> Result<Loaded> {
        let st = |e: &dyn std::fmt::Display| Error::storage(&self.path, e);
        let tx = self.db.begin_read().map_err(|e| st(&e))?;
        let t = tx.open_table(ENTRIES).map_err(|e| st(&e))?;
        let mut entries = Vec::new();
        for row in t.iter().map_err(|e| st(&e))? {
            let (k, v) = row.map_err(|e| st(&e))?;
            let key = k.value();
            crate::names::check_key(key)?;
            let e: Entry = postcard::from_bytes(v.value()).map_err(|e| Error::Decode {
                what: format!("stored entry {key} in {}", self.path.display()),
                detail: e.to_string(),
            })?;
            entries.push((Arc::from(key), e));
        }
        let g = tx.open_table(GRAVES).map_err(|e| st(&e))?;
        let mut graves = Vec::new();
        for row in g.iter().map_err(|e| st(&e))? {
            let (k, v) = row.map_err(|e| st(&e))?;
            graves.push((Arc::from(k.value()), Stamp(v.value())));
        }
        Ok((entries, graves))
    }

    /// Persist the changes of one logical update in one transaction.
    pub fn apply(&self, changes: &[Change]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let st = |e: &dyn std::fmt::Display| Error::storage(&self.path, e);
        let tx = self.db.begin_write().map_err(|e| st(&e))?;
        {
            let mut t = tx.open_table(ENTRIES).map_err(|e| st(&e))?;
            let mut g = tx.open_table(GRAVES).map_err(|e| st(&e))?;
            for c in changes {
                match c {
                    Change::Put(k, e) => {
                        let bytes = postcard::to_allocvec(e).map_err(|e| st(&e))?;
                        t.insert(&**k, bytes.as_slice()).map_err(|e| st(&e))?;
                        g.remove(&**k).map_err(|e| st(&e))?;
                    }
                    Change::Bury(k, stamp) => {
                        t.remove(&**k).map_err(|e| st(&e))?;
                        g.insert(&**k, stamp.0).map_err(|e| st(&e))?;
                    }
                    Change::DropScope(r) => {
                        let pre = format!("resource-{r}/");
                        let mut doomed = Vec::new();
                        for row in t.range(pre.as_str()..).map_err(|e| st(&e))? {
                            let (k, _) = row.map_err(|e| st(&e))?;
                            if !k.value().starts_with(&pre) {
                                break;
                            }
                            doomed.push(k.value().to_string());
                        }
                        for k in doomed {
                            t.remove(k.as_str()).map_err(|e| st(&e))?;
                        }
                    }
                }
            }
        }
        tx.commit().map_err(|e| st(&e))
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Human-readable dump of a database (what `marsadm` shows), without opening it for writing
/// by a node: loads a store and formats it.
pub fn dump(path: &Path, me: &str) -> Result<String> {
    let (_, store) = DiskStore::open(path, me, ClockSource::System)?;
    Ok(store.dump())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_through_redb() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta.redb");
        {
            let (disk, mut s) = DiskStore::open(&p, "a", ClockSource::System).unwrap();
            s.set("ips/ip-a", "1.2.3.4").unwrap();
            s.set("defaults/x", "1").unwrap();
            s.delete("defaults/x").unwrap();
            disk.apply(&s.take_changes()).unwrap();
        }
        let (_, s) = DiskStore::open(&p, "a", ClockSource::System).unwrap();
        assert_eq!(s.get("ips/ip-a"), Some("1.2.3.4"));
        assert_eq!(s.get("defaults/x"), None);
        assert!(s.entry("defaults/x").unwrap().is_tombstone());
        let d = s.dump();
        assert!(d.contains("ips/ip-a = 1.2.3.4"), "{d}");
        assert!(DiskStore::open(&p, "b", ClockSource::System).is_err());
    }
}
