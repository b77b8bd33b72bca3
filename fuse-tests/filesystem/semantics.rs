//! Namespace semantics against the kernel oracle: lookup, whiteouts, opaque dirs, readdir,
//! unlink/rmdir, rename (files and lower directories), hard links, inode numbers.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::support::harness::scenario;
use crate::support::ops::*;

/// Two kernel-format lowers with shadowing, whiteouts and an opaque dir.
fn stack(base: &Path) -> Vec<PathBuf> {
    let (top, bot) = (base.join("top"), base.join("bottom"));
    file(&bot.join("a"), "a-bottom");
    file(&bot.join("shadowed"), "bottom");
    file(&top.join("shadowed"), "top");
    file(&bot.join("gone"), "hidden by whiteout");
    whiteout(&top.join("gone"));
    file(&bot.join("opq/old"), "hidden by opaque");
    file(&bot.join("opq/kept-name"), "hidden too");
    opaque(&top.join("opq"));
    file(&top.join("opq/new"), "visible");
    file(&bot.join("merged/b1"), "b1");
    file(&bot.join("merged/deep/x"), "x");
    file(&top.join("merged/t1"), "t1");
    file(&bot.join("merged/wh"), "hidden");
    whiteout(&top.join("merged/wh"));
    file(&bot.join("d/sub/f"), "f");
    file(&bot.join("d/g"), "g");
    std::os::unix::fs::symlink("a", bot.join("link")).unwrap();
    file(&bot.join("ro/file"), "read-only");
    chmod(&bot.join("ro/file"), 0o444);
    chmod(&bot.join("ro"), 0o555);
    vec![top, bot]
}

#[test]
fn lookup_whiteout_opaque() {
    scenario("lookup", &stack, &|m| {
        vec![
            val("read a", read(&j(m, "a"))),
            val("read shadowed", read(&j(m, "shadowed"))),
            step("stat gone", std::fs::metadata(j(m, "gone"))),
            val("ls opq", names(&j(m, "opq"))),
            step("stat opq/old", std::fs::metadata(j(m, "opq/old"))),
            val("ls merged", names(&j(m, "merged"))),
            val("ls root", names(m)),
            val("readlink", std::fs::read_link(j(m, "link"))),
            val("read via link", read(&j(m, "link"))),
            step("lookup .wh. name", std::fs::metadata(j(m, ".wh.gone"))),
        ]
    });
}

#[test]
fn readdir_dot_entries_and_inodes() {
    scenario("readdir", &stack, &|m| {
        let dirmeta = std::fs::metadata(j(m, "merged")).unwrap();
        let d = nix::dir::Dir::open(
            &j(m, "merged"),
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        let mut log = Vec::new();
        let mut seen = Vec::new();
        let mut d = d;
        for e in d.iter() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "." {
                log.push(format!(". ino matches stat: {}", e.ino() == dirmeta.ino()));
            }
            seen.push(name);
        }
        seen.sort();
        log.push(format!("entries: {seen:?}"));
        log.push(format!("merged dir nlink: {}", dirmeta.nlink()));
        log
    });
}

#[test]
fn unlink_rmdir_and_recreate() {
    scenario("remove", &stack, &|m| {
        let mut log = vec![
            step("unlink lower a", std::fs::remove_file(j(m, "a"))),
            step("unlink again", std::fs::remove_file(j(m, "a"))),
            step(
                "rmdir non-empty merged",
                std::fs::remove_dir(j(m, "merged")),
            ),
            step("unlink dir", std::fs::remove_file(j(m, "merged"))),
            step("rmdir file", std::fs::remove_dir(j(m, "shadowed"))),
            step("rm -rf merged", std::fs::remove_dir_all(j(m, "merged"))),
            step("mkdir merged", std::fs::create_dir(j(m, "merged"))),
            val("ls new merged", names(&j(m, "merged"))),
            step("rm -rf d", std::fs::remove_dir_all(j(m, "d"))),
            step("mkdir d", std::fs::create_dir(j(m, "d"))),
            step("touch d/g2", std::fs::write(j(m, "d/g2"), "new")),
            val("ls d", names(&j(m, "d"))),
            step("create over whiteout", std::fs::write(j(m, "gone"), "back")),
            val("read gone", read(&j(m, "gone"))),
            step("unlink upper-only", std::fs::remove_file(j(m, "d/g2"))),
        ];
        log.push(val("ls root", names(m)));
        log
    });
}

