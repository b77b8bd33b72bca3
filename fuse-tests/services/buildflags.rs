//! BuildKit's flags and heredocs as `strata build` takes them: `RUN --network`, `COPY
//! --exclude`, `FROM --platform` (this host's), `RUN <<EOF` heredocs, `build -f -`; and a
//! flag it doesn't carry out is an error naming it, never dropped.

use std::process::{Command, Stdio};

use crate::support::containers::{env, no_leftovers, ok, out, strata};

#[test]
fn buildkit_flags_heredocs_and_unknown_flags() {
    let e = env("buildflags");
    let ctx = e.store.with_file_name("ctx");
    for (p, d) in [
        ("d/keep.txt", "keep\n"),
        ("d/drop.log", "drop\n"),
        ("d/sub/x.log", "x\n"),
    ] {
        let f = ctx.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, d).unwrap();
    }
    let file = ctx.join("Containerfile");
    let build = |text: &str, tag: &str| {
        std::fs::write(&file, text).unwrap();
        strata(&e, &["build", "-t", tag, ctx.to_str().unwrap()])
    };
    let text = "FROM --platform=$BUILDPLATFORM box:1\n\
                COPY --exclude=*.log --exclude=sub/*.log d/ /d/\n\
                RUN --network=none cat /proc/net/dev | grep -c : > /ifaces\n\
                RUN <<EOF\n\
                echo one > /h1\n\
                echo two >> /h1\n\
                EOF\n\
                RUN cat > /h2 <<-END\n\
                \tindented\n\
                \tEND\n";
    let o = build(text, "flags:1");
    assert!(
        o.status.success(),
        "{}{}",
        out(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    let run = |cmd: &str| ok(&e, &["run", "--rm", "flags:1", "sh", "-c", cmd]);
    assert_eq!(run("find /d -type f | sort"), "/d/keep.txt\n");
    // --network=none: the loopback only.
    assert_eq!(run("cat /ifaces"), "1\n");
    assert_eq!(run("cat /h1 /h2"), "one\ntwo\nindented\n");
    // Refused, naming what, and nothing tagged.
    for (text, says) in [
        ("FROM box:1\nCOPY --bogus=1 d /d\n", "unknown flag: --bogus"),
        (
            "FROM box:1\nRUN --mount=type=cache,target=/c true\n",
            "RUN --mount=type=cache",
        ),
        (
            "FROM --platform=linux/arm64 box:1\n",
            "FROM --platform=linux/arm64",
        ),
        (
            "FROM box:1\nRUN --network=bridge2 true\n",
            "RUN --network=bridge2",
        ),
        (
            "FROM box:1\nRUN <<EOF\necho never closed\n",
            "no line EOF ends it",
        ),
        (
            "FROM box:1\nCOPY <<EOF /x\nhi\nEOF\n",
            "heredocs are supported on RUN only",
        ),
    ] {
        let o = build(text, "bad:1");
        assert_eq!(o.status.code(), Some(1), "{text}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{text}: {err}");
    }
    assert_eq!(
        strata(&e, &["image", "inspect", "bad:1"]).status.code(),
        Some(1)
    );
    // -f -: the Containerfile on stdin.
    let mut child = Command::new(crate::support::harness::strata_bin())
        .env("STRATA_ROOT", &e.store)
        .args(["build", "-t", "stdin:1", "-f", "-", ctx.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        b"FROM box:1\nRUN echo from-stdin > /s\n",
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        ok(&e, &["run", "--rm", "stdin:1", "cat", "/s"]),
        "from-stdin\n"
    );
    ok(&e, &["rmi", "flags:1", "stdin:1"]);
    no_leftovers(&e);
}
