//! isolib's integration tests, one binary with a module per theme (as ripgrep's
//! `tests/tests.rs`), so `tests/util` compiles once. Each module runs the real `isolib`
//! binary against origins of its own.

mod util;

mod behaviour;
mod cli;
mod cli_client;
mod crash;
mod go_client;
mod inflight;
mod limits;
mod local_socket;
mod network;
mod node_mode;
mod resume;
mod resume_edges;
mod retention;
mod schema;
mod staging;
mod tickets;
mod url_policy;
