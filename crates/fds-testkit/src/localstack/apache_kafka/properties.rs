//! Each node's `server.properties` (KRaft combined mode, the test-speed settings of the module
//! docs, listeners, TLS key store), and the cluster id the storage is formatted with.

use std::path::Path;

use super::broker::{self, BrokerNode};
use super::{ApacheKafka, BrokerTls, INTERNAL_TOPIC_PARTITIONS, jars, listeners};
use crate::localstack::{LocalStackError, Result};

impl ApacheKafka {
    pub(super) fn min_insync_replicas(&self) -> i32 {
        self.broker_count().min(2)
    }

    pub(super) fn write_configs(&self) -> Result<()> {
        let nodes = self.lock_nodes();
        let voters = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        for n in nodes.iter() {
            std::fs::create_dir_all(n.dir.join("data"))
                .map_err(|e| LocalStackError::io(format!("creating {}", n.dir.display()), e))?;
            n.write_log4j()?;
            if let Some(tls) = &self.opts.tls {
                let keystore = keystore_pem(tls)?;
                broker::write(&n.keystore_file(), &keystore)?;
            }
            let lines = self.server_properties(n, &voters);
            broker::write(&n.properties_file(), &broker::properties_text(&lines))?;
        }
        Ok(())
    }

    pub(super) fn server_properties(&self, n: &BrokerNode, voters: &str) -> Vec<(String, String)> {
        let count = self.broker_count();
        let min_isr = self.min_insync_replicas();
        let mut listeners = vec![
            format!("PLAINTEXT://127.0.0.1:{}", n.port),
            format!("CONTROLLER://127.0.0.1:{}", n.controller_port),
        ];
        let mut advertised = vec![format!("PLAINTEXT://127.0.0.1:{}", n.port)];
        let mut protocols = vec![
            "PLAINTEXT:PLAINTEXT".to_owned(),
            "CONTROLLER:PLAINTEXT".into(),
        ];
        for (listener, (name, port)) in self.opts.listeners.iter().zip(&n.listener_ports) {
            listeners.push(format!("{name}://127.0.0.1:{port}"));
            advertised.push(format!("{name}://127.0.0.1:{port}"));
            protocols.push(format!("{name}:{}", listener.security.protocol()));
        }
        let kv = |k: &str, v: String| (k.to_owned(), v);
        let mut lines = vec![
            kv("process.roles", "broker,controller".into()),
            kv("node.id", n.id.to_string()),
            kv("controller.quorum.voters", voters.to_owned()),
            kv("listeners", listeners.join(",")),
            kv("advertised.listeners", advertised.join(",")),
            kv("listener.security.protocol.map", protocols.join(",")),
            kv("controller.listener.names", "CONTROLLER".into()),
            kv("inter.broker.listener.name", "PLAINTEXT".into()),
            kv("log.dirs", n.dir.join("data").display().to_string()),
            kv("num.network.threads", "2".into()),
            kv("num.io.threads", "4".into()),
            kv("num.partitions", "1".into()),
            kv("default.replication.factor", count.to_string()),
            kv("min.insync.replicas", min_isr.to_string()),
            kv("offsets.topic.replication.factor", count.to_string()),
            kv(
                "offsets.topic.num.partitions",
                INTERNAL_TOPIC_PARTITIONS.to_string(),
            ),
            kv(
                "transaction.state.log.replication.factor",
                count.to_string(),
            ),
            kv("transaction.state.log.min.isr", min_isr.to_string()),
            kv(
                "transaction.state.log.num.partitions",
                INTERNAL_TOPIC_PARTITIONS.to_string(),
            ),
            kv(
                "share.coordinator.state.topic.replication.factor",
                count.to_string(),
            ),
            kv("share.coordinator.state.topic.min.isr", min_isr.to_string()),
            kv("group.initial.rebalance.delay.ms", "0".into()),
            kv("group.min.session.timeout.ms", "1000".into()),
            kv("group.consumer.min.session.timeout.ms", "2000".into()),
            kv("group.consumer.session.timeout.ms", "6000".into()),
            kv("group.consumer.min.heartbeat.interval.ms", "500".into()),
            kv("group.consumer.heartbeat.interval.ms", "1000".into()),
            kv("broker.heartbeat.interval.ms", "500".into()),
            kv("broker.session.timeout.ms", "3000".into()),
            kv("replica.lag.time.max.ms", "5000".into()),
            kv("auto.create.topics.enable", "true".into()),
        ];
        if self.opts.authorizer {
            lines.push(kv(
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
            ));
            lines.push(kv("super.users", "User:ANONYMOUS".into()));
        }
        let keystore = n.keystore_file();
        lines.extend(listeners::listener_properties(
            &self.opts.listeners,
            &self.opts.users,
            self.opts.tls.as_ref().map(|tls| (tls, keystore.as_path())),
        ));
        lines.extend(self.opts.extra_properties.iter().cloned());
        lines
    }

    pub(super) fn random_cluster_id(&self) -> Result<String> {
        let output = std::process::Command::new(jars::java()?)
            .arg("-cp")
            .arg(jars::classpath(&self.jar_dir))
            .args(["kafka.tools.StorageTool", "random-uuid"])
            .output()
            .map_err(|e| LocalStackError::io("running StorageTool random-uuid", e))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        // The id is the last line (slf4j may print warnings before it).
        let id = stdout.lines().last().unwrap_or("").trim().to_owned();
        if !output.status.success() || id.len() != 22 {
            return Err(LocalStackError::Command {
                command: "StorageTool random-uuid".into(),
                status: output.status.to_string(),
                output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
            });
        }
        Ok(id)
    }
}

/// Kafka's PEM key store: the private key followed by the certificate chain, in one file.
fn keystore_pem(tls: &BrokerTls) -> Result<String> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|e| LocalStackError::io(format!("reading {}", path.display()), e))
    };
    Ok(format!(
        "{}\n{}",
        read(&tls.key_file)?,
        read(&tls.cert_file)?
    ))
}
