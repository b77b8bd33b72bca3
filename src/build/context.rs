//! The build context: `.dockerignore`, COPY/ADD sources (paths and globs, never outside
//! the context), and the tar a COPY unpacks into the image, with a hash of what it holds
//! (names, types, modes, owners, contents; not times) for the layer cache.

use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use globset::GlobMatcher;
use sha2::{Digest as _, Sha256};

use super::error::BuildError;

type Result<T> = std::result::Result<T, BuildError>;

/// One `.dockerignore` line.
#[derive(Clone)]
struct Rule {
    matcher: GlobMatcher,
    keep: bool,
    /// Where the pattern is also read from (`COPY --exclude`: each source directory), besides
    /// the context's root.
    bases: Vec<PathBuf>,
}

/// The context directory and its ignore rules.
pub struct Context {
    root: PathBuf,
    rules: Vec<Rule>,
}

fn glob(p: &str) -> std::result::Result<GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(p)
        .literal_separator(true)
        .build()?
        .compile_matcher())
}

/// A path of the context (relative, no `..`), or `None` when it would leave it.
fn clean(p: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

impl Context {
    /// Opens the context `root`, reading its `.dockerignore`.
    pub fn open(root: &Path) -> Result<Context> {
        let root = root
            .canonicalize()
            .map_err(BuildError::io(format!("build context {}", root.display())))?;
        let mut rules = Vec::new();
        if let Ok(text) = std::fs::read_to_string(root.join(".dockerignore")) {
            for l in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                let (keep, pat) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                let Some(p) = clean(pat) else { continue };
                let matcher = glob(&p.to_string_lossy()).map_err(|e| BuildError::Io {
                    what: format!(".dockerignore pattern {l}"),
                    source: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
                })?;
                rules.push(Rule {
                    matcher,
                    keep,
                    bases: Vec::new(),
                });
            }
        }
        Ok(Context { root, rules })
    }

    /// The context as one COPY with `--exclude` patterns sees it: those left out too, as
    /// `.dockerignore` lines would, each read from the context's root and from each of the
    /// COPY's source directories `bases` (`--exclude=*.log` with `COPY dir/ ...` leaves out
    /// dir/a.log, as BuildKit does).
    pub fn excluding(&self, patterns: &[&str], bases: &[PathBuf]) -> Result<Context> {
        let mut rules = self.rules.clone();
        for pat in patterns {
            let p = clean(pat).ok_or_else(|| BuildError::Io {
                what: format!("--exclude={pat}"),
                source: io::Error::new(io::ErrorKind::InvalidInput, "leaves the context"),
            })?;
            let matcher = glob(&p.to_string_lossy()).map_err(|e| BuildError::Io {
                what: format!("--exclude={pat}"),
                source: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
            })?;
            rules.push(Rule {
                matcher,
                keep: false,
                bases: bases.to_vec(),
            });
        }
        Ok(Context {
            root: self.root.clone(),
            rules,
        })
    }

    /// The context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True if `.dockerignore` leaves `rel` (or a directory above it) out; the last rule
    /// that matches decides.
    pub fn ignored(&self, rel: &Path) -> bool {
        let mut out = false;
        for r in &self.rules {
            let from_bases = r
                .bases
                .iter()
                .filter_map(|b| rel.strip_prefix(b).ok())
                .filter(|p| !p.as_os_str().is_empty());
            let hit = std::iter::once(rel).chain(from_bases).any(|p| {
                p.ancestors()
                    .filter(|a| !a.as_os_str().is_empty())
                    .any(|a| r.matcher.is_match(a))
            });
            if hit {
                out = !r.keep;
            }
        }
        out
    }

    /// The context paths a COPY/ADD source names (a path or a glob), not ignored.
    pub fn sources(&self, src: &str) -> std::result::Result<Vec<PathBuf>, String> {
        let rel = clean(src).ok_or_else(|| format!("{src} is outside the build context"))?;
        let is_glob = src.contains(['*', '?', '[']);
        if !is_glob {
            if std::fs::symlink_metadata(self.root.join(&rel)).is_err() || self.ignored(&rel) {
                return Err(format!("{src}: no such file in the build context"));
            }
            return Ok(vec![rel]);
        }
        let m = glob(&rel.to_string_lossy()).map_err(|e| format!("{src}: {e}"))?;
        let mut found = Vec::new();
        let mut todo = vec![PathBuf::new()];
        while let Some(dir) = todo.pop() {
            let Ok(rd) = std::fs::read_dir(self.root.join(&dir)) else {
                continue;
            };
            for e in rd.flatten() {
                let p = dir.join(e.file_name());
                if self.ignored(&p) {
                    continue;
                }
                if m.is_match(&p) {
                    found.push(p);
                } else if e.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(p);
                }
            }
        }
        found.sort();
        match found.is_empty() {
            true => Err(format!("{src}: no file in the build context matches")),
            false => Ok(found),
        }
    }
}

/// Owners and mode a COPY gives what it copies.
#[derive(Clone, Copy, Debug, Default)]
pub struct Give {
    /// `--chown` (else 0:0).
    pub owner: (u32, u32),
    /// `--chmod`.
    pub mode: Option<u32>,
}

/// A tar being written, with the hash of what goes in.
pub struct Packer<W: Write> {
    tar: tar::Builder<W>,
    hash: Sha256,
    give: Give,
}

