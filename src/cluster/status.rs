//! `tenantry cluster status`: the stream, the live nodes and who owns each tenant, read from the
//! stream's state and the lease bucket (what every node sees; no node is asked).

use futures_util::TryStreamExt;
use serde::Serialize;

use super::lease::bucket_name;
use crate::events::log::Replica;

/// What the cluster looks like now.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub stream: StreamStatus,
    /// Nodes with a live heartbeat, by name.
    pub nodes: Vec<NodeStatus>,
    /// Every tenant of the config, by name, with its owner (`None`: no lease right now).
    pub tenants: Vec<TenantOwner>,
}

#[derive(Debug, Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub replicas: usize,
    /// The nats-server leading the stream (`None` on a single server).
    pub leader: Option<String>,
    /// Replicas that are current, of the followers.
    pub followers_current: usize,
    pub followers: usize,
    pub records: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub node: String,
    /// Unix ms of its last heartbeat.
    pub heartbeat_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct TenantOwner {
    pub tenant: String,
    pub owner: Option<String>,
}

/// Reads the status of the stream of `replica` and its lease bucket, for `tenants`.
pub fn status(replica: &Replica, tenants: &[String]) -> Result<ClusterStatus, String> {
    let js = replica.jetstream();
    let name = replica.stream_name().to_owned();
    replica.block_on(async {
        let mut stream = js
            .get_stream(&name)
            .await
            .map_err(|e| format!("stream {name}: {e}"))?;
        let info = stream
            .info()
            .await
            .map_err(|e| format!("stream {name}: {e}"))?;
        let cluster = info.cluster.clone();
        let followers = cluster.as_ref().map_or(0, |c| c.replicas.len());
        let followers_current = cluster
            .as_ref()
            .map_or(0, |c| c.replicas.iter().filter(|p| p.current).count());
        let stream_status = StreamStatus {
            name: name.clone(),
            replicas: info.config.num_replicas,
            leader: cluster.and_then(|c| c.leader),
            followers_current,
            followers,
            records: info.state.messages,
            bytes: info.state.bytes,
        };
        let bucket = bucket_name(&name);
        let kv = js
            .get_key_value(&bucket)
            .await
            .map_err(|e| format!("lease bucket {bucket}: {e} (has a node started?)"))?;
        let keys: Vec<String> = kv
            .keys()
            .await
            .map_err(|e| format!("lease bucket {bucket}: {e}"))?
            .try_collect()
            .await
            .map_err(|e| format!("lease bucket {bucket}: {e}"))?;
        let mut nodes = Vec::new();
        for key in keys.iter().filter(|k| k.starts_with("node.")) {
            if let Ok(Some(value)) = kv.get(key.as_str()).await {
                let heartbeat_ms = String::from_utf8_lossy(&value).parse().unwrap_or(0);
                let node = key.trim_start_matches("node.").to_owned();
                nodes.push(NodeStatus { node, heartbeat_ms });
            }
        }
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        let mut owners = Vec::new();
        for tenant in tenants {
            let owner = kv
                .get(format!("tenant.{tenant}"))
                .await
                .map_err(|e| format!("lease bucket {bucket}: {e}"))?
                .map(|v| String::from_utf8_lossy(&v).into_owned());
            owners.push(TenantOwner {
                tenant: tenant.clone(),
                owner,
            });
        }
        Ok(ClusterStatus {
            stream: stream_status,
            nodes,
            tenants: owners,
        })
    })
}
