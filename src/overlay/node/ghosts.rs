//! Where forgotten nodes were, so a file handle still finds its object.
//!
//! A FUSE file handle is (node id, generation). When the kernel has forgotten the inode, it
//! asks for it by LOOKUP of "." in that node id (FUSE_EXPORT_SUPPORT); the node table no
//! longer has it. So a node that leaves the table with a name left behind leaves a ghost:
//! its generation, parent and name. The lookup walks ghosts up to a live ancestor and back
//! down by name, and the node made again takes the ghost's generation, so the handle still
//! matches (kernel overlayfs keeps an on-disk index for the same purpose). A removed name
//! leaves no ghost: its handles are stale, as they must be.
//!
//! Ghosts are bounded: two generations of at most `cap` each; when the newer is full it
//! becomes the older and the older is dropped (handles of objects forgotten that long ago
//! are stale until looked up by path again).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

use super::{Node, NodeId, NodeTable, ROOT_INO};
use crate::overlay::error::{FsError, FsResult};

/// Ghosts per generation by default (two generations are kept): about 100 bytes each.
const DEFAULT_CAP: usize = 256 * 1024;

/// What is left of a forgotten node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ghost {
    /// Its FUSE generation.
    pub gen: u64,
    /// Parent node id when it was forgotten.
    pub parent: NodeId,
    /// `S_IFMT` bits.
    pub kind: u32,
    /// Its name in the parent.
    pub name: Box<OsStr>,
}

/// The ghosts of one mount.
#[derive(Debug)]
pub struct Ghosts {
    on: AtomicBool,
    cap: usize,
    /// [newer, older].
    maps: Mutex<[HashMap<NodeId, Ghost>; 2]>,
}

impl Default for Ghosts {
    fn default() -> Self {
        Ghosts::with_cap(DEFAULT_CAP)
    }
}

impl Ghosts {
    /// Ghosts kept in generations of `cap`.
    pub fn with_cap(cap: usize) -> Self {
        Ghosts {
            on: AtomicBool::new(false),
            cap: cap.max(1),
            maps: Mutex::new([HashMap::new(), HashMap::new()]),
        }
    }

    /// Starts keeping ghosts (file handles are served).
    pub fn enable(&self) {
        self.on.store(true, Ordering::Relaxed);
    }

    /// Whether ghosts are kept.
    pub fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Records that node `ino` left the table as `g`.
    pub fn record(&self, ino: NodeId, g: Ghost) {
        if !self.enabled() {
            return;
        }
        let Ok(mut maps) = self.maps.lock() else {
            return;
        };
        if maps[0].len() >= self.cap {
            let newer = std::mem::take(&mut maps[0]);
            maps[1] = newer;
        }
        maps[1].remove(&ino);
        maps[0].insert(ino, g);
    }

    /// Takes the ghost of `ino` (its node is back in the table).
    pub fn take(&self, ino: NodeId) -> Option<Ghost> {
        if !self.enabled() {
            return None;
        }
        let mut maps = self.maps.lock().ok()?;
        let newer = maps[0].remove(&ino);
        let older = maps[1].remove(&ino);
        newer.or(older)
    }

    /// The ghost of `ino`, if any.
    pub fn get(&self, ino: NodeId) -> Option<Ghost> {
        let maps = self.maps.lock().ok()?;
        maps[0].get(&ino).or_else(|| maps[1].get(&ino)).cloned()
    }

    /// Every ghost, older first.
    pub fn all(&self) -> Vec<(NodeId, Ghost)> {
        let Ok(maps) = self.maps.lock() else {
            return Vec::new();
        };
        maps[1]
            .iter()
            .chain(maps[0].iter())
            .map(|(i, g)| (*i, g.clone()))
            .collect()
    }
}

impl NodeTable {
    /// Adds one kernel reference to the live node `ino` (a LOOKUP answered by node id).
    pub fn hold(&self, ino: NodeId) -> FsResult<Arc<Node>> {
        // The shard guard is held while counting, so a concurrent removal (which checks
        // the count under the shard's write lock) sees it.
        let n = self
            .map
            .get(&ino)
            .ok_or_else(|| FsError::errno(libc::ESTALE))?;
        n.lookups.fetch_add(1, Ordering::SeqCst);
        Ok(n.clone())
    }

    /// Every named object the table knows, live or forgotten, as ghosts (to save them),
    /// and the next generation it would hand out.
    pub fn handle_table(&self) -> (u64, Vec<(NodeId, Ghost)>) {
        let mut all = self.ghosts.all();
        for e in self.map.iter() {
            let n = e.value();
            let Ok(st) = n.state() else { continue };
            if n.ino == ROOT_INO || st.unlinked {
                continue;
            }
            all.push((
                n.ino,
                Ghost {
                    gen: n.generation(),
                    parent: st.parent,
                    kind: n.kind,
                    name: st.name.as_os_str().into(),
                },
            ));
        }
        (self.next_gen.load(Ordering::Relaxed), all)
    }

    /// Takes back a saved table (a mount before this one): its objects become ghosts, and
    /// new generations start past the saved ones.
    pub fn load_handle_table(&self, next_gen: u64, ghosts: Vec<(NodeId, Ghost)>) {
        let top = ghosts.iter().map(|(_, g)| g.gen + 1).max().unwrap_or(0);
        self.next_gen
            .fetch_max(next_gen.max(top), Ordering::Relaxed);
        for (ino, g) in ghosts {
            if ino != ROOT_INO && !self.map.contains_key(&ino) {
                self.ghosts.record(ino, g);
            }
        }
    }
}

