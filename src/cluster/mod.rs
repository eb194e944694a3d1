//! The other nodes: who they are and how to reach them (`peers`: PVE's `.members` and each
//! node's certificate on a PVE node, the `peers` setting elsewhere), and a request passed on to
//! one of them as pveproxy passes it (`forward`). PVE's cluster is the membership; isolib keeps
//! no consensus of its own.

pub mod forward;
pub mod peers;
pub mod pin;
