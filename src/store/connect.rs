//! Connecting to the cluster: the cluster client with the store's settings, bounded in time,
//! and a failed start explained (authentication or TLS settings to check).

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, Value};

use super::{FailureKind, Nodes, StoreError, StoreSettings, tls};

/// What to check when the worker cannot connect because of its configuration.
const AUTH_HINT: &str = "check redis.username and redis.password (and the user's ACL on the nodes)";
const TLS_HINT: &str =
    "check redis.tls (ca_file must sign the nodes' certificates; rediss:// nodes need TLS)";

/// The setting to check when `error` is a configuration problem (authentication, TLS), not an
/// outage.
fn config_hint(error: &RedisError) -> Option<&'static str> {
    if FailureKind::of(error) == FailureKind::Auth {
        Some(AUTH_HINT)
    } else if tls::is_tls_failure(error) {
        Some(TLS_HINT)
    } else {
        None
    }
}

/// A failed start, with a hint at the setting to check where the cause is configuration.
///
/// redis-rs's cluster client reports a failed first connection as one I/O error that carries
/// the node's own error only as text, so when the error itself says nothing, one seed node is
/// asked directly (connect and `PING`), which gives the typed error.
async fn start_failure(settings: &StoreSettings, error: RedisError) -> StoreError {
    let found = match config_hint(&error) {
        Some(hint) => Some((FailureKind::of(&error), hint)),
        None => seed_error(settings)
            .await
            .and_then(|direct| Some((FailureKind::of(&direct), config_hint(&direct)?))),
    };
    let error = StoreError::from(error);
    match found {
        Some((kind, hint)) => StoreError::new(
            kind,
            format!("connecting to the cluster: {} ({hint})", error.message),
        ),
        None => error,
    }
}

/// The error of a fresh connection and `PING` to the first seed node, if it fails in time.
async fn seed_error(settings: &StoreSettings) -> Option<RedisError> {
    let nodes = Nodes::new(settings).ok()?;
    let seed = nodes.seeds().into_iter().next()?;
    let probe = async {
        let mut connection = nodes.dial(&seed).await?;
        redis::cmd("PING")
            .query_async::<Value>(&mut connection)
            .await
            .map(drop)
    };
    let bound = settings.connect_timeout + settings.response_timeout;
    tokio::time::timeout(bound, probe).await.ok()?.err()
}

/// A cluster connection with the store's settings (credentials, TLS files, timeouts, few
/// client-side retries), bounded in time: for the store and for tools that read the cluster.
pub async fn connect_cluster(settings: &StoreSettings) -> Result<ClusterConnection, StoreError> {
    let mut builder = ClusterClientBuilder::new(settings.nodes.clone())
        // The client's own retries only follow redirects and ride over blips; the budget
        // and backoff are ours (the default of 16 retries would hide failures).
        .retries(2)
        .min_retry_wait(10)
        .max_retry_wait(200)
        // Stop background reconnects to a dead node after a few tries; it returns to the
        // map with the next topology refresh.
        .max_connection_attempts(std::num::NonZeroUsize::new(3).expect("3 > 0"))
        .connection_timeout(settings.connect_timeout)
        .response_timeout(settings.response_timeout);
    if let Some(username) = &settings.username {
        builder = builder.username(username);
    }
    if let Some(password) = &settings.password {
        builder = builder.password(password);
    }
    tls::install_crypto_provider();
    if let Some(certificates) = settings.tls.certificates()? {
        builder = builder.certs(certificates);
    }
    let client = match builder.build() {
        Ok(client) => client,
        Err(error) => return Err(start_failure(settings, error).await),
    };
    let connecting = tokio::time::timeout(
        settings.connect_timeout * 4 + settings.response_timeout,
        client.get_async_connection(),
    )
    .await
    .map_err(|_| StoreError::new(FailureKind::Timeout, "connecting to the cluster timed out"))?;
    match connecting {
        Ok(connection) => Ok(connection),
        Err(error) => Err(start_failure(settings, error).await),
    }
}
