//! Lookup through the stack: the topmost layer holding a name wins, a whiteout hides the name
//! below it, an opaque directory stops the descent, a redirect moves it.
//!
//! Each layer costs one `fstatat` on the hit path; whiteout files and directory markers are
//! probed only when a name is missing or a directory was found.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::error::{err, FsResult, IoCtx};
use super::format::{is_wh_marker, read_dir_meta, whiteout_at, WhiteoutAt};
use super::layers::Lay;
use super::node::{DirLayer, DirState, FileState, LastMiss, Node, NodeId, NodeState};
use super::{lay_bit, Overlay};
use crate::sys::fs::{self, Stat};
use crate::sys::xattr;

/// The result of a merged lookup, not yet in the node table.
#[derive(Debug)]
pub struct Found {
    /// Merged inode.
    pub ino: NodeId,
    /// `S_IFMT` bits.
    pub kind: u32,
    /// Location and layers.
    pub state: NodeState,
    /// Real stat of the topmost object (not yet adjusted to the merged view).
    pub stat: Stat,
}

fn missing(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG)
    )
}

/// Opens directory `path` below `root` one component at a time, never following a symlink,
/// so a redirect can't leave the layer.
fn open_beneath(root: BorrowedFd<'_>, path: &Path) -> std::io::Result<OwnedFd> {
    let mut cur = root.try_clone_to_owned()?;
    for c in path.components() {
        match c {
            Component::Normal(n) => cur = fs::open_dir(cur.as_fd(), n)?,
            Component::CurDir | Component::RootDir => {}
            _ => return Err(std::io::Error::from_raw_os_error(libc::EXDEV)),
        }
    }
    Ok(cur)
}

/// Accumulates what the layers say about one name while walking down the stack.
struct Walk {
    top: Option<Stat>,
    upper: bool,
    lowers: Vec<Lay>,
    upper_fd: Option<Arc<OwnedFd>>,
    lower_fds: Vec<Arc<OwnedFd>>,
    /// Where each lower dir found lives in its layer (shared while equal).
    lower_paths: Vec<Arc<Path>>,
    opaque: bool,
    xwhiteouts: u64,
    redirect: Option<OsString>,
    /// Where the lower layers are searched for the object.
    path: PathBuf,
    /// `path` is still parent's lower path + name (so the parent's fds can be used).
    natural: bool,
    /// The metacopy xattr's name, when the mount follows metacopy uppers.
    metacopy: Option<OsString>,
    /// The upper object is a metacopy file whose data is still to be found below.
    data_pending: bool,
    /// Its data was found in a lower layer (recorded in `lowers`).
    data_found: bool,
    /// The whiteout the upper dir holds for the name.
    upper_wh: WhiteoutAt,
}

enum Step {
    Continue,
    Stop,
}

impl Walk {
    fn apply_redirect(&mut self, r: &OsStr, parent_path: &Path) {
        let b = r.as_bytes();
        self.path = if b.first() == Some(&b'/') {
            PathBuf::from(OsStr::from_bytes(&b[1..]))
        } else {
            parent_path.join(r)
        };
        self.natural = false;
    }

