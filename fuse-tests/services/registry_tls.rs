//! TLS to a registry as skopeo and podman do it: the usual self-signed certificate
//! (`openssl req -x509`, a CA) given with `--cert-dir`; the registry's directory in
//! `/etc/containers/certs.d/HOST:PORT/` without any flag; a client certificate there
//! (`client.cert`, `client.key`) for a registry that asks for one.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use crate::support::network::free_port;
use crate::support::registry::{sh, text, Env};

/// docker-registry over TLS with `cert`/`key`, asking for a client certificate signed by
/// `client_ca` when given; stopped (by pid) when dropped.
struct Tls {
    child: Child,
    port: u16,
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tls {
    fn start(dir: &Path, client_ca: Option<&Path>) -> Tls {
        let port = free_port();
        let d = dir.display();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {d}/server.crt\n    key: {d}/server.key\n"
        );
        if let Some(ca) = client_ca {
            cfg.push_str(&format!("    clientcas:\n      - {}\n", ca.display()));
        }
        std::fs::write(dir.join("registry.yml"), cfg).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("registry.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let r = Tls { child, port };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return r;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("docker-registry did not listen on {port}");
    }
}

/// `/etc/containers/certs.d/127.0.0.1:PORT`, removed when dropped.
struct CertsD(std::path::PathBuf);

impl Drop for CertsD {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // certs.d itself, if this test made it (empty then).
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

#[test]
fn self_signed_certificates_certs_d_and_client_certificates() {
    let e = Env::new("tls");
    let dir = e.t.path().join("tls");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let d = dir.display();
    // The usual self-signed certificate: openssl's -x509 makes it a CA (CA:TRUE).
    sh(&format!(
        "cd {d} && openssl req -x509 -newkey rsa:2048 -nodes -keyout server.key -out server.crt \
         -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null && \
         openssl x509 -in server.crt -noout -text | grep -q 'CA:TRUE'"
    ));
    let reg = Tls::start(&dir, None);
    let name = format!("127.0.0.1:{}/t/box:1", reg.port);
    e.image(&name);
    // Without its certificate: refused, naming the problem.
    let o = e.strata(&["push", &name]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // --cert-dir with it (as ca.crt), as skopeo takes it.
    let certs = e.t.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(dir.join("server.crt"), certs.join("ca.crt")).unwrap();
    e.ok(&["push", "--cert-dir", certs.to_str().unwrap(), &name]);
    // A certificate for another name is still refused.
    let other = format!("localhost:{}/t/box:1", reg.port);
    e.ok(&["tag", &name, &other]);
    let o = e.strata(&["push", "--cert-dir", certs.to_str().unwrap(), &other]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // certs.d: no flag needed.
    let certs_d =
        CertsD(Path::new("/etc/containers/certs.d").join(format!("127.0.0.1:{}", reg.port)));
    std::fs::create_dir_all(&certs_d.0).unwrap();
    std::fs::copy(dir.join("server.crt"), certs_d.0.join("ca.crt")).unwrap();
    e.ok(&["rmi", &other]);
    e.ok(&["rmi", &name]);
    e.ok(&["pull", &name]);
    assert_eq!(
        e.ok(&["run", "--rm", &name, "cat", "/data/hello"]),
        "hello from the registry\n"
    );
    drop(reg);
    // A registry that asks for a client certificate: certs.d's client.cert and client.key.
    sh(&format!(
        "cd {d} && openssl req -x509 -newkey rsa:2048 -nodes -keyout clientca.key -out clientca.crt \
         -days 2 -subj '/CN=strata client CA' 2>/dev/null && \
         openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=strata 2>/dev/null && \
         printf 'extendedKeyUsage=clientAuth\\n' > client.ext && \
         openssl x509 -req -in client.csr -CA clientca.crt -CAkey clientca.key -CAcreateserial \
         -out client.cert -days 2 -extfile client.ext 2>/dev/null"
    ));
    let reg2 = Tls::start(&dir, Some(&dir.join("clientca.crt")));
    let certs_d2 =
        CertsD(Path::new("/etc/containers/certs.d").join(format!("127.0.0.1:{}", reg2.port)));
    std::fs::create_dir_all(&certs_d2.0).unwrap();
    std::fs::copy(dir.join("server.crt"), certs_d2.0.join("ca.crt")).unwrap();
    let name2 = format!("127.0.0.1:{}/t/box:2", reg2.port);
    e.ok(&["tag", &name, &name2]);
    let o = e.strata(&["push", &name2]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "no client certificate: {}",
        text(&o)
    );
    for f in ["client.cert", "client.key"] {
        std::fs::copy(dir.join(f), certs_d2.0.join(f)).unwrap();
    }
    e.ok(&["push", &name2]);
    drop(certs_d);
    drop(certs_d2);
}
