//! isolib: a node-local daemon that fetches OS images into storage directories and speaks the
//! Proxmox VE REST API for `download-url` and everything around it.
//!
//! # Layout
//!
//! A request flows down this list and never back up:
//!
//! - [`http`]: actix glue. `dispatch` runs PVE's order (URI, auth, route, params, permission,
//!   node, validation, handler); `format` alone knows envelopes, reason phrases and headers.
//! - [`auth`]: API tokens, tickets and CSRF tokens, passwords (shadow.cfg, PAM), users, groups,
//!   roles and ACLs in PVE's own file formats.
//! - [`api`]: one declaration per endpoint (schema + access + handler), grouped by path.
//! - [`schema`]: the parameter-schema engine with PVE's validation texts.
//! - [`storage`]: storage.cfg, the PVE directory layout, content listing and volume ids.
//! - [`tasks`]: UPIDs, task logs, the registry that runs, stops and lists tasks.
//! - [`library`]: the work over the catalog: verification, the background upkeep (adoption,
//!   scheduled verification), uploads and local files (`intake`, `add`), the inventory.
//! - [`upstream`]: what distributions publish beside images: checksum files, their OpenPGP
//!   signatures, PVE's appliance index.
//! - [`download`]: the engine: fetch, one pass of hash + decompress + write, content check,
//!   fsync and atomic publication. It knows neither actix nor the API.
//! - [`catalog`]: a volume's record (sha256, provenance, ISO and OS facts), kept beside it, and
//!   the facts read from the bytes as any writer streams them.
//! - [`pve`]: PVE's grammars (IDs, content types, compressions) and the Perl semantics PVE
//!   relies on, each once; every module above takes them from here.
//! - [`config`], [`state`], [`file_cache`]: settings and the shared handle; [`fsutil`]: the one
//!   way files are replaced (temp, fsync, rename, fsync dir).
//! - [`redact`]: credentials in URLs are masked in every text the daemon shows.
//!
//! Around it:
//!
//! - [`daemon`]: start-up, background loops and listeners of `isolib serve`.
//! - [`cli`]: the `isolib` command line; `cli::remote` holds `download`, `ls`, `tasks`, `rm`,
//!   `show`, `verify` and `inventory`, a client of a running daemon over its Unix socket or
//!   HTTPS; `add` works on the storage itself.

pub mod api;
pub mod auth;
pub mod boot;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod download;
pub mod file_cache;
pub mod fsutil;
pub mod http;
pub mod library;
pub mod pve;
pub mod redact;
pub mod schema;
pub mod state;
pub mod storage;
pub mod tasks;
pub mod upstream;
