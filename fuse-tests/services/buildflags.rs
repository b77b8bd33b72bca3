//! BuildKit's flags and heredocs as `strata build` takes them: `RUN --network`, `RUN
//! --mount` (cache, bind, secret, tmpfs, with `build --secret`), `COPY --exclude`, `FROM
//! --platform` (this host's), `RUN <<EOF` heredocs, `build -f -`; and a flag it doesn't
//! carry out is an error naming it, never dropped.

use std::process::{Command, Stdio};

use crate::support::containers::{env, no_leftovers, ok, out, strata};

fn run_in(e: &crate::support::containers::Env, image: &str, cmd: &str) -> String {
    ok(e, &["run", "--rm", image, "sh", "-c", cmd])
}

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
                \tEND\n\
                ARG NAME=world\n\
                COPY <<EOF /etc/greeting\n\
                hello $NAME\n\
                EOF\n\
                COPY <<'RAW' /raw/\n\
                $NOT_EXPANDED\n\
                RAW\n";
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
    // COPY heredocs: a file of their own, substituted unless the word is quoted.
    assert_eq!(
        run("cat /etc/greeting /raw/RAW"),
        "hello world\n$NOT_EXPANDED\n"
    );
    // Refused, naming what, and nothing tagged.
    for (text, says) in [
        ("FROM box:1\nCOPY --bogus=1 d /d\n", "unknown flag: --bogus"),
        (
            "FROM box:1\nRUN --mount=type=ssh true\n",
            "RUN --mount=type=ssh",
        ),
        (
            "FROM box:1\nRUN --mount=type=secret,id=absent,required true\n",
            "the secret is required",
        ),
        (
            "FROM box:1\nRUN --mount=type=bind,source=../..,target=/x true\n",
            "outside the build context",
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
            "FROM box:1\nONBUILD FROM box:1\n",
            "ONBUILD takes an instruction other than",
        ),
        (
            "FROM box:1\nADD <<EOF /x\nhi\nEOF\n",
            "heredocs are supported on RUN and COPY only",
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
    // ONBUILD: the triggers run in a build FROM the image, and not in one FROM that.
    let o = build(
        "FROM box:1\nONBUILD RUN echo triggered > /trig\nONBUILD COPY d/keep.txt /from-trigger\n",
        "base:1",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        run_in(&e, "base:1", "ls /trig 2>/dev/null; echo end"),
        "end\n"
    );
    let o = build("FROM base:1\nRUN echo child > /child\n", "child:1");
    assert!(out(&o).contains("Executing 2 build trigger"), "{}", out(&o));
    assert_eq!(
        run_in(&e, "child:1", "cat /trig /from-trigger /child"),
        "triggered\nkeep\nchild\n"
    );
    let o = build("FROM child:1\nRUN true\n", "grandchild:1");
    assert!(
        o.status.success() && !out(&o).contains("Executing"),
        "{}",
        out(&o)
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
    ok(
        &e,
        &[
            "rmi",
            "flags:1",
            "stdin:1",
            "base:1",
            "child:1",
            "grandchild:1",
        ],
    );
    no_leftovers(&e);
}

#[test]
fn run_mounts_are_seen_by_the_step_and_never_baked_into_the_image() {
    let e = env("buildmounts");
    let ctx = e.store.with_file_name("ctx");
    std::fs::create_dir_all(ctx.join("d")).unwrap();
    std::fs::write(ctx.join("d/keep.txt"), "keep\n").unwrap();
    let secret = e.store.with_file_name("token");
    std::fs::write(&secret, "s3cret-value").unwrap();
    let file = ctx.join("Containerfile");
    std::fs::write(
        &file,
        "FROM box:1\n\
         RUN --mount=type=cache,target=/var/cache/app sh -c 'n=$(cat /var/cache/app/n 2>/dev/null || echo 0); echo $((n+1)) > /var/cache/app/n; cp /var/cache/app/n /seen-cache'\n\
         RUN --mount=type=bind,source=d,target=/src cp /src/keep.txt /seen-bind\n\
         RUN --mount=type=bind,source=d,target=/src,rw sh -c 'echo w > /src/new && cat /src/new > /seen-rw'\n\
         RUN --mount=type=secret,id=tok --mount=type=secret,id=env sh -c 'test \"$(cat /run/secrets/tok)\" = s3cret-value && test \"$(cat /run/secrets/env)\" = from-env && stat -c %a /run/secrets/tok > /seen-secret'\n\
         RUN --mount=type=secret,id=nope sh -c '[ ! -e /run/secrets/nope ] && echo absent > /seen-nope'\n\
         RUN --mount=type=tmpfs,target=/scratch sh -c 'echo t > /scratch/f && grep -c \" /scratch tmpfs\" /proc/mounts > /seen-tmpfs'\n",
    )
    .unwrap();
    let build = |extra: &[&str]| {
        let mut args = vec![
            "build",
            "-t",
            "mounts:1",
            "--secret",
            "id=tok,src=TOKEN_FILE",
            "--secret",
            "id=env,env=TOKEN_FROM_ENV",
        ];
        args.extend(extra);
        args.push(ctx.to_str().unwrap());
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("TOKEN_FILE", secret.to_str().unwrap()))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = std::process::Command::new(crate::support::harness::strata_bin())
            .env("STRATA_ROOT", &e.store)
            .env("TOKEN_FROM_ENV", "from-env")
            .args(&args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}{}",
            out(&o),
            String::from_utf8_lossy(&o.stderr)
        );
        out(&o)
    };
    build(&[]);
    let run = |cmd: &str| ok(&e, &["run", "--rm", "mounts:1", "sh", "-c", cmd]);
    assert_eq!(
        run("cat /seen-cache /seen-bind /seen-rw /seen-secret /seen-nope /seen-tmpfs"),
        "1\nkeep\nw\n400\nabsent\n1\n"
    );
    // Nothing of the mounts is in the image: no cache content, no mount points made for
    // them, no secret; the writable bind's writes went nowhere.
    assert_eq!(
        run("ls -d /var/cache/app/n /src /run/secrets /scratch 2>/dev/null; echo end"),
        "end\n"
    );
    assert!(
        !ctx.join("d/new").exists(),
        "a rw bind wrote into the context"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&e, &["image", "inspect", "mounts:1"])).unwrap();
    for dir in v["LayerDirs"].as_array().unwrap() {
        let o = std::process::Command::new("grep")
            .args(["-rl", "s3cret-value"])
            .arg(dir.as_str().unwrap())
            .output()
            .unwrap();
        assert!(o.stdout.is_empty(), "the secret is in a layer: {}", out(&o));
    }
    // The cache outlives the build; the bound content is part of the step's cache key.
    build(&["--no-cache"]);
    assert_eq!(run("cat /seen-cache"), "2\n");
    std::fs::write(ctx.join("d/keep.txt"), "changed\n").unwrap();
    let log = build(&[]);
    assert_eq!(run("cat /seen-bind"), "changed\n", "{log}");
    ok(&e, &["rmi", "mounts:1"]);
    no_leftovers(&e);
}
