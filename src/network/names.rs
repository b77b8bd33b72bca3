//! Name resolution on user-defined networks, as docker gives it: each member's /etc/hosts
//! lists the other containers of the network by name and `--network-alias`. The file a
//! container got at start (`hosts.base` in its directory) stays its first part; the
//! network's members follow, rewritten in place (the container's bind mount holds the
//! inode) whenever one joins or leaves.

use std::io::Write;

use super::ipam::{self, Network};
use crate::image::Store;

/// Rewrites the /etc/hosts of every member of user network `n`.
pub fn refresh(store: &Store, n: &Network) {
    if n.name == "bridge" {
        return;
    }
    let members: Vec<(String, ipam::Holder)> = ipam::holders(store, n)
        .into_iter()
        .map(|(ip, h)| (ip.to_string(), h))
        .collect();
    for (_, me) in &members {
        let Some(dir) = &me.dir else { continue };
        let Ok(base) = std::fs::read_to_string(dir.join("hosts.base")) else {
            continue;
        };
        let mut text = base;
        text.push_str(&format!("# strata network {}\n", n.name));
        for (ip, other) in &members {
            if other.id != me.id && !other.names.is_empty() {
                text.push_str(&format!("{ip}\t{}\n", other.names.join(" ")));
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
