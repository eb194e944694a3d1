//! Identifier grammars: storage IDs (pve-common `src/PVE/JSONSchema.pm` parse_storage_id, the
//! `pve-storage-id` format), node names (pve_verify_node_name) and volume IDs (pve-storage
//! `src/PVE/Storage/Plugin.pm` parse_volume_id, spec/pve-api.md §7.6).
//!
//! Written by hand rather than with `(?i)` regexes: Unicode case folding would let `K` (Kelvin
//! sign) and `ſ` pass as letters, which Perl's byte-string match never does.

use super::perl::without_final_newline;

fn is_storage_id_body(id: &str) -> bool {
    let bytes = id.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    bytes.len() >= 2
        && first.is_ascii_alphabetic()
        && last.is_ascii_alphanumeric()
        && bytes[1..bytes.len() - 1]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The storage ID grammar as a regex for schema-driven clients (ECMA-262 syntax).
pub const STORAGE_ID_PATTERN: &str = r"^[a-zA-Z][a-zA-Z0-9\-_.]*[a-zA-Z0-9]$";

/// The node name grammar as a regex for schema-driven clients.
pub const NODE_NAME_PATTERN: &str = r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$";

/// The `pve-storage-id` format: `^[a-z][a-z0-9\-\_\.]*[a-z0-9]$`, case-insensitive.
pub fn is_valid_storage_id(id: &str) -> bool {
    is_storage_id_body(without_final_newline(id))
}

/// The reason parse_storage_id gives for a bad ID, or `None` when the ID is fine.
pub fn storage_id_error(id: &str) -> Option<String> {
    if is_valid_storage_id(id) {
        None
    } else if id.chars().count() < 2 {
        Some(format!(
            "storage ID '{id}' cannot be shorter than 2 characters"
        ))
    } else {
        Some(format!("storage ID '{id}' contains illegal characters"))
    }
}

/// pve_verify_node_name: `^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$`.
pub fn is_valid_node_name(node: &str) -> bool {
    let bytes = node.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// `"local:iso/x.iso"` → `Some(("local", "iso/x.iso"))`, by PVE's volume ID regex
/// `^([a-z][a-z0-9\-\_\.]*[a-z0-9]):(.+)$` (case-insensitive).
pub fn parse_volume_id(volid: &str) -> Option<(String, String)> {
    // `.` never matches a newline, but `$` may sit before a final one.
    let volid = without_final_newline(volid);
    let (storage, volname) = volid.split_once(':')?;
    if !is_storage_id_body(storage) || volname.is_empty() || volname.contains('\n') {
        return None;
    }
    Some((storage.to_owned(), volname.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_ids() {
        for ok in ["local", "ab", "a1", "my-store.x_y", "Local", "local\n"] {
            assert!(is_valid_storage_id(ok), "{ok:?}");
        }
        for bad in [
            "",
            "a",
            "1abc",
            "ab-",
            "a b",
            "ab:",
            "loc\u{212a}al",
            "-ab",
            "a.",
            "ab\n\n",
        ] {
            assert!(!is_valid_storage_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn storage_id_errors() {
        assert_eq!(
            storage_id_error("a").as_deref(),
            Some("storage ID 'a' cannot be shorter than 2 characters")
        );
        assert_eq!(
            storage_id_error("a b").as_deref(),
            Some("storage ID 'a b' contains illegal characters")
        );
        assert_eq!(storage_id_error("local"), None);
    }

    #[test]
    fn patterns_agree_with_the_checks() {
        let storage = regex::Regex::new(STORAGE_ID_PATTERN).expect("storage pattern");
        let node = regex::Regex::new(NODE_NAME_PATTERN).expect("node pattern");
        for s in [
            "local",
            "ab",
            "a1",
            "my-store.x_y",
            "Local",
            "",
            "a",
            "1abc",
            "ab-",
            "a b",
            "loc\u{212a}al",
            "-ab",
            "a.",
        ] {
            assert_eq!(storage.is_match(s), is_valid_storage_id(s), "{s:?}");
        }
        for n in [
            "pve1",
            "a",
            "pve-node-2",
            "PVE",
            "",
            "-pve",
            "pve-",
            "pve_1",
            "pve.example.com",
        ] {
            assert_eq!(node.is_match(n), is_valid_node_name(n), "{n:?}");
        }
    }

    #[test]
    fn node_names() {
        for ok in ["pve1", "a", "pve-node-2", "PVE"] {
            assert!(is_valid_node_name(ok), "{ok:?}");
        }
        for bad in ["", "-pve", "pve-", "pve_1", "pve.example.com"] {
            assert!(!is_valid_node_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn volume_ids() {
        let split = |s: &str| parse_volume_id(s);
        assert_eq!(
            split("local:iso/x.iso"),
            Some(("local".into(), "iso/x.iso".into()))
        );
        assert_eq!(
            split("Local-2:import/a.ova/b.vmdk"),
            Some(("Local-2".into(), "import/a.ova/b.vmdk".into()))
        );
        assert_eq!(
            split("local:iso/x.iso\n"),
            Some(("local".into(), "iso/x.iso".into()))
        );
        // The first colon splits: storage IDs never contain one.
        assert_eq!(split("s1:a:b"), Some(("s1".into(), "a:b".into())));
        for bad in [
            "local:",
            "iso/x.iso",
            "l:iso/x.iso",
            "1a:x",
            "local:a\nb",
            ":x",
            "lo cal:x",
        ] {
            assert_eq!(split(bad), None, "{bad:?}");
        }
    }
}
