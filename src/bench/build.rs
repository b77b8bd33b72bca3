//! `strata bench --build`: build time of a small multi-step Containerfile (COPY of 50
//! files, two RUNs, config steps), cold (`--no-cache`) and from the cache, `strata build`
//! against `podman build` (buildah, on kernel overlayfs) on the same machine, interleaved,
//! reported as ratios. Both start from the same busybox image (podman loads strata's
//! export of it) with RUN's network off.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::target::which;
use super::{io_ctx, run_checked, BenchError};

const CONTAINERFILE: &str = "ARG BASE\nFROM ${BASE}\nENV APP=/app\nWORKDIR /app\nCOPY src/ ./src/\nRUN cat src/*.txt > all.txt && wc -c all.txt\nRUN mkdir -p data && echo built > data/flag\nCOPY config.txt ./\nLABEL bench=build\nCMD [\"cat\", \"/app/all.txt\"]\n";

/// The context and the base image's rootfs tar.
fn prepare(dir: &Path) -> std::io::Result<()> {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("src"))?;
    std::fs::write(ctx.join("Containerfile"), CONTAINERFILE)?;
    std::fs::write(ctx.join("config.txt"), "mode=bench\n")?;
    for i in 0..50 {
        std::fs::write(
            ctx.join(format!("src/f{i:02}.txt")),
            format!("line {i}\n").repeat(40),
        )?;
    }
    let passwd: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n";
    super::busybox::rootfs_tar(
        &dir.join("base.tar"),
        &["sh", "cat", "wc", "mkdir", "echo", "ls"],
        &[("etc/passwd", passwd, 0o644)],
    )?;
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs the comparison; returns the Markdown report (also written to `out/build.md`).
pub fn run(work: &Path, out: &Path, strata: &Path, runs: usize) -> Result<String, BenchError> {
    if which("podman").is_none() {
        return Err(BenchError::Setup(
            "needs podman (apt-get install podman runc)".into(),
        ));
    }
    let dir = work.join("build");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io_ctx("work dir"))?;
    std::fs::create_dir_all(out).map_err(io_ctx("out dir"))?;
    prepare(&dir).map_err(io_ctx("the build context"))?;
    let store = dir.join("store");
    let st = || {
        let mut c = Command::new(strata);
        c.env("STRATA_ROOT", &store);
        c
    };
    run_checked(
        "importing the base",
        st().args(["image", "import"])
            .arg(dir.join("base.tar"))
            .args(["-t", "bench/base:1"]),
    )?;
    let archive = dir.join("base-oci.tar");
    run_checked(
        "exporting the base",
        st().args(["image", "export", "bench/base:1", "-o"])
            .arg(&archive),
    )?;
    // podman with a configuration and storage of this run's own (kernel overlayfs).
    let podman = super::podman::Podman::new(&dir.join("podman"), "")?;
    let pm = || podman.command(&[]);
    let id = run_checked(
        "loading the base into podman",
        pm().args(["pull", "-q"])
            .arg(format!("oci-archive:{}", archive.display())),
    )?;
    run_checked(
        "tagging the base in podman",
        pm().args(["tag", id.trim(), "localhost/bench/base:1"]),
    )?;
    let ctx = dir.join("ctx");
    let strata_build = |cold: bool| {
        let mut c = st();
        c.args([
            "build",
            "-t",
            "bench/app:1",
            "--build-arg",
            "BASE=bench/base:1",
        ]);
        if cold {
            c.arg("--no-cache");
        }
        c.arg(&ctx);
        c
    };
    let podman_build = |cold: bool| {
        let mut c = pm();
        c.args([
            "build",
            "-q",
            "--pull=never",
            "--network=none",
            "-t",
            "bench/app:1",
        ])
        .args(["--build-arg", "BASE=localhost/bench/base:1"]);
        if cold {
            c.arg("--no-cache");
        }
        c.arg(&ctx);
        c
    };
    let time = |what: &str, mut c: Command| -> Result<f64, BenchError> {
        let t = Instant::now();
        run_checked(what, &mut c)?;
        Ok(t.elapsed().as_secs_f64())
    };
    // One untimed build each: podman's first run sets up its storage.
    time("strata build", strata_build(true))?;
    time("podman build", podman_build(true))?;
    let mut t: [Vec<f64>; 4] = Default::default();
    for _ in 0..runs {
        t[0].push(time("strata build --no-cache", strata_build(true))?);
        t[1].push(time("podman build --no-cache", podman_build(true))?);
        t[2].push(time("strata build (cached)", strata_build(false))?);
        t[3].push(time("podman build (cached)", podman_build(false))?);
    }
    let _ = pm().args(["system", "reset", "-f"]).output();
    let m: Vec<f64> = t.iter_mut().map(|v| median(v)).collect();
    let mut md = String::new();
    let _ = writeln!(md, "# Build: strata build vs podman build\n");
    let _ = writeln!(
        md,
        "A Containerfile of 9 steps (ENV, WORKDIR, COPY of 50 files, two RUNs, COPY, LABEL, CMD) on a busybox base, both tools from the same image, RUN without network; podman {} with runc on kernel overlayfs. Median of {runs} interleaved runs.\n",
        run_checked("podman --version", pm().arg("--version")).unwrap_or_default().trim().trim_start_matches("podman version ")
    );
    let _ = writeln!(md, "| build | strata | podman build | strata / podman |");
    let _ = writeln!(md, "|---|---|---|---|");
    let _ = writeln!(
        md,
        "| cold (`--no-cache`) | {:.3} s | {:.3} s | {:.2}× |",
        m[0],
        m[1],
        m[0] / m[1]
    );
    let _ = writeln!(
        md,
        "| cached (nothing changed) | {:.3} s | {:.3} s | {:.2}× |",
        m[2],
        m[3],
        m[2] / m[3]
    );
    std::fs::write(out.join("build.md"), &md).map_err(io_ctx("build.md"))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(md)
}
