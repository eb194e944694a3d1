//! PVE's grammars and the Perl semantics its code relies on, each written once: identifiers
//! (storage IDs, node names, volume IDs), content types and compressions, `split_list`, Perl's
//! truth, white space and `$!`, and `run_command`'s way of running a program and reporting its
//! end. `api`, `storage`, `auth`, `download` and `client` take them from here, so a value is
//! valid in the API exactly when it is valid in a config file.

pub mod content;
pub mod ids;
pub mod perl;
pub mod perl_serde;
pub mod run_command;
