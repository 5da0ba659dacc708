//! A network partition between some processes and some loopback ports, made with nftables:
//! a table of its own whose `output` chain drops every TCP packet that a process of one uid
//! sends to a port in a set. Cutting a Redis node's client port this way partitions the
//! processes of that uid (the soak's workers) from the node while the cluster itself — its
//! gossip on the bus port, its replication, the harness's own connections (another uid) —
//! sees nothing wrong: the node stays master and keeps its slots, exactly the partition a
//! worker must ride out on its retry budget.
//!
//! Dropping (not rejecting) is what a real partition looks like: open connections go silent,
//! new ones hang in SYN, and after the heal TCP's retransmissions get through again.
//!
//! Added latency (`tc netem`) is not here: the machines this project is built on have no
//! `sch_netem` in their kernel (`tc qdisc add dev lo root netem delay 1ms` answers "Specified
//! qdisc kind is unknown") and no modules to load.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, Result, bail};

/// The uid the soak's partitioned processes run as: one no account on a Debian machine has,
/// so the cut matches those processes only.
pub const CUT_UID: u32 = 64_999;

const INSTALL: &str = "apt-get install -y nftables";

/// An nftables table that drops what processes of [`NetworkCut::uid`] send to its ports;
/// removed when dropped.
#[derive(Debug)]
pub struct NetworkCut {
    table: String,
    uid: u32,
}

impl NetworkCut {
    /// Creates the table (no port cut yet). Fails, saying why, where nftables cannot be used:
    /// `nft` missing, not root, or a kernel without nf_tables.
    pub fn new(uid: u32) -> Result<NetworkCut> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let table = format!(
            "fds_cut_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let script = format!(
            "table inet {table} {{\n\
             \x20 set ports {{ type inet_service; }}\n\
             \x20 chain output {{\n\
             \x20   type filter hook output priority 0; policy accept;\n\
             \x20   meta skuid {uid} tcp dport @ports drop\n\
             \x20 }}\n\
             }}\n"
        );
        nft(&["-f", "-"], Some(&script))?;
        Ok(NetworkCut { table, uid })
    }

    /// The uid whose packets are cut.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Drops, from now on, what the uid's processes send to `port`.
    pub fn cut(&self, port: u16) -> Result<()> {
        let element = format!("{{ {port} }}");
        nft(
            &["add", "element", "inet", &self.table, "ports", &element],
            None,
        )
    }

    /// Lets the uid's packets to `port` through again.
    pub fn heal(&self, port: u16) -> Result<()> {
        let element = format!("{{ {port} }}");
        nft(
            &["delete", "element", "inet", &self.table, "ports", &element],
            None,
        )
    }
}

impl Drop for NetworkCut {
    fn drop(&mut self) {
        if let Err(e) = nft(&["delete", "table", "inet", &self.table], None) {
            tracing::warn!(table = %self.table, error = %e, "removing the nftables table");
        }
    }
}

/// Runs `nft args`, with `stdin` if given; an error carries nft's own message.
fn nft(args: &[&str], stdin: Option<&str>) -> Result<()> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running nft ({INSTALL})"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::process::CommandExt as _;
    use std::time::Duration;

    /// A process of the cut uid cannot connect to a cut port; root still can, and after the
    /// heal the uid can again. Skipped (with the reason)
    /// where nftables is unusable, except in CI.
    #[test]
    fn cuts_one_uid_from_one_port_and_heals() {
        let cut = match NetworkCut::new(CUT_UID) {
            Ok(cut) => cut,
            // CI installs nftables and runs as root (scripts/deps.sh): there it must work.
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: nftables unusable here: {e:#}");
                return;
            }
            Err(e) => panic!("nftables: {e:#}"),
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // bash's /dev/tcp as the other uid, bounded by `timeout`: exit 0 = connected.
        let connects_as_uid = || {
            Command::new("timeout")
                .args([
                    "2",
                    "bash",
                    "-c",
                    &format!("exec 3<>/dev/tcp/127.0.0.1/{port}"),
                ])
                .uid(CUT_UID)
                .gid(CUT_UID)
                .status()
                .unwrap()
                .success()
        };
        assert!(connects_as_uid(), "before the cut");
        cut.cut(port).unwrap();
        assert!(!connects_as_uid(), "the cut uid is partitioned");
        TcpStream::connect_timeout(&listener.local_addr().unwrap(), Duration::from_secs(2))
            .expect("root still connects");
        cut.heal(port).unwrap();
        assert!(connects_as_uid(), "after the heal");
    }
}
