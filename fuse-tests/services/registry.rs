//! `strata pull/push/login/logout` and `run --pull` against Debian's docker-registry,
//! started by each test on 127.0.0.1 with a config of its own: plain HTTP, or htpasswd
//! basic auth over TLS from a CA the test makes. Round trips, skopeo both ways, a blob
//! corrupted in the registry's storage, an interrupted pull that resumes.

use std::path::PathBuf;
use std::process::Command;

use crate::support::archives::{layer, E};
use crate::support::registry::{text, Env, Registry};

/// The digest (hex) of the gzip blob a push made of the uncompressed layer `plain`.
fn pushed_hex(e: &Env, plain: &str) -> String {
    let note = e.store().join("compressed").join(format!("{plain}.gzip"));
    let d = std::fs::read_to_string(&note).unwrap();
    d.trim().trim_start_matches("sha256:").to_string()
}

/// The layer digest (hex) of `name` in the store.
fn layer_hex(e: &Env, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["image", "inspect", name])).unwrap();
    let d = v["Layers"][0]["digest"].as_str().unwrap();
    d.trim_start_matches("sha256:").to_string()
}

#[test]
fn push_rm_pull_run_and_cross_repository_mount() {
    let e = Env::new("roundtrip");
    let reg = Registry::start(e.t.path(), false);
    let a = reg.name("a/box:1");
    e.image(&a);
    let out = e.ok(&["push", &a]);
    assert!(
        out.contains("Pushed") && out.contains("Digest: sha256:"),
        "{out}"
    );
    let again = e.ok(&["push", &a]);
    assert!(
        again.contains("already exists") && !again.contains("Pushed"),
        "{again}"
    );
    let b = reg.name("b/box:2");
    let mounted = e.ok(&["push", &a, &b]);
    assert!(mounted.contains("Mounted from a/box"), "{mounted}");
    e.forget(&a);
    let pulled = e.ok(&["pull", &a]);
    assert!(
        pulled.contains("Download complete") && pulled.trim_end().ends_with(&a),
        "{pulled}"
    );
    assert!(e.partials().is_empty(), "a partial download is left");
    assert_eq!(
        e.ok(&["run", "--rm", &a, "cat", "/data/hello"]),
        "hello from the registry\n"
    );
    // A second pull of what the store has fetches nothing.
    let twice = e.ok(&["pull", &a]);
    assert!(
        twice.contains("Already exists") && !twice.contains("Downloading"),
        "{twice}"
    );
    // run pulls a missing image, unless told never to.
    let o = e.strata(&["run", "--rm", "--pull", "never", &b, "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    let o = e.strata(&["run", "--rm", &b, "cat", "/data/hello"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Unable to find image"), "{}", text(&o));
    let o = e.strata(&["run", "--rm", "--pull", "always", &b, "true"]);
    assert!(
        o.status.success() && text(&o).contains("Pulled"),
        "{}",
        text(&o)
    );
    // build pulls a FROM image the store lacks (and not with --pull never).
    let ctx = e.t.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let c = reg.name("c/box:3");
    e.ok(&["tag", &a, &c]);
    e.ok(&["push", &c]);
    e.forget(&c);
    std::fs::write(
        ctx.join("Containerfile"),
        format!("FROM {c}\nRUN cat /data/hello > /copied\n"),
    )
    .unwrap();
    let o = e.strata(&["build", "--pull", "never", ctx.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let log = e.ok(&["build", "-t", "from-registry:1", ctx.to_str().unwrap()]);
    assert!(log.contains("Successfully tagged from-registry:1"), "{log}");
    assert_eq!(
        e.ok(&["run", "--rm", "from-registry:1", "cat", "/copied"]),
        "hello from the registry\n"
    );
    // A tag the registry lacks: an error naming it, exit 1, nothing added.
    let before = e.ok(&["images", "-q"]);
    let missing = reg.name("a/box:nope");
    let o = e.strata(&["pull", &missing]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains(&missing) && text(&o).contains("404"),
        "{}",
        text(&o)
    );
    assert_eq!(e.ok(&["images", "-q"]), before);
}

#[test]
fn skopeo_pulls_what_strata_pushes_and_strata_pulls_what_skopeo_pushes() {
    let e = Env::new("skopeo");
    let reg = Registry::start(e.t.path(), false);
    let a = reg.name("s/box:1");
    e.image(&a);
    e.ok(&["push", &a]);
    let layout = e.t.path().join("from-strata");
    let o = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{a}"))
        .arg(format!("oci:{}:x", layout.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo copy from the registry: {}",
        text(&o)
    );
    // skopeo pushes an OCI archive strata exported; strata pulls and runs it.
    let archive = e.t.path().join("box.tar");
    e.ok(&["image", "export", &a, "-o", archive.to_str().unwrap()]);
    let c = reg.name("c/box:9");
    let o = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://{c}"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo copy to the registry: {}",
        text(&o)
    );
    e.ok(&["pull", &c]);
    assert_eq!(
        e.ok(&["run", "--rm", &c, "cat", "/data/hello"]),
        "hello from the registry\n"
    );
}

#[test]
fn basic_auth_over_tls_login_logout() {
    let e = Env::new("auth");
    let reg = Registry::start(e.t.path(), true);
    let certs = reg.dir.join("certs");
    let certs = certs.to_str().unwrap();
    let a = reg.name("private/box:1");
    e.image(&a);
    let o = e.strata(&["push", "--cert-dir", certs, &a]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("401") && text(&o).contains("blob"),
        "{}",
        text(&o)
    );
    let host = format!("127.0.0.1:{}", reg.port);
    let o = e.strata(&[
        "login",
        &host,
        "-u",
        "alice",
        "-p",
        "wrong",
        "--cert-dir",
        certs,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let auth = e.t.path().join("home/.config/strata/auth.json");
    assert!(!auth.exists(), "a refused login must not be stored");
    // Without the CA the certificate is refused, by name.
    let o = e.strata(&["login", &host, "-u", "alice", "-p", "s3cret"]);
    assert!(
        text(&o).to_lowercase().contains("certificate"),
        "{}",
        text(&o)
    );
    e.ok(&[
        "login",
        &host,
        "-u",
        "alice",
        "-p",
        "s3cret",
        "--cert-dir",
        certs,
    ]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    e.ok(&["push", "--cert-dir", certs, &a]);
    e.forget(&a);
    e.ok(&["pull", "--tls-verify=false", &a]);
    assert_eq!(
        e.ok(&["run", "--rm", "--pull", "never", &a, "cat", "/data/hello"]),
        "hello from the registry\n"
    );
    e.ok(&["logout", &host]);
    e.forget(&a);
    let o = e.strata(&["pull", "--cert-dir", certs, &a]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("401"), "{}", text(&o));
    assert_eq!(e.strata(&["logout", &host]).status.code(), Some(1));
}

#[test]
fn a_corrupted_blob_is_refused_and_an_interrupted_pull_resumes() {
    let e = Env::new("blobs");
    let reg = Registry::start(e.t.path(), false);
    let a = reg.name("r/box:1");
    e.image(&a);
    e.ok(&["push", &a]);
    // The registry holds the layer gzip-compressed (the store has it plain).
    let hex = pushed_hex(&e, &layer_hex(&e, &a));
    e.forget(&a);
    let stored = reg.blob_file(&hex);
    let good = std::fs::read(&stored).unwrap();
    // An interrupted pull leaves the first part of the blob: the next pull goes on from it.
    std::fs::create_dir_all(e.store().join("downloads")).unwrap();
    let partial = e.store().join(format!("downloads/{hex}.partial"));
    std::fs::write(&partial, &good[..good.len() / 2]).unwrap();
    let o = e.ok(&["pull", &a]);
    assert!(
        o.contains(&format!("Resuming at {} bytes", good.len() / 2)),
        "{o}"
    );
    assert_eq!(
        e.ok(&["run", "--rm", &a, "cat", "/data/hello"]),
        "hello from the registry\n"
    );
    assert!(e.partials().is_empty());
    e.forget(&a);
    // A partial file whose bytes are wrong ends in a digest mismatch: refused, removed,
    // and the pull after it is whole.
    let mut bad = good[..good.len() / 2].to_vec();
    bad[100] ^= 0xff;
    std::fs::write(&partial, &bad).unwrap();
    let o = e.strata(&["pull", &a]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains(&hex), "{}", text(&o));
    assert!(e.partials().is_empty(), "a refused blob is not kept");
    e.ok(&["pull", &a]);
    e.forget(&a);
    // The registry's own copy damaged: refused naming the blob, the store unchanged.
    let mut damaged = good.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0xff;
    std::fs::write(&stored, &damaged).unwrap();
    let before = e.ok(&["images", "-q"]);
    let o = e.strata(&["pull", &a]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains(&hex) && text(&o).contains("digest"),
        "{}",
        text(&o)
    );
    assert_eq!(e.ok(&["images", "-q"]), before);
    let layers = std::fs::read_dir(e.store().join("layers"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(layers, 0, "nothing of the refused image is kept");
}

#[test]
fn a_large_layer_is_uploaded_in_chunks_and_comes_back_whole() {
    let e = Env::new("chunks");
    let reg = Registry::start(e.t.path(), false);
    let a = reg.name("big/box:1");
    // 70 MiB that don't compress: more than two 32 MiB chunks on the wire too.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let big: Vec<u8> = (0..70u32 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let entries = [E::Dir("data"), E::File("data/big", &big, 0o644)];
    let f = e.t.path().join("big.tar");
    std::fs::write(&f, layer(&entries)).unwrap();
    e.ok(&["image", "import", f.to_str().unwrap(), "--tag", &a]);
    e.ok(&["push", "-q", &a]);
    let hex = pushed_hex(&e, &layer_hex(&e, &a));
    let sent = std::fs::read(e.store().join("blobs/sha256").join(&hex)).unwrap();
    assert!(sent.len() > 64 << 20);
    let stored = std::fs::read(reg.blob_file(&hex)).unwrap();
    assert!(stored == sent, "the registry holds the layer whole");
    e.forget(&a);
    e.ok(&["pull", "-q", &a]);
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["image", "inspect", &a])).unwrap();
    let dir = PathBuf::from(v["LayerDirs"][0].as_str().unwrap());
    assert!(std::fs::read(dir.join("data/big")).unwrap() == big);
}

/// Layers stored uncompressed (an imported rootfs tar) go to the registry compressed, gzip
/// by default or zstd when asked, and a second push sends the same blobs without
/// compressing again; what comes back runs.
#[test]
fn push_compresses_layers_stored_uncompressed() {
    let e = Env::new("compress");
    let reg = Registry::start(e.t.path(), false);
    let a = reg.name("c/box:1");
    e.image(&a);
    let stored = &inspect_layers(&e, &a)[0];
    assert_eq!(
        stored["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    let plain_size = stored["size"].as_u64().unwrap();
    let remote = |name: &str| -> serde_json::Value {
        let o = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{name}"))
            .output()
            .unwrap();
        assert!(o.status.success(), "skopeo inspect: {}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let blobs = || {
        std::fs::read_dir(e.store().join("blobs/sha256"))
            .unwrap()
            .count()
    };
    e.ok(&["push", &a]);
    let m = remote(&a);
    let layer = &m["layers"][0];
    assert_eq!(
        layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
        "{m}"
    );
    assert!(layer["size"].as_u64().unwrap() < plain_size, "{m}");
    // Pushed again: the same compressed blob, nothing new made or sent.
    let made = blobs();
    let again = e.ok(&["push", &a]);
    assert!(
        again.contains("already exists") && !again.contains("Pushed"),
        "{again}"
    );
    assert_eq!(blobs(), made);
    assert_eq!(remote(&a)["layers"][0]["digest"], layer["digest"]);
    // zstd, when asked.
    let z = reg.name("c/box:zstd");
    e.ok(&["push", "--compression-format", "zstd", &a, &z]);
    let mz = remote(&z);
    assert_eq!(
        mz["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
        "{mz}"
    );
    let o = e.strata(&["push", "--compression-format", "lz4", &a]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    // Both come back as the image that was pushed (one image id) and run.
    let id = |r: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(&e.ok(&["image", "inspect", r])).unwrap();
        v["Id"].as_str().unwrap().to_string()
    };
    let before = id(&a);
    e.forget(&a);
    for r in [&a, &z] {
        e.ok(&["pull", r]);
        assert_eq!(id(r), before);
        assert_eq!(
            e.ok(&["run", "--rm", r, "cat", "/data/hello"]),
            "hello from the registry\n"
        );
    }
}

fn inspect_layers(e: &Env, name: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["image", "inspect", name])).unwrap();
    v["Layers"].as_array().unwrap().clone()
}
