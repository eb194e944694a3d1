//! The PVE API surface isolib serves: one file per path group, each declaring its methods
//! ([`router::ApiMethod`]); [`ROUTES`] lists them all for the dispatcher and the schema export.

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
mod content;
mod download_url;
mod error;
pub mod export;
mod nodes;
pub mod replies;
pub mod router;
mod storage;
mod storage_config;
mod tasks;
pub mod types;

pub use error::ApiError;

use router::{ApiMethod, Params};
use serde::de::DeserializeOwned;

pub static ROUTES: &[&ApiMethod] = &[
    &access::GET_TICKET,
    &access::CREATE_TICKET,
    &nodes::VERSION,
    &nodes::LIST,
    &nodes::INDEX,
    &nodes::NODE_VERSION,
    &nodes::QUERY_URL_METADATA,
    &storage_config::LIST,
    &storage_config::READ,
    &storage::LIST,
    &storage::INDEX,
    &storage::STATUS,
    &content::LIST,
    &content::DELETE,
    &download_url::METHOD,
    &tasks::LIST,
    &tasks::INDEX,
    &tasks::STATUS,
    &tasks::LOG,
    &tasks::STOP,
];

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

    #[test]
    fn every_route_is_unique_and_every_pattern_compiles() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTES {
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
}
