//! `strata bench --pull`: pull throughput of a multi-layer image from a registry on
//! 127.0.0.1 (Debian's docker-registry, started here with a config of its own), `strata
//! pull` into an empty store against `skopeo copy` into an empty OCI layout, interleaved,
//! reported as a ratio. strata's pull also unpacks every layer into the store (skopeo only
//! writes blobs), so the ratio is an upper bound of what strata's transport costs.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::target::which;
use super::{io_ctx, run_checked, BenchError};

/// Layers of the image, and bytes in each.
const LAYERS: usize = 4;
const LAYER_BYTES: usize = 48 << 20;

struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A layer tar of `LAYER_BYTES` of pseudo-random (incompressible) data.
fn layer_tar(i: usize, path: &Path) -> Result<(), BenchError> {
    let mut data = vec![0u8; LAYER_BYTES];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1);
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    let f = std::fs::File::create(path).map_err(io_ctx("layer tar"))?;
    let mut b = tar::Builder::new(f);
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, format!("layer{i}/data"), &data[..])
        .map_err(io_ctx("layer tar"))?;
    b.into_inner().map_err(io_ctx("layer tar"))?;
    Ok(())
}

/// An OCI image layout at `layout` whose layers are `dir/layer{i}.tar`.
fn oci_layout(layout: &Path, dir: &Path) -> std::io::Result<()> {
    use sha2::Digest as _;
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |data: &[u8]| -> std::io::Result<(String, usize)> {
        let hex = format!("{:x}", sha2::Sha256::digest(data));
        std::fs::write(blobs.join(&hex), data)?;
        Ok((format!("sha256:{hex}"), data.len()))
    };
    let mut layers = Vec::new();
    for i in 0..LAYERS {
        let (d, n) = put(&std::fs::read(dir.join(format!("layer{i}.tar")))?)?;
        layers.push((d, n));
    }
    let diff_ids: Vec<&str> = layers.iter().map(|(d, _)| d.as_str()).collect();
    let config = serde_json::json!({
        "architecture": crate::image::rootfs::host_arch(), "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    });
    let (cd, cn) = put(config.to_string().as_bytes())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": layers.iter().map(|(d, n)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n
        })).collect::<Vec<_>>()
    });
    let (md, mn) = put(manifest.to_string().as_bytes())?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn}]
    });
    std::fs::write(layout.join("index.json"), index.to_string())?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// docker-registry serving from `dir` on a free port of 127.0.0.1, once it answers; ended
/// when the returned guard is dropped.
fn start_registry(dir: &Path) -> Result<(Registry, u16), BenchError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io_ctx("a free port"))?
        .port();
    let cfg = dir.join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .map_err(io_ctx("registry config"))?;
    let reg = Registry(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_ctx("docker-registry"))?,
    );
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > end {
            return Err(BenchError::Setup("docker-registry did not start".into()));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok((reg, port))
}

/// Runs the comparison; returns the Markdown report (also written to `out/pull.md`).
pub fn run(work: &Path, out: &Path, strata: &Path, runs: usize) -> Result<String, BenchError> {
    for tool in ["docker-registry", "skopeo"] {
        if which(tool).is_none() {
            return Err(BenchError::Setup(format!(
                "needs {tool} (apt-get install docker-registry skopeo)"
            )));
        }
    }
    let dir = work.join("pull");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io_ctx("work dir"))?;
    std::fs::create_dir_all(out).map_err(io_ctx("out dir"))?;
    let (_reg, port) = start_registry(&dir)?;
    let name = format!("127.0.0.1:{port}/bench/pull:1");
    let src_store = dir.join("src-store");
    let strata_in = |store: &Path| {
        let mut c = Command::new(strata);
        c.env("STRATA_ROOT", store);
        c
    };
    let layout = dir.join("layout");
    for i in 0..LAYERS {
        layer_tar(i, &dir.join(format!("layer{i}.tar")))?;
    }
    oci_layout(&layout, &dir).map_err(io_ctx("image layout"))?;
    run_checked(
        "importing the image",
        strata_in(&src_store)
            .args(["image", "import"])
            .arg(&layout)
            .args(["--tag", &name]),
    )?;
    run_checked(
        "pushing the image",
        strata_in(&src_store).args(["push", "-q", &name]),
    )?;
    let total = (LAYERS * LAYER_BYTES) as f64 / (1 << 20) as f64;
    // Memory must not grow with layer size: one extra pull under /usr/bin/time for its
    // peak RSS (not timed).
    let rss = Path::new("/usr/bin/time").is_file().then(|| {
        let store = dir.join("store-rss");
        let report = dir.join("rss");
        let ok = Command::new("/usr/bin/time")
            .args(["-f", "%M", "-o"])
            .arg(&report)
            .arg(strata)
            .env("STRATA_ROOT", &store)
            .args(["pull", "-q", &name])
            .output()
            .is_ok_and(|o| o.status.success());
        let _ = std::fs::remove_dir_all(&store);
        let kb = std::fs::read_to_string(&report).ok()?;
        ok.then(|| kb.trim().parse::<u64>().ok()).flatten()
    });
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let store = dir.join(format!("store-{i}"));
        let t = Instant::now();
        run_checked("strata pull", strata_in(&store).args(["pull", "-q", &name]))?;
        ours.push(t.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&store);
        let dest = dir.join(format!("skopeo-{i}"));
        let t = Instant::now();
        run_checked(
            "skopeo copy",
            Command::new("skopeo")
                .args(["copy", "-q", "--src-tls-verify=false"])
                .arg(format!("docker://{name}"))
                .arg(format!("oci:{}:x", dest.display())),
        )?;
        theirs.push(t.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&dest);
    }
    let (a, b) = (median(&mut ours), median(&mut theirs));
    let mut md = String::new();
    let _ = writeln!(md, "# strata bench --pull\n\n{LAYERS} layers of {} MiB ({total:.0} MiB, incompressible) from docker-registry on 127.0.0.1, {runs} interleaved runs each, medians.\n", LAYER_BYTES >> 20);
    let _ = writeln!(
        md,
        "| tool | time | throughput | ratio to skopeo |\n|---|---|---|---|"
    );
    let _ = writeln!(
        md,
        "| strata pull (fetch, verify, unpack) | {a:.2} s | {:.0} MiB/s | {:.2}x |",
        total / a,
        a / b
    );
    let _ = writeln!(
        md,
        "| skopeo copy to an OCI layout (fetch, verify) | {b:.2} s | {:.0} MiB/s | 1.00x |",
        total / b
    );
    if let Some(Some(kb)) = rss {
        let _ = writeln!(
            md,
            "\nstrata pull peak RSS: {:.1} MiB (layers of {} MiB).",
            kb as f64 / 1024.0,
            LAYER_BYTES >> 20
        );
    }
    std::fs::write(out.join("pull.md"), &md).map_err(io_ctx("pull.md"))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(md)
}
