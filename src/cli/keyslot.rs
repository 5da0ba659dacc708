//! `fds-worker keyslot`: the hash tag and slot of keys, and optionally the node owning each slot.

use anyhow::Context as _;
use clap::Args;
use redis::IntoConnectionInfo as _;
use serde::Serialize;

use super::table;
use crate::config::{Config, RedisConfig, redact_url};
use crate::slot::{Slot, hash_tag, key_slot};
use crate::store::admin;

/// Arguments of `fds-worker keyslot`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  fds-worker keyslot '{u:42}:x' 'vel:{u:42}:60:29000000' foo
  fds-worker keyslot --cluster redis://127.0.0.1:7000 'bl:{ip:10.0.0.1}'
  fds-worker keyslot --json somekey

The slot is CRC16/XMODEM of the hash tag mod 16384, the same as CLUSTER KEYSLOT. The hash tag is
the text between the first `{` and the next `}` if that is not empty; otherwise the whole key is
hashed (shown as `-`). Quote keys in the shell: braces are special to it.")]
pub struct KeyslotArgs {
    /// Keys to look up.
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<String>,
    /// Also show which node owns each slot now, asking this cluster node (`CLUSTER SLOTS`).
    /// Credentials and TLS files come from `[redis]` unless the URL has its own.
    #[arg(long, value_name = "REDIS_URL")]
    pub cluster: Option<String>,
    /// Print one JSON object per key instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One output row.
#[derive(Debug, Serialize)]
struct Row {
    key: String,
    /// `None` when the whole key is hashed.
    hash_tag: Option<String>,
    slot: Slot,
    /// Only with `--cluster`; `"(unassigned)"` for a slot no master serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
}

/// Runs `keyslot`.
pub async fn run(args: KeyslotArgs, config: &Config) -> anyhow::Result<()> {
    let owners = match &args.cluster {
        Some(url) => Some(
            slot_owners(url, &config.redis)
                .await
                .with_context(|| format!("asking {} for its slot map", redact_url(url)))?,
        ),
        None => None,
    };
    let rows: Vec<Row> = args
        .keys
        .iter()
        .map(|key| {
            let bytes = key.as_bytes();
            let tag = hash_tag(bytes);
            let slot = key_slot(bytes);
            Row {
                key: key.clone(),
                hash_tag: (tag.len() != bytes.len()).then(|| String::from_utf8_lossy(tag).into()),
                slot,
                node: owners.as_ref().map(|o| {
                    o.owner(slot)
                        .map_or_else(|| "(unassigned)".to_owned(), str::to_owned)
                }),
            }
        })
        .collect();
    let out = if args.json {
        rows.iter()
            .map(|r| serde_json::to_string(r).map(|line| line + "\n"))
            .collect::<Result<String, _>>()?
    } else {
        table(&rows)
    };
    print!("{out}");
    Ok(())
}

/// An aligned text table: KEY, HASH TAG, SLOT (right-aligned: a number), and NODE when
/// `--cluster` was given.
fn table(rows: &[Row]) -> String {
    let cells = |r: &Row| {
        [
            r.key.clone(),
            r.hash_tag.clone().unwrap_or_else(|| "-".into()),
            r.slot.to_string(),
        ]
    };
    const SLOT: usize = 2;
    if rows.iter().any(|r| r.node.is_some()) {
        let rows = rows.iter().map(|r| {
            let [key, tag, slot] = cells(r);
            [key, tag, slot, r.node.clone().unwrap_or_default()]
        });
        table::render(["KEY", "HASH TAG", "SLOT", "NODE"], rows, &[SLOT])
    } else {
        table::render(["KEY", "HASH TAG", "SLOT"], rows.iter().map(cells), &[SLOT])
    }
}

/// Slot ranges and the master serving each, from `CLUSTER SLOTS`.
#[derive(Debug, Default)]
struct SlotOwners {
    ranges: Vec<(Slot, Slot, String)>,
}

impl SlotOwners {
    fn owner(&self, slot: Slot) -> Option<&str> {
        self.ranges
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, node)| node.as_str())
    }
}

