//! Registry replies a real registry doesn't give on demand, from a scripted HTTP server on
//! 127.0.0.1: 429 and 503 (retried with backoff), 403, a malformed manifest, a config that
//! isn't the one named, blobs shorter or longer than their descriptor (each failure names
//! the reference, and the blob, exits 1 and leaves the store unchanged); an image index
//! with two platforms; a bearer-token challenge answered from its realm.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sha2::Digest as _;

use crate::support::harness::{require_env, strata_bin};

/// One scripted reply.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn reply(status: u16, ctype: &str, body: Vec<u8>) -> Reply {
    Reply {
        status,
        headers: vec![("Content-Type".into(), ctype.into())],
        body,
    }
}

/// method, path, request number, Authorization header.
type Handler = dyn Fn(&str, &str, usize, Option<&str>) -> Reply + Send + Sync;

/// Serves `handler(method, path, nth request)` on 127.0.0.1 until the test ends.
fn serve(handler: Arc<Handler>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let h = handler.clone();
            let count = count.clone();
            std::thread::spawn(move || {
                // strata first tries HTTPS on a loopback registry: a TLS hello is closed.
                let mut first = [0u8; 1];
                if conn.peek(&mut first).unwrap_or(0) == 0 || first[0] == 0x16 {
                    return;
                }
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let (method, path) = (
                        parts.next().unwrap_or("").to_string(),
                        parts.next().unwrap_or("").to_string(),
                    );
                    let mut len = 0usize;
                    let mut auth = None;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if h.to_ascii_lowercase().starts_with("authorization:") {
                            auth = Some(h["authorization:".len()..].trim().to_string());
                        }
                    }
                    let mut body = vec![0u8; len];
                    let _ = r.read_exact(&mut body);
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    let rep = h(&method, &path, n, auth.as_deref());
                    let mut head = format!("HTTP/1.1 {} X\r\n", rep.status);
                    let declared = rep
                        .headers
                        .iter()
                        .find(|(k, _)| k == "Content-Length")
                        .map(|(_, v)| v.clone());
                    for (k, v) in &rep.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    if declared.is_none() {
                        head.push_str(&format!("Content-Length: {}\r\n", rep.body.len()));
                    }
                    head.push_str("\r\n");
                    let _ = w.write_all(head.as_bytes());
                    let _ = w.write_all(&rep.body);
                    if declared.is_some() {
                        // A reply that lies about its length ends the connection.
                        return;
                    }
                }
            });
        }
    });
    port
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(b))
}

/// An image as a registry serves it: manifest, config, one layer.
struct Image {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
}

fn image() -> Image {
    let bb = std::fs::read("/bin/busybox").unwrap();
    let layer = crate::support::archives::layer(&[
        crate::support::archives::E::Dir("bin"),
        crate::support::archives::E::File("bin/busybox", &bb, 0o755),
        crate::support::archives::E::Sym("bin/true", "busybox"),
    ]);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]}
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(&layer), "size": layer.len()}]
    }))
    .unwrap();
    Image {
        manifest,
        config,
        layer,
    }
}

const MT: &str = "application/vnd.oci.image.manifest.v1+json";

/// `img`'s manifest (under any tag), config or layer, if `path` asks for one.
fn serve_image(img: &Image, path: &str) -> Option<Reply> {
    if path.contains("/manifests/") {
        return Some(reply(200, MT, img.manifest.clone()));
    }
    let blob = [&img.config, &img.layer]
        .into_iter()
        .find(|b| path.ends_with(&sha(b)))?;
    Some(reply(200, "application/octet-stream", blob.clone()))
}

/// A handler serving `img` normally, except where `fault` answers first.
fn registry(
    img: Image,
    fault: impl Fn(&str, &str, usize, &Image) -> Option<Reply> + Send + Sync + 'static,
) -> u16 {
    serve(Arc::new(
        move |method: &str, path: &str, n: usize, _auth: Option<&str>| {
            if let Some(r) = fault(method, path, n, &img) {
                return r;
            }
            if path == "/v2/" {
                return reply(200, "application/json", b"{}".to_vec());
            }
            if let Some(r) = serve_image(&img, path) {
                return r;
            }
            reply(
                404,
                "application/json",
                br#"{"errors":[{"code":"NOT_FOUND"}]}"#.to_vec(),
            )
        },
    ))
}

