//! `strata network create|ls|rm|inspect`.

use std::io::Write;
use std::path::PathBuf;

use super::container::open_store;
use super::{container_ctx, CmdResult};
use crate::cli::NetworkCmd;
use crate::network::ipam;

/// `strata network ...`.
pub fn run(root: Option<PathBuf>, cmd: NetworkCmd) -> CmdResult {
    match cmd {
        NetworkCmd::Connect {
            alias,
            ip,
            network,
            container,
        } => {
            let store = open_store(root)?;
            let ctx = format!("connecting {container} to network {network}");
            let c = crate::container::find(&store, &container).map_err(container_ctx(&ctx))?;
            crate::container::connect::connect(&store, &c, &network, &alias, ip)
                .map_err(container_ctx(&ctx))?;
            Ok(0)
        }
        NetworkCmd::Disconnect { network, container } => {
            let store = open_store(root)?;
            let ctx = format!("disconnecting {container} from network {network}");
            let c = crate::container::find(&store, &container).map_err(container_ctx(&ctx))?;
            crate::container::connect::disconnect(&store, &c, &network)
                .map_err(container_ctx(&ctx))?;
            Ok(0)
        }
        NetworkCmd::Create { subnet, name } => {
            let store = open_store(root)?;
            let n = ipam::create(&store, &name, subnet.as_deref())
                .map_err(|e| container_ctx(format!("creating network {name}"))(e.into()))?;
            writeln!(std::io::stdout(), "{}", n.name)?;
            Ok(0)
        }
        NetworkCmd::Ls { quiet } => {
            let store = open_store(root)?;
            // The default network is there from the first use on; list it before too.
            let mut nets = ipam::list(&store);
            if !nets.iter().any(|n| n.name == "bridge") {
                if let Ok(n) = ipam::network(&store, "bridge") {
                    nets.push(n);
                    nets.sort_by(|a, b| a.name.cmp(&b.name));
                }
            }
            let mut o = std::io::stdout().lock();
            if !quiet {
                writeln!(
                    o,
                    "{:<20} {:<8} {:<18} {:<16} BRIDGE",
                    "NAME", "DRIVER", "SUBNET", "GATEWAY"
                )?;
            }
            for n in nets {
                match quiet {
                    true => writeln!(o, "{}", n.name)?,
                    false => writeln!(
                        o,
                        "{:<20} {:<8} {:<18} {:<16} {}",
                        n.name,
                        "bridge",
                        n.cidr(),
                        n.gateway,
                        n.bridge
                    )?,
                }
            }
            Ok(0)
        }
        NetworkCmd::Rm { names } => {
            let store = open_store(root)?;
            let mut code = 0;
            for name in &names {
                let users = crate::container::inspect::network_users(&store, name)
                    .map_err(container_ctx(format!("removing network {name}")))?;
                match crate::network::remove(&store, name, &users) {
                    Ok(()) => writeln!(std::io::stdout(), "{name}")?,
                    Err(e) => {
                        code = super::report(&container_ctx(format!("removing network {name}"))(
                            e.into(),
                        ))
                        .max(1)
                    }
                }
            }
            Ok(code)
        }
        NetworkCmd::Inspect { names } => {
            let store = open_store(root)?;
            let mut out = Vec::new();
            for name in &names {
                let n = ipam::network(&store, name)
                    .map_err(|e| container_ctx(format!("inspecting network {name}"))(e.into()))?;
                let mut members = serde_json::Map::new();
                for (ip, id) in ipam::leases(&store, &n) {
                    let cname = crate::container::find(&store, &id)
                        .map(|c| c.state.name)
                        .unwrap_or_default();
                    members.insert(
                        id,
                        serde_json::json!({"Name": cname, "IPv4Address": format!("{ip}/{}", n.prefix)}),
                    );
                }
                out.push(serde_json::json!({
                    "Name": n.name,
                    "Driver": "bridge",
                    "IPAM": {"Config": [{"Subnet": n.cidr(), "Gateway": n.gateway.to_string()}]},
                    "Options": {"com.docker.network.bridge.name": n.bridge},
                    "Containers": members,
                }));
            }
            let text = serde_json::to_string_pretty(&out).unwrap_or_default();
            writeln!(std::io::stdout(), "{text}")?;
            Ok(0)
        }
    }
}