    /// Examines `dir`/`name` in layer `lay`; `at` is where that is in the layer.
    fn visit(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        lay: Lay,
        xwh: bool,
        parent_path: &Path,
        at: &Path,
    ) -> FsResult<Step> {
        let st = match fs::lstatat(dir, name) {
            Ok(st) => st,
            Err(e) if missing(&e) => {
                let wh = whiteout_at(dir, name, None, xwh).ctx("whiteout probe")?;
                if lay == Lay::Upper {
                    self.upper_wh = wh;
                }
                return match wh {
                    WhiteoutAt::None => Ok(Step::Continue),
                    _ => Ok(Step::Stop),
                };
            }
            Err(e) => return Err(e).ctx(format_args!("lookup {name:?}")),
        };
        let wh = whiteout_at(dir, name, Some(&st), xwh).ctx("whiteout probe")?;
        if lay == Lay::Upper {
            self.upper_wh = wh;
        }
        if wh != WhiteoutAt::None {
            return Ok(Step::Stop);
        }
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if !is_dir {
            if self.top.is_none() {
                self.top = Some(st);
                self.record(lay, None);
                if lay == Lay::Upper && self.is_metacopy(dir, name, &st)? {
                    // Its data lives below, at the same path.
                    self.data_pending = true;
                    return Ok(Step::Continue);
                }
            } else if self.data_pending && st.st_mode & libc::S_IFMT == libc::S_IFREG {
                self.record(lay, None);
                self.data_pending = false;
                self.data_found = true;
            }
            return Ok(Step::Stop);
        }
        if self.data_pending {
            return Ok(Step::Stop);
        }
        if matches!(self.top, Some(t) if t.st_mode & libc::S_IFMT != libc::S_IFDIR) {
            return Ok(Step::Stop);
        }
        let fd = fs::open_dir(dir, name).ctx(format_args!("open dir {name:?}"))?;
        let meta = read_dir_meta(fd.as_fd(), OsStr::new("")).ctx("dir markers")?;
        if self.top.is_none() {
            self.top = Some(st);
        }
        self.record(lay, Some(Arc::new(fd)));
        if lay != Lay::Upper {
            let shared = self.lower_paths.last().filter(|p| &***p == at).cloned();
            self.lower_paths
                .push(shared.unwrap_or_else(|| Arc::from(at)));
        }
        if meta.xwhiteouts {
            self.xwhiteouts |= lay_bit(lay);
        }
        if lay == Lay::Upper {
            self.opaque = meta.opaque;
            self.redirect = meta.redirect.clone();
        }
        if meta.opaque {
            return Ok(Step::Stop);
        }
        if let Some(r) = meta.redirect {
            self.apply_redirect(&r, parent_path);
        }
        Ok(Step::Continue)
    }

    /// True for an upper regular file marked as holding metadata only.
    fn is_metacopy(&self, dir: BorrowedFd<'_>, name: &OsStr, st: &Stat) -> FsResult<bool> {
        let Some(x) = &self.metacopy else {
            return Ok(false);
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok(false);
        }
        Ok(xattr::getxattr(dir, name, x)
            .ctx("metacopy probe")?
            .is_some())
    }

    fn record(&mut self, lay: Lay, fd: Option<Arc<OwnedFd>>) {
        match lay {
            Lay::Upper => {
                self.upper = true;
                self.upper_fd = fd;
            }
            l => {
                self.lowers.push(l);
                if let Some(fd) = fd {
                    self.lower_fds.push(fd);
                }
            }
        }
    }
}

