//! Name resolution on user-defined networks, as docker gives it: each member's /etc/hosts
//! lists the other containers of the network by name and `--network-alias`. The file a
//! container got at start (`hosts.base` in its directory) stays its first part; the
//! network's members follow, rewritten in place (the container's bind mount holds the
//! inode) whenever one joins or leaves.

use std::io::Write;

use super::ipam::{self, Network};
use crate::image::Store;

/// The names container `id` answers to on a network: its name and its aliases.
fn names_of(store: &Store, id: &str) -> Option<(String, Vec<String>)> {
    let c = crate::container::state::find(store, id).ok()?;
    let aliases = crate::container::lifecycle::request_of(&c)
        .map(|r| r.network_aliases)
        .unwrap_or_default();
    Some((c.state.name.clone(), aliases))
}

/// Rewrites the /etc/hosts of every member of user network `n`.
pub fn refresh(store: &Store, n: &Network) {
    if n.name == "bridge" {
        return;
    }
    let members: Vec<(String, String, Vec<String>)> = ipam::leases(store, n)
        .into_iter()
        .filter_map(|(ip, id)| {
            let (name, aliases) = names_of(store, &id)?;
            Some((
                ip.to_string(),
                id,
                std::iter::once(name).chain(aliases).collect(),
            ))
        })
        .collect();
    for (_, id, _) in &members {
        let dir = store.root.join("containers").join(id);
        let Ok(base) = std::fs::read_to_string(dir.join("hosts.base")) else {
            continue;
        };
        let mut text = base;
        text.push_str(&format!("# strata network {}\n", n.name));
        for (ip, other, names) in &members {
            if other != id {
                text.push_str(&format!("{ip}\t{}\n", names.join(" ")));
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
