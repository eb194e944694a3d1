//! Caps on open TCP connections, in all and per client address, so that many idle or slow
//! connections from one client cannot use up the daemon's file descriptors and keep everyone
//! else waiting. A connection over a cap is shut down as soon as it is accepted; the others
//! count until they close. The local socket is not counted: only root and the daemon's own
//! user get anything there.

use std::any::Any;
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use actix_tls::accept::openssl::TlsStream;
use actix_web::dev::Extensions;

use crate::config::ClientLimits;

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The shared counts, one for the whole server (every worker thread).
#[derive(Debug, Clone)]
pub struct ConnLimits {
    limits: ClientLimits,
    counts: Arc<Mutex<Counts>>,
}

/// Held in a connection's extensions, which actix drops when the connection ends.
pub struct Counted {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_address.remove(&self.ip);
            }
        }
    }
}

impl ConnLimits {
    pub fn new(limits: ClientLimits) -> ConnLimits {
        ConnLimits {
            limits,
            counts: Arc::default(),
        }
    }

    /// Counts a new connection, or shuts it down when it is over a cap.
    pub fn on_connect(&self, io: &dyn Any, ext: &mut Extensions) {
        let Some((ip, fd)) = tcp_peer(io) else {
            return;
        };
        match self.admit(ip) {
            Ok(counted) => {
                ext.insert(counted);
            }
            Err(which) => {
                tracing::warn!("closing connection from {ip}: {which} reached");
                // The dispatcher then reads end of file and drops the connection at once.
                let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
            }
        }
    }

    /// Counts a connection from `ip`, or names the cap it is over.
    pub fn admit(&self, ip: IpAddr) -> Result<Counted, &'static str> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.total >= self.limits.max_connections {
            return Err("max-connections");
        }
        let mine = c.per_address.entry(ip).or_default();
        if *mine >= self.limits.max_per_address {
            return Err("max-connections-per-address");
        }
        *mine += 1;
        c.total += 1;
        Ok(Counted {
            counts: self.counts.clone(),
            ip,
        })
    }
}

/// The peer address and descriptor of a TCP connection, plain or TLS.
fn tcp_peer(io: &dyn Any) -> Option<(IpAddr, std::os::fd::RawFd)> {
    let tcp = io.downcast_ref::<tokio::net::TcpStream>().or_else(|| {
        io.downcast_ref::<TlsStream<tokio::net::TcpStream>>()
            .map(|s| s.get_ref())
    })?;
    Some((tcp.peer_addr().ok()?.ip(), tcp.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn caps_per_address_and_in_total_and_frees_on_drop() {
        let limits = ConnLimits::new(ClientLimits {
            timeout: Duration::from_secs(1),
            max_connections: 3,
            max_per_address: 2,
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = limits.admit(a).expect("first");
        let _a2 = limits.admit(a).expect("second");
        assert_eq!(limits.admit(a).err(), Some("max-connections-per-address"));
        let _b1 = limits.admit(b).expect("another address");
        assert_eq!(limits.admit(b).err(), Some("max-connections"));
        drop(a1);
        assert!(
            limits.admit(a).is_ok(),
            "a closed connection frees its place"
        );
    }
}
