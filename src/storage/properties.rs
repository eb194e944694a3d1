//! The properties of storage.cfg sections as schemas of the one schema engine the API uses
//! ([`crate::schema`]), with pve-storage's formats (`src/PVE/Storage/Plugin.pm` verify_path,
//! verify_content, verify_dir_override, pve-common's pve-node-list), and SectionConfig's
//! check_value around them (`src/PVE/SectionConfig.pm`): a bare boolean key means 1, a value
//! may not hold a line feed.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::ext;
use crate::pve::content::is_known_content;
use crate::pve::ids::is_valid_node_name;
use crate::pve::perl::split_list;
use crate::schema::{self, Format, Schema, Shape, StringSchema};

static BOOLEAN: Schema = Schema::Boolean { default: None };
static MAX_PROTECTED: Schema = Schema::integer(Some(-1), None);
static MAXFILES: Schema = Schema::integer(Some(0), None);
static PREALLOCATION: Schema = Schema::String(StringSchema {
    enumeration: Some(&["off", "metadata", "falloc", "full"]),
    ..StringSchema::new()
});
static SMBVERSION: Schema = Schema::String(StringSchema {
    enumeration: Some(&["default", "2.0", "2.1", "3", "3.0", "3.11"]),
    ..StringSchema::new()
});
static TEXT: Schema = Schema::String(StringSchema::new());

static PATH_FORMAT: Format = Format {
    name: "pve-storage-path",
    // verify_path only anchors the start: `^/[^;\(\)]+`
    verify: |v| {
        let rest = v.strip_prefix('/').unwrap_or("");
        if v.starts_with('/') && rest.starts_with(|c| !matches!(c, ';' | '(' | ')')) {
            Ok(())
        } else {
            Err("value does not look like a valid absolute path".into())
        }
    },
    shape: Shape::Pattern(r"^/[^;()]"),
};
static CONTENT_LIST_FORMAT: Format = Format {
    name: "pve-storage-content-list",
    verify: |v| match split_list(v).into_iter().find(|c| !is_known_content(c)) {
        Some(content) => Err(format!("invalid content type '{content}'")),
        None => Ok(()),
    },
    shape: Shape::Unstated,
};
static NODE_LIST_FORMAT: Format = Format {
    name: "pve-node-list",
    verify: |v| {
        if split_list(v).into_iter().all(is_valid_node_name) {
            Ok(())
        } else {
            Err("value does not look like a valid node name".into())
        }
    },
    shape: Shape::Unstated,
};
static DIR_OVERRIDE_LIST_FORMAT: Format = Format {
    name: "pve-dir-override-list",
    verify: |v| match split_list(v)
        .into_iter()
        .find(|item| !verify_dir_override(item))
    {
        Some(item) => Err(format!("invalid override '{item}'")),
        None => Ok(()),
    },
    shape: Shape::Unstated,
};
static PATH: Schema = Schema::String(StringSchema::format(&PATH_FORMAT));
static CONTENT_LIST: Schema = Schema::String(StringSchema::format(&CONTENT_LIST_FORMAT));
static NODE_LIST: Schema = Schema::String(StringSchema::format(&NODE_LIST_FORMAT));
static DIR_OVERRIDES: Schema = Schema::String(StringSchema::format(&DIR_OVERRIDE_LIST_FORMAT));

/// The property's schema; one list for all types, like SectionConfig's unified mode. Formats
/// the daemon never interprets are not checked.
pub(crate) fn schema_of(key: &str) -> &'static Schema {
    match key {
        "disable"
        | "shared"
        | "mkdir"
        | "create-base-path"
        | "create-subdirs"
        | "nocow"
        | "fuse"
        | "snapshot-as-volume-chain"
        | "sparse"
        | "saferemove"
        | "tagged_only"
        | "krbd"
        | "nowritecache"
        | "skip-cert-verification" => &BOOLEAN,
        "path" | "export" => &PATH,
        "content" => &CONTENT_LIST,
        "nodes" => &NODE_LIST,
        "content-dirs" => &DIR_OVERRIDES,
        "max-protected-backups" => &MAX_PROTECTED,
        "maxfiles" => &MAXFILES,
        "preallocation" => &PREALLOCATION,
        "smbversion" => &SMBVERSION,
        _ => &TEXT,
    }
}

static DIR_OVERRIDE: LazyLock<Option<Regex>> =
    LazyLock::new(|| ext::fixed(r"^([a-z]+)=([^.]*(?:\.?[^.]+)+)$"));

