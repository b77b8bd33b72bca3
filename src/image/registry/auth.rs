//! Registry authentication: answering a `WWW-Authenticate` challenge (a bearer token from
//! the realm, or basic credentials), and the credentials themselves: `strata login` keeps
//! them (mode 0600) in strata's own auth file, in docker's `{"auths": {host: {"auth":
//! base64("user:password")}}}` shape; the containers (podman, skopeo) and docker auth files
//! are read too when present.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{Body, Client, Options, Request};
use crate::image::error::{io_ctx, ImageError};
use crate::image::reference::DEFAULT_REGISTRY;

/// A user name and password (or token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

#[derive(Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// An environment variable, for the path rules below (tests give their own).
type Env<'a> = &'a dyn Fn(&str) -> Option<std::ffi::OsString>;

/// strata's own auth file: `$XDG_CONFIG_HOME/strata/auth.json` (else under ~/.config).
pub fn strata_auth_file() -> PathBuf {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|x| !x.is_empty())
        .map_or_else(|| home().join(".config"), PathBuf::from);
    config.join("strata/auth.json")
}

/// The files credentials are read from, strata's first.
fn auth_files() -> Vec<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    let mut v = vec![strata_auth_file()];
    v.extend(others(&|k| std::env::var_os(k), &home(), uid));
    v
}

/// The other tools' files, as containers/image and docker look for them: `$REGISTRY_AUTH_FILE`,
/// `$XDG_RUNTIME_DIR/containers/auth.json` (without it `/run/containers/UID/auth.json`,
/// where podman run as root keeps its logins), ~/.config/containers/auth.json, docker's
/// config.json.
fn others(env: Env<'_>, home: &std::path::Path, uid: u32) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(f) = env("REGISTRY_AUTH_FILE") {
        v.push(f.into());
    }
    match env("XDG_RUNTIME_DIR").filter(|r| !r.is_empty()) {
        Some(r) => v.push(PathBuf::from(r).join("containers/auth.json")),
        None => v.push(PathBuf::from(format!("/run/containers/{uid}/auth.json"))),
    }
    v.push(home.join(".config/containers/auth.json"));
    let docker = env("DOCKER_CONFIG").map_or_else(|| home.join(".docker"), PathBuf::from);
    v.push(docker.join("config.json"));
    v
}

/// The keys a registry's entry may have in an auth file.
fn keys(registry: &str) -> Vec<String> {
    let mut v = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    if registry == DEFAULT_REGISTRY {
        v.push("https://index.docker.io/v1/".into());
        v.push("index.docker.io".into());
    }
    v
}

fn decode(auth: &str) -> Option<Credentials> {
    let raw = B64.decode(auth.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (user, password) = s.split_once(':')?;
    Some(Credentials {
        user: user.into(),
        password: password.into(),
    })
}

fn read_file(p: &std::path::Path) -> Option<AuthFile> {
    let data = std::fs::read(p).ok()?;
    serde_json::from_slice(&data).ok()
}

/// The credentials stored for `registry`, if any.
pub fn lookup(registry: &str) -> Option<Credentials> {
    auth_files().iter().find_map(|f| {
        let file = read_file(f)?;
        keys(registry)
            .iter()
            .find_map(|k| file.auths.get(k)?.auth.as_deref().and_then(decode))
    })
}

/// Records `creds` for `registry` in strata's auth file (0600, replaced atomically).
pub fn store(registry: &str, creds: &Credentials) -> Result<PathBuf, ImageError> {
    let path = strata_auth_file();
    let mut file = read_file(&path).unwrap_or_default();
    file.auths.insert(
        registry.to_string(),
        Entry {
            auth: Some(B64.encode(format!("{}:{}", creds.user, creds.password))),
            other: BTreeMap::new(),
        },
    );
    write(&path, &file)?;
    Ok(path)
}

/// Forgets `registry`'s credentials in strata's auth file; false if it had none.
pub fn remove(registry: &str) -> Result<bool, ImageError> {
    let path = strata_auth_file();
    let Some(mut file) = read_file(&path) else {
        return Ok(false);
    };
    let before = file.auths.len();
    for k in keys(registry) {
        file.auths.remove(&k);
    }
    if file.auths.len() == before {
        return Ok(false);
    }
    write(&path, &file)?;
    Ok(true)
}

fn write(path: &std::path::Path, file: &AuthFile) -> Result<(), ImageError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_ctx(dir.display()))?;
    let data =
        serde_json::to_vec_pretty(file).map_err(crate::image::error::json_ctx(path.display()))?;
    let tmp = dir.join(".auth.json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_ctx(tmp.display()))?;
    std::io::Write::write_all(&mut f, &data).map_err(io_ctx(tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(io_ctx(path.display()))
}

/// A parsed `WWW-Authenticate` header: scheme and parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer` or `basic` (lower case).
    pub scheme: String,
    /// realm, service, scope, ...
    pub params: BTreeMap<String, String>,
}

/// Parses `Bearer realm="...",service="...",scope="..."` (quoted or not).
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, after) = s.split_once('=')?;
        let (v, tail) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"')?;
                (&q[..end], &q[end + 1..])
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        params.insert(k.trim().to_ascii_lowercase(), v.to_string());
        s = tail.trim_start_matches([',', ' ']);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

