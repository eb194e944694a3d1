//! The daemon: start-up (state dir, the embedded default, task registry, fetchers, download
//! engine, tickets), the background loops (collection of partial downloads, pruning of task
//! logs) and the listeners. `run` returns when the server stops: on SIGINT or SIGTERM, or when
//! `shutdown` resolves, so tests can run it in-process.

use std::future::Future;
use std::path::PathBuf;

use crate::auth::{self, AuthError, AuthId};
use crate::config::Config;
use crate::download::{self, Engine, FetchConfig, FetchSetupError};
use crate::http::{self, ServeError};
use crate::state::AppState;
use crate::storage::StorageConfig;
use crate::tasks::{TaskError, TaskRegistry};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Keys(#[from] auth::KeyError),
    #[error(transparent)]
    Tasks(#[from] TaskError),
    #[error(transparent)]
    Fetch(#[from] FetchSetupError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("unable to create '{}': {source}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs the daemon on `cfg` until a signal stops it or `shutdown` resolves.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| DaemonError::Create {
        path: cfg.state_dir.clone(),
        source,
    })?;
    bootstrap_embedded(&cfg)?;
    let tasks = TaskRegistry::open(&cfg.state_dir, &cfg.node, cfg.retention.clone())?;
    let fetchers = download::fetchers(
        FetchConfig {
            http_proxy: cfg.http_proxy.clone(),
            ca_file: cfg.ca_file.clone(),
            policy: cfg.url_policy.clone(),
            max_redirects: cfg.max_redirects,
        },
        cfg.datacenter_cfg.clone(),
    );
    // A bad CA file or proxy stops the start instead of every download.
    fetchers.get()?;
    let engine = Engine::new(fetchers, cfg.limits.clone(), &cfg.node, cfg.partials.keep)
        .with_osinfo_dir(cfg.catalog.osinfo_dir.clone());
    // Nothing runs yet: whatever is collectable now goes before the first request.
    match StorageConfig::load_as(&cfg.storage_cfg, cfg.pve_dir.is_some()) {
        Ok(storages) => {
            collect_partials(&engine, &storages, &cfg.node);
            collect_intakes(&storages, &cfg.node, cfg.partials.keep);
        }
        Err(e) => tracing::warn!("not collecting partial downloads: {e}"),
    }
    let tickets = auth::Tickets::new(cfg.login_settings())?;
    let state = AppState::new(cfg, tasks, engine, tickets);
    tokio::spawn(collect_periodically(state.clone()));
    tokio::spawn(prune_periodically(state.clone()));
    tokio::spawn(crate::library::upkeep::run(state.clone()));
    tokio::spawn(crate::upstream::aplinfo::run(state.clone()));
    tokio::spawn(crate::upstream::track::poll::run(state.clone()));
    http::serve(state, shutdown).await?;
    Ok(())
}

/// Partial downloads left by a crash are kept for `partial-keep-hours` so that asking again
/// resumes them; this runs the collection of older ones while the daemon runs. The in-flight
/// registry keeps it off whatever a running task owns.
async fn collect_periodically(state: AppState) {
    let every = state.config().partials.collect_every;
    loop {
        tokio::time::sleep(every).await;
        let storages = match state.storage_config() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("not collecting partial downloads: {}", e.message);
                continue;
            }
        };
        let engine = state.engine().clone();
        let node = state.config().node.clone();
        let done = tokio::task::spawn_blocking(move || collect_partials(&engine, &storages, &node));
        if let Err(e) = done.await {
            tracing::warn!("collecting partial downloads failed: {e}");
        }
    }
}

/// Task logs past their retention go on the collection's beat, in a loop of their own (a
/// storage that hangs the collection must not stop them): otherwise only the start and every
/// 64th task prune them, and a quiet daemon would keep logs older than `task-log-days` until
/// its next restart.
async fn prune_periodically(state: AppState) {
    let every = state.config().partials.collect_every;
    loop {
        tokio::time::sleep(every).await;
        let tasks = state.tasks().clone();
        match tokio::task::spawn_blocking(move || tasks.prune()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                tracing::info!("removed {n} task log(s) past task-log-keep or task-log-days")
            }
            Ok(Err(e)) => tracing::warn!("unable to prune old task logs: {e}"),
            Err(e) => tracing::warn!("pruning task logs failed: {e}"),
        }
    }
}

/// One collection over the staging directories of all storages that take downloads. Blocking.
/// Disabled storages and those of other nodes are left alone: nothing of this node downloads to
/// them, and their paths may be mounts that are gone (a stat on a dead NFS share hangs).
fn collect_partials(engine: &Engine, storages: &StorageConfig, node: &str) {
    for s in storages
        .storages
        .iter()
        .filter(|s| s.check_enabled(node).is_ok())
    {
        for dir in s.staging_dirs() {
            match engine.collect_partials(&dir) {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    "removed {n} partial download(s) nobody resumed in storage '{}'",
                    s.id
                ),
                Err(e) => tracing::warn!(
                    "unable to collect partial downloads in storage '{}': {e}",
                    s.id
                ),
            }
        }
    }
}

/// At start, the temp files of uploads a previous run of the daemon received in part (see
/// `library::intake::collect`). Blocking.
fn collect_intakes(storages: &StorageConfig, node: &str, keep: std::time::Duration) {
    for s in storages
        .storages
        .iter()
        .filter(|s| s.check_enabled(node).is_ok())
    {
        for dir in s.staging_dirs() {
            let n = crate::library::intake::collect(&dir, node, keep);
            if n > 0 {
                tracing::info!("removed {n} unfinished upload(s) in storage '{}'", s.id);
            }
        }
    }
}

/// The embedded default: a storage.cfg with `local` under the state dir and, on first start, an
/// admin token whose header value is printed once (its secret stays in the owner-only
/// token.cfg).
fn bootstrap_embedded(cfg: &Config) -> Result<(), DaemonError> {
    if cfg.embedded_storage && !cfg.storage_cfg.exists() {
        std::fs::write(&cfg.storage_cfg, cfg.embedded_storage_cfg()).map_err(|source| {
            DaemonError::Create {
                path: cfg.storage_cfg.clone(),
                source,
            }
        })?;
    }
    if cfg.embedded_access && !cfg.user_cfg.exists() && !cfg.token_cfg.exists() {
        let id = AuthId::embedded_admin_token();
        let secret = auth::add_token(&cfg.user_cfg, &cfg.token_cfg, &id, None, "/", false)?;
        println!("Created API token root@pam!isolib. Use this header (shown only once):");
        println!("Authorization: PVEAPIToken=root@pam!isolib={secret}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    /// In-process, as tests of the whole daemon can run it: it starts, and when the shutdown
    /// future resolves it stops and removes its socket.
    #[tokio::test]
    async fn run_returns_when_shutdown_resolves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = Config::resolve(RawConfig {
            node: Some("n1".into()),
            listen: Some("127.0.0.1:0".into()),
            tls: Some(false),
            state_dir: Some(dir.path().join("state")),
            pve_dir: Some("none".into()),
            ..RawConfig::default()
        })
        .expect("config");
        let socket = cfg.socket.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopper = async {
            while !socket.exists() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let _ = stop.send(());
        };
        let shutdown = async {
            let _ = stopped.await;
        };
        let (result, ()) = tokio::join!(run(cfg, shutdown), stopper);
        assert!(result.is_ok(), "{result:?}");
        assert!(!socket.exists(), "the socket is removed on the way out");
    }
}