/// Asks one node for the cluster's slot map. A plain (non-cluster) connection: the answer is
/// the node's view, which is what an operator chasing a `MOVED` wants to see.
async fn slot_owners(url: &str, redis: &RedisConfig) -> anyhow::Result<SlotOwners> {
    let info = url
        .into_connection_info()
        .with_context(|| format!("`{}` is not a Redis URL", redact_url(url)))?;
    let host = match info.addr() {
        redis::ConnectionAddr::Tcp(host, _) => host.clone(),
        redis::ConnectionAddr::TcpTls { host, .. } => host.clone(),
        other => anyhow::bail!("{other:?} is not a TCP address"),
    };
    let mut settings = info.redis_settings().clone();
    if settings.password().is_none()
        && let Some(password) = &redis.password
    {
        settings = settings.set_password(password.expose());
        if let Some(username) = &redis.username {
            settings = settings.set_username(username);
        }
    }
    let info = info.set_redis_settings(settings);
    let client = client_for(info, redis)?;
    let connection_config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(redis.connect_timeout))
        .set_response_timeout(Some(redis.response_timeout));
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&connection_config)
        .await
        // The redis error's text already includes its io cause; `context` would repeat it.
        .map_err(|e| anyhow::anyhow!("connecting: {e}"))?;
    let reply: redis::Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut connection)
        .await
        .map_err(|e| anyhow::anyhow!("CLUSTER SLOTS: {e}"))?;
    parse_cluster_slots(&reply, &host)
}

/// A client for `info`, with `[redis.tls]` certificates when the URL is `rediss://`.
fn client_for(info: redis::ConnectionInfo, redis: &RedisConfig) -> anyhow::Result<redis::Client> {
    let is_tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
    let tls = &redis.tls;
    if !is_tls || (tls.ca_file.is_none() && tls.cert_file.is_none()) {
        return Ok(redis::Client::open(info)?);
    }
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    };
    let root_cert = tls.ca_file.as_deref().map(read).transpose()?;
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        _ => None,
    };
    Ok(redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )?)
}

/// The owners in a `CLUSTER SLOTS` reply ([`admin::parse_cluster_slots`]). An empty ip means
/// "the address you reached me on" (Redis docs), so it becomes `asked_host`.
fn parse_cluster_slots(reply: &redis::Value, asked_host: &str) -> anyhow::Result<SlotOwners> {
    let ranges = admin::parse_cluster_slots(reply).map_err(anyhow::Error::msg)?;
    let ranges = ranges
        .into_iter()
        .map(|range| {
            let host = if range.host.is_empty() {
                asked_host
            } else {
                range.host.as_str()
            };
            let node = if host.contains(':') {
                format!("[{host}]:{}", range.port)
            } else {
                format!("{host}:{}", range.port)
            };
            (range.first, range.last, node)
        })
        .collect();
    Ok(SlotOwners { ranges })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_marks_whole_key_hashing() {
        let rows = vec![
            Row {
                key: "{user:42}:x".into(),
                hash_tag: Some("user:42".into()),
                slot: 4859,
                node: None,
            },
            Row {
                key: "foo".into(),
                hash_tag: None,
                slot: 12182,
                node: None,
            },
        ];
        assert_eq!(
            table(&rows),
            "KEY          HASH TAG   SLOT\n\
             {user:42}:x  user:42    4859\n\
             foo          -         12182\n"
        );
    }

    #[test]
    fn cluster_slots_reply_maps_slots_to_masters() {
        use redis::Value::{Array, BulkString, Int};
        let node = |ip: &str, port| {
            Array(vec![
                BulkString(ip.into()),
                Int(port),
                BulkString(b"id".to_vec()),
            ])
        };
        let reply = Array(vec![
            Array(vec![
                Int(0),
                Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Array(vec![Int(5461), Int(16383), node("", 7001)]),
        ]);
        let owners = parse_cluster_slots(&reply, "127.0.0.1").unwrap();
        assert_eq!(owners.owner(0), Some("10.0.0.1:7000"));
        assert_eq!(owners.owner(5460), Some("10.0.0.1:7000"));
        assert_eq!(owners.owner(16383), Some("127.0.0.1:7001"));
        assert_eq!(SlotOwners::default().owner(1), None);
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("redis://u:hunter2@h:7000"),
            "redis://u:***@h:7000"
        );
        assert_eq!(redact_url("redis://h:7000"), "redis://h:7000");
    }
}
