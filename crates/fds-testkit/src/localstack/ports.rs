//! Loopback port reservation for Redis nodes: a client port `P` and its cluster bus port
//! `P + 10000`, safe against other threads and other processes using this module.
//!
//! Between processes the reservation is an exclusive `flock` on `<tmp>/fds-localstack-ports/<P>`
//! held for the lease's lifetime (the kernel drops it when the process dies, so a crashed test
//! leaves nothing locked). Because `flock` locks belong to an open file description, two leases
//! in one process conflict as well. A bind test then catches ports held by unrelated programs;
//! what slips through the gap between the bind test and `redis-server`'s own bind is caught by
//! the caller, which retries with another lease when a node logs "Address already in use".

use std::fs::{File, OpenOptions, TryLockError};
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;

use super::{LocalStackError, Result};

/// Redis puts the cluster bus at the client port plus this.
pub(crate) const BUS_OFFSET: u16 = 10_000;

// Client ports 12000..=22767 put bus ports at 22000..=32767: all below Linux's default ephemeral
// range (32768..=60999), so the kernel never hands them to an outgoing connection in between.
const FIRST_PORT: u16 = 12_000;
const LAST_PORT: u16 = 22_767;
const ATTEMPTS: u32 = 1_000;

/// A reserved port pair; released on drop.
#[derive(Debug)]
pub(crate) struct PortLease {
    port: u16,
    _locks: [File; 2],
}

impl PortLease {
    /// The client port `P` (the bus is `P + 10000`).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

/// Reserves a random free pair `(P, P + 10000)` on 127.0.0.1.
pub(crate) fn reserve_port_pair() -> Result<PortLease> {
    let dir = lock_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| LocalStackError::io(format!("creating {}", dir.display()), e))?;
    for _ in 0..ATTEMPTS {
        let port = rand::random_range(FIRST_PORT..=LAST_PORT);
        let Some(client_lock) = try_lock(&dir, port)? else {
            continue;
        };
        let Some(bus_lock) = try_lock(&dir, port + BUS_OFFSET)? else {
            continue;
        };
        if bindable(port) && bindable(port + BUS_OFFSET) {
            return Ok(PortLease {
                port,
                _locks: [client_lock, bus_lock],
            });
        }
    }
    Err(LocalStackError::NoFreePorts { attempts: ATTEMPTS })
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("fds-localstack-ports")
}

fn try_lock(dir: &std::path::Path, port: u16) -> Result<Option<File>> {
    let path = dir.join(port.to_string());
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LocalStackError::io(format!("opening lock file {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(LocalStackError::io(
            format!("locking {}", path.display()),
            e,
        )),
    }
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_in_one_process_never_share_a_port() {
        let leases: Vec<PortLease> = (0..50).map(|_| reserve_port_pair().unwrap()).collect();
        let mut ports: Vec<u16> = leases
            .iter()
            .flat_map(|l| [l.port(), l.port() + BUS_OFFSET])
            .collect();
        ports.sort_unstable();
        let before = ports.len();
        ports.dedup();
        assert_eq!(ports.len(), before);
    }

    #[test]
    fn a_dropped_lease_frees_its_lock() {
        let lease = reserve_port_pair().unwrap();
        let port = lease.port();
        drop(lease);
        assert!(try_lock(&lock_dir(), port).unwrap().is_some());
    }
}