struct Env {
    t: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        require_env();
        Env {
            t: tempfile::Builder::new()
                .prefix("strata-faults-")
                .tempdir()
                .unwrap(),
        }
    }

    fn store(&self) -> PathBuf {
        self.t.path().join("store")
    }

    fn pull(&self, port: u16) -> (Output, String) {
        let r = format!("127.0.0.1:{port}/fault/box:1");
        let o = Command::new(strata_bin())
            .env("STRATA_ROOT", self.store())
            .env("HOME", self.t.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG")
            .args(["pull", &r])
            .output()
            .unwrap();
        (o, r)
    }

    /// Nothing of a refused pull in the store: no image, no layer, no partial download
    /// (unless `partial_ok`).
    fn unchanged(&self, partial_ok: bool) {
        let count = |d: &str| {
            std::fs::read_dir(self.store().join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        };
        assert_eq!(count("layers"), 0, "a layer was kept");
        if !partial_ok {
            assert_eq!(count("downloads"), 0, "a partial download was kept");
        }
        let idx = std::fs::read_to_string(self.store().join("index.json")).unwrap_or_default();
        assert!(!idx.contains("fault/box"), "the image was named: {idx}");
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn throttling_and_server_errors_are_retried() {
    let e = Env::new();
    // The first three requests fail: 429 (Retry-After 0), 503, 502; each is asked again
    // (counted: every path the pull asks for is answered in the end).
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (f, a) = (failed.clone(), asked.clone());
    let port = registry(image(), move |_, path, n, _| {
        a.lock().unwrap().push(path.to_string());
        let r = match n {
            0 => Reply {
                status: 429,
                headers: vec![("Retry-After".into(), "0".into())],
                body: Vec::new(),
            },
            1 => reply(503, "text/plain", b"busy".to_vec()),
            2 => reply(502, "text/plain", b"gateway".to_vec()),
            _ => return None,
        };
        f.lock().unwrap().push(path.to_string());
        Some(r)
    });
    let (o, _) = e.pull(port);
    assert!(o.status.success(), "{}", text(&o));
    let (failed, asked) = (failed.lock().unwrap(), asked.lock().unwrap());
    assert_eq!(failed.len(), 3, "{asked:?}");
    for p in failed.iter() {
        let again = asked.iter().filter(|x| *x == p).count();
        assert!(again >= 2, "{p} was not asked again: {asked:?}");
    }
}

#[test]
fn refused_replies_name_the_reference_and_blob_and_change_nothing() {
    let img = image();
    let layer = sha(&img.layer);
    type Fault = fn(&str, &str, usize, &Image) -> Option<Reply>;
    let cases: Vec<(&str, Fault, &str)> = vec![
        (
            "403",
            |_, p, _, _| {
                p.contains("/manifests/").then(|| {
                    reply(
                        403,
                        "application/json",
                        br#"{"errors":[{"code":"DENIED","message":"no"}]}"#.to_vec(),
                    )
                })
            },
            "403",
        ),
        (
            "malformed manifest",
            |_, p, _, _| {
                p.contains("/manifests/")
                    .then(|| reply(200, MT, b"{\"schemaVersion\": 2, \"layers\": [".to_vec()))
            },
            "manifest",
        ),
        (
            "wrong config",
            |_, p, _, i| {
                p.ends_with(&sha(&i.config))
                    .then(|| reply(200, "application/octet-stream", b"{}".to_vec()))
            },
            "config",
        ),
        (
            "short blob",
            |_, p, _, i| {
                p.ends_with(&sha(&i.layer)).then(|| {
                    reply(
                        200,
                        "application/octet-stream",
                        i.layer[..i.layer.len() / 2].to_vec(),
                    )
                })
            },
            "bytes",
        ),
        (
            "long blob",
            |_, p, _, i| {
                p.ends_with(&sha(&i.layer)).then(|| {
                    let mut b = i.layer.clone();
                    b.extend_from_slice(b"trailing garbage");
                    reply(200, "application/octet-stream", b)
                })
            },
            "more than",
        ),
        (
            "persistent 500",
            |_, p, _, _| (p != "/v2/").then(|| reply(500, "text/plain", b"down".to_vec())),
            "500",
        ),
    ];
    for (name, fault, says) in cases {
        let e = Env::new();
        let port = registry(image(), fault);
        let (o, r) = e.pull(port);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", text(&o));
        let t = text(&o);
        assert!(
            t.contains(&r) || t.contains(&format!("127.0.0.1:{port}/fault/box:1")),
            "{name}: names the reference: {t}"
        );
        assert!(t.contains(says), "{name}: says {says}: {t}");
        if matches!(name, "short blob" | "long blob") {
            assert!(t.contains(&layer), "{name}: names the blob: {t}");
        }
        // A blob that came short is kept as a partial download, to be resumed.
        e.unchanged(name == "short blob");
    }
}

#[test]
fn an_image_index_gives_the_hosts_platform_or_the_one_asked_for() {
    // Two images in one index: this host's architecture, and arm64 (with another config).
    let host = image();
    let mut arm = image();
    let cfg: serde_json::Value = serde_json::from_slice(&arm.config).unwrap();
    let mut cfg = cfg;
    cfg["architecture"] = "arm64".into();
    arm.config = serde_json::to_vec(&cfg).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&arm.manifest).unwrap();
    m["config"]["digest"] = sha(&arm.config).into();
    m["config"]["size"] = arm.config.len().into();
    arm.manifest = serde_json::to_vec(&m).unwrap();
    let arch = strata::image::rootfs::host_arch();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": MT, "digest": sha(&arm.manifest), "size": arm.manifest.len(),
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": MT, "digest": sha(&host.manifest), "size": host.manifest.len(),
             "platform": {"os": "linux", "architecture": arch}},
        ]
    }))
    .unwrap();
    let (arm_manifest, arm_config) = (arm.manifest.clone(), arm.config.clone());
    let port = registry(host, move |_, p, _, i| {
        if p.ends_with("/manifests/1") {
            return Some(reply(
                200,
                "application/vnd.oci.image.index.v1+json",
                index.clone(),
            ));
        }
        if p.ends_with(&sha(&arm_manifest)) {
            return Some(reply(200, MT, arm_manifest.clone()));
        }
        if p.ends_with(&sha(&i.manifest)) {
            return Some(reply(200, MT, i.manifest.clone()));
        }
        if p.ends_with(&sha(&arm_config)) {
            return Some(reply(200, "application/octet-stream", arm_config.clone()));
        }
        None
    });
    let e = Env::new();
    let inspect_arch = |e: &Env, r: &str| -> String {
        let o = Command::new(strata_bin())
            .env("STRATA_ROOT", e.store())
            .args(["image", "inspect", r])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["Architecture"].as_str().unwrap_or("").to_string()
    };
    let (o, r) = e.pull(port);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(inspect_arch(&e, &r), arch);
    let e2 = Env::new();
    let o = Command::new(strata_bin())
        .env("STRATA_ROOT", e2.store())
        .env("HOME", e2.t.path())
        .args(["pull", "--platform", "linux/arm64", &r])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(inspect_arch(&e2, &r), "arm64");
    let o = Command::new(strata_bin())
        .env("STRATA_ROOT", e2.store())
        .env("HOME", e2.t.path())
        .args(["pull", "--platform", "linux/s390x", &r])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("linux/s390x"), "{}", text(&o));
    // run: this host's image runs without a word; another platform's is named, as docker
    // names it (this arm64 image holds the host's busybox, so it runs here anyway).
    let run = |e: &Env, extra: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(extra);
        a.extend([r.as_str(), "true"]);
        Command::new(strata_bin())
            .env("STRATA_ROOT", e.store())
            .env("HOME", e.t.path())
            .args(&a)
            .output()
            .unwrap()
    };
    let o = run(&e, &[]);
    assert!(
        o.status.success() && !text(&o).contains("WARNING"),
        "{}",
        text(&o)
    );
    let warning =
        format!("platform (linux/arm64) does not match the detected host platform (linux/{arch})");
    let o = run(&e2, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&warning) && text(&o).contains("no specific platform was requested"),
        "{}",
        text(&o)
    );
    // --platform: the image of that platform is pulled (the host's one here counts as
    // missing), and named all the same.
    let o = run(&e, &["--platform", "linux/arm64"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&warning), "{}", text(&o));
    assert_eq!(inspect_arch(&e, &r), "arm64");
}

