//! Property values in storage.cfg: pve-common `src/PVE/SectionConfig.pm` check_value, the
//! JSONSchema types and formats of the storage properties (`src/PVE/JSONSchema.pm` check_type,
//! check_format, parse_boolean; pve-storage `src/PVE/Storage/Plugin.pm` verify_path,
//! verify_content, verify_dir_override) and `PVE::Tools::split_list`.

use std::sync::LazyLock;

use regex::Regex;

use super::ext;
use crate::pve::content::is_known_content;
use crate::pve::ids::is_valid_node_name;
use crate::pve::perl::split_list;

/// The schema of a property, as far as storage.cfg parsing needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int {
        min: i64,
    },
    Enum(&'static [&'static str]),
    /// `pve-storage-path`
    Path,
    /// `pve-storage-content-list`
    ContentList,
    /// `pve-node-list`
    NodeList,
    /// `pve-dir-override-list`
    DirOverrides,
    /// Any string (formats the daemon never interprets are not checked).
    Text,
}

/// The property's schema; one list for all types, like SectionConfig's unified mode.
pub(crate) fn kind_of(key: &str) -> Kind {
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
        | "skip-cert-verification" => Kind::Bool,
        "path" | "export" => Kind::Path,
        "content" => Kind::ContentList,
        "nodes" => Kind::NodeList,
        "content-dirs" => Kind::DirOverrides,
        "max-protected-backups" => Kind::Int { min: -1 },
        "maxfiles" => Kind::Int { min: 0 },
        "preallocation" => Kind::Enum(&["off", "metadata", "falloc", "full"]),
        "smbversion" => Kind::Enum(&["default", "2.0", "2.1", "3", "3.0", "3.11"]),
        _ => Kind::Text,
    }
}

/// `PVE::JSONSchema::parse_boolean`: `1|on|yes|true` and `0|off|no|false`, any case.
pub(crate) fn parse_boolean(text: &str) -> Option<bool> {
    let lower = text.to_ascii_lowercase();
    match lower.as_str() {
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" => Some(false),
        _ => None,
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

/// `^[+-]?\d+$`
fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn check_format(kind: Kind, value: &str) -> Result<(), String> {
    let bad = |reason: String| Err(format!("invalid format - {reason}"));
    match kind {
        Kind::Path => {
            // verify_path only anchors the start: `^/[^;\(\)]+`
            let rest = value.strip_prefix('/').unwrap_or("");
            if value.starts_with('/') && rest.starts_with(|c| !matches!(c, ';' | '(' | ')')) {
                Ok(())
            } else {
                bad("value does not look like a valid absolute path".to_owned())
            }
        }
        Kind::ContentList => match split_list(value).into_iter().find(|c| !is_known_content(c)) {
            Some(content) => bad(format!("invalid content type '{content}'")),
            None => Ok(()),
        },
        Kind::NodeList if !split_list(value).into_iter().all(is_valid_node_name) => {
            bad("value does not look like a valid node name".to_owned())
        }
        Kind::DirOverrides => {
            match split_list(value)
                .into_iter()
                .find(|item| !verify_dir_override(item))
            {
                Some(item) => bad(format!("invalid override '{item}'")),
                None => Ok(()),
            }
        }
        Kind::NodeList | Kind::Bool | Kind::Int { .. } | Kind::Enum(_) | Kind::Text => Ok(()),
    }
}

/// SectionConfig check_value for one property line: `value` is `None` for a bare key. Returns
/// the value to store (booleans as `0`/`1`) or the error text PVE would warn with.
pub(crate) fn check_value(key: &str, value: Option<&str>) -> Result<String, String> {
    let kind = kind_of(key);
    let value = match (kind, value) {
        (Kind::Bool, None) => "1",
        (_, None) => return Err("got undefined value".to_owned()),
        (_, Some(value)) => value,
    };
    if value.contains(['\n', '\r']) {
        return Err("property contains a line feed".to_owned());
    }
    match kind {
        Kind::Bool if value != "0" && value != "1" => {
            Err(format!("type check ('boolean') failed - got '{value}'"))
        }
        Kind::Int { .. } if !is_integer(value) => {
            Err(format!("type check ('integer') failed - got '{value}'"))
        }
        Kind::Int { min } if value.parse::<i64>().is_ok_and(|n| n < min) => {
            Err(format!("value must have a minimum value of {min}"))
        }
        Kind::Enum(allowed) if !allowed.contains(&value) => Err(format!(
            "value '{value}' does not have a value in the enumeration '{}'",
            allowed.join(", ")
        )),
        _ => check_format(kind, value).map(|()| value.to_owned()),
    }
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
        assert_eq!(parse_boolean("Yes"), Some(true));
        assert_eq!(parse_boolean("OFF"), Some(false));
        assert_eq!(parse_boolean("/mnt/x"), None);
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
