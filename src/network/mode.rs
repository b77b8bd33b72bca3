//! The network a container asks for (`--network`): none, the host's, pasta, a bridge, or
//! another container's, and the default for who runs it.

use std::str::FromStr;

use super::error::NetworkError;
use crate::host::Host;

/// The network a container asks for (`--network`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// A network namespace of its own with only `lo`.
    #[default]
    None,
    /// The host's.
    Host,
    /// A network namespace of its own connected through pasta (user-mode networking).
    Pasta,
    /// A network namespace of its own on the `strata0` bridge, with NAT (root).
    Bridge,
    /// Another container's network namespace (`container:NAME`, with `network_name`).
    Container,
}

impl Mode {
    /// Without `--network`: the bridge for root (docker's default) where it can be made
    /// (CAP_NET_ADMIN, which root in a nested container may lack, and iptables for its
    /// rules); user-mode networking for a user when pasta can run (as podman does); else
    /// only `lo`.
    pub fn default_for(host: &Host) -> Mode {
        let net_admin = || {
            caps::has_cap(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_NET_ADMIN,
            )
            .unwrap_or(false)
        };
        match host.root {
            true if net_admin() && crate::host::which("iptables").is_some() => Mode::Bridge,
            false if super::usernet::available() => Mode::Pasta,
            _ => Mode::None,
        }
    }
}

impl FromStr for Mode {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Mode, NetworkError> {
        match s {
            "none" => Ok(Mode::None),
            "host" => Ok(Mode::Host),
            "bridge" => Ok(Mode::Bridge),
            "pasta" if super::usernet::pasta_installed() => Ok(Mode::Pasta),
            "pasta" => Err(NetworkError::Invalid(
                "--network pasta: pasta is not installed (Debian package passt)".into(),
            )),
            other => Err(NetworkError::Invalid(format!(
                "--network {other}: expected none, host, bridge or pasta"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names_parse() {
        assert!("bridges".parse::<Mode>().is_err());
        assert_eq!("bridge".parse::<Mode>().unwrap(), Mode::Bridge);
        assert_eq!("host".parse::<Mode>().unwrap(), Mode::Host);
        assert_eq!("none".parse::<Mode>().unwrap(), Mode::None);
    }
}