impl Overlay {
    /// Merged lookup of `name` in directory `parent` without touching the node table.
    pub fn find(&self, parent: &Node, name: &OsStr) -> FsResult<Option<Found>> {
        if !parent.is_dir() {
            return err(libc::ENOTDIR);
        }
        if name.len() > self.name_max {
            return err(libc::ENAMETOOLONG);
        }
        if is_wh_marker(name) || name.is_empty() || name == "." || name == ".." {
            return Ok(None);
        }
        let fds = self.dir_fds(parent)?;
        if let Some(answer) = self.find_indexed(parent, &fds, name)? {
            return Ok(answer);
        }
        let pd = {
            let ps = parent.state()?;
            match ps.as_dir() {
                Some(d) if !ps.unlinked => d.clone(),
                _ => return Ok(None),
            }
        };
        let mut w = Walk {
            top: None,
            upper: false,
            lowers: Vec::new(),
            upper_fd: None,
            lower_fds: Vec::new(),
            lower_paths: Vec::new(),
            opaque: false,
            xwhiteouts: 0,
            redirect: None,
            path: pd.lower_path.join(name),
            natural: true,
            metacopy: self.metacopy.clone(),
            data_pending: false,
            data_found: false,
            upper_wh: WhiteoutAt::None,
        };
        let mut stop = false;
        if let Some(ufd) = &fds.upper {
            let xwh = pd.xwhiteouts & 1 != 0;
            let at = Path::new("");
            stop = matches!(
                w.visit(ufd.as_fd(), name, Lay::Upper, xwh, &pd.lower_path, at)?,
                Step::Stop
            );
            if !w.upper && stop {
                self.note_miss(parent, name, pd.gen, w.upper_wh);
                return Ok(None);
            }
        }
        if !stop {
            self.walk_lowers(&pd, &fds.lowers, name, &mut w)?;
        }
        let Some(top) = w.top else {
            self.note_miss(parent, name, pd.gen, w.upper_wh);
            return Ok(None);
        };
        let kind = top.st_mode & libc::S_IFMT;
        let ino = NodeId(match (w.upper, w.lowers.first()) {
            (true, _) => self.upper_ino(top.st_ino),
            (false, Some(&l)) => self.layers.xino(l, top.st_ino),
            (false, None) => return Ok(None),
        });
        let name = name.to_os_string();
        let state = if kind == libc::S_IFDIR {
            let lowers = w.lowers.iter().zip(&w.lower_paths).zip(w.lower_fds);
            let d = DirState {
                upper_fd: w.upper_fd,
                lowers: lowers
                    .map(|((lay, path), fd)| DirLayer {
                        lay: *lay,
                        path: path.clone(),
                        fd: Some(fd),
                    })
                    .collect(),
                lower_path: w.path,
                opaque: w.opaque,
                xwhiteouts: w.xwhiteouts,
                redirect: w.redirect,
                ..DirState::default()
            };
            NodeState::dir(parent.ino, name, w.upper, d)
        } else {
            let f = FileState {
                lower: w.lowers.first().copied(),
                aliases: Vec::new(),
                metacopy: w.data_found,
            };
            NodeState::file(parent.ino, name, w.upper, f)
        };
        Ok(Some(Found {
            ino,
            kind,
            state,
            stat: top,
        }))
    }

    /// Remembers that `name` is missing from `parent` as of its change counter `gen`, and
    /// what whiteout its upper dir holds (see [`Overlay::take_miss`]).
    fn note_miss(&self, parent: &Node, name: &OsStr, gen: u64, upper_wh: WhiteoutAt) {
        let Ok(mut st) = parent.state_mut() else {
            return;
        };
        if let Some(d) = st.as_dir_mut().filter(|d| d.gen == gen) {
            d.last_miss = Some(LastMiss {
                name: name.to_os_string(),
                gen,
                upper_wh,
            });
        }
    }

    /// If the last lookup in `parent` found `name` missing and nothing changed there since
    /// (the kernel holds the directory's lock from that LOOKUP to the CREATE), what whiteout
    /// its upper dir holds: a create needs no second walk.
    pub(super) fn take_miss(&self, parent: &Node, name: &OsStr) -> Option<WhiteoutAt> {
        let mut st = parent.state_mut().ok()?;
        let d = st.as_dir_mut()?;
        let miss = d.last_miss.as_ref()?;
        let wh = (miss.name == name && miss.gen == d.gen).then_some(miss.upper_wh)?;
        d.last_miss = None;
        Some(wh)
    }

    /// Walks the lower layers below the directory `pd` (whose lower dirs are open as
    /// `lower_fds`).
    fn walk_lowers(
        &self,
        pd: &DirState,
        lower_fds: &[Arc<OwnedFd>],
        name: &OsStr,
        w: &mut Walk,
    ) -> FsResult<()> {
        for i in 0..self.layers.lowers.len() {
            let lay = Lay::Lower(i as u16);
            let xwh = pd.xwhiteouts & lay_bit(lay) != 0;
            let step = if w.natural {
                let Some(pos) = pd.lowers.iter().position(|l| l.lay == lay) else {
                    continue;
                };
                let Some(dir) = lower_fds.get(pos) else {
                    continue;
                };
                let at = pd.lowers[pos].path.join(name);
                w.visit(dir.as_fd(), name, lay, xwh, &pd.lower_path, &at)?
            } else {
                let (parent_path, leaf) = match (w.path.parent(), w.path.file_name()) {
                    (Some(p), Some(l)) => (p.to_path_buf(), l.to_os_string()),
                    _ => return Ok(()),
                };
                let root = &self.layers.lowers[i].root;
                let dir = match open_beneath(root.as_fd(), &parent_path) {
                    Ok(d) => d,
                    Err(e) if missing(&e) || e.raw_os_error() == Some(libc::ELOOP) => continue,
                    Err(e) => return Err(e).ctx("redirect lookup"),
                };
                let at = w.path.clone();
                w.visit(dir.as_fd(), &leaf, lay, false, &parent_path, &at)?
            };
            if matches!(step, Step::Stop) {
                break;
            }
        }
        Ok(())
    }

