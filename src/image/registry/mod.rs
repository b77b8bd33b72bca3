//! The registry client: the OCI distribution API v2 over HTTP(S) (ureq with rustls).
//!
//! One [`Client`] talks to one repository of one registry. Every request goes through
//! [`Client::send`], which answers a 401 by following the `WWW-Authenticate` challenge
//! (a bearer token from the realm, or basic credentials) once, and retries 429 and 5xx
//! replies and broken connections with backoff (bounded). Plain HTTP is used for
//! `localhost` and 127.0.0.0/8 unless they answer HTTPS, as docker falls back for them;
//! HTTPS everywhere else, with the system CAs,
//! plus a CA directory (`--cert-dir`), or no verification at all (`--tls-verify=false`).

pub mod auth;
pub mod compress;
pub mod pull;
pub mod push;
pub mod sources;
mod tls;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::ImageError;
use super::reference::Reference;

/// Manifest media types strata accepts, in the Accept header.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest or config read into memory.
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// How a registry is reached.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--tls-verify=false`: accept any certificate.
    pub insecure: bool,
    /// `--cert-dir`: the registry's certificate directory (CAs `*.crt`, `*.pem`; a client
    /// `*.cert` with its `*.key`) instead of certs.d's (tls.rs).
    pub cert_dir: Option<std::path::PathBuf>,
    /// `--platform os/arch[/variant]` for image indexes (default: linux and this host's).
    pub platform: Option<String>,
    /// Layers fetched at once.
    pub parallel: usize,
}

/// One request: method, path below `/v2/<repository>/` (or a full URL), headers, body.
pub struct Request<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// `manifests/latest`, `blobs/sha256:...`, or an absolute URL (an upload location).
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(&'a str, String)>,
    /// Body, if any.
    pub body: Body<'a>,
}

