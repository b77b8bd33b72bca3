//! The image store end to end: imports of every format, layers shared between images,
//! export that skopeo reads, round trips, hostile and broken archives (each leaves the
//! store as it was and writes nothing outside it), concurrent imports, rm and prune, and
//! the layer directories mounted with strata (and kernel overlayfs) showing the final tree.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::archives::*;
use crate::support::harness::{mount, require_env, strata_bin, Impl};
use crate::support::ops::*;
use crate::support::snapshot::snapshot;

fn strata(store: &Path, args: &[&str]) -> Output {
    Command::new(strata_bin())
        .env("STRATA_ROOT", store)
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "strata failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn tmp(name: &str) -> tempfile::TempDir {
    require_env();
    tempfile::Builder::new()
        .prefix(&format!("strata-img-{name}-"))
        .tempdir()
        .unwrap()
}

fn inspect(store: &Path, r: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&strata(store, &["image", "inspect", r]))).unwrap()
}

fn lowerdirs(store: &Path, r: &str) -> Vec<PathBuf> {
    let v = inspect(store, r);
    let mut dirs: Vec<PathBuf> = v["LayerDirs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| PathBuf::from(d.as_str().unwrap()))
        .collect();
    dirs.reverse();
    dirs
}

fn layer_count(store: &Path) -> usize {
    std::fs::read_dir(store.join("layers"))
        .map(|d| d.flatten().filter(|e| e.path().is_dir()).count())
        .unwrap_or(0)
}

/// Three layers: busybox base; whiteouts and an opaque dir (gzip); a changed file (zstd).
fn three_layers() -> Vec<(Vec<u8>, Z)> {
    let base = busybox_layer();
    let mut base_extra = layer(&[
        E::File("etc/a", b"a", 0o644),
        E::File("etc/b", b"b1", 0o644),
        E::File("dir/x/y", b"y", 0o644),
        E::File("opq/old", b"old", 0o644),
    ]);
    // one tar: strip the end-of-archive blocks of the first and append
    let mut l1 = base[..base.len() - 1024].to_vec();
    l1.append(&mut base_extra);
    let l2 = layer(&[
        E::File("etc/.wh.a", b"", 0o644),
        E::File("opq/.wh..wh..opq", b"", 0o644),
        E::File("opq/new", b"new", 0o644),
        E::File("etc/c", b"c", 0o644),
    ]);
    let l3 = layer(&[E::File("etc/b", b"b3", 0o600)]);
    vec![(l1, Z::Plain), (l2, Z::Gzip), (l3, Z::Zstd)]
}

#[test]
fn oci_layout_layers_mount_to_the_final_tree() {
    let t = tmp("oci");
    let store = store_in(t.path());
    let layout = t.path().join("layout");
    oci_layout(&layout, &three_layers(), Some("demo:1"), None);
    let out = ok(&strata(
        &store,
        &["image", "import", layout.to_str().unwrap()],
    ));
    assert!(out.contains("3 new layers"), "{out}");
    // the same image again, as a tar: every layer shared
    let tarball = t.path().join("layout.tar");
    tar_of_dir(&layout, &tarball);
    let out = ok(&strata(
        &store,
        &[
            "image",
            "import",
            tarball.to_str().unwrap(),
            "--tag",
            "demo:2",
        ],
    ));
    assert!(out.contains("0 new layers, 3 shared"), "{out}");
    assert_eq!(layer_count(&store), 3);
    let list = ok(&strata(&store, &["images"]));
    assert!(
        list.contains("demo") && list.contains(" 1 ") && list.contains(" 2 "),
        "{list}"
    );
    let lowers = lowerdirs(&store, "demo:1");
    let strata_view = {
        let m = mount(Impl::Strata, &lowers, None, &t.path().join("m1"));
        snapshot(&m.path, false)
    };
    let names: Vec<&String> = strata_view.keys().collect();
    for want in [
        "etc/b",
        "etc/c",
        "opq/new",
        "dir/x/y",
        "bin/busybox",
        "bin/sh",
    ] {
        assert!(strata_view.contains_key(want), "{want} missing: {names:?}");
    }
    for gone in ["etc/a", "opq/old"] {
        assert!(
            !strata_view.contains_key(gone),
            "{gone} should be hidden: {names:?}"
        );
    }
    assert!(strata_view["etc/b"].contains("\"b3\"") && strata_view["etc/b"].contains("mode=600"));
    // as root the whiteouts are kernel-format: kernel overlayfs shows the same tree
    let kernel_view = {
        let m = mount(Impl::Kernel, &lowers, None, &t.path().join("m2"));
        snapshot(&m.path, false)
    };
    crate::support::harness::assert_same(
        "layer dirs",
        "kernel",
        &kernel_view,
        "strata",
        &strata_view,
    );
    // and the image runs: chroot into the mounted rootfs
    let m = mount(Impl::Strata, &lowers, None, &t.path().join("m3"));
    let o = Command::new("chroot")
        .arg(&m.path)
        .args(["/bin/sh", "-c", "cat /etc/c /etc/b"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "cb3");
    let h = ok(&strata(&store, &["image", "history", "demo:1"]));
    assert!(h.contains("layer 2") && h.contains("layer 0"), "{h}");
}

#[test]
fn second_image_on_the_same_base_adds_only_its_layers() {
    let t = tmp("share");
    let store = store_in(t.path());
    let layers = three_layers();
    let a = t.path().join("a");
    oci_layout(&a, &layers[..2], Some("a:1"), None);
    let b = t.path().join("b");
    let other = layer(&[E::File("only-b", b"b", 0o644)]);
    oci_layout(
        &b,
        &[layers[0].clone(), (other, Z::Gzip)],
        Some("b:1"),
        None,
    );
    ok(&strata(&store, &["image", "import", a.to_str().unwrap()]));
    let out = ok(&strata(&store, &["image", "import", b.to_str().unwrap()]));
    assert!(out.contains("1 new layers, 1 shared"), "{out}");
    assert_eq!(layer_count(&store), 3);
    let list = ok(&strata(&store, &["images"]));
    assert!(
        list.lines()
            .filter(|l| l.starts_with("a ") || l.starts_with("b "))
            .count()
            == 2,
        "{list}"
    );
    // rm + prune drops b's own layer, keeps the shared base
    ok(&strata(&store, &["image", "rm", "b:1"]));
    let out = ok(&strata(&store, &["image", "prune"]));
    assert!(out.contains("removed 1 layers"), "{out}");
    assert_eq!(layer_count(&store), 2);
    assert!(lowerdirs(&store, "a:1").iter().all(|d| d.is_dir()));
    assert_eq!(
        strata(&store, &["image", "inspect", "b:1"]).status.code(),
        Some(1)
    );
}

#[test]
fn docker_save_import_export_round_trip() {
    let t = tmp("docker");
    let store = store_in(t.path());
    let l1 = busybox_layer();
    let l2 = layer(&[E::File("hello", b"world", 0o644)]);
    let save = t.path().join("save.tar");
    let id = docker_save(&save, &[l1, l2], &["saved:v1"]);
    let out = ok(&strata(
        &store,
        &["image", "import", save.to_str().unwrap()],
    ));
    assert!(
        out.contains("saved:v1") && out.contains(id.as_str()),
        "{out}"
    );
    let x1 = t.path().join("x1.tar");
    ok(&strata(
        &store,
        &["image", "export", "saved:v1", "-o", x1.to_str().unwrap()],
    ));
    // skopeo reads it
    let sk = Command::new("skopeo")
        .args(["inspect", &format!("oci-archive:{}", x1.display())])
        .output()
        .unwrap();
    assert!(
        sk.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&sk.stderr)
    );
    let sk: serde_json::Value = serde_json::from_slice(&sk.stdout).unwrap();
    assert_eq!(sk["Layers"].as_array().unwrap().len(), 2);
    let copy = t.path().join("skopeo-copy");
    let st = Command::new("skopeo")
        .args([
            "copy",
            &format!("oci-archive:{}", x1.display()),
            &format!("oci:{}:v1", copy.display()),
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    // import the export into a fresh store, export again: same digests
    let store2 = t.path().join("store2");
    ok(&strata(&store2, &["image", "import", x1.to_str().unwrap()]));
    let x2 = t.path().join("x2.tar");
    ok(&strata(
        &store2,
        &["image", "export", "saved:v1", "-o", x2.to_str().unwrap()],
    ));
    let (a, b) = (inspect(&store, "saved:v1"), inspect(&store2, "saved:v1"));
    assert_eq!(a["Id"], b["Id"]);
    assert_eq!(a["ManifestDigest"], b["ManifestDigest"]);
    assert_eq!(a["Layers"], b["Layers"]);
    assert_eq!(
        std::fs::read(&x1).unwrap(),
        std::fs::read(&x2).unwrap(),
        "exports are reproducible"
    );
    // plain rootfs tarball (like docker import), gzip
    let rootfs = t.path().join("rootfs.tar.gz");
    std::fs::write(&rootfs, gzip(&busybox_layer())).unwrap();
    let out = ok(&strata(
        &store,
        &["image", "import", rootfs.to_str().unwrap(), "-t", "bb"],
    ));
    assert!(out.contains("bb "), "{out}");
    let dirs = lowerdirs(&store, "bb");
    assert_eq!(dirs.len(), 1);
    assert!(dirs[0].join("bin/busybox").is_file());
    let cfg = inspect(&store, "bb");
    assert_eq!(cfg["Os"], "linux");
}

/// Imports `data` as a rootfs tarball into a fresh store and returns (output, store).
fn import_bytes(t: &Path, name: &str, data: &[u8]) -> (Output, PathBuf) {
    let store = t.join(format!("store-{name}"));
    let f = t.join(format!("{name}.tar"));
    std::fs::write(&f, data).unwrap();
    (
        strata(&store, &["image", "import", f.to_str().unwrap(), "-t", "x"]),
        store,
    )
}

/// The store holds no image, no layer, no staging leftovers.
fn assert_untouched(store: &Path) {
    let images = ok(&strata(store, &["images"]));
    assert_eq!(images.lines().count(), 1, "{images}");
    assert_eq!(layer_count(store), 0);
    assert_eq!(
        std::fs::read_dir(store.join("tmp")).unwrap().count(),
        0,
        "staging left behind"
    );
}

fn must_fail(t: &Path, name: &str, data: &[u8], needle: &str) {
    let (o, store) = import_bytes(t, name, data);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{name}: {err}");
    assert!(
        err.starts_with("strata: error: importing") && err.contains(name),
        "{name}: {err}"
    );
    assert!(err.contains(needle), "{name}: expected {needle:?} in {err}");
    assert_untouched(&store);
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    let t = tmp("hostile");
    let b = t.path();
    let outside = b.join("outside");
    dir(&outside);
    let out_s = outside.to_str().unwrap();
    must_fail(
        b,
        "dotdot",
        &layer(&[E::File("a/../../evil", b"x", 0o644)]),
        "'..'",
    );
    must_fail(
        b,
        "through-symlink",
        &layer(&[E::Sym("link", out_s), E::File("link/pwned", b"x", 0o644)]),
        "not a directory",
    );
    assert!(!outside.join("pwned").exists());
    must_fail(
        b,
        "hardlink-out",
        &layer(&[E::Hard("h", "../../etc/passwd")]),
        "'..'",
    );
    must_fail(
        b,
        "hardlink-abs",
        &layer(&[E::Hard("h", "/etc/passwd")]),
        "hard link",
    );
    let long = "n".repeat(300);
    must_fail(
        b,
        "long-name",
        &layer(&[E::File(&long, b"x", 0o644)]),
        &long[..50],
    );
    must_fail(
        b,
        "huge-size",
        &lying("big", 1 << 40, b"only a little"),
        "big",
    );
    let good = layer(&[E::File("a", &[7u8; 5000], 0o644), E::File("b", b"b", 0o644)]);
    must_fail(b, "truncated", &good[..3000], "truncated");
    let mut bad_gz = gzip(&good);
    let n = bad_gz.len();
    bad_gz[n / 2..].iter_mut().for_each(|x| *x ^= 0x5a);
    must_fail(b, "corrupt-gzip", &bad_gz, "corrupt-gzip");
    // contained, not refused: absolute paths stay inside, duplicates: last wins,
    // setuid and devices kept as root
    let (o, store) = import_bytes(
        b,
        "contained",
        &layer(&[
            E::File("/abs/file", b"inside", 0o644),
            E::File("dup", b"first", 0o644),
            E::File("dup", b"second", 0o644),
            E::File("suid", b"s", 0o4755),
            E::Chr("null", 1, 3),
            E::File(&format!("{}/deep", "d/".repeat(80)), b"pax", 0o644),
        ]),
    );
    ok(&o);
    let l = &lowerdirs(&store, "x")[0];
    assert_eq!(read(&l.join("abs/file")).unwrap(), "inside");
    assert_eq!(read(&l.join("dup")).unwrap(), "second");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert_eq!(
        std::fs::metadata(l.join("suid")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert!(std::fs::symlink_metadata(l.join("null"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert!(l.join(format!("{}deep", "d/".repeat(80))).is_file());
    assert!(!Path::new("/abs/file").exists());
}

#[test]
fn broken_layouts_name_the_problem() {
    let t = tmp("broken");
    let b = t.path();
    let layers = vec![(layer(&[E::File("f", b"content", 0o644)]), Z::Gzip)];
    let check = |name: &str, tamper: &dyn Fn(&Path), needle: &str| {
        let dir = b.join(name);
        oci_layout(&dir, &layers, Some("t:1"), None);
        tamper(&dir);
        let store = b.join(format!("store-{name}"));
        let o = strata(&store, &["image", "import", dir.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(needle), "{name}: expected {needle:?} in {err}");
        assert_untouched(&store);
    };
    let layer_blob = |d: &Path| {
        let idx: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("index.json")).unwrap()).unwrap();
        let md = idx["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("blobs/sha256").join(md)).unwrap())
                .unwrap();
        d.join("blobs/sha256").join(
            m["layers"][0]["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        )
    };
    check(
        "blob-mismatch",
        &|d| std::fs::write(layer_blob(d), gzip(b"not the layer")).unwrap(),
        "expected sha256:",
    );
    check(
        "missing-blob",
        &|d| std::fs::remove_file(layer_blob(d)).unwrap(),
        "named by a descriptor",
    );
    let dir = b.join("media");
    oci_layout(&dir, &layers, Some("t:1"), Some("application/x-bogus"));
    let o = strata(
        &b.join("store-media"),
        &["image", "import", dir.to_str().unwrap()],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown media type application/x-bogus"));
    assert_untouched(&b.join("store-media"));
}

#[test]
fn concurrent_imports_of_one_base_share_it() {
    let t = tmp("concurrent");
    let store = store_in(t.path());
    let layers = three_layers();
    let mut dirs = Vec::new();
    for i in 0..4 {
        let d = t.path().join(format!("img{i}"));
        let own = layer(&[E::File("own", format!("{i}").as_bytes(), 0o644)]);
        oci_layout(
            &d,
            &[layers[0].clone(), (own, Z::Plain)],
            Some(&format!("img:{i}")),
            None,
        );
        dirs.push(d);
    }
    let children: Vec<_> = dirs
        .iter()
        .map(|d| {
            Command::new(strata_bin())
                .env("STRATA_ROOT", &store)
                .args(["image", "import"])
                .arg(d)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(layer_count(&store), 5, "one shared base + four own layers");
    for i in 0..4 {
        let dirs = lowerdirs(&store, &format!("img:{i}"));
        assert_eq!(read(&dirs[0].join("own")).unwrap(), format!("{i}"));
    }
}

#[test]
fn unprivileged_import_drops_devices_and_setuid() {
    let t = tmp("user");
    let base = t.path().join("shared");
    std::fs::create_dir(&base).unwrap();
    chmod(&base, 0o777);
    let f = base.join("rootfs.tar");
    std::fs::write(
        &f,
        layer(&[
            E::File("suid", b"s", 0o4755),
            E::Chr("null", 1, 3),
            E::File("plain", b"p", 0o644),
            E::File("etc/.wh.gone", b"", 0o644),
        ]),
    )
    .unwrap();
    chmod(&f, 0o644);
    let store = base.join("store");
    let o = Command::new("setpriv")
        .args(["--reuid", "1234", "--regid", "1234", "--clear-groups"])
        .arg(strata_bin())
        .env("STRATA_ROOT", &store)
        .args(["image", "import"])
        .arg(&f)
        .args(["-t", "user:1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("skipped null"), "{err}");
    let l = &lowerdirs(&store, "user:1")[0];
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(l.join("suid")).unwrap().mode() & 0o7777,
        0o755
    );
    assert!(!l.join("null").exists());
    // without root the OCI whiteout stays a .wh. file, which strata reads
    assert!(l.join("etc/.wh.gone").is_file());
    assert_eq!(std::fs::metadata(l.join("plain")).unwrap().uid(), 1234);
}

#[test]
fn rm_refuses_an_image_a_container_uses() {
    let t = tmp("inuse");
    let store = store_in(t.path());
    let f = t.path().join("r.tar");
    std::fs::write(&f, layer(&[E::File("a", b"a", 0o644)])).unwrap();
    ok(&strata(
        &store,
        &["image", "import", f.to_str().unwrap(), "-t", "used:1"],
    ));
    let id = inspect(&store, "used:1")["Id"]
        .as_str()
        .unwrap()
        .to_string();
    // a container record, as `strata run` keeps it
    std::fs::create_dir_all(store.join("containers/c1")).unwrap();
    std::fs::write(store.join("containers/c1/image"), &id).unwrap();
    let o = strata(&store, &["image", "rm", "used:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("used by a container"));
    // With another name, a name is only untagged, as docker does; the last one is
    // refused again, unless -f.
    ok(&strata(&store, &["tag", "used:1", "other:2"]));
    ok(&strata(&store, &["image", "rm", "used:1"]));
    assert!(ok(&strata(&store, &["images"])).contains("other"));
    assert_eq!(
        strata(&store, &["image", "inspect", "used:1"])
            .status
            .code(),
        Some(1)
    );
    let o = strata(&store, &["image", "rm", "other:2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("used by a container"));
    ok(&strata(&store, &["image", "rm", "-f", "other:2"]));
    assert!(!ok(&strata(&store, &["images"])).contains("other"));
}

/// An archive whose layer does not match its descriptor or its diff_id is refused even when
/// the store already holds that layer (it used to be accepted as "shared"), and the store
/// stays as it was.
#[test]
fn damaged_archives_are_refused_even_when_the_store_has_the_layer() {
    let t = tmp("damaged");
    let store = store_in(t.path());
    let good = layer(&[E::File("etc/motd", b"good", 0o644)]);
    let layout = t.path().join("good");
    oci_layout(&layout, &[(good.clone(), Z::Gzip)], Some("good:1"), None);
    ok(&strata(
        &store,
        &["image", "import", layout.to_str().unwrap()],
    ));
    let layers_before = layer_count(&store);
    let images_before = ok(&strata(&store, &["images", "-q"]));
    // 1. the same layout with the layer blob's bytes changed under the same digest
    let damaged = t.path().join("damaged");
    oci_layout(
        &damaged,
        &[(good.clone(), Z::Gzip)],
        Some("damaged:1"),
        None,
    );
    let blobs = damaged.join("blobs/sha256");
    let gz = strata::image::Digest::of(&gzip(&good));
    let mut bytes = std::fs::read(blobs.join(gz.hex())).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    std::fs::write(blobs.join(gz.hex()), &bytes).unwrap();
    let o = strata(&store, &["image", "import", damaged.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(gz.as_str()) && err.contains("does not match"),
        "{err}"
    );
    // 2. other content under a config that claims the stored layer's diff_id
    let liar = t.path().join("liar");
    let evil = layer(&[E::File("etc/motd", b"evil", 0o644)]);
    oci_layout_claiming(
        &liar,
        &[(evil, Z::Plain)],
        Some("liar:1"),
        None,
        Some(vec![strata::image::Digest::of(&good)]),
    );
    let o = strata(&store, &["image", "import", liar.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("diff_id"), "{err}");
    // nothing changed
    assert_eq!(layer_count(&store), layers_before);
    assert_eq!(ok(&strata(&store, &["images", "-q"])), images_before);
    assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0);
}

/// What a killed import leaves in the store's tmp/ is removed by the next command that opens
/// the store, while the staging of an import still running (its lock held) is kept.
#[test]
fn killed_imports_leave_no_staging_behind() {
    let t = tmp("staging");
    let store = store_in(t.path());
    ok(&strata(&store, &["images"]));
    let tmpd = store.join("tmp");
    // killed: its lock file is there but nobody holds it
    let dead = tmpd.join("stage-dead");
    std::fs::create_dir_all(dead.join("blobs/sha256")).unwrap();
    std::fs::write(dead.join(".lock"), "").unwrap();
    std::fs::write(dead.join("blobs/sha256/junk"), vec![0u8; 1 << 20]).unwrap();
    // running: another process holds its lock
    let live = tmpd.join("stage-live");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(live.join(".lock"), "").unwrap();
    // one process that takes the lock and becomes `sleep`, so killing it releases the lock
    let script = format!(
        "exec 9>>'{}' && flock 9 && exec sleep 30",
        live.join(".lock").display()
    );
    let mut holder = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    for _ in 0..200 {
        // until flock holds it: a non-blocking try fails
        let o = Command::new("flock")
            .args(["-n"])
            .arg(live.join(".lock"))
            .arg("true")
            .status()
            .unwrap();
        if !o.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    ok(&strata(&store, &["images"]));
    assert!(!dead.exists(), "the killed import's staging is reclaimed");
    assert!(live.exists(), "a running import's staging is kept");
    let _ = holder.kill();
    let _ = holder.wait();
    ok(&strata(&store, &["image", "prune"]));
    assert!(!live.exists(), "reclaimed once its import is gone");
}

/// One image under two manifests (its layer stored plain and gzip, as two registries or two
/// pushes may hold it): one image id, the config's digest, and `run ID` takes either.
#[test]
fn one_config_under_two_manifests_is_one_image() {
    let t = tmp("one-id");
    let store = t.path().join("store");
    let (plain, gz) = (t.path().join("plain"), t.path().join("gz"));
    let m1 = oci_layout(&plain, &[(busybox_layer(), Z::Plain)], Some("one:1"), None);
    let m2 = oci_layout(&gz, &[(busybox_layer(), Z::Gzip)], Some("two:1"), None);
    assert_ne!(m1, m2);
    for l in [&plain, &gz] {
        ok(&strata(&store, &["image", "import", l.to_str().unwrap()]));
    }
    let id = inspect(&store, "one:1")["Id"].as_str().unwrap().to_string();
    assert_eq!(inspect(&store, "two:1")["Id"], id.as_str());
    let short = &id.trim_start_matches("sha256:")[..12];
    let images = ok(&strata(&store, &["images"]));
    assert_eq!(images.matches(short).count(), 2, "{images}");
    for r in [short, id.as_str()] {
        let o = strata(&store, &["run", "--rm", r, "sh", "-c", "echo ran"]);
        assert_eq!(ok(&o), "ran\n", "run {r}");
        assert_eq!(inspect(&store, r)["Id"], id.as_str());
    }
}