    /// Kernel `lookup`: finds `name` in `parent`, records the node, returns its merged stat.
    /// "." and ".." come only from a file handle (FUSE_EXPORT_SUPPORT): by node id.
    pub fn lookup(&self, parent: NodeId, name: &OsStr) -> FsResult<(NodeId, Stat)> {
        match name.as_encoded_bytes() {
            b"." if self.file_handles() => return self.lookup_by_id(parent),
            b".." if self.file_handles() => return self.lookup_parent(parent),
            _ => {}
        }
        let p = self.nodes.get(parent)?;
        let gen = p.state()?.as_dir().map(|d| d.gen);
        let Some(f) = self.find(&p, name)? else {
            return err(libc::ENOENT);
        };
        let (ino, st) = self.remember(f)?;
        if let Some(gen) = gen {
            self.note_hit(&p, name, gen, ino);
        }
        Ok((ino, st))
    }

    /// Remembers that a lookup of `name` in `parent` found node `ino`, as of the
    /// directory's change counter `gen` (see [`Overlay::take_hit`]).
    fn note_hit(&self, parent: &Node, name: &OsStr, gen: u64, ino: NodeId) {
        let Ok(mut st) = parent.state_mut() else {
            return;
        };
        if let Some(d) = st.as_dir_mut().filter(|d| d.gen == gen) {
            d.last_hit = Some((name.to_os_string(), gen, ino));
        }
    }

    /// What the last lookup of `name` in `parent` found, if nothing changed there since
    /// (the kernel holds the directory's lock from that LOOKUP to the UNLINK): the node's
    /// state and a stat of its object, without a second walk through the layers.
    pub(super) fn take_hit(&self, parent: &Node, name: &OsStr) -> FsResult<Option<Found>> {
        let hit = {
            let mut st = parent.state_mut()?;
            let Some(d) = st.as_dir_mut() else {
                return Ok(None);
            };
            match &d.last_hit {
                Some((n, gen, ino)) if n == name && *gen == d.gen => {
                    let ino = *ino;
                    d.last_hit = None;
                    ino
                }
                _ => return Ok(None),
            }
        };
        let Some(node) = self.nodes.peek(hit) else {
            return Ok(None);
        };
        let state = node.state()?.clone();
        if state.unlinked || state.parent != parent.ino || state.name != name {
            return Ok(None);
        }
        let (dir, real, _) = self.locate(&node)?;
        let stat = fs::lstatat(dir.as_fd(), &real).ctx(format_args!("stat {name:?}"))?;
        Ok(Some(Found {
            ino: node.ino,
            kind: node.kind,
            state,
            stat,
        }))
    }

    /// Puts a found object in the node table (one kernel reference); returns its node id
    /// and merged stat.
    pub fn remember(&self, f: Found) -> FsResult<(NodeId, Stat)> {
        let stat = if self.pres.override_xattr.is_some() {
            let at = self
                .locate(&Node::detached(f.ino, f.kind, f.state.clone()))
                .ok();
            let at = at.as_ref().map(|(d, n, _)| (d.as_fd(), n.as_os_str()));
            self.merged_stat(f.ino, f.stat, &f.state, at)
        } else {
            self.merged_stat(f.ino, f.stat, &f.state, None)
        };
        let real_ino = f.stat.st_ino;
        let same = |n: &Node, found: &NodeState| self.same_object(n, found, real_ino);
        let node = self.nodes.remember(f.ino, f.kind, f.state, same)?;
        if node.is_dir() {
            self.nodes.track_fds(&node);
        }
        Ok((f.ino, stat))
    }

