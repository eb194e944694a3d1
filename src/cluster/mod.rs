//! The other nodes: who they are and how to reach them (`peers`: PVE's `.members` and each
//! node's certificate on a PVE node, the `peers` setting elsewhere), and a request passed on to
//! one of them as pveproxy passes it (`forward`, over `pin`ned TLS), and PVE's cluster-wide lock
//! (`pve_lock`). PVE's cluster is the membership and the lock; isolib keeps no consensus of its
//! own.

pub mod forward;
pub mod peers;
pub mod pin;
pub mod pve_lock;
