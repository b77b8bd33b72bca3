//! COPY and ADD: the sources (from the context, or with `--from` from a stage or image)
//! packed into one tar with the owners and mode the step gives (`--chown`, `--chmod`),
//! hashed for the cache, then unpacked through a writable view of a container of the
//! stage's image; ADD also unpacks local tar archives (plain, gzip, zstd) into the
//! destination. The container's changes become the step's layer.

use std::path::{Path, PathBuf};

use super::context::{Context, Give, Packer};
use super::parse::Instruction;
use super::step::{copy_words, head};
use super::{BuildError, Image, Run, Stage};
use crate::container::copy_tar::{copy_in_tar_as, Owners};
use crate::container::lifecycle;

type Result<T> = std::result::Result<T, BuildError>;

/// One source: a host path (in the context, or copied out of another image) and where in
/// the image it goes (relative to `/`).
struct Source {
    host: PathBuf,
    rel: Option<PathBuf>,
    name: PathBuf,
    archive: bool,
}

/// The kind of archive ADD unpacks, by its first bytes.
fn archive_kind(head: &[u8]) -> Option<&'static str> {
    match head {
        [0x1f, 0x8b, ..] => Some("gzip"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd"),
        h if h.len() > 262 && &h[257..262] == b"ustar" => Some("tar"),
        _ => None,
    }
}

/// `--chown` as ids, names looked up in the image's /etc/passwd and /etc/group.
fn owner(spec: Option<&str>, image_root: Option<&Path>) -> std::result::Result<(u32, u32), String> {
    let Some(spec) = spec else { return Ok((0, 0)) };
    let numeric = spec.split(':').all(|p| p.parse::<u32>().is_ok());
    match (numeric, image_root) {
        (true, _) => {
            let (u, g) = spec.split_once(':').unwrap_or((spec, spec));
            Ok((u.parse().unwrap_or(0), g.parse().unwrap_or(0)))
        }
        (false, Some(root)) => crate::runtime::user::resolve_user(spec, root)
            .map_err(|e| format!("--chown {spec}: {e}")),
        (false, None) => Err(format!("--chown {spec}: no image to look the names up in")),
    }
}

pub(super) fn copy_step(
    run: &mut Run<'_>,
    stage: &Stage,
    i: &Instruction,
    text: &str,
    fail: &dyn Fn(String) -> BuildError,
) -> Result<Image> {
    let parent = stage.image.clone();
    let mut words = copy_words(stage, i);
    if words.len() < 2 {
        return Err(fail(format!(
            "{} needs a source and a destination",
            i.keyword
        )));
    }
    let dest = words.pop().unwrap_or_default();
    let workdir = parent
        .config
        .config
        .as_ref()
        .and_then(|c| c.working_dir.clone())
        .unwrap_or_else(|| "/".into());
    let dest_abs = match dest.starts_with('/') {
        true => PathBuf::from(&dest),
        false => Path::new(&workdir).join(&dest),
    };
    let dest_rel: PathBuf = dest_abs.components().skip(1).collect();
    let into_dir = dest.ends_with('/') || words.len() > 1;
    if words.len() > 1 && !dest.ends_with('/') {
        return Err(fail(format!(
            "with several sources, the destination {dest} must end with /"
        )));
    }
    let is_add = i.keyword == "ADD";
    if is_add && words.iter().any(|w| w.contains("://")) {
        return Err(fail(
            "ADD of a URL is not supported (builds have no network)".into(),
        ));
    }
    // --exclude: left out of the sources and of the directories copied, as .dockerignore.
    let excludes: Vec<&str> = i
        .flags
        .iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.as_str())
        .collect();
    let bases = match excludes.is_empty() || i.flag("from").is_some() {
        true => Vec::new(),
        false => exclude_bases(&run.ctx, &words).map_err(fail)?,
    };
    let ctx = run.ctx.excluding(&excludes, &bases)?;
    let tmp = run.store.staging()?;
    let (sources, from_id) = gather(
        run,
        stage,
        &ctx,
        &words,
        i,
        &dest_rel,
        into_dir,
        tmp.path(),
        fail,
    )?;
    let mode = match i.flag("chmod") {
        Some(m) => Some(
            u32::from_str_radix(m, 8).map_err(|_| fail(format!("--chmod {m}: expected octal")))?,
        ),
        None => None,
    };
    // The hash for the cache: with names unresolved, as written.
    let tar_path = tmp.path().join("copy.tar");
    let numeric = owner(i.flag("chown"), None).ok();
    let give = Give {
        owner: numeric.unwrap_or((0, 0)),
        mode,
    };
    let mut hash = pack(&ctx, &sources, &tar_path, give)?;
    for s in sources.iter().filter(|s| s.archive) {
        let data = std::fs::read(&s.host).map_err(BuildError::io(s.host.display()))?;
        hash.push_str(&format!(" {}", crate::image::digest::Digest::of(&data)));
    }
    let key = run.key(&parent.id, text, &format!("{hash} {from_id}"));
    if let Some(img) = super::step::cached_image(run, &key)? {
        run.say(" ---> Using cache")?;
        return Ok(img);
    }
    // Into a container of the stage's image, through a view of it.
    let request = super::step::step_request(&parent.id)?;
    let created = lifecycle::create(run.store, request, crate::host::Host::current())?;
    let c = created.container.clone();
    let made = (|| -> Result<Image> {
        {
            // A user's store: seen raw (the user's own files), owners in override xattrs.
            let (view, owners) = match run.store.root_user {
                true => (
                    crate::container::copy::view(run.store, &c, true)?,
                    Owners::Chown,
                ),
                false => (
                    crate::container::copy::raw_view(run.store, &c, true)?,
                    Owners::Override,
                ),
            };
            if numeric.is_none() {
                let ids = owner(i.flag("chown"), view.mount_path()).map_err(fail)?;
                pack(&ctx, &sources, &tar_path, Give { owner: ids, mode })?;
            }
            let f = std::fs::File::open(&tar_path).map_err(BuildError::io(tar_path.display()))?;
            crate::container::copy_tar::copy_in_tar_as(
                &view,
                std::io::BufReader::new(f),
                "/",
                owners,
            )?;
            for s in sources.iter().filter(|s| s.archive) {
                unpack_archive(&view, &s.host, &dest_abs.display().to_string(), owners)?;
            }
        }
        let (_t, layer) = crate::container::changes::layer_of(run.store, &c)?;
        let by = format!("/bin/sh -c #(nop) {text}");
        super::step::commit_step(run, &key, &parent, Some(&layer), &by)
    })();
    let _ = crate::container::state::remove(run.store, &c);
    made
}