/// A request body.
pub enum Body<'a> {
    /// None.
    Empty,
    /// Bytes.
    Bytes(&'a [u8]),
    /// A file section: it is reopened for each attempt.
    File(&'a std::path::Path, u64, u64),
}

/// A client for one repository.
pub struct Client {
    agent: ureq::Agent,
    /// `https://host` or `http://host:port`.
    base: String,
    /// The repository.
    pub reference: Reference,
    /// The Authorization header the last challenge earned.
    authorization: Mutex<Option<String>>,
    /// Whether to ask for push rights too.
    push: bool,
    /// What answers a challenge (stored credentials, or those being logged in with).
    pub credentials: Option<auth::Credentials>,
}

/// The host a registry name is reached at (docker.io's API is at registry-1.docker.io).
fn api_host(registry: &str) -> &str {
    if registry == super::reference::DEFAULT_REGISTRY {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// Plain HTTP for the loopback registries, as docker allows without configuration.
pub fn plain_http(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.octets()[0] == 127)
}

/// Whether a loopback registry answers HTTPS (else it gets plain HTTP, as docker falls
/// back for such registries). A certificate the client refuses counts as HTTPS, so the
/// error the user sees is about the certificate.
fn speaks_tls(agent: &ureq::Agent, host: &str) -> bool {
    match agent.get(&format!("https://{host}/v2/")).call() {
        Ok(_) | Err(ureq::Error::Status(..)) => true,
        Err(ureq::Error::Transport(t)) => {
            let m = t.to_string().to_ascii_lowercase();
            m.contains("certificate") || m.contains("issuer")
        }
    }
}

fn http_err(what: &str, e: impl std::fmt::Display) -> ImageError {
    ImageError::Registry(format!("{what}: {e}"))
}

impl Client {
    /// A client for `reference`'s repository; `push` asks for push rights.
    pub fn new(reference: &Reference, opts: &Options, push: bool) -> Result<Client, ImageError> {
        let host = api_host(&reference.registry);
        let tls = tls::config(opts, host)?;
        let agent = ureq::AgentBuilder::new()
            .tls_config(Arc::new(tls))
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(60))
            .timeout_write(Duration::from_secs(60))
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .build();
        let scheme = if plain_http(host) && !speaks_tls(&agent, host) {
            "http"
        } else {
            "https"
        };
        Ok(Client {
            agent,
            base: format!("{scheme}://{host}"),
            reference: reference.clone(),
            authorization: Mutex::new(None),
            push,
            credentials: auth::lookup(&reference.registry),
        })
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            return path.to_string();
        }
        if let Some(p) = path.strip_prefix('/') {
            return format!("{}/{p}", self.base);
        }
        format!("{}/v2/{}/{path}", self.base, self.reference.repository)
    }

    /// Resolves an upload `Location` (absolute, or relative to the registry).
    pub fn location(&self, loc: &str) -> String {
        if loc.contains("://") {
            loc.to_string()
        } else {
            format!("{}/{}", self.base, loc.trim_start_matches('/'))
        }
    }

    fn attempt(&self, r: &Request<'_>) -> Result<ureq::Response, Box<ureq::Error>> {
        let mut req = self.agent.request(r.method, &self.url(&r.path));
        for (k, v) in &r.headers {
            req = req.set(k, v);
        }
        if let Some(a) = self.authorization.lock().ok().and_then(|a| a.clone()) {
            req = req.set("Authorization", &a);
        }
        let sent = match r.body {
            Body::Empty => req.call(),
            Body::Bytes(b) => req.send_bytes(b),
            Body::File(p, offset, len) => {
                let opened = std::fs::File::open(p).and_then(|mut f| {
                    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset)).map(|_| f)
                });
                let f = opened.map_err(|e| {
                    Box::new(ureq::Error::from(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", p.display()),
                    )))
                })?;
                req.set("Content-Length", &len.to_string())
                    .send(f.take(len))
            }
        };
        sent.map_err(Box::new)
    }

    /// Sends `r`, answering an authentication challenge once and retrying 429, 5xx and
    /// transport failures with backoff; `what` names the object in errors. A reply that
    /// is still an error is returned as `ImageError::Http`.
    pub fn send(&self, r: &Request<'_>, what: &str) -> Result<ureq::Response, ImageError> {
        let mut challenged = false;
        let mut delay = Duration::from_millis(250);
        for attempt in 0.. {
            let last = attempt >= 4;
            match self.attempt(r).map_err(|e| *e) {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) if !challenged => {
                    challenged = true;
                    let challenge = resp.header("WWW-Authenticate").unwrap_or("").to_string();
                    let header = auth::answer(self, &challenge, what)?;
                    if let Ok(mut a) = self.authorization.lock() {
                        *a = Some(header);
                    }
                }
                Err(ureq::Error::Status(code, resp)) if (code == 429 || code >= 500) && !last => {
                    let wait = resp
                        .header("Retry-After")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(10)))
                        .unwrap_or(delay);
                    std::thread::sleep(wait);
                    delay *= 2;
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let body = resp.into_string().unwrap_or_default();
                    return Err(ImageError::Http {
                        what: what.to_string(),
                        status: code,
                        detail: error_detail(&body),
                    });
                }
                Err(ureq::Error::Transport(t)) if !last => {
                    log::debug!("{what}: {t}; retrying");
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(ureq::Error::Transport(t)) => return Err(http_err(what, t)),
            }
        }
        unreachable!("the loop returns")
    }

    /// GETs a small JSON document (a manifest or config), at most [`MAX_DOCUMENT`] bytes;
    /// returns its bytes and Content-Type.
    pub fn get_document(
        &self,
        path: String,
        accept: &str,
        what: &str,
    ) -> Result<(Vec<u8>, String), ImageError> {
        let resp = self.send(
            &Request {
                method: "GET",
                path,
                headers: vec![("Accept", accept.to_string())],
                body: Body::Empty,
            },
            what,
        )?;
        let ctype = resp.content_type().to_string();
        let mut v = Vec::new();
        resp.into_reader()
            .take(MAX_DOCUMENT + 1)
            .read_to_end(&mut v)
            .map_err(|e| http_err(what, e))?;
        if v.len() as u64 > MAX_DOCUMENT {
            return Err(ImageError::Registry(format!(
                "{what}: larger than {MAX_DOCUMENT} bytes"
            )));
        }
        Ok((v, ctype))
    }

    /// The scope a token is asked for.
    fn scope(&self) -> String {
        let actions = if self.push { "pull,push" } else { "pull" };
        format!("repository:{}:{actions}", self.reference.repository)
    }

    /// The registry's host as credentials are stored under.
    pub fn registry(&self) -> &str {
        &self.reference.registry
    }

    /// The agent, for the token request.
    fn agent(&self) -> &ureq::Agent {
        &self.agent
    }
}

/// The message of a registry's JSON error reply (`{"errors":[{"code","message"}]}`).
fn error_detail(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<E>,
    }
    match serde_json::from_str::<Errs>(body) {
        Ok(e) => e
            .errors
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e.code.as_deref().unwrap_or(""),
                    e.message.as_deref().unwrap_or("")
                )
                .trim()
                .to_string()
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => body
            .chars()
            .take(200)
            .collect::<String>()
            .trim()
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_use_plain_http() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(plain_http(h), "{h}");
        }
        for h in [
            "docker.io",
            "registry-1.docker.io",
            "10.0.0.1:5000",
            "localhost.example",
        ] {
            assert!(!plain_http(h), "{h}");
        }
        assert_eq!(
            error_detail(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            ),
            "MANIFEST_UNKNOWN manifest unknown"
        );
    }
}
