//! The PVE API surface isolib serves: one file per path group, each declaring its methods
//! ([`router::ApiMethod`]) and mounting them in its subtree of [`ROUTER`], which the
//! dispatcher walks and the schema export lists.

/// A method's parameters, each named once: the schema properties the dispatcher validates and
/// the export shows (`$props`), and the struct the handler reads the validated values into
/// (`$args`). Each entry is `"wire-name" field: Type = property`, the property's own name being
/// replaced by the wire name.
macro_rules! params {
    ($props:ident => $args:ident { $($name:literal $field:ident: $ty:ty = $prop:expr,)* }) => {
        static $props: [crate::schema::Property; [$($name),*].len()] =
            [$(crate::schema::Property { name: $name, ..$prop }),*];

        // Parameters a handler does not read (the node, say) are validated all the same.
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct $args {
            $(#[serde(rename = $name)] $field: $ty,)*
        }
    };
}

mod access;
mod aplinfo;
mod boot;
mod cluster_inventory;
mod content;
mod download_url;
mod ensure;
mod error;
pub mod export;
mod inventory;
mod nodes;
mod peer_copy;
pub mod replies;
pub mod router;
mod storage;
mod storage_config;
mod tasks;
mod tracks;
pub mod types;
pub mod upload;
mod verify;
mod volume;

pub use error::ApiError;

use router::{Params, Router};
use serde::de::DeserializeOwned;

/// The root of the URL tree below `/api2/<format>`; each path group mounts its own subtree.
pub static ROUTER: Router = Router {
    subdirs: &[
        ("access", &access::ROUTER),
        ("cluster", &CLUSTER_ROUTER),
        ("nodes", &nodes::ROUTER),
        ("storage", &storage_config::ROUTER),
        ("version", &nodes::VERSION_ROUTER),
    ],
    ..Router::new()
};

/// `/cluster`: what isolib keeps for the whole cluster, under its own name.
static CLUSTER_ROUTER: Router = Router {
    subdirs: &[("isolib", &ISOLIB_ROUTER)],
    ..Router::new()
};

static ISOLIB_ROUTER: Router = Router {
    subdirs: &[
        ("boot", &boot::ROUTER),
        ("ensure", &ENSURE),
        ("inventory", &CLUSTER_INVENTORY),
        ("tracks", &tracks::ROUTER),
    ],
    ..Router::new()
};

static ENSURE: Router = Router::leaf(&[&ensure::METHOD]);
static CLUSTER_INVENTORY: Router = Router::leaf(&[&cluster_inventory::METHOD]);

/// Blocking file work, off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::server)
}

/// Validated parameters into a handler's typed arguments. Validation already checked every
/// value, so a failure here is a bug between a schema and its struct.
pub fn from_params<T: DeserializeOwned>(params: Params) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::Object(params)).map_err(|e| {
        ApiError::server(format!(
            "internal error: parameters do not fit the handler: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;
    use replies::{StorageStatus, TaskFields, TaskListItem, TaskStatus};
    use router::Returns;

    #[test]
    fn every_route_is_unique_and_every_pattern_compiles() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTER.methods() {
            assert!(
                seen.insert((r.method, r.path)),
                "duplicate route {} {}",
                r.method,
                r.path
            );
            for p in r.parameters.properties {
                if let Schema::String(s) = p.schema
                    && let Some(pat) = s.pattern
                {
                    assert!(pat.compiles(), "{} {} {}", r.method, r.path, p.name);
                }
                if p.name != "volume" {
                    let placeholder = format!("{{{}}}", p.name);
                    if r.path.contains(&placeholder) {
                        assert!(
                            !p.optional || p.name == "storage",
                            "{}: path param {} optional",
                            r.path,
                            p.name
                        );
                    }
                }
            }
        }
    }

    /// The fields a method declares it returns are the keys its reply type writes, every
    /// optional one set.
    #[test]
    fn declared_returns_are_what_the_replies_write() {
        fn keys(v: impl serde::Serialize) -> Vec<String> {
            let mut k: Vec<String> = match serde_json::to_value(v).expect("json") {
                serde_json::Value::Object(m) => m.keys().cloned().collect(),
                other => panic!("not an object: {other}"),
            };
            k.sort();
            k
        }
        fn declared(r: &Returns) -> Vec<String> {
            let (Returns::Object(f) | Returns::ArrayOf(f)) = r else {
                panic!("not an object shape");
            };
            let mut k: Vec<String> = f.iter().map(|s| s.to_string()).collect();
            k.sort();
            k
        }
        let task = TaskFields {
            tokenid: Some("t".into()),
            ..TaskFields::default()
        };
        let item = TaskListItem {
            task: task.clone(),
            endtime: Some(1),
            saved: Some("0".into()),
            ..TaskListItem::default()
        };
        assert_eq!(keys(item), declared(&tasks::LIST.returns));
        let status = TaskStatus {
            task,
            exitstatus: Some("OK".into()),
            ..TaskStatus::default()
        };
        assert_eq!(keys(status), declared(&tasks::STATUS.returns));
        let listed = StorageStatus {
            storage: Some("local".into()),
            used_fraction: Some(0.5),
            ..StorageStatus::default()
        };
        assert_eq!(keys(listed), declared(&storage::LIST.returns));
        assert_eq!(
            keys(StorageStatus::default()),
            declared(&storage::STATUS.returns)
        );
        let record = crate::catalog::Record {
            checksum: Some(crate::catalog::UserChecksum {
                algorithm: "sha256".into(),
                value: "00".into(),
            }),
            iso: Some(Default::default()),
            os: Some(crate::catalog::osinfo::OsMatch {
                id: "x".into(),
                name: "X".into(),
                version: None,
                arch: None,
                variant: None,
            }),
            image: Some(crate::catalog::ImageInfo {
                format: "qcow2".into(),
                virtual_size: None,
            }),
            template: Some(crate::catalog::TemplateInfo {
                os: "debian".into(),
                version: "12".into(),
                arch: "amd64".into(),
            }),
            verification: Some(crate::catalog::Verification {
                state: crate::catalog::VerifyState::Ok,
                time: 0,
                upid: None,
            }),
            boot_configs: vec!["ks".into()],
            ..Default::default()
        };
        let info = replies::VolumeInfo {
            notes: Some(String::new()),
            protected: Some(false),
            ..replies::VolumeInfo::default()
        }
        .with_record(record.clone());
        assert_eq!(keys(info), declared(&volume::INFO.returns));
        let item = replies::ContentItem {
            sha256: Some(record.sha256),
            os: Some("x".into()),
            verification: record.verification,
            ..replies::ContentItem::default()
        };
        assert_eq!(keys(item), declared(&content::LIST.returns));
    }
}