/// The sources of a COPY or ADD and where each lands under `dest_rel`: from another stage
/// or image (`--from`, copied out of a view of it into `tmp` first), else from the build
/// context `ctx`; with the id of the image they came from ("" for the context).
#[allow(
    clippy::too_many_arguments,
    reason = "one step's parts, each used once"
)]
fn gather(
    run: &mut Run<'_>,
    stage: &Stage,
    ctx: &Context,
    words: &[String],
    i: &Instruction,
    dest_rel: &Path,
    into_dir: bool,
    tmp: &Path,
    fail: &dyn Fn(String) -> BuildError,
) -> Result<(Vec<Source>, String)> {
    let is_add = i.keyword == "ADD";
    let mut sources = Vec::new();
    let mut from_id = String::new();
    match i.flag("from") {
        Some(f) => {
            let img = run.base(f)?;
            from_id = img.id.to_string();
            let out = tmp.join("from");
            std::fs::create_dir(&out).map_err(BuildError::io(out.display()))?;
            copy_from_image(run, &img, words, &out).map_err(|e| fail(e.to_string()))?;
            for (k, w) in words.iter().enumerate() {
                let host = out.join(k.to_string());
                let base = Path::new(w.trim_end_matches('/'))
                    .file_name()
                    .map(PathBuf::from);
                let name = placed(&host, dest_rel, into_dir, base);
                sources.push(Source {
                    host,
                    rel: None,
                    name,
                    archive: false,
                });
            }
        }
        None => {
            for w in words {
                // A heredoc of the instruction: a file of its own.
                if let Some(h) = inline_of(i, w) {
                    let host = tmp.join(format!("inline-{}", h.word));
                    let body = match h.quoted {
                        true => h.body.clone(),
                        false => stage.expand(&h.body),
                    };
                    std::fs::write(&host, body).map_err(BuildError::io(host.display()))?;
                    let name = placed(&host, dest_rel, into_dir, Some(PathBuf::from(&h.word)));
                    sources.push(Source {
                        host,
                        rel: None,
                        name,
                        archive: false,
                    });
                    continue;
                }
                for rel in ctx.sources(w).map_err(&fail)? {
                    let host = ctx.root().join(&rel);
                    let archive = is_add && host.is_file() && archive_kind(&head(&host)).is_some();
                    let base = rel.file_name().map(PathBuf::from);
                    let name = placed(&host, dest_rel, into_dir || archive, base);
                    sources.push(Source {
                        host,
                        rel: Some(rel),
                        name,
                        archive,
                    });
                }
            }
        }
    }
    Ok((sources, from_id))
}

