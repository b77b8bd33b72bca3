//! The fuzz tier: everything that parses untrusted input, fed the seeds in `corpus/` with
//! random edits (bytes replaced, inserted, removed, the end cut) and plain random bytes,
//! for a fixed number of cases each (`FUZZ_CASES` to change it; proptest shrinks what
//! fails and prints the seed to replay). A panic is a failure; so is a case that takes
//! longer than [`HANG`]; an archive import must write nothing outside its store.
//!
//! Targets: FUSE requests (seeded from a session captured from the kernel), image
//! references, Containerfiles (and the expansion and word splitting they
//! use), WWW-Authenticate challenges, OCI/docker manifests, indexes and configs with the
//! platform choice, and `image import` of layer tars (plain, gzip, zstd), OCI layouts and
//! docker-save archives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is the test's failure"
)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Longer than this for one case is a hang.
const HANG: Duration = Duration::from_secs(20);

fn corpus(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-tests/corpus")
        .join(dir)
}

/// Every file of `corpus/DIR`, whole.
fn seed_files(dir: &str) -> Vec<Vec<u8>> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(corpus(dir))
        .unwrap()
        .flatten()
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v.into_iter().map(|(_, b)| b).collect()
}

/// Every line of `corpus/DIR/seeds.txt`.
fn seed_lines(dir: &str) -> Vec<Vec<u8>> {
    let text = std::fs::read(corpus(dir).join("seeds.txt")).unwrap();
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// One edit of a seed.
#[derive(Clone, Debug)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Cut(usize),
    /// Copies a run of the seed over another place (keeps the format's own tokens).
    Splice(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Replace(p, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Insert(p, b)),
        2 => any::<usize>().prop_map(Edit::Remove),
        1 => any::<usize>().prop_map(Edit::Cut),
        1 => (any::<usize>(), any::<usize>(), 1usize..64).prop_map(|(a, b, n)| Edit::Splice(a, b, n)),
    ]
}

fn apply(mut v: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = v.len().max(1);
        match *e {
            Edit::Replace(p, b) if !v.is_empty() => v[p % len] = b,
            Edit::Insert(p, b) => v.insert(p % (v.len() + 1), b),
            Edit::Remove(p) if !v.is_empty() => {
                v.remove(p % len);
            }
            Edit::Cut(p) => v.truncate(p % (v.len() + 1)),
            Edit::Splice(a, b, n) if !v.is_empty() => {
                let (a, b) = (a % len, b % len);
                let n = n.min(v.len() - a).min(v.len() - b);
                let run = v[a..a + n].to_vec();
                v[b..b + n].copy_from_slice(&run);
            }
            _ => {}
        }
    }
    v
}

/// A seed with edits, or random bytes.
fn input(seeds: Vec<Vec<u8>>, max_random: usize) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    prop_oneof![
        8 => (0..n, prop::collection::vec(edit(), 0..12))
            .prop_map(move |(i, e)| apply(seeds[i].clone(), &e)),
        2 => prop::collection::vec(any::<u8>(), 0..max_random),
    ]
}

fn cases(default: u32) -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `f` on its own thread: a panic or a hang fails the case.
fn guarded<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TestCaseError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(HANG) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(TestCaseError::fail(format!("{what}: panicked"))),
        Err(_) => Err(TestCaseError::fail(format!(
            "{what}: no answer within {HANG:?}"
        ))),
    }
}

fn fuzz(
    name: &str,
    default_cases: u32,
    strategy: impl Strategy<Value = Vec<u8>>,
    f: fn(Vec<u8>) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(Config {
        cases: cases(default_cases),
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, f) {
        panic!("fuzz target {name}: {e}");
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn image_references() {
    fuzz(
        "reference",
        20000,
        input(seed_lines("reference"), 300),
        |b| {
            let s = text(&b);
            guarded("Reference::parse", move || {
                if let Ok(r) = strata::image::Reference::parse(&s) {
                    // What parses prints back as something that parses again.
                    let again = strata::image::Reference::parse(&r.name());
                    assert!(
                        again.is_ok(),
                        "{s:?} parsed, but its name {:?} does not",
                        r.name()
                    );
                }
            })
        },
    );
}

#[test]
fn containerfiles() {
    fuzz(
        "containerfile",
        5000,
        input(seed_files("containerfile"), 2000),
        |b| {
            let s = text(&b);
            guarded("build::parse", move || {
                let _ = strata::build::parse::parse("Containerfile", &s);
                let _ = strata::build::parse::expand(&s, &|k| {
                    (k.len() % 2 == 0).then(|| k.to_string())
                });
                let _ = strata::text::words(&s);
                let _ = strata::build::parse::key_values(&s);
            })
        },
    );
}

#[test]
fn www_authenticate_challenges() {
    fuzz(
        "challenge",
        20000,
        input(seed_lines("challenge"), 300),
        |b| {
            let s = text(&b);
            guarded("parse_challenge", move || {
                let _ = strata::image::registry::auth::parse_challenge(&s);
            })
        },
    );
}

#[test]
fn manifests_indexes_and_configs() {
    use strata::image::oci::{DockerSaveEntry, ImageConfig, Index, Manifest};
    fuzz("json", 10000, input(seed_files("json"), 600), |b| {
        guarded("registry JSON", move || {
            let _ = serde_json::from_slice::<Manifest>(&b);
            let _ = serde_json::from_slice::<ImageConfig>(&b);
            let _ = serde_json::from_slice::<Vec<DockerSaveEntry>>(&b);
            if let Ok(idx) = serde_json::from_slice::<Index>(&b) {
                for p in [None, Some("linux/arm64/v8"), Some("linux"), Some("//")] {
                    let _ = strata::image::registry::pull::pick_platform(&idx, p);
                }
            }
        })
    });
}

/// The requests of a session captured from the kernel (src/fuse/testdata), as bytes.
fn kernel_requests() -> Vec<Vec<u8>> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fuse/testdata/kernel-6.18-session.hex");
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn fuse_requests() {
    fuzz("fuse", 20000, input(kernel_requests(), 200), |b| {
        guarded("fuse request decoder", move || {
            for ext in [false, true] {
                if let Ok((h, _)) = strata::fuse::request::decode_request(&b, ext) {
                    assert!(
                        h.len as usize <= b.len(),
                        "a request longer than what was read"
                    );
                }
            }
        })
    });
}

/// Every path below `dir`, `skip` left out.
fn listing(dir: &Path, skip: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p == skip {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            v.push(p);
        }
    }
    v.sort();
    v
}

#[test]
fn archive_imports() {
    fuzz("archive", 1500, input(seed_files("archive"), 4096), |b| {
        let outside = Path::new("/tmp/strata-fuzz-escape");
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("in.tar");
        std::fs::write(&src, &b).unwrap();
        let store_dir = t.path().join("store");
        let before = listing(t.path(), &store_dir);
        let (s, d) = (src.clone(), store_dir.clone());
        guarded("image import", move || {
            let host = strata::host::Host::current();
            let store = strata::image::Store::open(d, host).unwrap();
            let _ = strata::image::import::import(&store, &s, Some("fuzz:1"));
        })?;
        prop_assert_eq!(
            listing(t.path(), &store_dir),
            before,
            "written outside the store"
        );
        prop_assert!(
            !outside.exists(),
            "written through a symlink out of the store"
        );
        Ok(())
    });
}
