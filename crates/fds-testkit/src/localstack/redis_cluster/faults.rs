//! Fault injection: kill (SIGKILL), pause (SIGSTOP), resume (SIGCONT) and restart a node.

use nix::sys::signal::Signal;

use super::{NODE_READY_TIMEOUT, NotReady, RedisCluster, node, node_start_error};
use crate::localstack::{LocalStackError, Result};

impl RedisCluster {
    /// Kills node `index` with SIGKILL (no shutdown, no AOF flush) and reaps it. Killing a
    /// stopped node does nothing.
    pub fn kill(&self, index: usize) -> Result<()> {
        self.with_node(index, |n| {
            n.kill();
            Ok(())
        })
    }

    /// Freezes node `index` with SIGSTOP: its sockets stay open but nothing answers, like a
    /// long GC pause or a hung host. Past the node timeout its replica takes over.
    pub fn pause(&self, index: usize) -> Result<()> {
        self.with_node(index, |n| {
            let state = n.state();
            let Some(child) = n.child.as_ref().filter(|_| state == "running") else {
                return Err(LocalStackError::node_state(
                    index, state, "pause", "running",
                ));
            };
            node::signal(child.id(), Signal::SIGSTOP)?;
            n.paused = true;
            Ok(())
        })
    }

    /// Lets a paused node go on with SIGCONT. If it was failed over meanwhile, it learns the
    /// newer configuration and becomes a replica of its successor.
    pub fn resume(&self, index: usize) -> Result<()> {
        self.with_node(index, |n| {
            let state = n.state();
            let Some(child) = n.child.as_ref().filter(|_| state == "paused") else {
                return Err(LocalStackError::node_state(
                    index, state, "resume", "paused",
                ));
            };
            node::signal(child.id(), Signal::SIGCONT)?;
            n.paused = false;
            Ok(())
        })
    }

    /// Starts node `index` again from its directory — same port, config, `nodes.conf` and AOF —
    /// so it rejoins the cluster as itself; a running node is killed first. Returns once the
    /// process answers; use [`RedisCluster::wait_for_state_ok`] to wait for it to rejoin.
    pub fn restart(&self, index: usize) -> Result<()> {
        let mut nodes = self.lock_nodes();
        let n = nodes
            .get_mut(index)
            .ok_or(LocalStackError::NoSuchNode(index))?;
        n.kill();
        let mut child = node::spawn(&self.redis_server, &n.conf)?;
        let ready = node::wait_ready(
            &mut child,
            n.port,
            self.access(),
            &n.log(),
            NODE_READY_TIMEOUT,
        );
        n.child = Some(child);
        match ready {
            Ok(()) => Ok(()),
            Err(not_ready) => {
                let reason = match not_ready {
                    NotReady::AddressInUse => "its port was taken by another process".into(),
                    NotReady::Failed(reason) => reason,
                };
                let error = node_start_error(index, n, reason);
                n.kill();
                Err(error)
            }
        }
    }
}