/// First line of a saved ghost file.
const MAGIC: &[u8] = b"strata file handles 1\n";

/// A handle table as saved at unmount.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Saved {
    /// The next generation the table would hand out.
    pub next_gen: u64,
    /// Upper real inode -> merged inode of objects copied up (their `st_ino` stays).
    pub origins: Vec<(u64, u64)>,
    /// Every named object.
    pub ghosts: Vec<(NodeId, Ghost)>,
}

/// Serialises `t` (see [`decode`]).
pub fn encode(t: &Saved) -> Vec<u8> {
    let mut v = Vec::with_capacity(MAGIC.len() + 16 + t.origins.len() * 16 + t.ghosts.len() * 48);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&t.next_gen.to_le_bytes());
    v.extend_from_slice(&(t.origins.len() as u64).to_le_bytes());
    for (upper, merged) in &t.origins {
        v.extend_from_slice(&upper.to_le_bytes());
        v.extend_from_slice(&merged.to_le_bytes());
    }
    for (ino, g) in &t.ghosts {
        v.extend_from_slice(&ino.0.to_le_bytes());
        v.extend_from_slice(&g.gen.to_le_bytes());
        v.extend_from_slice(&g.parent.0.to_le_bytes());
        v.extend_from_slice(&g.kind.to_le_bytes());
        let name = g.name.as_bytes();
        v.extend_from_slice(&(name.len() as u32).to_le_bytes());
        v.extend_from_slice(name);
    }
    v
}

fn read_u64(r: &mut &[u8]) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_u32(r: &mut &[u8]) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_ghost(r: &mut &[u8]) -> io::Result<(NodeId, Ghost)> {
    let ino = NodeId(read_u64(r)?);
    let gen = read_u64(r)?;
    let parent = NodeId(read_u64(r)?);
    let kind = read_u32(r)?;
    let len = read_u32(r)? as usize;
    if len == 0 || len > r.len() || len > 4096 {
        return Err(io::ErrorKind::InvalidData.into());
    }
    let (name, rest) = r.split_at(len);
    *r = rest;
    let name: Box<OsStr> = OsStr::from_bytes(name).into();
    Ok((
        ino,
        Ghost {
            gen,
            parent,
            kind,
            name,
        },
    ))
}

/// Reads what [`encode`] wrote. A file cut short or of another format is an error
/// (InvalidData), never a partial table.
pub fn decode(data: &[u8]) -> io::Result<Saved> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut r = data
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("not a strata file handle table"))?;
    let next_gen = read_u64(&mut r).map_err(|_| bad("truncated header"))?;
    let n = read_u64(&mut r).map_err(|_| bad("truncated header"))?;
    if n > (r.len() / 16) as u64 {
        return Err(bad("truncated origins"));
    }
    let mut origins = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let upper = read_u64(&mut r).map_err(|_| bad("truncated origins"))?;
        let merged = read_u64(&mut r).map_err(|_| bad("truncated origins"))?;
        origins.push((upper, merged));
    }
    let mut ghosts = Vec::new();
    while !r.is_empty() {
        ghosts.push(read_ghost(&mut r).map_err(|_| bad("truncated or malformed record"))?);
    }
    Ok(Saved {
        next_gen,
        origins,
        ghosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(gen: u64, name: &str) -> Ghost {
        Ghost {
            gen,
            parent: NodeId(1),
            kind: libc::S_IFREG,
            name: OsStr::new(name).into(),
        }
    }

    #[test]
    fn ghosts_are_kept_only_when_enabled_and_bounded_by_two_generations() {
        let gs = Ghosts::with_cap(2);
        gs.record(NodeId(10), g(1, "a"));
        assert_eq!(gs.get(NodeId(10)), None, "off: nothing kept");
        gs.enable();
        for i in 0..5 {
            gs.record(NodeId(10 + i), g(i, "x"));
        }
        // Newer holds 14, older 12 and 13; 10 and 11 went with the generation dropped.
        assert_eq!(gs.get(NodeId(10)), None);
        assert_eq!(gs.get(NodeId(11)), None);
        assert_eq!(gs.get(NodeId(12)).map(|g| g.gen), Some(2));
        assert_eq!(gs.take(NodeId(14)).map(|g| g.gen), Some(4));
        assert_eq!(gs.get(NodeId(14)), None, "taken once");
        assert_eq!(gs.all().len(), 2);
    }

    #[test]
    fn a_ghost_recorded_again_replaces_the_older_one() {
        let gs = Ghosts::with_cap(1);
        gs.enable();
        gs.record(NodeId(7), g(1, "a"));
        gs.record(NodeId(8), g(2, "b"));
        gs.record(NodeId(7), g(3, "c"));
        assert_eq!(gs.take(NodeId(7)).map(|g| g.gen), Some(3));
        assert_eq!(gs.get(NodeId(7)), None, "no older copy left behind");
    }

    #[test]
    fn the_saved_table_reads_back_and_a_damaged_one_is_refused() {
        let t = Saved {
            next_gen: 42,
            origins: vec![(100, 7)],
            ghosts: vec![(NodeId(5), g(9, "file")), (NodeId(6), g(10, "dir"))],
        };
        let data = encode(&t);
        assert_eq!(decode(&data).unwrap(), t);
        for cut in [0, MAGIC.len() + 3, data.len() - 1] {
            let e = decode(&data[..cut]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "cut at {cut}");
        }
        assert!(decode(b"something else").is_err());
    }
}
