//! Starting `storage "raft"` from the server config: the node's name, its advertised
//! addresses and the cluster listener.

pub mod autopilot;
mod client;
pub mod endpoints;
pub mod forward;
pub mod join;
pub mod retry_join;
pub mod snapshot;

use crate::config::{ServerConfig, StorageConfig};
use crate::server::ServerError;
use crate::storage::raft::{RaftOptions, RaftStorage, Timing};
use std::path::Path;
use std::sync::Arc;

/// The node's operator-facing id: `node_id` from the config, else the one kept in
/// `<path>/node-id` (a new UUID on first start), as OpenBao does.
fn node_name(dir: &Path, configured: Option<&str>) -> Result<String, ServerError> {
    if let Some(n) = configured {
        return Ok(n.to_string());
    }
    let file = dir.join("node-id");
    match std::fs::read_to_string(&file) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(storage_err(format!("reading {}: {e}", file.display()))),
    }
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::write(&file, &id)
        .map_err(|e| storage_err(format!("writing {}: {e}", file.display())))?;
    Ok(id)
}

fn storage_err(msg: String) -> ServerError {
    ServerError::Storage(crate::storage::StorageError::Io(msg))
}

/// `host:port` of a URL or bare address.
pub fn host_port(addr: &str) -> &str {
    let rest = addr.split_once("://").map_or(addr, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

fn split_port(hp: &str) -> Option<(&str, u16)> {
    let (h, p) = hp.rsplit_once(':')?;
    Some((h, p.parse().ok()?))
}

/// The advertised API and cluster addresses and the address the cluster listener binds:
/// `api_addr`/`cluster_addr` from the config, else derived from the first listener (the
/// cluster port is the API port + 1, as OpenBao's default).
pub fn addresses(cfg: &ServerConfig) -> Result<(String, String, String), ServerError> {
    let l = cfg
        .listeners
        .first()
        .ok_or_else(|| storage_err("storage \"raft\" needs a listener".into()))?;
    let (lhost, lport) = split_port(&l.address)
        .ok_or_else(|| storage_err(format!("listener address {:?} has no port", l.address)))?;
    let scheme = if l.tls_disable { "http" } else { "https" };
    let api = cfg
        .api_addr
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}", l.address));
    let cluster = match &cfg.cluster_addr {
        Some(c) => host_port(c).to_string(),
        None => format!("{lhost}:{}", lport.wrapping_add(1)),
    };
    let (_, cport) = split_port(&cluster)
        .ok_or_else(|| storage_err(format!("cluster_addr {cluster:?} has no port")))?;
    Ok((api, cluster, format!("{lhost}:{cport}")))
}

/// Open the raft storage of `cfg` (which must be `storage "raft"`) and start its node.
pub async fn start(cfg: &ServerConfig) -> Result<Arc<RaftStorage>, ServerError> {
    let StorageConfig::Raft { path, node_id, .. } = &cfg.storage else {
        return Err(storage_err("not a raft storage config".into()));
    };
    let pre_raft = crate::storage::raft::migrate::is_pre_raft(path);
    crate::storage::raft::prepare_dir(path)?;
    let name = node_name(path, node_id.as_deref())?;
    let (api_addr, cluster_addr, bind) = addresses(cfg)?;
    let listener =
        tokio::net::TcpListener::bind(&bind)
            .await
            .map_err(|e| ServerError::Listener {
                addr: bind.clone(),
                msg: format!("cluster listener: {e}"),
            })?;
    tracing::info!(node_id = %name, %cluster_addr, %api_addr, "raft node starting");
    let opts = RaftOptions {
        dir: path.clone(),
        name,
        cluster_addr,
        api_addr,
        tls: None,
        insecure_plain_transport: false,
        timing: Timing::default(),
    };
    let r = RaftStorage::start(opts, listener).await?;
    if pre_raft {
        r.migrate_pre_raft().await?;
    }
    // a node starts sealed: it stands for no election until unsealed (a sealed leader
    // could serve nothing); `sys/init` on a new node still elects it (raft initialize)
    endpoints::sealed(&r);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_from_the_listener() {
        let mut cfg = ServerConfig::parse(
            "storage \"raft\" {\n path = \"/tmp/x\"\n}\n\
             listener \"tcp\" {\n address = \"127.0.0.1:8200\"\n tls_disable = true\n}\n",
        )
        .unwrap();
        let (api, cluster, bind) = addresses(&cfg).unwrap();
        assert_eq!(api, "http://127.0.0.1:8200");
        assert_eq!(cluster, "127.0.0.1:8201");
        assert_eq!(bind, "127.0.0.1:8201");
        cfg.api_addr = Some("http://node1:8200".into());
        cfg.cluster_addr = Some("https://node1:9201".into());
        let (api, cluster, bind) = addresses(&cfg).unwrap();
        assert_eq!(api, "http://node1:8200");
        assert_eq!(cluster, "node1:9201");
        assert_eq!(bind, "127.0.0.1:9201");
    }

    #[test]
    fn node_names_persist() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(node_name(dir.path(), Some("n1")).unwrap(), "n1");
        let a = node_name(dir.path(), None).unwrap();
        assert_eq!(node_name(dir.path(), None).unwrap(), a);
        assert_eq!(a.len(), 36);
    }
}