fn verify_dir_override(item: &str) -> bool {
    let Some(caps) = ext::captures(&DIR_OVERRIDE, item) else {
        return false;
    };
    let (Some(content), Some(rel)) = (caps.get(1), caps.get(2)) else {
        return false;
    };
    let rel = rel.as_str();
    // Linux allows 4096 bytes per path and 255 per component; PVE keeps a margin for the
    // storage path that gets prepended.
    is_known_content(content.as_str())
        && rel.chars().count() < 1023
        && rel.split('/').all(|part| part.chars().count() < 255)
}

/// SectionConfig check_value for one property line: `value` is `None` for a bare key. Returns
/// the value to store (booleans as `0`/`1`) or the error text PVE would warn with.
pub(crate) fn check_value(key: &str, value: Option<&str>) -> Result<String, String> {
    let schema = schema_of(key);
    let value = match (schema, value) {
        (Schema::Boolean { .. }, None) => "1",
        (_, None) => return Err("got undefined value".to_owned()),
        (_, Some(value)) => value,
    };
    if value.contains(['\n', '\r']) {
        return Err("property contains a line feed".to_owned());
    }
    Ok(match schema::check_value(schema, value.to_owned())? {
        Value::Bool(b) => u8::from(b).to_string(),
        Value::String(s) => s,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        assert_eq!(check_value("disable", None), Ok("1".into()));
        assert_eq!(check_value("disable", Some("0")), Ok("0".into()));
        assert_eq!(
            check_value("disable", Some("yes")),
            Err("type check ('boolean') failed - got 'yes'".into())
        );
        // is_mountpoint takes PVE's wider boolean words.
        assert_eq!(schema::parse_boolean("Yes"), Some(true));
        assert_eq!(schema::parse_boolean("OFF"), Some(false));
        assert_eq!(schema::parse_boolean("/mnt/x"), None);
    }

    #[test]
    fn undefined_and_line_feeds() {
        assert_eq!(check_value("path", None), Err("got undefined value".into()));
        assert_eq!(
            check_value("path", Some("/a\rb")),
            Err("property contains a line feed".into())
        );
    }

    #[test]
    fn formats() {
        assert_eq!(
            check_value("path", Some("/srv/isos")),
            Ok("/srv/isos".into())
        );
        // Only the start is anchored.
        assert_eq!(check_value("path", Some("/srv;x")), Ok("/srv;x".into()));
        for bad in ["srv", "/", "/;x", "/(x"] {
            assert_eq!(
                check_value("path", Some(bad)),
                Err("invalid format - value does not look like a valid absolute path".into()),
                "{bad}"
            );
        }
        assert_eq!(
            check_value("content", Some("iso,import,none")),
            Ok("iso,import,none".into())
        );
        assert_eq!(
            check_value("content", Some("iso,isos")),
            Err("invalid format - invalid content type 'isos'".into())
        );
        assert_eq!(
            check_value("nodes", Some("pve1,pve_2")),
            Err("invalid format - value does not look like a valid node name".into())
        );
        assert_eq!(
            check_value("content-dirs", Some("iso=images/cd")),
            Ok("iso=images/cd".into())
        );
        for bad in [
            "iso=../x", "iso=a/..", "iso=x.", "iso=", "foo=x", "ISO=x", "iso",
        ] {
            assert_eq!(
                check_value("content-dirs", Some(bad)),
                Err(format!("invalid format - invalid override '{bad}'")),
                "{bad}"
            );
        }
        assert!(check_value("content-dirs", Some(&format!("iso={}", "a".repeat(255)))).is_err());
        assert!(check_value("content-dirs", Some(&format!("iso={}", "a".repeat(254)))).is_ok());
    }

    #[test]
    fn numbers_and_enums() {
        assert_eq!(
            check_value("max-protected-backups", Some("-1")),
            Ok("-1".into())
        );
        assert_eq!(check_value("maxfiles", Some("+3")), Ok("3".into()));
        assert_eq!(
            check_value("max-protected-backups", Some("-2")),
            Err("value must have a minimum value of -1".into())
        );
        assert_eq!(
            check_value("max-protected-backups", Some("x")),
            Err("type check ('integer') failed - got 'x'".into())
        );
        assert_eq!(
            check_value("preallocation", Some("sparse")),
            Err("value 'sparse' does not have a value in the enumeration 'off, metadata, falloc, full'"
                .into())
        );
        assert_eq!(
            check_value("server", Some("10.0.0.1")),
            Ok("10.0.0.1".into())
        );
    }
}
