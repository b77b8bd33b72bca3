//! Helpers of the security tests that other tests use too.

use crate::support::containers::{out, run, Env};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// A test program of fuse-tests/NAME.c, built with the C compiler (static: the images
/// have no libc).
pub(crate) fn static_program(name: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fuse-tests/{name}.c"));
    let o = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("cc (gcc and libc6-dev) builds the test programs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(&exe).unwrap()
}

/// The probe, built once.
pub(crate) fn probe() -> &'static [u8] {
    static BIN: OnceLock<Vec<u8>> = OnceLock::new();
    BIN.get_or_init(|| static_program("probe"))
}

pub(crate) fn ok_out(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}{}",
        o.status.code(),
        out(o),
        String::from_utf8_lossy(&o.stderr)
    );
    out(o)
}

/// What the probe says of each operation.
pub(crate) fn probe_ops(e: &Env, flags: &[&str], ops: &[&str]) -> Vec<(String, String)> {
    let mut args = flags.to_vec();
    args.extend(["box:1", "probe"]);
    args.extend_from_slice(ops);
    let o = ok_out(&run(e, &args));
    o.lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect()
}

pub(crate) fn result(r: &[(String, String)], op: &str) -> String {
    r.iter().find(|(o, _)| o == op).unwrap().1.clone()
}