fn basic(c: &Credentials) -> String {
    format!("Basic {}", B64.encode(format!("{}:{}", c.user, c.password)))
}

/// The Authorization header that answers `challenge` for `client`.
pub fn answer(client: &Client, challenge: &str, what: &str) -> Result<String, ImageError> {
    let unauthorized = |detail: &str| ImageError::Http {
        what: what.to_string(),
        status: 401,
        detail: detail.to_string(),
    };
    let ch =
        parse_challenge(challenge).ok_or_else(|| unauthorized("no usable WWW-Authenticate"))?;
    let creds = client.credentials.clone();
    match ch.scheme.as_str() {
        "basic" => creds
            .as_ref()
            .map(basic)
            .ok_or_else(|| unauthorized(&format!("{} needs credentials", client.registry()))),
        "bearer" => {
            let realm = ch
                .params
                .get("realm")
                .ok_or_else(|| unauthorized("bearer challenge without a realm"))?;
            let mut url = format!("{realm}?scope={}", client.scope());
            if let Some(s) = ch.params.get("service") {
                url.push_str(&format!("&service={s}"));
            }
            let mut req = client.agent().get(&url);
            if let Some(c) = &creds {
                req = req.set("Authorization", &basic(c));
            }
            let resp = req.call().map_err(|e| match e {
                ureq::Error::Status(code, _) => ImageError::Http {
                    what: format!("{what}: token from {realm}"),
                    status: code,
                    detail: String::new(),
                },
                ureq::Error::Transport(t) => {
                    ImageError::Registry(format!("{what}: token from {realm}: {t}"))
                }
            })?;
            #[derive(Deserialize)]
            struct Token {
                token: Option<String>,
                access_token: Option<String>,
            }
            let mut body = Vec::new();
            resp.into_reader()
                .take(super::MAX_DOCUMENT)
                .read_to_end(&mut body)
                .map_err(|e| ImageError::Registry(format!("{what}: token: {e}")))?;
            let t: Token = serde_json::from_slice(&body)
                .map_err(|e| ImageError::Registry(format!("{what}: token reply: {e}")))?;
            t.token
                .or(t.access_token)
                .map(|t| format!("Bearer {t}"))
                .ok_or_else(|| {
                    ImageError::Registry(format!("{what}: the token reply has no token"))
                })
        }
        other => Err(unauthorized(&format!(
            "unsupported authentication scheme {other}"
        ))),
    }
}

/// `strata login`: checks `creds` against the registry's `/v2/`, then stores them.
pub fn login(registry: &str, creds: Credentials, opts: &Options) -> Result<PathBuf, ImageError> {
    let r = crate::image::reference::Reference {
        registry: registry.to_string(),
        repository: "library/strata-login".into(),
        tag: None,
        digest: None,
    };
    let mut client = Client::new(&r, opts, false)?;
    client.credentials = Some(creds.clone());
    client.send(
        &Request {
            method: "GET",
            path: "/v2/".into(),
            headers: Vec::new(),
            body: Body::Empty,
        },
        &format!("{registry}: /v2/"),
    )?;
    store(registry, &creds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podmans_root_logins_are_read_without_xdg_runtime_dir() {
        let home = std::path::Path::new("/h");
        let none = |_: &str| None;
        let v = others(&none, home, 0);
        assert_eq!(v[0], PathBuf::from("/run/containers/0/auth.json"));
        assert_eq!(v[2], PathBuf::from("/h/.docker/config.json"));
        let set = |k: &str| match k {
            "XDG_RUNTIME_DIR" => Some("/run/user/1000".into()),
            "REGISTRY_AUTH_FILE" => Some("/a.json".into()),
            _ => None,
        };
        let v = others(&set, home, 1000);
        assert_eq!(
            v,
            [
                "/a.json",
                "/run/user/1000/containers/auth.json",
                "/h/.config/containers/auth.json",
                "/h/.docker/config.json"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull");
        let b = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(b.scheme, "basic");
        assert_eq!(b.params["realm"], "Registry Realm");
        assert_eq!(parse_challenge("Basic").unwrap().params.len(), 0);
    }

    #[test]
    fn auth_entries_decode() {
        let c = decode(&B64.encode("alice:s3:cret")).unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3:cret"));
        assert!(decode("!!").is_none());
        assert!(keys("docker.io").contains(&"https://index.docker.io/v1/".to_string()));
    }
}
