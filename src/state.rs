//! The daemon's shared state: a cheap handle cloned into every request and task.

use std::sync::Arc;

use crate::api::ApiError;
use crate::auth::{AccessConfig, AuthError, Tickets};
use crate::config::Config;
use crate::download::Engine;
use crate::file_cache::FileCache;
use crate::storage::{StorageConfig, StorageError};
use crate::tasks::TaskRegistry;

struct Inner {
    config: Config,
    storage: FileCache<StorageConfig, StorageError>,
    access: FileCache<AccessConfig, AuthError>,
    tasks: TaskRegistry,
    engine: Engine,
    tickets: Arc<Tickets>,
    tracker: crate::upstream::track::poll::Tracker,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(config: Config, tasks: TaskRegistry, engine: Engine, tickets: Tickets) -> AppState {
        let node_mode = config.pve_dir.is_some();
        let storage = FileCache::new(vec![config.storage_cfg.clone()], move |p| {
            StorageConfig::load_as(&p[0], node_mode)
        });
        let access = FileCache::new(
            vec![config.user_cfg.clone(), config.token_cfg.clone()],
            |p| AccessConfig::load(Some(&p[0]), Some(&p[1])),
        );
        AppState(Arc::new(Inner {
            config,
            storage,
            access,
            tasks,
            engine,
            tickets: Arc::new(tickets),
            tracker: Default::default(),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn tasks(&self) -> &TaskRegistry {
        &self.0.tasks
    }

    pub fn tickets(&self) -> &Arc<Tickets> {
        &self.0.tickets
    }

    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }

    pub fn storage_config(&self) -> Result<Arc<StorageConfig>, ApiError> {
        self.0.storage.get().map_err(ApiError::server)
    }

    /// Which tracks are being polled.
    pub fn tracker(&self) -> &crate::upstream::track::poll::Tracker {
        &self.0.tracker
    }

    pub fn access(&self) -> Result<Arc<AccessConfig>, AuthError> {
        self.0.access.get()
    }
}
