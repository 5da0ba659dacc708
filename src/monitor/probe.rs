//! Asking every node: `CLUSTER MYID`, `CLUSTER INFO`, `CLUSTER SHARDS` and `INFO`, pipelined in
//! one round trip per node, all nodes at once, each bounded by connect + response timeout.
//! Connections are the store's per-node connections ([`Nodes`]: same URL scheme, credentials
//! and timeouts as the worker's writes).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use redis::Value;

use super::snapshot::{ClusterSnapshot, NodeAnswer, NodeReport};
use crate::config::RedisConfig;
use crate::pipeline::store_settings;
use crate::store::admin::{ClusterInfo, NodeInfo, parse_shards};
use crate::store::{Nodes, StoreError, StoreSettings};

/// Polls the cluster. Remembers the nodes the cluster listed, so a node that stops answering
/// is still asked (and reported down) until the cluster forgets it.
pub struct Prober {
    nodes: Nodes,
    tls: bool,
    timeout: Duration,
    known: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .field("known", &self.known)
            .finish_non_exhaustive()
    }
}

impl Prober {
    /// A prober over `settings`' seed nodes, credentials and timeouts.
    pub fn new(settings: &StoreSettings) -> Result<Prober, StoreError> {
        Ok(Prober {
            nodes: Nodes::new(settings)?,
            tls: settings
                .nodes
                .first()
                .is_some_and(|url| url.starts_with("rediss://")),
            timeout: settings.connect_timeout + settings.response_timeout,
            known: Mutex::new(BTreeSet::new()),
        })
    }

    /// A prober from the `[redis]` section.
    pub fn from_config(redis: &RedisConfig) -> Result<Prober, StoreError> {
        Prober::new(&store_settings(redis))
    }

    /// One poll: every seed and known node, then any node their answers name that was not
    /// asked yet.
    pub async fn poll(&self) -> ClusterSnapshot {
        let mut asked: BTreeSet<String> =
            self.nodes.seeds().iter().map(|s| s.to_string()).collect();
        asked.extend(self.known().iter().cloned());
        let mut reports = self.ask_all(&asked).await;
        let mut snapshot = ClusterSnapshot::from_reports(&reports, self.tls);
        let new: BTreeSet<String> = snapshot
            .cluster_addresses()
            .into_iter()
            .filter(|addr| !asked.contains(addr))
            .collect();
        if !new.is_empty() {
            reports.extend(self.ask_all(&new).await);
            snapshot = ClusterSnapshot::from_reports(&reports, self.tls);
        }
        if snapshot.reachable() {
            *self.known.lock().unwrap_or_else(|e| e.into_inner()) =
                snapshot.cluster_addresses().into_iter().collect();
        }
        snapshot
    }

    fn known(&self) -> BTreeSet<String> {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn ask_all(&self, addrs: &BTreeSet<String>) -> Vec<NodeReport> {
        join_all(addrs.iter().map(|addr| async move {
            NodeReport {
                addr: addr.clone(),
                answer: self.ask(addr).await,
            }
        }))
        .await
    }

    async fn ask(&self, addr: &str) -> Result<NodeAnswer, String> {
        let node: Arc<str> = Arc::from(addr);
        let call = async {
            let mut connection = self
                .nodes
                .connection(&node)
                .await
                .map_err(|e| e.to_string())?;
            let mut pipe = redis::pipe();
            pipe.cmd("CLUSTER")
                .arg("MYID")
                .cmd("CLUSTER")
                .arg("INFO")
                .cmd("CLUSTER")
                .arg("SHARDS")
                .cmd("INFO");
            pipe.query_async::<Vec<Value>>(&mut connection)
                .await
                .map_err(|e| e.to_string())
        };
        let replies = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(replies)) => replies,
            Ok(Err(error)) => {
                self.nodes.forget(addr);
                return Err(error);
            }
            Err(_) => {
                self.nodes.forget(addr);
                return Err(format!("no answer within {:?}", self.timeout));
            }
        };
        let [myid, cluster_info, shards, info] = <[Value; 4]>::try_from(replies)
            .map_err(|r| format!("expected 4 replies, got {}", r.len()))?;
        Ok(NodeAnswer {
            myid: text(myid)?,
            cluster_info: ClusterInfo::parse(&text(cluster_info)?),
            shards: parse_shards(&shards)?,
            info: NodeInfo::parse(&text(info)?),
        })
    }
}

fn text(value: Value) -> Result<String, String> {
    match value {
        Value::BulkString(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Value::SimpleString(s) => Ok(s),
        Value::VerbatimString { text, .. } => Ok(text),
        Value::ServerError(e) => Err(e.to_string()),
        other => Err(format!("unexpected reply {other:?}")),
    }
}
