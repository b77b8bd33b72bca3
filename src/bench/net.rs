//! `strata bench --net`: TCP throughput and connection latency from the host into a
//! container on strata's bridge (through a port published on 127.0.0.1, and straight to
//! its address), against the same server on the host over loopback and in a podman
//! container on podman's default network (CNI, its own config and subnet). The server is
//! the same everywhere: busybox nc, `-ll -e` a sink (throughput) or `true` (latency).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::target::which;
use super::{io_ctx, run_checked, BenchError};

const BYTES: usize = 256 << 20;
const CONNECTS: usize = 200;

fn free_port() -> Result<u16, BenchError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io_ctx("a free port"))?
        .port())
}

/// Waits (bounded) until something accepts at `addr`.
fn wait_up(addr: &str) -> Result<(), BenchError> {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(BenchError::Setup(format!("nothing listens at {addr}")))
}

/// MiB/s of sending `BYTES` to the sink at `addr` (until it has read them all).
fn throughput(addr: &str) -> Result<f64, BenchError> {
    let buf = vec![0x5au8; 1 << 20];
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).map_err(io_ctx("connecting"))?;
    for _ in 0..BYTES / buf.len() {
        s.write_all(&buf).map_err(io_ctx("sending"))?;
    }
    s.shutdown(std::net::Shutdown::Write)
        .map_err(io_ctx("shutdown"))?;
    let _ = s.read(&mut [0u8; 1]);
    Ok(BYTES as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64())
}

/// Median µs of connecting to `addr` and seeing the server close.
fn latency(addr: &str) -> Result<f64, BenchError> {
    let mut v = Vec::new();
    for _ in 0..CONNECTS {
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).map_err(io_ctx("connecting"))?;
        let _ = s.read(&mut [0u8; 1]);
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Ok(v[v.len() / 2])
}

struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rootfs_tar(dir: &Path) -> std::io::Result<()> {
    let sink: &[u8] = b"#!/bin/sh\nexec cat > /dev/null\n";
    super::busybox::rootfs_tar(
        &dir.join("net.tar"),
        &["sh", "cat", "nc", "true"],
        &[("bin/sink", sink, 0o755)],
    )
}

/// True if podman's CNI bridge or chains are on the host.
fn cni_present() -> bool {
    let chains = Command::new("iptables")
        .args(["-w", "-t", "nat", "-S"])
        .output();
    let link = crate::network::netlink::Netlink::new().and_then(|n| n.index("cni-podman0"));
    chains.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("CNI-"))
        || link.is_ok_and(|i| i.is_some())
}

/// Removes podman's CNI bridge and its chains (hooks first).
fn remove_cni() {
    if let Ok(n) = crate::network::netlink::Netlink::new() {
        let _ = n.delete("cni-podman0");
    }
    for table in ["nat", "filter"] {
        let Ok(o) = Command::new("iptables")
            .args(["-w", "-t", table, "-S"])
            .output()
        else {
            continue;
        };
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        for line in text
            .lines()
            .filter(|l| l.starts_with("-A ") && l.contains("CNI"))
        {
            let mut args = vec!["-w".to_string(), "-t".into(), table.into(), "-D".into()];
            args.extend(crate::text::words(&line[3..]));
            let _ = Command::new("iptables").args(&args).output();
        }
        for chain in text
            .lines()
            .filter_map(|l| l.strip_prefix("-N "))
            .filter(|c| c.starts_with("CNI"))
        {
            let _ = Command::new("iptables")
                .args(["-w", "-t", table, "-X", chain])
                .output();
        }
    }
}

const SERVE: &str = "nc -ll -p 80 -e /bin/sink & nc -ll -p 81 -e /bin/true & wait";

/// The host's servers: the same busybox nc as the containers', on two free loopback
/// ports (throughput into a sink, connect-and-close); killed when the guard is dropped.
fn host_servers(dir: &Path) -> Result<(Killed, u16, u16), BenchError> {
    let (ht, hl) = (free_port()?, free_port()?);
    let sink = dir.join("sink");
    std::fs::write(&sink, "#!/bin/sh\nexec cat > /dev/null\n").map_err(io_ctx("sink"))?;
    let exec = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
    std::fs::set_permissions(&sink, exec).map_err(io_ctx("sink"))?;
    let mut servers = Killed(Vec::new());
    for (p, prog) in [
        (ht, sink.to_str().unwrap_or("/bin/false")),
        (hl, "/bin/true"),
    ] {
        servers.0.push(
            Command::new("busybox")
                .args(["nc", "-ll", "-p", &p.to_string(), "-e", prog])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(io_ctx("busybox nc"))?,
        );
    }
    Ok((servers, ht, hl))
}

/// podman's container of the same image, with a CNI config and subnet of this run's own,
/// published on 127.0.0.1 ports `pm_t` and `pm_l`.
fn start_podman(
    dir: &Path,
    st: &dyn Fn() -> Command,
    pm_t: u16,
    pm_l: u16,
) -> Result<super::podman::Podman, BenchError> {
    let pm_dir = dir.join("podman");
    std::fs::create_dir_all(pm_dir.join("cni")).map_err(io_ctx("podman dir"))?;
    let network = format!(
        "network_backend = \"cni\"\nnetwork_config_dir = \"{}/cni\"\ndefault_subnet = \"10.77.0.0/24\"\n",
        pm_dir.display()
    );
    let p = super::podman::Podman::new(&pm_dir, &network)?;
    let archive = dir.join("net-oci.tar");
    run_checked(
        "exporting",
        st().args(["image", "export", "bench/net:1", "-o"])
            .arg(&archive),
    )?;
    let img = run_checked(
        "podman pull",
        &mut p.command(&["pull", "-q", &format!("oci-archive:{}", archive.display())]),
    )?;
    run_checked(
        "podman run",
        &mut p.command(&[
            "run",
            "-d",
            "--name",
            "net-bench",
            "-p",
            &format!("127.0.0.1:{pm_t}:80"),
            "-p",
            &format!("127.0.0.1:{pm_l}:81"),
            img.trim(),
            "sh",
            "-c",
            SERVE,
        ]),
    )?;
    Ok(p)
}

