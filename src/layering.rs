//! The folders' import rules, checked on the source: no two folders import each other
//! (directly or round a cycle), and the container runtime imports nothing but `sys`,
//! `host` and `text` (never the engine, the image store, the network or the CLI).
//! Run with `cargo test --lib layering`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Folders (top-level modules) the runtime may import.
const RUNTIME_MAY_IMPORT: &[&str] = &["sys", "host", "text"];

/// The module path of a source file under `src/` (`container/start.rs` → container,
/// start; `mod.rs` names its folder).
fn module_of(rel: &Path) -> Vec<String> {
    let mut v: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if matches!(v.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        v.pop();
    }
    v
}

/// The first segment after `crate::` of each path this text names, and for `super::`
/// paths the module they lead to; grouped imports (`use crate::{a::x, b}`) count each
/// group member.
fn targets(text: &str, me: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let b = code.as_bytes();
    let ident = |i: usize| -> (String, usize) {
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        (String::from_utf8_lossy(&b[i..j]).into_owned(), j)
    };
    let boundary = |i: usize| i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if boundary(i) && rest.starts_with(b"crate::{") {
            // Each member of the group: the first identifier after `{` or a `,` at depth 1.
            let mut depth = 0;
            let mut j = i + "crate::".len();
            let mut expect = false;
            while j < b.len() {
                match b[j] {
                    b'{' => {
                        depth += 1;
                        expect = depth == 1;
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b',' if depth == 1 => expect = true,
                    c if expect && (c.is_ascii_alphabetic() || c == b'_') => {
                        out.insert(ident(j).0);
                        expect = false;
                    }
                    _ => {}
                }
                j += 1;
            }
            i = j;
        } else if boundary(i) && rest.starts_with(b"crate::") {
            out.insert(ident(i + "crate::".len()).0);
            i += "crate::".len();
        } else if boundary(i) && rest.starts_with(b"super::") {
            let mut up = me.len();
            let mut j = i;
            while b[j..].starts_with(b"super::") {
                up = up.saturating_sub(1);
                j += "super::".len();
            }
            let (name, _) = ident(j);
            if up == 0 && !name.is_empty() && name != "*" {
                out.insert(name);
            } else if up > 0 {
                out.insert(me[0].clone());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// Folder → the folders it imports, with a file that does for each.
fn folder_imports() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut g: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap_or(&f).to_path_buf();
        let me = module_of(&rel);
        let Some(folder) = me.first().cloned() else {
            continue;
        };
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        // The unit tests of a file may reach further than its code.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for t in targets(code, &me) {
            if t != folder && t != "self" {
                g.entry(folder.clone())
                    .or_default()
                    .entry(t)
                    .or_insert_with(|| rel.display().to_string());
            }
        }
    }
    g
}

/// A cycle through `start`, as the folders on it.
fn cycle_from(
    g: &BTreeMap<String, BTreeMap<String, String>>,
    start: &str,
    at: &str,
    path: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in g.get(at).map(|m| m.keys()).into_iter().flatten() {
        if next == start {
            let mut c = path.clone();
            c.push(next.clone());
            return Some(c);
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if let Some(c) = cycle_from(g, start, next, path, seen) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn no_folder_imports_one_that_imports_it_back() {
    let g = folder_imports();
    assert!(
        g.contains_key("container") && g.contains_key("runtime"),
        "{g:?}"
    );
    for start in g.keys() {
        let mut path = vec![start.clone()];
        if let Some(c) = cycle_from(&g, start, start, &mut path, &mut BTreeSet::new()) {
            let how: Vec<String> = c
                .windows(2)
                .map(|w| format!("{} -> {} ({})", w[0], w[1], g[&w[0]][&w[1]]))
                .collect();
            panic!("folders import each other: {}", how.join(", "));
        }
    }
}

#[test]
fn the_runtime_imports_only_the_ground_floor() {
    let g = folder_imports();
    for (to, file) in g.get("runtime").into_iter().flatten() {
        assert!(
            RUNTIME_MAY_IMPORT.contains(&to.as_str()),
            "{file} (runtime) imports {to}"
        );
    }
}

#[test]
fn imports_are_read_as_written() {
    let me = vec!["container".to_string(), "start".to_string()];
    let t = targets(
        "use crate::{image::Store, runtime::{spec, launch}};\nuse super::state;\n\
         // crate::bench in a comment\nlet x = crate::network::forget(); super::super::fuse::x();",
        &me,
    );
    let want: BTreeSet<String> = ["image", "runtime", "container", "network", "fuse"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(t, want);
}