#[test]
fn a_bearer_challenge_is_answered_with_a_token_from_its_realm() {
    // Every registry request needs "Bearer t0ken"; the realm hands it out for the
    // credentials strata logged in with (basic), as docker.io's auth service does.
    let img = image();
    let port_cell = Arc::new(std::sync::OnceLock::<u16>::new());
    let pc = port_cell.clone();
    let tokens = Arc::new(AtomicUsize::new(0));
    let tk = tokens.clone();
    let port = serve(Arc::new(
        move |_m: &str, path: &str, _n: usize, auth: Option<&str>| {
            let port = *pc.get().unwrap_or(&0);
            if path.starts_with("/token") {
                tk.fetch_add(1, Ordering::SeqCst);
                let scoped = path.contains("scope=repository:fault/box:pull");
                // The realm gets the logged-in credentials (alice:pw) as basic auth.
                let basic = auth == Some("Basic YWxpY2U6cHc=");
                return match scoped && basic {
                    true => reply(200, "application/json", br#"{"token":"t0ken"}"#.to_vec()),
                    false => reply(401, "application/json", Vec::new()),
                };
            }
            if auth != Some("Bearer t0ken") {
                return Reply {
                    status: 401,
                    headers: vec![(
                        "WWW-Authenticate".into(),
                        format!("Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\""),
                    )],
                    body: Vec::new(),
                };
            }
            serve_image(&img, path).unwrap_or_else(|| reply(404, "application/json", Vec::new()))
        },
    ));
    let _ = port_cell.set(port);
    let e = Env::new();
    // Credentials as `strata login` keeps them (login itself checks them against /v2/).
    let auth_dir = e.t.path().join(".config/strata");
    std::fs::create_dir_all(&auth_dir).unwrap();
    let entry = format!(r#"{{"auths":{{"127.0.0.1:{port}":{{"auth":"YWxpY2U6cHc="}}}}}}"#);
    std::fs::write(auth_dir.join("auth.json"), entry).unwrap();
    let (o, _) = e.pull(port);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        1,
        "one token serves the whole pull"
    );
}