/// The heredoc of COPY instruction `i` that source word `w` (`<<EOF`, `<<-"EOF"`) names.
fn inline_of<'i>(i: &'i Instruction, w: &str) -> Option<&'i super::parse::Inline> {
    let word = w.strip_prefix("<<")?.trim_start_matches('-');
    let word = word.trim_matches(['"', '\'']);
    i.inline.iter().find(|h| h.word == word)
}

/// The directories `--exclude` patterns are read from: each source directory, or a file
/// source's parent.
fn exclude_bases(ctx: &Context, words: &[String]) -> std::result::Result<Vec<PathBuf>, String> {
    let mut bases = Vec::new();
    for w in words.iter().filter(|w| !w.starts_with("<<")) {
        for rel in ctx.sources(w)? {
            match ctx.root().join(&rel).is_dir() {
                true => bases.push(rel),
                false => bases.extend(rel.parent().map(Path::to_path_buf)),
            }
        }
    }
    Ok(bases)
}

/// Writes the tar of `sources` (but the archives ADD unpacks) to `tar`; its hash.
fn pack(ctx: &Context, sources: &[Source], tar: &Path, give: Give) -> Result<String> {
    let f = std::fs::File::create(tar).map_err(BuildError::io(tar.display()))?;
    let mut p = Packer::new(std::io::BufWriter::new(f), give);
    for s in sources.iter().filter(|s| !s.archive) {
        let rel = s.rel.clone().unwrap_or_default();
        p.add(s.rel.as_ref().map(|_| ctx), &s.host, &rel, &s.name)?;
    }
    p.finish()
}

/// Where a source lands: a directory's contents at the destination; a file into it (by
/// its name) or as it.
fn placed(host: &Path, dest_rel: &Path, into_dir: bool, base: Option<PathBuf>) -> PathBuf {
    match (host.is_dir(), into_dir, base) {
        (true, _, _) | (false, false, _) | (false, true, None) => dest_rel.to_path_buf(),
        (false, true, Some(b)) => dest_rel.join(b),
    }
}

/// Copies each of `paths` out of image `img` into `out/<index>`.
pub(super) fn copy_from_image(
    run: &mut Run<'_>,
    img: &Image,
    paths: &[String],
    out: &Path,
) -> Result<()> {
    let request = super::step::step_request(&img.id)?;
    let created = lifecycle::create(run.store, request, crate::host::Host::current())?;
    let c = created.container.clone();
    let r = (|| -> Result<()> {
        let view = crate::container::copy::view(run.store, &c, false)?;
        for (k, p) in paths.iter().enumerate() {
            let src = match p.ends_with('/') {
                true => format!("{p}."),
                false => p.clone(),
            };
            crate::container::copy::copy_out(&view, &src, &out.join(k.to_string()))?;
        }
        Ok(())
    })();
    let _ = crate::container::state::remove(run.store, &c);
    r
}

/// ADD of a local archive: its entries unpacked into `dest`.
fn unpack_archive(
    view: &crate::container::copy::Root,
    archive: &Path,
    dest: &str,
    owners: Owners,
) -> Result<()> {
    crate::container::copy_tar::make_dirs(view, dest)?;
    let f = std::fs::File::open(archive).map_err(BuildError::io(archive.display()))?;
    let r = std::io::BufReader::new(f);
    match archive_kind(&head(archive)) {
        Some("gzip") => copy_in_tar_as(view, flate2::read::GzDecoder::new(r), dest, owners)?,
        Some("zstd") => {
            let z = zstd::Decoder::new(r).map_err(BuildError::io(archive.display()))?;
            copy_in_tar_as(view, z, dest, owners)?
        }
        _ => copy_in_tar_as(view, r, dest, owners)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_by_magic_and_owners() {
        assert_eq!(archive_kind(&[0x1f, 0x8b, 8, 0]), Some("gzip"));
        assert_eq!(archive_kind(b"plain text"), None);
        let mut t = vec![0u8; 512];
        t[257..262].copy_from_slice(b"ustar");
        assert_eq!(archive_kind(&t), Some("tar"));
        assert_eq!(owner(Some("10"), None), Ok((10, 10)));
        assert_eq!(owner(Some("10:20"), None), Ok((10, 20)));
        assert_eq!(owner(None, None), Ok((0, 0)));
        assert!(owner(Some("www"), None).is_err());
    }
}