#[test]
fn readonly_lower_objects() {
    scenario("readonly", &stack, &|m| {
        vec![
            step(
                "write 0444 file as root",
                std::fs::write(j(m, "ro/file"), "root wrote"),
            ),
            val("read", read(&j(m, "ro/file"))),
            step(
                "chmod",
                std::fs::set_permissions(
                    j(m, "ro/file"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                ),
            ),
            step(
                "rename in 0555 dir",
                std::fs::rename(j(m, "ro/file"), j(m, "ro/moved")),
            ),
            step("remove", std::fs::remove_file(j(m, "ro/moved"))),
            step("rmdir 0555", std::fs::remove_dir(j(m, "ro"))),
        ]
    });
}

#[test]
fn rename_files() {
    scenario("rename-files", &stack, &|m| {
        vec![
            step("lower to new name", std::fs::rename(j(m, "a"), j(m, "a2"))),
            val("read a2", read(&j(m, "a2"))),
            step("stat a", std::fs::metadata(j(m, "a"))),
            step(
                "over lower file",
                std::fs::rename(j(m, "a2"), j(m, "shadowed")),
            ),
            val("read shadowed", read(&j(m, "shadowed"))),
            step(
                "into merged dir",
                std::fs::rename(j(m, "shadowed"), j(m, "merged/b1")),
            ),
            step(
                "noreplace existing",
                rename2(
                    &j(m, "merged/t1"),
                    &j(m, "merged/b1"),
                    libc::RENAME_NOREPLACE,
                ),
            ),
            step(
                "noreplace free",
                rename2(
                    &j(m, "merged/t1"),
                    &j(m, "merged/t2"),
                    libc::RENAME_NOREPLACE,
                ),
            ),
            step(
                "exchange",
                rename2(
                    &j(m, "merged/t2"),
                    &j(m, "merged/b1"),
                    libc::RENAME_EXCHANGE,
                ),
            ),
            val("read b1", read(&j(m, "merged/b1"))),
            val("read t2", read(&j(m, "merged/t2"))),
            step(
                "exchange missing",
                rename2(
                    &j(m, "merged/t2"),
                    &j(m, "merged/none"),
                    libc::RENAME_EXCHANGE,
                ),
            ),
            step(
                "whiteout flag",
                rename2(
                    &j(m, "merged/t2"),
                    &j(m, "merged/t3"),
                    libc::RENAME_WHITEOUT,
                ),
            ),
            step(
                "file over dir",
                std::fs::rename(j(m, "merged/t2"), j(m, "d")),
            ),
            step(
                "onto itself",
                std::fs::rename(j(m, "merged/t2"), j(m, "merged/t2")),
            ),
            val("ls merged", names(&j(m, "merged"))),
        ]
    });
}

#[test]
fn rename_lower_directories() {
    scenario("rename-dirs", &stack, &|m| {
        vec![
            step(
                "rename lower dir in place",
                std::fs::rename(j(m, "d"), j(m, "d2")),
            ),
            val("ls d2", names(&j(m, "d2"))),
            val("read d2/sub/f", read(&j(m, "d2/sub/f"))),
            step("stat d", std::fs::metadata(j(m, "d"))),
            step(
                "move into other dir",
                std::fs::rename(j(m, "d2"), j(m, "merged/d3")),
            ),
            val("ls merged/d3/sub", names(&j(m, "merged/d3/sub"))),
            step(
                "move nested lower dir out",
                std::fs::rename(j(m, "merged/deep"), j(m, "deep2")),
            ),
            val("read deep2/x", read(&j(m, "deep2/x"))),
            step(
                "write in moved dir",
                std::fs::write(j(m, "merged/d3/new"), "n"),
            ),
            step(
                "rename merged dir",
                std::fs::rename(j(m, "merged"), j(m, "m2")),
            ),
            val("ls m2", names(&j(m, "m2"))),
            step("recreate old name", std::fs::create_dir(j(m, "d"))),
            val("ls d", names(&j(m, "d"))),
            step(
                "dir over empty dir",
                std::fs::rename(j(m, "deep2"), j(m, "d")),
            ),
            val("ls d after", names(&j(m, "d"))),
            step("dir over non-empty", std::fs::rename(j(m, "d"), j(m, "m2"))),
            step(
                "exchange dirs",
                rename2(&j(m, "d"), &j(m, "opq"), libc::RENAME_EXCHANGE),
            ),
            val("ls opq", names(&j(m, "opq"))),
            val("ls root", names(m)),
        ]
    });
}

#[test]
fn hard_links_and_inodes() {
    let setup = |base: &Path| {
        let mut l = stack(base);
        let bot = l.pop().unwrap();
        file(&bot.join("h1"), "linked");
        std::fs::hard_link(bot.join("h1"), bot.join("h2")).unwrap();
        l.push(bot);
        l
    };
    scenario("hardlinks", &setup, &|m| {
        let i_a = ino(&j(m, "a")).unwrap();
        let same =
            |a: &str, b: &str| format!("{a}=={b}: {}", ino(&j(m, a)).ok() == ino(&j(m, b)).ok());
        let mut log = vec![
            same("h1", "h2"),
            val("nlink h1", std::fs::metadata(j(m, "h1")).map(|m| m.nlink())),
            step(
                "chmod a (copy-up)",
                std::fs::set_permissions(
                    j(m, "a"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o640),
                ),
            ),
            format!(
                "st_ino kept across copy-up: {}",
                ino(&j(m, "a")).ok() == Some(i_a)
            ),
            step(
                "link lower file",
                std::fs::hard_link(j(m, "shadowed"), j(m, "s2")),
            ),
            same("shadowed", "s2"),
            val("nlink s2", std::fs::metadata(j(m, "s2")).map(|m| m.nlink())),
            step(
                "append via s2",
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(j(m, "s2"))
                    .and_then(|mut f| std::io::Write::write_all(&mut f, b"+")),
            ),
            val("read shadowed", read(&j(m, "shadowed"))),
            step("unlink one name", std::fs::remove_file(j(m, "shadowed"))),
            val(
                "nlink s2 after",
                std::fs::metadata(j(m, "s2")).map(|m| m.nlink()),
            ),
            step(
                "link to existing",
                std::fs::hard_link(j(m, "a"), j(m, "s2")),
            ),
            step("link dir", std::fs::hard_link(j(m, "d"), j(m, "d-link"))),
        ];
        log.push(val("ls", names(m)));
        log
    });
}
