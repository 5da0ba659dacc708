//! `CLUSTER SHARDS` (Redis ≥ 7): the shards, their slot ranges and nodes, as one node sees
//! them. RESP2 (flat key/value arrays) and RESP3 (maps) alike.

use redis::Value;

use super::Role;
use crate::slot::Slot;

/// One node of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardNode {
    /// The node's 40-character id.
    pub id: String,
    /// The preferred endpoint (IP or hostname); empty or `?` when the node does not know it.
    pub endpoint: String,
    /// The node's IP (fallback for an unknown endpoint); may be empty.
    pub ip: String,
    /// Plain-text client port, if enabled.
    pub port: Option<u16>,
    /// TLS client port, if enabled.
    pub tls_port: Option<u16>,
    /// Master or replica.
    pub role: Role,
    /// `online`, `failed` or `loading` (a replica that has not synced yet).
    pub health: String,
}

impl ShardNode {
    /// `host:port` to reach the node (TLS port when `tls`), or `None` when the host is
    /// unknown to the answering node.
    pub fn address(&self, tls: bool) -> Option<String> {
        let host = [&self.endpoint, &self.ip]
            .into_iter()
            .find(|h| !h.is_empty() && h.as_str() != "?")?;
        let port = if tls {
            self.tls_port.or(self.port)
        } else {
            self.port.or(self.tls_port)
        }?;
        Some(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    }
}

/// One shard: a master's slot ranges and the nodes (master and replicas) serving them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shard {
    /// Inclusive slot ranges.
    pub slots: Vec<(Slot, Slot)>,
    /// The master and its replicas.
    pub nodes: Vec<ShardNode>,
}

/// Parses a `CLUSTER SHARDS` reply.
pub fn parse_shards(reply: &Value) -> Result<Vec<Shard>, String> {
    let Value::Array(shards) = reply else {
        return Err(format!("CLUSTER SHARDS: expected an array, got {reply:?}"));
    };
    shards.iter().map(parse_shard).collect()
}

fn parse_shard(value: &Value) -> Result<Shard, String> {
    let mut shard = Shard::default();
    for (key, value) in pairs(value)? {
        match key.as_str() {
            "slots" => {
                let Value::Array(bounds) = value else {
                    return Err(format!("shard slots: expected an array, got {value:?}"));
                };
                let bounds: Vec<i64> = bounds.iter().filter_map(int).collect();
                for pair in bounds.chunks_exact(2) {
                    let valid = |n: i64| Slot::try_from(n).map_err(|_| format!("bad slot {n}"));
                    shard.slots.push((valid(pair[0])?, valid(pair[1])?));
                }
            }
            "nodes" => {
                let Value::Array(nodes) = value else {
                    return Err(format!("shard nodes: expected an array, got {value:?}"));
                };
                shard.nodes = nodes.iter().map(parse_node).collect::<Result<_, _>>()?;
            }
            _ => {}
        }
    }
    Ok(shard)
}

fn parse_node(value: &Value) -> Result<ShardNode, String> {
    let mut node = ShardNode {
        id: String::new(),
        endpoint: String::new(),
        ip: String::new(),
        port: None,
        tls_port: None,
        role: Role::Master,
        health: String::new(),
    };
    let port = |v: &Value| int(v).and_then(|n| u16::try_from(n).ok());
    for (key, value) in pairs(value)? {
        match key.as_str() {
            "id" => node.id = text(value).unwrap_or_default(),
            "endpoint" => node.endpoint = text(value).unwrap_or_default(),
            "ip" => node.ip = text(value).unwrap_or_default(),
            "port" => node.port = port(value),
            "tls-port" => node.tls_port = port(value),
            "role" => {
                node.role = text(value)
                    .and_then(|name| Role::from_name(&name))
                    .unwrap_or(Role::Master)
            }
            // Redis 7.0 says `fail`, later versions `failed`.
            "health" => {
                node.health = match text(value).unwrap_or_default().as_str() {
                    "fail" => "failed".to_owned(),
                    other => other.to_owned(),
                }
            }
            _ => {}
        }
    }
    if node.id.is_empty() {
        return Err("shard node without an id".into());
    }
    Ok(node)
}

/// Key/value pairs of a RESP3 map or a RESP2 flat array `[k1, v1, k2, v2, …]`.
fn pairs(value: &Value) -> Result<Vec<(String, &Value)>, String> {
    match value {
        Value::Map(entries) => Ok(entries
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v)))
            .collect()),
        Value::Array(items) => Ok(items
            .chunks_exact(2)
            .filter_map(|kv| Some((text(&kv[0])?, &kv[1])))
            .collect()),
        other => Err(format!("expected a map, got {other:?}")),
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn node(id: &str, port: i64, role: &str, health: &str) -> Value {
        Value::Array(vec![
            bulk("id"),
            bulk(id),
            bulk("port"),
            Value::Int(port),
            bulk("ip"),
            bulk("127.0.0.1"),
            bulk("endpoint"),
            bulk("127.0.0.1"),
            bulk("role"),
            bulk(role),
            bulk("replication-offset"),
            Value::Int(42),
            bulk("health"),
            bulk(health),
        ])
    }

    #[test]
    fn parses_a_resp2_reply() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("slots"),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Int(7000),
                Value::Int(7001),
            ]),
            bulk("nodes"),
            Value::Array(vec![
                node("a", 7000, "master", "online"),
                node("b", 7003, "replica", "fail"),
            ]),
        ])]);
        let shards = parse_shards(&reply).unwrap();
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0].slots, [(0, 5460), (7000, 7001)]);
        assert_eq!(shards[0].nodes[0].role, Role::Master);
        assert_eq!(shards[0].nodes[1].role, Role::Replica);
        assert_eq!(shards[0].nodes[1].health, "failed");
        assert_eq!(
            shards[0].nodes[0].address(false).as_deref(),
            Some("127.0.0.1:7000")
        );
    }

    #[test]
    fn parses_a_resp3_map_and_picks_ports_and_hosts() {
        let map = Value::Map(vec![
            (bulk("id"), bulk("x")),
            (bulk("ip"), bulk("::1")),
            (bulk("endpoint"), bulk("?")),
            (bulk("port"), Value::Int(6379)),
            (bulk("tls-port"), Value::Int(6380)),
            (bulk("role"), bulk("master")),
            (bulk("health"), bulk("online")),
        ]);
        let shard = Value::Map(vec![
            (bulk("slots"), Value::Array(vec![])),
            (bulk("nodes"), Value::Array(vec![map])),
        ]);
        let shards = parse_shards(&Value::Array(vec![shard])).unwrap();
        let n = &shards[0].nodes[0];
        assert_eq!(n.address(false).as_deref(), Some("[::1]:6379"));
        assert_eq!(n.address(true).as_deref(), Some("[::1]:6380"));
    }

    #[test]
    fn unknown_hosts_have_no_address_and_garbage_is_an_error() {
        let n = parse_node(&node("a", 7000, "master", "online")).unwrap();
        let unknown = ShardNode {
            endpoint: String::new(),
            ip: String::new(),
            ..n
        };
        assert_eq!(unknown.address(false), None);
        assert!(parse_shards(&Value::Int(1)).is_err());
        assert!(
            parse_shards(&Value::Array(vec![Value::Array(vec![
                bulk("nodes"),
                Value::Array(vec![Value::Array(vec![bulk("port"), Value::Int(1)])])
            ])]))
            .is_err()
        );
    }
}
