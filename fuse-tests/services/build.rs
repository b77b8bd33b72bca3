//! `strata build` as a user types it: every instruction, the layer cache (hits, misses,
//! --no-cache, build args), multi-stage builds with --target and COPY --from, an image
//! FROM scratch with a static binary, a failing RUN, and the result read by skopeo and run
//! by podman.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::containers::{env, no_leftovers, ok, out, strata, Env};

fn context(e: &Env, files: &[(&str, &[u8])]) -> PathBuf {
    let dir = e
        .store
        .parent()
        .unwrap()
        .join(format!("ctx-{}", files.len()));
    for (name, data) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    dir
}

fn build(e: &Env, args: &[&str]) -> Output {
    let mut v = vec!["build"];
    v.extend_from_slice(args);
    strata(e, &v)
}

fn built(e: &Env, args: &[&str]) -> String {
    let o = build(e, args);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        out(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    out(&o)
}

fn config(e: &Env, image: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&ok(e, &["image", "inspect", image])).unwrap();
    v["Config"].clone()
}

fn layers_in_store(e: &Env) -> usize {
    std::fs::read_dir(e.store.join("layers"))
        .unwrap()
        .filter(|d| d.as_ref().unwrap().path().is_dir())
        .count()
}

fn gz_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, name, *data).unwrap();
    }
    let raw = b.into_inner().unwrap();
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut z, &raw).unwrap();
    z.finish().unwrap()
}

