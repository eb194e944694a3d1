//! A storage's configuration as PVE's storage configuration API shows it (pve-storage
//! `API2/Storage/Config.pm`, `$api_storage_config`): the section's properties with the
//! storage ID, the file's digest, and `content` and `nodes` encoded as lists again. Booleans
//! and integers are numbers, as SectionConfig's check_value returns them; the rest strings.

use serde_json::{Map, Value};

use super::model::Storage;
use super::properties::schema_of;
use crate::schema::Schema;

impl Storage {
    /// The object `GET /storage` lists and `GET /storage/{storage}` returns; `digest` is the
    /// storage.cfg digest.
    pub fn api_config(&self, digest: &str) -> Value {
        let mut m: Map<String, Value> = self
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), typed(k, v)))
            .collect();
        // What parsing made of the section, including PVE's defaults (content, a network
        // storage's path, `shared` for shared types, a PVE node's `local`).
        m.insert("storage".into(), Value::from(self.id.clone()));
        m.insert("type".into(), Value::from(self.kind.clone()));
        m.insert("digest".into(), Value::from(digest));
        let content: Vec<&str> = self.content.iter().map(String::as_str).collect();
        m.insert("content".into(), Value::from(content.join(",")));
        if let Some(path) = &self.path {
            m.insert("path".into(), Value::from(path.display().to_string()));
        }
        match &self.nodes {
            Some(nodes) => {
                let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
                m.insert("nodes".into(), Value::from(nodes.join(",")));
            }
            None => {
                m.remove("nodes");
            }
        }
        if self.shared {
            m.insert("shared".into(), Value::from(1));
        }
        Value::Object(m)
    }
}

fn typed(key: &str, value: &str) -> Value {
    match schema_of(key) {
        Schema::Boolean { .. } | Schema::Integer { .. } => value
            .parse::<i64>()
            .map_or_else(|_| Value::from(value), Value::from),
        _ => Value::from(value),
    }
}

#[cfg(test)]
mod tests {
    use super::super::StorageConfig;
    use serde_json::json;

    #[test]
    fn as_pve_shows_it() {
        let cfg = StorageConfig::parse(
            "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl\n\tshared 0\n\
             \tmax-protected-backups 3\n\tprune-backups keep-all=1\n\n\
             nfs: store\n\tserver 10.0.0.1\n\texport /e\n\tnodes a,b\n\tdisable\n",
        );
        let d = cfg.digest.clone();
        assert_eq!(d.len(), 40);
        assert_eq!(
            cfg.get("local").expect("local").api_config(&d),
            json!({
                "storage": "local", "type": "dir", "digest": d, "path": "/var/lib/vz",
                "content": "iso,vztmpl", "shared": 0, "max-protected-backups": 3,
                "prune-backups": "keep-all=1",
            })
        );
        assert_eq!(
            cfg.get("store").expect("store").api_config(&d),
            json!({
                "storage": "store", "type": "nfs", "digest": d, "path": "/mnt/pve/store",
                "content": "images", "server": "10.0.0.1", "export": "/e", "nodes": "a,b",
                "disable": 1, "shared": 1,
            })
        );
    }
}
