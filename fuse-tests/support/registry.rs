//! Helpers of the registry tests that other tests use too.

use crate::support::archives::{layer, E};
use crate::support::harness::{require_env, strata_bin};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use crate::support::network::free_port;

/// Runs a shell command of the test's set-up; it must succeed.
pub(crate) fn sh(cmd: &str) {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub(crate) struct Env {
    pub(crate) t: tempfile::TempDir,
}

impl Env {
    pub(crate) fn new(name: &str) -> Env {
        require_env();
        let t = tempfile::Builder::new()
            .prefix(&format!("strata-reg-{name}-"))
            .tempdir()
            .unwrap();
        std::fs::create_dir(t.path().join("home")).unwrap();
        Env { t }
    }

    pub(crate) fn store(&self) -> PathBuf {
        self.t.path().join("store")
    }

    pub(crate) fn strata(&self, args: &[&str]) -> Output {
        Command::new(strata_bin())
            .env("STRATA_ROOT", self.store())
            .env("HOME", self.t.path().join("home"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG")
            .args(args)
            .output()
            .unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let o = self.strata(args);
        assert!(o.status.success(), "strata {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Imports a busybox image (plus a 3 MB file of random bytes) as `name`.
    pub(crate) fn image(&self, name: &str) {
        let bb = std::fs::read("/bin/busybox").unwrap();
        let mut big = vec![0u8; 3 << 20];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for b in big.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let mut entries = vec![E::Dir("bin"), E::File("bin/busybox", &bb, 0o755)];
        for a in ["sh", "cat", "ls", "true"] {
            entries.push(E::Sym(
                Box::leak(format!("bin/{a}").into_boxed_str()),
                "busybox",
            ));
        }
        entries.push(E::Dir("data"));
        entries.push(E::File("data/random", &big, 0o644));
        entries.push(E::File("data/hello", b"hello from the registry\n", 0o644));
        let f = self.t.path().join("img.tar");
        std::fs::write(&f, layer(&entries)).unwrap();
        self.ok(&["image", "import", f.to_str().unwrap(), "--tag", name]);
    }

    /// Drops every name and then the unused blobs and layers.
    pub(crate) fn forget(&self, name: &str) {
        self.ok(&["rmi", name]);
        self.ok(&["image", "prune"]);
    }

    pub(crate) fn partials(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.store().join("downloads"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A registry on 127.0.0.1, stopped (by pid) when dropped.
pub(crate) struct Registry {
    child: Child,
    pub(crate) port: u16,
    pub(crate) dir: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// `secure`: basic auth (alice / s3cret) over TLS; the CA is `dir/certs/ca.crt`.
    pub(crate) fn start(dir: &Path, secure: bool) -> Registry {
        let port = free_port();
        let data = dir.join("registry-data");
        std::fs::create_dir_all(&data).unwrap();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            data.display()
        );
        if secure {
            let d = dir.display();
            std::fs::create_dir_all(dir.join("certs")).unwrap();
            sh(&format!(
                "cd {d} && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out certs/ca.crt -days 2 -subj '/CN=strata test CA' && \
                 openssl req -newkey rsa:2048 -nodes -keyout key.pem -out req.csr -subj /CN=127.0.0.1 && \
                 printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext && \
                 openssl x509 -req -in req.csr -CA certs/ca.crt -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile ext && \
                 htpasswd -Bbn alice s3cret > htpasswd"
            ));
            cfg.push_str(&format!(
                "  tls:\n    certificate: {d}/cert.pem\n    key: {d}/key.pem\nauth:\n  htpasswd:\n    realm: strata-test\n    path: {d}/htpasswd\n"
            ));
        }
        let cfg_path = dir.join("registry.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let r = Registry {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return r;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("docker-registry did not listen on {port}");
    }

    /// `127.0.0.1:PORT/repo`.
    pub(crate) fn name(&self, repo: &str) -> String {
        format!("127.0.0.1:{}/{repo}", self.port)
    }

    /// The file holding blob `hex` in the registry's storage.
    pub(crate) fn blob_file(&self, hex: &str) -> PathBuf {
        self.dir
            .join("registry-data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}
