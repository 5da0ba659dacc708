//! Direct connections to cluster nodes, one multiplexed connection per node.
//!
//! Units go straight to the master our own slot map names (see [`super::health`]), not through
//! redis-rs's cluster connection: that connection repairs its slot map in one driver task, and
//! while a node is dead it can hold requests for *every* node for seconds — a dead shard would
//! then cost healthy slots their retry budget. With a connection per node, a dead node only
//! fails its own units; `MOVED`/`ASK` are followed here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    RedisError, RedisResult,
};

use super::replication::ReplicationBarrier;
use super::{FailureKind, StoreError, StoreSettings};

/// One node's connection, made on first use and dropped after a connection error. The
/// connection itself sits behind a plain mutex (held only to clone or clear it, so every unit
/// gets it without waiting and [`Nodes::forget`] always takes effect); connecting is serialized
/// by its own async mutex, so a node is dialled once at a time.
#[derive(Default)]
struct Slot {
    connection: Mutex<Option<NodeConnection>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Slot {
    fn current(&self) -> Option<NodeConnection> {
        self.connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A node's connection and the `WAIT` rounds sent on it (a new connection, new rounds).
#[derive(Clone)]
pub struct NodeConnection {
    /// The multiplexed connection.
    pub connection: MultiplexedConnection,
    /// Coalesces the units' `WAIT`s on this connection.
    pub replication: Arc<ReplicationBarrier>,
}

/// Connections to cluster nodes by `host:port`.
pub struct Nodes {
    template: ConnectionInfo,
    seeds: Vec<Arc<str>>,
    config: AsyncConnectionConfig,
    connections: Mutex<HashMap<Arc<str>, Arc<Slot>>>,
}

impl Nodes {
    /// Connections made like the first seed node's URL (scheme, credentials), with the
    /// settings' timeouts.
    pub fn new(settings: &StoreSettings) -> Result<Nodes, StoreError> {
        let seed = settings
            .nodes
            .first()
            .ok_or_else(|| StoreError::new(FailureKind::Other, "no Redis seed nodes"))?;
        let mut template = seed
            .as_str()
            .into_connection_info()
            .map_err(StoreError::from)?;
        let mut redis = template.redis_settings().clone();
        if let Some(username) = &settings.username {
            redis = redis.set_username(username);
        }
        if let Some(password) = &settings.password {
            redis = redis.set_password(password);
        }
        template = template.set_redis_settings(redis);
        // A private CA and client certificate ride along in the template's TLS parameters, so
        // every node's connection verifies and presents them.
        super::tls::install_crypto_provider();
        if matches!(template.addr(), ConnectionAddr::TcpTls { .. })
            && let Some(certificates) = settings.tls.certificates()?
        {
            template = Client::build_with_tls(template, certificates)
                .map_err(StoreError::from)?
                .get_connection_info()
                .clone();
        }
        let seeds = settings
            .nodes
            .iter()
            .filter_map(
                |url| match url.as_str().into_connection_info().ok()?.addr() {
                    ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                        Some(Arc::from(format!("{host}:{port}")))
                    }
                    _ => None,
                },
            )
            .collect();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.response_timeout));
        Ok(Nodes {
            template,
            seeds,
            config,
            connections: Mutex::new(HashMap::new()),
        })
    }

    /// The connection to `node` (`host:port`), connecting if needed.
    pub async fn connection(&self, node: &Arc<str>) -> Result<MultiplexedConnection, StoreError> {
        Ok(self.node_connection(node).await?.connection)
    }

    /// The connection to `node` with its `WAIT` rounds, connecting if needed.
    pub async fn node_connection(&self, node: &Arc<str>) -> Result<NodeConnection, StoreError> {
        let slot = self.slot(node);
        if let Some(connection) = slot.current() {
            return Ok(connection);
        }
        let _connecting = slot.connecting.lock().await;
        // Someone else may have connected while this task waited.
        if let Some(connection) = slot.current() {
            return Ok(connection);
        }
        let connection = NodeConnection {
            connection: self.dial(node).await.map_err(StoreError::from)?,
            replication: Arc::default(),
        };
        *slot.connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(connection.clone());
        Ok(connection)
    }

    /// Drops `node`'s connection (after a connection error or timeout): the next use reconnects.
    pub fn forget(&self, node: &str) {
        let slot = self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .cloned();
        if let Some(slot) = slot {
            *slot.connection.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    fn slot(&self, node: &Arc<str>) -> Arc<Slot> {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(connections.entry(Arc::clone(node)).or_default())
    }

    /// The seed nodes as `host:port` (to find the cluster when no known master answers).
    pub fn seeds(&self) -> Vec<Arc<str>> {
        self.seeds.clone()
    }

    /// A new connection to `node`, with redis-rs's error as it is.
    pub async fn dial(&self, node: &str) -> RedisResult<MultiplexedConnection> {
        self.client(node)?
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }

    fn client(&self, node: &str) -> RedisResult<Client> {
        let (host, port) = node
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "bad node address",
                    node.to_owned(),
                ))
            })?;
        let addr = match self.template.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        Client::open(self.template.clone().set_addr(addr))
    }
}
