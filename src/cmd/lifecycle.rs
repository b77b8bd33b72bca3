//! `strata logs`, `stop`, `kill`, `exec`, `inspect`: working with existing containers; and
//! `strata info`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::container::{each, open_store};
use super::{container_ctx, image_ctx, CmdResult};
use crate::container::error::io_ctx;
use crate::container::lifecycle;
use crate::container::{self as ctr};

/// `strata logs C`.
pub fn logs(root: Option<PathBuf>, name: &str, follow: bool, tail: &str) -> CmdResult {
    use std::io::{Read, Seek, SeekFrom};
    let store = open_store(root)?;
    let ctx = || format!("logs of {name}");
    let lines: Option<usize> = match tail {
        "all" => None,
        n => Some(n.parse().map_err(|_| {
            container_ctx(ctx())(ctr::ContainerError::BadSpec(format!(
                "--tail {n}: expected a number or all"
            )))
        })?),
    };
    let c = ctr::find(&store, name).map_err(container_ctx(ctx()))?;
    let mut f = std::fs::File::open(c.log())
        .map_err(io_ctx("no logs: only detached containers keep them"))
        .map_err(container_ctx(ctx()))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data)
        .map_err(io_ctx(c.log().display()))
        .map_err(container_ctx(ctx()))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&data[tail_start(&data, lines)..])?;
    out.flush()?;
    if !follow {
        return Ok(0);
    }
    // Follow until the container is no longer running, then print what is left.
    let mut pos = data.len() as u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let running = ctr::find(&store, name)
            .map(|c| c.observed().status == ctr::Status::Running)
            .unwrap_or(false);
        f.seek(SeekFrom::Start(pos))
            .map_err(io_ctx(c.log().display()))
            .map_err(container_ctx(ctx()))?;
        loop {
            let n = f
                .read(&mut buf)
                .map_err(io_ctx(c.log().display()))
                .map_err(container_ctx(ctx()))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            pos += n as u64;
        }
        out.flush()?;
        if !running {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where the last `lines` lines of `data` start (all of it for `None`).
fn tail_start(data: &[u8], lines: Option<usize>) -> usize {
    let Some(n) = lines else { return 0 };
    if n == 0 {
        return data.len();
    }
    // A final newline ends the last line; it doesn't start another.
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

/// `strata wait C...`: waits for each container to exit and prints its exit code.
pub fn wait(root: Option<PathBuf>, names: &[String]) -> CmdResult {
    let store = open_store(root)?;
    let mut code = 0;
    for name in names {
        let ctx = || format!("waiting for {name}");
        let exit = loop {
            let c = match ctr::find(&store, name) {
                Ok(c) => c,
                Err(e) => break Err(e),
            };
            let s = c.observed();
            // The monitor records the exit code a moment after the process is gone.
            match (s.status, c.state.exit_code) {
                (ctr::Status::Running, _) | (ctr::Status::Exited, None)
                    if c.state.status == ctr::Status::Running =>
                {
                    std::thread::sleep(Duration::from_millis(50))
                }
                (_, Some(x)) => break Ok(x),
                _ => break Ok(0),
            }
        };
        match exit {
            Ok(x) => writeln!(std::io::stdout(), "{x}")?,
            Err(e) => code = super::report(&container_ctx(ctx())(e)),
        }
    }
    Ok(code)
}

/// `strata stop [-t SECS] C...`: SIGTERM, then SIGKILL after the timeout.
pub fn stop(root: Option<PathBuf>, secs: Option<u64>, names: &[String]) -> CmdResult {
    each(root, names, |_, c| {
        lifecycle::stop(c, secs.map(Duration::from_secs));
        Ok(())
    })
}

/// `strata kill [-s SIG] C...`.
pub fn kill(root: Option<PathBuf>, signal: &str, names: &[String]) -> CmdResult {
    let sig = lifecycle::parse_signal(signal).map_err(container_ctx("kill"))?;
    each(root, names, |_, c| lifecycle::kill(c, sig))
}

/// `strata exec C CMD...`: the command's exit status.
pub fn exec(
    root: Option<PathBuf>,
    name: &str,
    command: Vec<String>,
    privileged: bool,
) -> CmdResult {
    let store = open_store(root)?;
    let ctx = || format!("exec in {name}");
    let c = ctr::find(&store, name).map_err(container_ctx(ctx()))?;
    lifecycle::exec(&c, command, privileged).map_err(container_ctx(ctx()))
}

/// `strata inspect NAME|IMAGE...`: a JSON array with one object per container or image
/// (a container's name or id wins over an image of the same name, as with docker).
pub fn inspect(root: Option<PathBuf>, names: &[String]) -> CmdResult {
    let store = open_store(root)?;
    let mut all = Vec::new();
    let mut code = 0;
    for n in names {
        match ctr::find(&store, n) {
            Ok(c) => all.push(crate::container::inspect::json(&store, &c)),
            Err(ctr::ContainerError::NotFound(_)) => match crate::image::ops::inspect(&store, n) {
                Ok(v) => all.push(v),
                Err(crate::image::ImageError::NotFound(_)) => {
                    code = super::fail(format_args!("no such container or image: {n}"));
                }
                Err(e) => code = super::report(&image_ctx(format!("inspecting {n}"))(e)),
            },
            Err(e) => code = super::report(&container_ctx(format!("inspecting {n}"))(e)),
        }
    }
    let text = serde_json::to_string_pretty(&all).map_err(std::io::Error::other)?;
    writeln!(std::io::stdout(), "{text}")?;
    Ok(code)
}

/// `strata info`: the store, what it holds, and what this host allows.
pub fn info(root: Option<PathBuf>) -> CmdResult {
    use crate::host::{CgroupLayout, Host};
    let store = open_store(root)?;
    let host = Host::current();
    let images = store.images().map_err(image_ctx("listing images"))?.len();
    let containers = ctr::list(&store).map_err(container_ctx("listing containers"))?;
    let running = containers
        .iter()
        .filter(|c| c.observed().status == ctr::Status::Running)
        .count();
    let yes = |b: bool| if b { "yes" } else { "no" };
    let cgroups = match host.cgroups {
        CgroupLayout::Unified => "v2 (unified)",
        CgroupLayout::Legacy => "v1 (legacy or hybrid)",
        CgroupLayout::None => "none",
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "Store: {}", store.root.display())?;
    writeln!(out, "Images: {images}")?;
    writeln!(out, "Containers: {} ({running} running)", containers.len())?;
    writeln!(
        out,
        "User: uid {}{}",
        host.euid,
        if host.root { " (root)" } else { "" }
    )?;
    writeln!(out, "User namespaces: {}", yes(host.user_namespaces))?;
    writeln!(out, "/dev/fuse usable: {}", yes(host.dev_fuse))?;
    writeln!(
        out,
        "Cgroups: {cgroups}, writable: {}",
        yes(host.cgroup_delegated)
    )?;
    writeln!(
        out,
        "Whiteouts in layers: {}",
        if host.root {
            "kernel format (0/0 devices, trusted.overlay.*)"
        } else {
            "OCI .wh. files"
        }
    )?;
    writeln!(out, "FUSE passthrough: {}", yes(host.root))?;
    writeln!(
        out,
        "Container ids: {}",
        crate::container::userns::describe(host)
    )?;
    writeln!(
        out,
        "User-mode network (pasta): {}",
        yes(crate::container::usernet::available())
    )?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tail_lines() {
        let d = b"a\nb\nc\n";
        assert_eq!(&d[super::tail_start(d, Some(2))..], b"b\nc\n");
        assert_eq!(&d[super::tail_start(d, Some(9))..], d);
        assert_eq!(&d[super::tail_start(d, Some(0))..], b"");
        assert_eq!(&d[super::tail_start(d, None)..], d);
        assert_eq!(&b"x\ny"[super::tail_start(b"x\ny", Some(1))..], b"y");
    }
}
