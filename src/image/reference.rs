//! Image references, normalised as docker does: `busybox` is
//! `docker.io/library/busybox:latest`, `localhost:5000/a/b@sha256:...` keeps its registry
//! and digest. The store, `run` and the registry client compare references in this form,
//! so `busybox`, `busybox:latest` and `docker.io/library/busybox` name the same image.

use super::digest::Digest;
use super::error::ImageError;

/// The registry a name without a host refers to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";

/// `[host[:port]/]path[:tag][@digest]`, normalised.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with its port if any (`docker.io` by default).
    pub registry: String,
    /// Repository path (`library/busybox` for docker.io's official images).
    pub repository: String,
    /// Tag (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// Manifest digest, if pinned.
    pub digest: Option<Digest>,
}

fn bad(r: &str, reason: impl Into<String>) -> ImageError {
    ImageError::BadReference {
        reference: r.into(),
        reason: reason.into(),
    }
}

fn path_component_ok(c: &str) -> bool {
    // [a-z0-9]+ separated by '.', '_', '__' or '-'s.
    !c.is_empty()
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && c.as_bytes()[0].is_ascii_alphanumeric()
        && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        && !c.contains("..")
}

fn host_ok(h: &str) -> bool {
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (h, None),
    };
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

impl Reference {
    /// Parses and normalises a reference.
    pub fn parse(r: &str) -> Result<Reference, ImageError> {
        if r.is_empty() || r.len() > 255 + 128 + 72 {
            return Err(bad(r, "empty or too long"));
        }
        let (rest, digest) = match r.split_once('@') {
            Some((n, d)) => (
                n,
                Some(Digest::parse(d).map_err(|_| bad(r, "the digest is not sha256:<64 hex>"))?),
            ),
            None => (r, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad(
                    r,
                    "a tag is up to 128 letters, digits, '_', '.' and '-'",
                ));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !host_ok(first) {
                    return Err(bad(r, format!("{first:?} is not a registry host[:port]")));
                }
                (first.to_string(), path.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        if path.is_empty() || path.len() > 255 || !path.split('/').all(path_component_ok) {
            return Err(bad(
                r,
                "a repository name is lowercase letters, digits and separators (. _ -), in '/'-separated parts",
            ));
        }
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name as docker shows it: `busybox` for `docker.io/library/busybox`,
    /// `user/app` for `docker.io/user/app`, others in full.
    pub fn familiar_name(&self) -> String {
        if self.registry != DEFAULT_REGISTRY {
            return self.name();
        }
        self.repository
            .strip_prefix("library/")
            .unwrap_or(&self.repository)
            .to_string()
    }
}

impl Reference {
    /// The whole reference as docker shows it: `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Reference, ImageError> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalised_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(
            norm("docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(norm("localhost:5000/a/b"), "localhost:5000/a/b:latest");
        assert_eq!(norm("localhost/a"), "localhost/a:latest");
        assert_eq!(norm("quay.io/x/y:2"), "quay.io/x/y:2");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("127.0.0.1:5000/app@{d}")),
            format!("127.0.0.1:5000/app@{d}")
        );
        let r = Reference::parse("localhost:5000/a/b:t").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(
            Reference::parse("busybox").unwrap().familiar_name(),
            "busybox"
        );
        assert_eq!(Reference::parse("u/app").unwrap().familiar_name(), "u/app");
        assert_eq!(
            Reference::parse("localhost:5000/a")
                .unwrap()
                .familiar_name(),
            "localhost:5000/a"
        );
    }

    #[test]
    fn bad_references_are_refused() {
        for r in [
            "",
            "Busybox",
            "../x",
            "a:b/c",
            "a/-b",
            "a//b",
            "a:",
            "a:-x",
            "a@sha256:12",
            "host:port/x",
            ":tag",
            "a b",
        ] {
            assert!(Reference::parse(r).is_err(), "{r:?} was accepted");
        }
    }
}