    /// Whether the live node `n` (same merged inode) stands for the object found now at
    /// `found`, whose real inode is `real_ino`.
    /// The host frees an inode number the moment an object loses its last name and may hand
    /// it to a new object before strata has recorded the removal, so a node met under a new
    /// name is that object only while its own name still holds it; an unlinked node only
    /// while an open handle shows its object alive.
    fn same_object(&self, n: &Node, found: &NodeState, real_ino: u64) -> bool {
        let Ok(st) = n.state() else { return false };
        if st.unlinked {
            drop(st);
            return self
                .open_fd_of(n.ino)
                .and_then(|fd| fs::fstat(fd.as_fd()).ok())
                .is_some_and(|s| s.st_nlink > 0 && s.st_ino == real_ino);
        }
        if n.is_dir() || (st.parent == found.parent && st.name == found.name) {
            return true;
        }
        drop(st);
        let Ok((dir, name, lay)) = self.locate(n) else {
            return false;
        };
        fs::lstatat(dir.as_fd(), &name).is_ok_and(|s| {
            let ino = match lay {
                Lay::Upper => self.upper_ino(s.st_ino),
                l => self.layers.xino(l, s.st_ino),
            };
            ino == n.ino.0
        })
    }

    /// The FUSE generation of node `ino` (0 when unknown).
    pub fn generation(&self, ino: NodeId) -> u64 {
        self.nodes.peek(ino).map_or(0, |n| n.generation())
    }

    /// Where the real object of `node` is: (directory fd, name, layer). For a directory the
    /// name is empty and the fd is the directory itself.
    pub fn locate(&self, node: &Node) -> FsResult<(Arc<OwnedFd>, OsString, Lay)> {
        if node.is_dir() {
            let fds = self.dir_fds(node)?;
            if let Some(u) = fds.upper {
                return Ok((u, OsString::new(), Lay::Upper));
            }
            let first = node.state()?.first_lower();
            return match (fds.lowers.into_iter().next(), first) {
                (Some(fd), Some(l)) => Ok((fd, OsString::new(), l)),
                _ => err(libc::ENOENT),
            };
        }
        self.locate_file(node, true)
    }

    /// Where a non-directory's data is: its lower copy while its upper copy holds metadata
    /// only (metacopy), else where [`Overlay::locate`] says.
    pub fn locate_data(&self, node: &Node) -> FsResult<(Arc<OwnedFd>, OsString, Lay)> {
        let metacopy = node.state()?.metacopy();
        if metacopy {
            self.locate_file(node, false)
        } else {
            self.locate(node)
        }
    }

    /// A non-directory in its upper layer (when it has a copy there and `upper_first`), else
    /// in its top lower layer.
    fn locate_file(
        &self,
        node: &Node,
        upper_first: bool,
    ) -> FsResult<(Arc<OwnedFd>, OsString, Lay)> {
        let st = node.state()?;
        if st.unlinked {
            return err(libc::ENOENT);
        }
        let (pino, name, upper, lower) = (
            st.parent,
            st.name.clone(),
            st.upper && upper_first,
            st.first_lower(),
        );
        drop(st);
        let parent = self.nodes.get(pino)?;
        let fds = self.dir_fds(&parent)?;
        if upper {
            return match fds.upper {
                Some(u) => Ok((u, name, Lay::Upper)),
                None => err(libc::ENOENT),
            };
        }
        let Some(lay) = lower else {
            return err(libc::ENOENT);
        };
        let pos = parent.state()?.lower_pos(lay);
        match pos.and_then(|i| fds.lowers.get(i)) {
            Some(fd) => Ok((fd.clone(), name, lay)),
            None => err(libc::ENOENT),
        }
    }

    /// Merged stat of a node by its location.
    pub fn stat_node(&self, node: &Node) -> FsResult<Stat> {
        let (dir, name, _) = self.locate(node)?;
        let st = fs::lstatat(dir.as_fd(), &name).ctx(format_args!("stat {name:?}"))?;
        let state = node.state()?;
        Ok(self.merged_stat(node.ino, st, &state, Some((dir.as_fd(), &name))))
    }
}