const EVERY: &str = r#"# a comment
ARG BASE=box:1
FROM ${BASE}
ARG WHO=world
ENV GREETING=hello OTHER="two words"
ENV LEGACY value with spaces
WORKDIR /app
COPY --chown=33:33 --chmod=640 conf/*.conf ./conf/
COPY src/ ./src/
ADD bundle.tar.gz /opt/
ADD notes.txt /opt/notes.txt
RUN echo "$GREETING $WHO" > /app/greeting && \
    cat /opt/from-tar >> /app/greeting
RUN ["/bin/sh", "-c", "echo exec form > /app/exec"]
SHELL ["/bin/sh", "-e", "-c"]
RUN test -f /opt/notes.txt
USER nobody
LABEL tier=web version="1.0"
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGUSR1
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/greeting"]
"#;

#[test]
fn every_instruction_and_the_cache() {
    let e = env("build-every");
    let tgz = gz_tar(&[("from-tar", b"unpacked\n")]);
    let ctx = context(
        &e,
        &[
            ("Containerfile", EVERY.as_bytes()),
            ("conf/a.conf", b"a\n"),
            ("conf/b.conf", b"b\n"),
            ("conf/skip.txt", b"no\n"),
            ("src/main.sh", b"echo main\n"),
            ("src/secret.key", b"never\n"),
            (".dockerignore", b"src/*.key\n"),
            ("bundle.tar.gz", &tgz),
            ("notes.txt", b"notes\n"),
        ],
    );
    let c = ctx.to_str().unwrap();
    let log = built(
        &e,
        &[
            "-t",
            "app:1",
            "-t",
            "app:latest",
            "--build-arg",
            "WHO=strata",
            c,
        ],
    );
    assert!(log.contains("Step 2/21 : FROM box:1"), "{log}");
    assert!(
        log.contains("Successfully tagged app:1") && log.contains("Successfully tagged app:latest")
    );
    assert!(!log.contains("Using cache"), "{log}");
    // The config.
    let cfg = config(&e, "app:1");
    let env: Vec<String> = serde_json::from_value(cfg["Env"].clone()).unwrap();
    assert!(env.contains(&"GREETING=hello".into()) && env.contains(&"OTHER=two words".into()));
    assert!(env.contains(&"LEGACY=value with spaces".into()), "{env:?}");
    assert!(
        !env.iter().any(|v| v.starts_with("WHO=")),
        "ARGs don't stay: {env:?}"
    );
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["User"], "nobody");
    assert_eq!(cfg["Labels"]["version"], "1.0");
    assert!(
        cfg["ExposedPorts"]["8080/tcp"].is_object() && cfg["ExposedPorts"]["53/udp"].is_object()
    );
    assert!(cfg["Volumes"]["/data"].is_object());
    assert_eq!(cfg["StopSignal"], "SIGUSR1");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(cfg["Cmd"], serde_json::json!(["cat /app/greeting"]));
    // The files.
    assert_eq!(
        ok(&e, &["run", "--rm", "app:1"]),
        "hello strata\nunpacked\n"
    );
    let files = ok(&e, &["run", "--rm", "-u", "0", "app:1",
        "cat /app/exec; stat -c '%n %u:%g %a' conf/a.conf conf/b.conf; ls src; ls conf; cat /opt/notes.txt"]);
    assert_eq!(
        files,
        "exec form\nconf/a.conf 33:33 640\nconf/b.conf 33:33 640\nmain.sh\na.conf\nb.conf\nnotes\n"
    );
    // History: one entry per instruction after FROM but ARG, layers for COPY/ADD/RUN.
    let hist = ok(&e, &["image", "history", "app:1"]);
    assert!(hist.contains("echo \"$GREETING $WHO\""), "{hist}");
    assert!(hist.contains("#(nop) EXPOSE 8080 53/udp"), "{hist}");

    // A second build: every step from the cache, no new layer.
    let layers = layers_in_store(&e);
    let again = built(&e, &["-t", "app:2", "--build-arg", "WHO=strata", c]);
    assert_eq!(again.matches("Using cache").count(), 18, "{again}");
    assert_eq!(layers_in_store(&e), layers);
    assert_eq!(config(&e, "app:2"), config(&e, "app:1"));
    // Another build arg: the RUN that sees it (and what follows) runs again.
    let arg = built(&e, &["-t", "app:3", "--build-arg", "WHO=you", c]);
    let first_miss = arg.lines().position(|l| l.contains("Running in")).unwrap();
    let hits_before = arg
        .lines()
        .take(first_miss)
        .filter(|l| l.contains("Using cache"))
        .count();
    assert_eq!(hits_before, 7, "{arg}");
    assert_eq!(ok(&e, &["run", "--rm", "app:3"]), "hello you\nunpacked\n");
    // A changed COPY source: the steps before it come from the cache, it and the rest not;
    // an ignored file changing changes nothing.
    std::fs::write(ctx.join("src/secret.key"), "still never\n").unwrap();
    assert_eq!(
        built(&e, &["--build-arg", "WHO=strata", c])
            .matches("Using cache")
            .count(),
        18
    );
    std::fs::write(ctx.join("src/main.sh"), "echo changed\n").unwrap();
    let changed = built(&e, &["-t", "app:4", "--build-arg", "WHO=strata", c]);
    assert_eq!(changed.matches("Using cache").count(), 4, "{changed}");
    assert_eq!(
        ok(&e, &["run", "--rm", "app:4", "cat src/main.sh"]),
        "echo changed\n"
    );
    // --no-cache builds everything again.
    let fresh = built(&e, &["--no-cache", "--build-arg", "WHO=strata", c]);
    assert_eq!(fresh.matches("Using cache").count(), 0);
    // Step images don't stay in the image list; an untagged result does (the --no-cache
    // one: the build before it made app:1 again).
    let images = ok(&e, &["images"]);
    assert_eq!(
        images.lines().filter(|l| l.starts_with("<none>")).count(),
        1,
        "{images}"
    );
    no_leftovers(&e);
}

#[test]
fn multi_stage_target_copy_from_and_scratch() {
    let e = env("build-stages");
    let bb = std::fs::read("/bin/busybox").unwrap();
    let file = r#"FROM box:1 AS builder
WORKDIR /work
RUN echo built > artifact && mkdir out && echo inner > out/x
FROM box:1 AS test
RUN echo testing > /t
FROM scratch
COPY --from=builder /work/artifact /artifact
COPY --from=builder /work/out/ /out/
COPY --from=box:1 /etc/passwd /etc/passwd
COPY busybox /bin/busybox
ENTRYPOINT ["/bin/busybox"]
CMD ["cat", "/artifact", "/out/x"]
"#;
    let ctx = context(&e, &[("Dockerfile", file.as_bytes()), ("busybox", &bb)]);
    let c = ctx.to_str().unwrap();
    let log = built(&e, &["-t", "tiny:1", c]);
    assert!(log.contains("Step 6/12 : FROM scratch"), "{log}");
    std::fs::set_permissions(
        ctx.join("busybox"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let log = built(&e, &["-t", "tiny:1", c]);
    assert!(log.contains("Successfully tagged tiny:1"), "{log}");
    assert_eq!(ok(&e, &["run", "--rm", "tiny:1"]), "built\ninner\n");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&e, &["image", "inspect", "tiny:1"])).unwrap();
    assert_eq!(
        v["Layers"].as_array().unwrap().len(),
        4,
        "scratch has no layer of its own"
    );
    // --target stops at a stage.
    let log = built(&e, &["--target", "builder", "-t", "b:1", c]);
    assert!(
        !log.contains("FROM scratch") && !log.contains("testing"),
        "{log}"
    );
    assert_eq!(
        ok(&e, &["run", "--rm", "b:1", "cat", "/work/artifact"]),
        "built\n"
    );
    let o = build(&e, &["--target", "nope", c]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no stage named nope"));
    no_leftovers(&e);
}

#[test]
fn a_failing_step_leaves_nothing_and_gives_its_code() {
    let e = env("build-fail");
    let before = ok(&e, &["images", "-q"]);
    let file =
        "FROM box:1\nRUN echo partial > /p\nRUN echo about to fail; exit 3\nRUN echo never\n";
    let ctx = context(&e, &[("Containerfile", file.as_bytes())]);
    let o = build(&e, &["-t", "broken:1", ctx.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(out(&o).contains("about to fail"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("step 3/4") && err.contains("exited with 3"),
        "{err}"
    );
    assert_eq!(
        ok(&e, &["images", "-q"]),
        before,
        "no image, tagged or not, is left"
    );
    assert_eq!(ok(&e, &["ps", "-aq"]), "");
    // Bad input: named by file and line; a missing source names it.
    let ctx = context(
        &e,
        &[("Containerfile", b"FROM box:1\nFROBNICATE\n"), ("x", b"")],
    );
    let o = build(&e, &[ctx.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Containerfile:2"));
    let ctx = context(
        &e,
        &[
            ("Containerfile", b"FROM box:1\nCOPY missing /\n"),
            ("x", b""),
            ("y", b""),
        ],
    );
    let o = build(&e, &[ctx.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing: no such file"));
    let ctx = context(
        &e,
        &[
            ("Containerfile", b"FROM box:1\nCOPY ../../etc/passwd /\n"),
            ("x", b""),
            ("y", b""),
            ("z", b""),
        ],
    );
    let o = build(&e, &[ctx.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("outside the build context"));
    let ctx = context(
        &e,
        &[
            ("Containerfile", b"FROM box:1\nADD http://127.0.0.1:9/x /\n"),
            ("a", b""),
            ("b", b""),
            ("c", b""),
            ("d", b""),
        ],
    );
    let o = build(&e, &[ctx.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("ADD of a URL is not supported"));
    let o = build(
        &e,
        &[
            "--pull",
            "never",
            Path::new("/nonexistent").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    no_leftovers(&e);
}

#[test]
fn built_images_are_read_by_skopeo_and_run_by_podman() {
    let e = env("build-podman");
    let ctx = context(
        &e,
        &[(
            "Containerfile",
            b"FROM box:1\nRUN echo from strata > /msg\nCMD [\"cat\", \"/msg\"]\n",
        )],
    );
    built(&e, &["-t", "pm:1", ctx.to_str().unwrap()]);
    let dir = e.store.parent().unwrap();
    let archive = dir.join("pm.tar");
    ok(
        &e,
        &["image", "export", "pm:1", "-o", archive.to_str().unwrap()],
    );
    let sk = Command::new("skopeo")
        .args(["inspect", &format!("oci-archive:{}", archive.display())])
        .output()
        .unwrap();
    assert!(
        sk.status.success(),
        "{}",
        String::from_utf8_lossy(&sk.stderr)
    );
    // podman with a configuration and storage of the test's own.
    std::fs::write(dir.join("containers.conf"), "[containers]\ndefault_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\nnetns = \"none\"\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n").unwrap();
    std::fs::write(
        dir.join("storage.conf"),
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/pm-graph\"\nrunroot = \"{0}/pm-run\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let pm = Command::new("podman")
        .env("CONTAINERS_CONF", dir.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
        .args(["run", "--rm", &format!("oci-archive:{}", archive.display())])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&pm.stdout),
        "from strata\n",
        "{}",
        String::from_utf8_lossy(&pm.stderr)
    );
    let _ = Command::new("podman")
        .env("CONTAINERS_CONF", dir.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
        .args(["system", "reset", "-f"])
        .output();
    no_leftovers(&e);
}