struct Hashing<'a, R> {
    inner: R,
    hash: &'a mut Sha256,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl<W: Write> Packer<W> {
    /// A tar into `out`.
    pub fn new(out: W, give: Give) -> Packer<W> {
        let mut tar = tar::Builder::new(out);
        tar.follow_symlinks(false);
        Packer {
            tar,
            hash: Sha256::new(),
            give,
        }
    }

    /// Adds the host path `src` (not following it) as `name`, and what is below it unless
    /// the context ignores it (`rel` is its context path, `None` outside a context).
    pub fn add(
        &mut self,
        ctx: Option<&Context>,
        src: &Path,
        rel: &Path,
        name: &Path,
    ) -> Result<()> {
        let md = std::fs::symlink_metadata(src).map_err(BuildError::io(src.display()))?;
        let mut h = tar::Header::new_gnu();
        let mode = match (self.give.mode, md.is_symlink()) {
            (Some(m), false) => m,
            _ => md.permissions().mode() & 0o7777,
        };
        h.set_mode(mode);
        h.set_uid(self.give.owner.0.into());
        h.set_gid(self.give.owner.1.into());
        h.set_mtime(md.mtime().max(0) as u64);
        h.set_size(0);
        let kind = if md.is_dir() {
            "d"
        } else if md.is_symlink() {
            "l"
        } else if md.is_file() {
            "f"
        } else {
            // Devices, fifos, sockets of a context are not copied (docker refuses them too).
            return Ok(());
        };
        self.hash.update(format!(
            "{kind} {} {mode:o} {}:{} {}\n",
            name.display(),
            self.give.owner.0,
            self.give.owner.1,
            md.len()
        ));
        let io = BuildError::io(format!("packing {}", src.display()));
        match kind {
            "d" => {
                h.set_entry_type(tar::EntryType::Directory);
                if !name.as_os_str().is_empty() {
                    self.tar
                        .append_data(&mut h, name, io::empty())
                        .map_err(io)?;
                }
                let mut entries: Vec<_> = std::fs::read_dir(src)
                    .map_err(BuildError::io(src.display()))?
                    .flatten()
                    .map(|e| e.file_name())
                    .collect();
                entries.sort();
                for e in entries {
                    let r = rel.join(&e);
                    if ctx.is_some_and(|c| c.ignored(&r)) {
                        continue;
                    }
                    self.add(ctx, &src.join(&e), &r, &name.join(&e))?;
                }
            }
            "l" => {
                let target = std::fs::read_link(src).map_err(BuildError::io(src.display()))?;
                self.hash.update(target.as_os_str().as_encoded_bytes());
                h.set_entry_type(tar::EntryType::Symlink);
                self.tar.append_link(&mut h, name, &target).map_err(io)?;
            }
            _ => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(md.len());
                let f = std::fs::File::open(src).map_err(BuildError::io(src.display()))?;
                let r = Hashing {
                    inner: f,
                    hash: &mut self.hash,
                };
                self.tar.append_data(&mut h, name, r).map_err(io)?;
            }
        }
        Ok(())
    }

    /// Finishes the tar; returns the hash of what it holds.
    pub fn finish(self) -> Result<String> {
        let io = BuildError::io("finishing a tar");
        let mut out = self
            .tar
            .into_inner()
            .map_err(BuildError::io("finishing a tar"))?;
        out.flush().map_err(io)?;
        Ok(hex(&self.hash.finalize()))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_and_sources() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in ["src/sub", "node_modules/x", "docs"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        for f in [
            "src/a.rs",
            "src/sub/b.rs",
            "src/notes.md",
            "node_modules/x/y",
            "docs/keep.md",
            "docs/drop.md",
            "top.txt",
        ] {
            std::fs::write(r.join(f), f).unwrap();
        }
        std::fs::write(
            r.join(".dockerignore"),
            "# build junk\nnode_modules\n**/*.md\n!docs/keep.md\n",
        )
        .unwrap();
        let c = Context::open(r).unwrap();
        assert!(c.ignored(Path::new("node_modules/x/y")));
        assert!(c.ignored(Path::new("src/notes.md")));
        assert!(!c.ignored(Path::new("docs/keep.md")));
        assert!(!c.ignored(Path::new("src/a.rs")));
        assert_eq!(c.sources("src/*.rs").unwrap(), [PathBuf::from("src/a.rs")]);
        assert_eq!(c.sources("./top.txt").unwrap(), [PathBuf::from("top.txt")]);
        assert!(c.sources("../etc/passwd").is_err());
        assert!(c.sources("node_modules").is_err());
        assert!(c.sources("*.nothing").is_err());
        // The hash follows content and owners, not times.
        let pack = |give: Give| {
            let mut p = Packer::new(Vec::new(), give);
            p.add(Some(&c), &r.join("src"), Path::new("src"), Path::new("app"))
                .unwrap();
            p.finish().unwrap()
        };
        let h1 = pack(Give::default());
        filetime_touch(&r.join("src/a.rs"));
        assert_eq!(pack(Give::default()), h1);
        assert_ne!(
            pack(Give {
                owner: (1, 1),
                mode: None
            }),
            h1
        );
        std::fs::write(r.join("src/a.rs"), "changed").unwrap();
        assert_ne!(pack(Give::default()), h1);
        let mut p = Packer::new(Vec::new(), Give::default());
        p.add(Some(&c), &r.join("src"), Path::new("src"), Path::new("app"))
            .unwrap();
        let h = p.finish().unwrap();
        assert_eq!(h.len(), 64);
    }

    fn filetime_touch(p: &Path) {
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    }
}
