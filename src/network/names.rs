//! Name resolution on user-defined networks, as docker gives it: each member's /etc/hosts
//! lists the other containers of the network by name and `--network-alias`. The file a
//! container got at start (`hosts.base` in its directory) stays its first part; the
//! network's members follow, rewritten in place (the container's bind mount holds the
//! inode) whenever one joins or leaves.

use std::io::Write;

use super::ipam::{self, Network};
use crate::image::Store;

/// Rewrites the /etc/hosts of every member of user network `n`: the file it got at start,
/// then the members of each user network it is on (a container connected to several has
/// a section for each).
pub fn refresh(store: &Store, n: &Network) {
    if n.name == "bridge" {
        return;
    }
    let nets: Vec<(Network, Vec<(String, ipam::Holder)>)> = ipam::list(store)
        .into_iter()
        .filter(|m| m.name != "bridge")
        .map(|m| {
            let hs = (ipam::holders(store, &m).into_iter())
                .map(|(ip, h)| (ip.to_string(), h))
                .collect();
            (m, hs)
        })
        .collect();
    let Some((_, members)) = nets.iter().find(|(m, _)| m.name == n.name) else {
        return;
    };
    for (_, me) in members {
        let Some(dir) = &me.dir else { continue };
        let Ok(base) = std::fs::read_to_string(dir.join("hosts.base")) else {
            continue;
        };
        let mut text = base;
        for (m, hs) in &nets {
            if !hs.iter().any(|(_, h)| h.id == me.id) {
                continue;
            }
            text.push_str(&format!("# strata network {}\n", m.name));
            for (ip, other) in hs {
                if other.id != me.id && !other.names.is_empty() {
                    text.push_str(&format!("{ip}\t{}\n", other.names.join(" ")));
                }
            }
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(dir.join("hosts"))
        {
            let _ = f.write_all(text.as_bytes());
        }
    }
}
