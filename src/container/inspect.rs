//! `strata inspect` of a container: docker's field names for what strata records (state,
//! pid, exit code, config, mounts) and the layer directories of its union mount.

use serde_json::{json, Value};

use super::error::ContainerError;
use super::id::Status;
use super::state::Container;
use crate::image::Store;

/// The container as a JSON object shaped like `docker inspect`'s.
pub fn json(store: &Store, c: &Container) -> Value {
    let s = c.observed();
    let req = super::request::request_of(c).ok();
    let lowers: Vec<String> = c
        .image_layers(store)
        .map(|l| l.iter().map(|p| p.display().to_string()).collect())
        .unwrap_or_default();
    let mut lower = vec![c.init_layer().display().to_string()];
    lower.extend(lowers);
    let volumes = req.as_ref().map(|r| r.overrides.volumes.clone());
    let mounts: Vec<Value> = (volumes.iter().flatten())
        .filter_map(|v| crate::runtime::spec::parse_volume(v).ok())
        .map(|v| {
            json!({
                "Type": "bind",
                "Source": v.host.display().to_string(),
                "Destination": v.target,
                "RW": !v.read_only,
            })
        })
        .collect();
    json!({
        "Id": s.id.as_str(),
        "Name": s.name,
        "Created": s.created,
        "Path": s.command.first(),
        "Args": s.command.get(1..).unwrap_or_default(),
        "State": {
            "Status": if s.paused && s.status == Status::Running { "paused" } else { s.status.as_str() },
            "Running": s.status == Status::Running,
            "Paused": s.paused && s.status == Status::Running,
            "Restarting": s.restarting,
            "MonitorPid": s.monitor.unwrap_or(0),
            "Pid": s.pid.unwrap_or(0),
            "ExitCode": s.exit_code.unwrap_or(0),
            "OOMKilled": s.oom_killed,
            "Health": s.health.as_ref().map(|h| json!({
                "Status": h.status.as_str(),
                "FailingStreak": h.failing_streak,
                "Log": h.log.iter().map(|p| json!({
                    "Start": p.start, "End": p.end, "ExitCode": p.exit_code, "Output": p.output,
                })).collect::<Vec<_>>(),
            })),
        },
        "Image": s.image_id,
        "Config": {
            "Image": s.image,
            "Hostname": s.hostname,
            "Cmd": s.command,
            "Env": s.env,
            "WorkingDir": s.cwd,
            "User": format!("{}:{}", s.uid, s.gid),
            "Labels": req.as_ref().map(|r| r.labels.clone()).unwrap_or_default(),
            "StopSignal": req.as_ref().and_then(|r| r.stop_signal.as_deref()).unwrap_or("SIGTERM"),
            "StopTimeout": req.as_ref().and_then(|r| r.stop_timeout).unwrap_or(10),
        },
        "RestartCount": s.restart_count,
        "HostConfig": {
            "Privileged": s.security.privileged,
            "RestartPolicy": {
                "Name": s.restart_policy.docker().0,
                "MaximumRetryCount": s.restart_policy.docker().1,
            },
        },
        "Mounts": mounts,
        "NetworkSettings": network_settings(store, c, &s),
        "GraphDriver": {
            "Name": "strata",
            "Data": {
                "LowerDir": lower.join(":"),
                "UpperDir": c.upper().display().to_string(),
                "WorkDir": c.work().display().to_string(),
                "MergedDir": c.rootfs().display().to_string(),
            }
        },
        "LogPath": c.log().display().to_string(),
    })
}

/// docker's NetworkSettings: the address, gateway and network while it runs, and the
/// published ports.
fn network_settings(store: &Store, c: &Container, s: &super::state::State) -> Value {
    let req = super::request::request_of(c).ok();
    let name = req
        .as_ref()
        .map(|r| match r.network {
            crate::network::Mode::Bridge => {
                r.network_name.clone().unwrap_or_else(|| "bridge".into())
            }
            crate::network::Mode::Container => {
                format!("container:{}", r.network_name.clone().unwrap_or_default())
            }
            other => format!("{other:?}").to_lowercase(),
        })
        .unwrap_or_default();
    // Only while it runs on a network (looking the default one up would make it).
    let gateway =
        s.ip.as_ref()
            .and_then(|_| crate::network::ipam::network(store, &name).ok())
            .map(|n| n.gateway.to_string())
            .unwrap_or_default();
    let mut ports = serde_json::Map::new();
    for p in req.iter().flat_map(|r| r.publish.iter()) {
        let proto = p.proto.as_str();
        let host_ip = p
            .host_ip
            .map_or_else(|| "0.0.0.0".to_string(), |a| a.to_string());
        ports.insert(
            format!("{}/{proto}", p.container_port),
            json!([{"HostIp": host_ip, "HostPort": p.host_port.to_string()}]),
        );
    }
    let ip = s.ip.clone().unwrap_or_default();
    let extra = req
        .as_ref()
        .map(|r| r.extra_networks.clone())
        .unwrap_or_default();
    let aliases = req.map(|r| r.network_aliases).unwrap_or_default();
    let mut networks = serde_json::Map::new();
    networks.insert(
        name,
        json!({"IPAddress": ip, "Gateway": gateway, "Aliases": aliases}),
    );
    // The networks `network connect` joined: the address it holds there while it runs.
    for j in extra {
        let n = crate::network::ipam::network(store, &j.name).ok();
        let held = n.as_ref().and_then(|n| {
            crate::network::ipam::leases(store, n)
                .into_iter()
                .find(|(_, id)| id == s.id.as_str())
        });
        let (ip, gw) = match (held, &n) {
            (Some((ip, _)), Some(n)) if s.ip.is_some() => (ip.to_string(), n.gateway.to_string()),
            _ => (String::new(), String::new()),
        };
        networks.insert(
            j.name,
            json!({"IPAddress": ip, "Gateway": gw, "Aliases": j.aliases}),
        );
    }
    json!({
        "IPAddress": ip,
        "Gateway": gateway,
        "Ports": ports,
        "Networks": networks,
    })
}

/// The names of the containers whose records name user network `name` (`network rm`
/// refuses while there are any).
pub fn network_users(store: &Store, name: &str) -> Result<Vec<String>, ContainerError> {
    Ok(super::state::list(store)?
        .into_iter()
        .filter(|c| {
            super::request::request_of(c).is_ok_and(|r| {
                r.network_name.as_deref() == Some(name)
                    || r.extra_networks.iter().any(|j| j.name == name)
            })
        })
        .map(|c| c.state.name)
        .collect())
}