/// Medians of `runs` interleaved throughput and latency measurements of each target
/// (name, throughput address, latency address), once all answer.
fn measure(targets: &[(&str, String, String)], runs: usize) -> Result<Vec<(f64, f64)>, BenchError> {
    for (_, t, l) in targets {
        wait_up(t)?;
        wait_up(l)?;
    }
    let mut tp: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for _ in 0..runs {
        for (k, (_, t, l)) in targets.iter().enumerate() {
            tp[k].push(throughput(t)?);
            lat[k].push(latency(l)?);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    Ok(tp
        .iter_mut()
        .zip(lat.iter_mut())
        .map(|(a, b)| (med(a), med(b)))
        .collect())
}

/// Runs the comparison; returns the Markdown report (also written to `out/net.md`).
pub fn run(work: &Path, out: &Path, strata: &Path, runs: usize) -> Result<String, BenchError> {
    let dir = work.join("net");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io_ctx("work dir"))?;
    std::fs::create_dir_all(out).map_err(io_ctx("out dir"))?;
    rootfs_tar(&dir).map_err(io_ctx("the image"))?;
    let store = dir.join("store");
    let st = || {
        let mut c = Command::new(strata);
        c.env("STRATA_ROOT", &store);
        c
    };
    run_checked(
        "importing",
        st().args(["image", "import"])
            .arg(dir.join("net.tar"))
            .args(["-t", "bench/net:1"]),
    )?;
    // The host's server: the same busybox nc, on the loopback ports of this run.
    let (servers, ht, hl) = host_servers(&dir)?;
    // strata's container, published on 127.0.0.1.
    let (st_t, st_l) = (free_port()?, free_port()?);
    run_checked(
        "starting the strata container",
        st().args(["run", "-d", "--name", "net-bench", "--network", "bridge"])
            .args([
                "-p",
                &format!("127.0.0.1:{st_t}:80"),
                "-p",
                &format!("127.0.0.1:{st_l}:81"),
            ])
            .args(["bench/net:1", "sh", "-c", SERVE]),
    )?;
    let ip = {
        let v: serde_json::Value = serde_json::from_str(&run_checked(
            "inspect",
            st().args(["inspect", "net-bench"]),
        )?)
        .map_err(|e| BenchError::Setup(format!("inspect: {e}")))?;
        v[0]["NetworkSettings"]["IPAddress"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // podman's, with a CNI config and subnet of this run's own.
    let podman = which("podman").is_some();
    let mut pm = None;
    let (pm_t, pm_l) = (free_port()?, free_port()?);
    // What podman's CNI leaves (its bridge, its chains) goes again if it wasn't there.
    let cni_before = podman && cni_present();
    if podman {
        pm = Some(start_podman(&dir, &st, pm_t, pm_l)?);
    }
    let mut targets: Vec<(&str, String, String)> = vec![
        (
            "host loopback",
            format!("127.0.0.1:{ht}"),
            format!("127.0.0.1:{hl}"),
        ),
        (
            "strata, published on 127.0.0.1",
            format!("127.0.0.1:{st_t}"),
            format!("127.0.0.1:{st_l}"),
        ),
        (
            "strata, the container's address",
            format!("{ip}:80"),
            format!("{ip}:81"),
        ),
    ];
    if podman {
        targets.push((
            "podman, published on 127.0.0.1",
            format!("127.0.0.1:{pm_t}"),
            format!("127.0.0.1:{pm_l}"),
        ));
    }
    let result = measure(&targets, runs);
    let _ = st().args(["rm", "-f", "net-bench"]).output();
    if let Some(p) = &pm {
        let _ = p.command(&["rm", "-f", "net-bench"]).output();
        let _ = p.command(&["system", "reset", "-f"]).output();
        if !cni_before {
            remove_cni();
        }
    }
    drop(servers);
    let m = result?;
    let mut md = String::new();
    let _ = writeln!(md, "# Network: host to container\n");
    let _ = writeln!(md, "TCP throughput ({} MiB per run) and connect-to-close latency (median of {CONNECTS}) from the host, the server busybox nc everywhere; median of {runs} runs; ratios to the host's loopback.\n", BYTES >> 20);
    let _ = writeln!(
        md,
        "| target | throughput | vs loopback | latency | vs loopback |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for ((name, _, _), (tp, lat)) in targets.iter().zip(&m) {
        let _ = writeln!(
            md,
            "| {name} | {tp:.0} MiB/s | {:.2}× | {lat:.0} µs | {:.2}× |",
            tp / m[0].0,
            lat / m[0].1
        );
    }
    if podman {
        let (s, p) = (m[1], m[3]);
        let _ = writeln!(
            md,
            "\nstrata / podman (published ports): throughput {:.2}×, latency {:.2}×.",
            s.0 / p.0,
            s.1 / p.1
        );
    }
    std::fs::write(out.join("net.md"), &md).map_err(io_ctx("net.md"))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(md)
}
