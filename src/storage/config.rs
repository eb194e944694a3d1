//! storage.cfg parsing: pve-common `src/PVE/SectionConfig.pm` parse_config / check_config and
//! pve-storage `src/PVE/Storage/Plugin.pm` parse_section_header / decode_value / parse_config
//! (spec/pve-api.md §9).
//!
//! Tolerant like PVE: a bad line, key or section is reported with `tracing::warn!` (PVE's warning
//! text) and skipped; parsing never fails. Two deliberate differences: the `local` storage is
//! not forced to `/var/lib/vz` (that only makes sense on a PVE node), and sections of types PVE
//! would reject as "unsupported" are kept as non-file-based storages, because on a PVE node they
//! belong to third-party plugins the daemon does not load.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

use super::error::StorageError;
use super::ext;
use super::model::Storage;
use super::plugins::{self, TypeDef};
use super::properties::check_value;
use crate::pve::ids::{is_valid_node_name, storage_id_error};
use crate::pve::perl::errno_text;
use crate::pve::perl::{self, split_list};

/// All storages of one storage.cfg, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageConfig {
    pub storages: Vec<Storage>,
    /// SHA-1 of the file's bytes in hex, as SectionConfig's `digest`.
    pub digest: String,
}

impl StorageConfig {
    /// Parses storage.cfg text the way PVE does (see the module docs).
    pub fn parse(text: &str) -> StorageConfig {
        let mut config = parse_named(text, "storage.cfg");
        config.digest = sha1_hex(text.as_bytes());
        config
    }

    /// Reads and parses a storage.cfg file.
    pub fn load(path: &Path) -> Result<StorageConfig, StorageError> {
        let bytes = std::fs::read(path).map_err(|err| StorageError::Read {
            path: path.display().to_string(),
            reason: errno_text(&err),
        })?;
        let mut config = parse_named(
            &String::from_utf8_lossy(&bytes),
            &path.display().to_string(),
        );
        config.digest = sha1_hex(&bytes);
        Ok(config)
    }

    /// `load`, plus what a PVE node adds (see [`Self::apply_node_local_rule`]).
    pub fn load_as(path: &Path, pve_node: bool) -> Result<StorageConfig, StorageError> {
        let mut cfg = StorageConfig::load(path)?;
        if pve_node {
            cfg.apply_node_local_rule();
        }
        Ok(cfg)
    }

    /// The storage with this ID.
    pub fn get(&self, id: &str) -> Option<&Storage> {
        self.storages.iter().find(|s| s.id == id)
    }

    /// storage_config: the storage with this ID, or PVE's error.
    pub fn storage(&self, id: &str) -> Result<&Storage, StorageError> {
        self.get(id)
            .ok_or_else(|| StorageError::DoesNotExist(id.to_owned()))
    }

    /// What a PVE node makes of `local` (Plugin.pm parse_config): a `dir` storage at
    /// /var/lib/vz on every node. A `local` of another type or path is replaced by PVE's
    /// default and moved first; one without a path gets /var/lib/vz; node restrictions go.
    pub fn apply_node_local_rule(&mut self) {
        const VZ: &str = "/var/lib/vz";
        let keep = self.get("local").is_some_and(|s| {
            s.kind == "dir" && s.path.as_deref().is_none_or(|p| p == Path::new(VZ))
        });
        if !keep {
            self.storages.retain(|s| s.id != "local");
            let mut local = Storage::new("local", "dir");
            local.content = ["backup", "images", "iso", "rootdir", "snippets", "vztmpl"]
                .map(String::from)
                .into();
            local
                .options
                .insert("prune-backups".into(), "keep-all=1".into());
            self.storages.insert(0, local);
        }
        if let Some(local) = self.storages.iter_mut().find(|s| s.id == "local") {
            local.path.get_or_insert_with(|| PathBuf::from(VZ));
            local.nodes = None;
        }
    }
}

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `^(\S+):\s*(\S+)\s*$` with Perl's ASCII `\s`.
static HEADER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    ext::fixed(r"^([^ \t\n\r\x0B\x0C]+):[ \t\n\r\x0B\x0C]*([^ \t\n\r\x0B\x0C]+)[ \t\n\r\x0B\x0C]*$")
});

/// A property line, `^\s+(\S+)(\s+(.*\S))?\s*$`: key and optional value.
fn property_line(line: &str) -> Option<(&str, Option<&str>)> {
    if !line.starts_with(perl::is_space) {
        return None;
    }
    let line = line.trim_matches(perl::is_space);
    if line.is_empty() {
        return None;
    }
    match line.split_once(perl::is_space) {
        Some((key, value)) => Some((key, Some(value.trim_start_matches(perl::is_space)))),
        None => Some((line, None)),
    }
}

/// Lines that end a section (and are skipped between sections): Perl tests the line for
/// truth, so `"0"` counts as blank too.
fn is_blank(line: &str) -> bool {
    line.is_empty() || line == "0"
}

fn is_comment(line: &str) -> bool {
    line.trim_start_matches(perl::is_space).starts_with('#')
}

/// A line cursor that skips comments and counts lines like SectionConfig's `$nextline`.
struct Lines<'a> {
    lines: std::str::Split<'a, char>,
    lineno: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let line = self.lines.next()?;
            self.lineno += 1;
            if !is_comment(line) {
                return Some(line);
            }
        }
    }
}

fn parse_named(text: &str, filename: &str) -> StorageConfig {
    let mut config = StorageConfig::default();
    let mut lines = Lines {
        lines: text.split('\n'),
        lineno: 0,
    };
    while let Some(line) = lines.next() {
        if is_blank(line) {
            continue;
        }
        let mut errprefix = format!("file {filename} line {}", lines.lineno);
        let Some((kind, id)) = ext::captures(&HEADER, line).and_then(|caps| {
            Some((
                caps.get(1)?.as_str().to_ascii_lowercase(),
                caps.get(2)?.as_str(),
            ))
        }) else {
            tracing::warn!("{errprefix} - ignore config line: {line}");
            continue;
        };
        let skip = storage_id_error(id);
        if let Some(err) = &skip {
            tracing::warn!("{errprefix} (skip section '{id}'): {err}");
        }
        let mut section = Section::new(&kind);
        while let Some(line) = lines.next() {
            if is_blank(line) {
                break;
            }
            if skip.is_some() {
                continue;
            }
            errprefix = format!("file {filename} line {}", lines.lineno);
            match property_line(line) {
                Some((key, value)) => {
                    if let Err(err) = section.set(key, value) {
                        tracing::warn!(
                            "{errprefix} (section '{id}') - unable to parse value of '{key}': {err}"
                        );
                    }
                }
                None => tracing::warn!("{errprefix} (section '{id}') - ignore config line: {line}"),
            }
        }
        if skip.is_some() {
            continue;
        }
        // A later section with the same ID replaces the earlier one, also when it is broken.
        config.storages.retain(|s| s.id != id);
        match section.finish(id) {
            Ok(storage) => config.storages.push(storage),
            Err(err) => tracing::warn!("{errprefix} (skip section '{id}'): {err}"),
        }
    }
    config
}

/// The properties of one section while its lines are read.
struct Section {
    kind: String,
    def: Option<&'static TypeDef>,
    values: BTreeMap<String, String>,
}

impl Section {
    fn new(kind: &str) -> Section {
        let def = plugins::lookup(kind);
        if def.is_none() {
            tracing::debug!("storage.cfg: type '{kind}' is not known here, kept as non-file-based");
        }
        Section {
            kind: kind.to_owned(),
            def,
            values: BTreeMap::new(),
        }
    }

    /// One property line: SectionConfig's duplicate check, option check and check_value.
    fn set(&mut self, key: &str, value: Option<&str>) -> Result<(), String> {
        if self.values.contains_key(key) {
            return Err("duplicate attribute".to_owned());
        }
        let allowed = match self.def {
            Some(def) => def.options.is_none_or(|opts| opts.contains(&key)),
            None => true,
        };
        if !allowed {
            return Err(format!("unexpected property '{key}'"));
        }
        let value = check_value(key, value)?;
        self.values.insert(key.to_owned(), value);
        Ok(())
    }

    /// check_config (with `create`, as parse_config calls it), decode_value and Plugin.pm
    /// parse_config's defaults.
    fn finish(mut self, id: &str) -> Result<Storage, String> {
        let mut storage = Storage::new(id, &self.kind);
        let def = self.def;
        let file_type = def.filter(|d| d.mount.is_some());

        let has_path = self.values.get("path").is_some_and(|p| perl::truthy(p));
        if file_type.is_some_and(|d| d.default_mnt_path) && !has_path {
            self.values
                .insert("path".to_owned(), format!("/mnt/pve/{id}"));
        }
        storage.properties = self.values.clone();
        if let Some(content) = self.values.remove("content") {
            storage.content = decode_content(def, &content)?;
        }
        let required = def.map_or(&[][..], |d| d.required);
        if let Some(missing) = required.iter().find(|k| !self.values.contains_key(**k)) {
            return Err(format!("missing value for required option '{missing}'"));
        }
        if let Some(path) = self.values.remove("path") {
            if file_type.is_some_and(|d| d.strict_path) && !is_strict_dir_path(&path) {
                return Err(format!("illegal path for directory storage: {path}"));
            }
            if file_type.is_some() {
                storage.path = Some(PathBuf::from(path));
            }
        }
        if let Some(nodes) = self.values.remove("nodes") {
            storage.nodes = Some(
                split_list(&nodes)
                    .into_iter()
                    .filter(|n| is_valid_node_name(n))
                    .map(str::to_owned)
                    .collect(),
            );
        }
        if let Some(dirs) = self.values.remove("content-dirs") {
            storage.content_dirs = decode_content_dirs(def, &dirs);
        }
        let flag =
            |values: &BTreeMap<String, String>, key: &str| values.get(key).map(|v| perl::truthy(v));
        storage.disabled = flag(&self.values, "disable").unwrap_or(false);
        let mkdir = flag(&self.values, "mkdir");
        storage.create_subdirs =
            flag(&self.values, "create-subdirs").unwrap_or(true) && mkdir.unwrap_or(true);
        storage.create_base_path = flag(&self.values, "create-base-path")
            .or(mkdir)
            .unwrap_or(true);
        if !plugins::is_shared_type(&storage.kind) {
            storage.shared = flag(&self.values, "shared").unwrap_or(false);
        }
        storage.is_mountpoint = self.values.remove("is_mountpoint");
        for key in [
            "disable",
            "shared",
            "mkdir",
            "create-subdirs",
            "create-base-path",
        ] {
            self.values.remove(key);
        }
        storage.options = self.values;
        Ok(storage)
    }
}

/// DirPlugin check_config: `^/[-/a-zA-Z0-9_.@]+$`.
fn is_strict_dir_path(path: &str) -> bool {
    path.len() > 1
        && path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'.' | b'@'))
}

/// decode_value for `content`: unsupported types are dropped with a warning; `none` must stand
/// alone; an empty result needs a type that allows `none`.
fn decode_content(def: Option<&TypeDef>, value: &str) -> Result<BTreeSet<String>, String> {
    let mut content = BTreeSet::new();
    for item in split_list(value) {
        if def.is_some_and(|d| !d.valid_content.contains(&item)) {
            tracing::warn!("storage does not support content type '{item}'");
            continue;
        }
        content.insert(item.to_owned());
    }
    if content.contains("none") && content.len() > 1 {
        return Err("unable to combine 'none' with other content types".to_owned());
    }
    if content.is_empty() && def.is_some_and(|d| !d.valid_content.contains(&"none")) {
        return Err("storage does not support content type 'none'".to_owned());
    }
    Ok(content)
}

/// decode_value for `content-dirs`: `vtype=relpath` items, unsupported types dropped.
fn decode_content_dirs(def: Option<&TypeDef>, value: &str) -> BTreeMap<String, String> {
    let mut dirs = BTreeMap::new();
    for item in split_list(value) {
        let (content, path) = item.split_once('=').unwrap_or((item, ""));
        if def.is_some_and(|d| !d.valid_content.contains(&content)) {
            tracing::warn!("storage does not support content type '{content}'");
            continue;
        }
        dirs.insert(content.to_owned(), path.to_owned());
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_local_rule_forces_var_lib_vz_like_pve() {
        let ids = |c: &StorageConfig| c.storages.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
        // Missing: PVE's default, first.
        let mut cfg = StorageConfig::parse("isolib: isos\n\tpath /srv/isos\n");
        cfg.apply_node_local_rule();
        assert_eq!(ids(&cfg), ["local", "isos"]);
        let local = cfg.get("local").expect("local");
        assert_eq!(local.path.as_deref(), Some(Path::new("/var/lib/vz")));
        assert!(local.content.contains("iso") && local.content.contains("vztmpl"));
        // Another path: replaced.
        let mut cfg = StorageConfig::parse(
            "isolib: isos\n\tpath /srv/isos\n\ndir: local\n\tpath /srv/x\n\tcontent iso\n",
        );
        cfg.apply_node_local_rule();
        assert_eq!(ids(&cfg), ["local", "isos"]);
        assert_eq!(
            cfg.get("local").and_then(|s| s.path.clone()),
            Some("/var/lib/vz".into())
        );
        // The right type and path: kept as configured, but never node-restricted.
        let mut cfg =
            StorageConfig::parse("dir: local\n\tpath /var/lib/vz\n\tcontent iso\n\tnodes pve1\n");
        cfg.apply_node_local_rule();
        let local = cfg.get("local").expect("local");
        assert_eq!(local.content, BTreeSet::from(["iso".to_string()]));
        assert!(local.nodes.is_none());
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    const SPEC_EXAMPLE: &str = "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\tshared 0\n\ndir: isos\n\tpath /srv/isos\n\tcontent iso,import\n\tnodes pve1,pve2\n\tdisable\n\tcontent-dirs iso=images/cd\n";

    #[test]
    fn spec_example() {
        let cfg = StorageConfig::parse(SPEC_EXAMPLE);
        let ids: Vec<_> = cfg.storages.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["local", "isos"]);
        let local = cfg.get("local");
        assert_eq!(local.map(|s| s.kind.as_str()), Some("dir"));
        assert_eq!(
            local.and_then(|s| s.path.clone()),
            Some(PathBuf::from("/var/lib/vz"))
        );
        assert_eq!(
            local.map(|s| s.content.clone()),
            Some(set(&["backup", "iso", "vztmpl"]))
        );
        assert_eq!(
            local.map(|s| (s.shared, s.disabled, s.nodes.is_none())),
            Some((false, false, true))
        );
        let isos = cfg.get("isos");
        assert_eq!(isos.map(|s| s.disabled), Some(true));
        assert_eq!(
            isos.and_then(|s| s.nodes.clone()),
            Some(set(&["pve1", "pve2"]))
        );
        assert_eq!(
            isos.and_then(|s| s.subdir("iso")),
            Some(PathBuf::from("/srv/isos/images/cd"))
        );
        assert_eq!(
            isos.and_then(|s| s.subdir("import")),
            Some(PathBuf::from("/srv/isos/import"))
        );
        assert_eq!(
            isos.map(|s| s.check_enabled("pve1").map_err(|e| e.to_string())),
            Some(Err("storage 'isos' is disabled".to_owned()))
        );
        assert!(cfg.get("nope").is_none());
    }

    #[test]
    fn comments_blank_lines_and_crlf() {
        let text = "# head\n\ndir:store1\n  # inside, not an end\n\tpath /a\n\n\tcontent iso\n\n   # x\nnfs: n1\r\n\tserver 10.0.0.1\r\n\texport /e\r\n\tcontent iso\r\n";
        let cfg = StorageConfig::parse(text);
        let s1 = cfg.get("store1");
        // The blank line ended the section: `content iso` is a stray line outside any section.
        assert_eq!(
            s1.map(|s| s.content.clone()),
            Some(set(&["images", "rootdir"]))
        );
        assert_eq!(s1.and_then(|s| s.path.clone()), Some(PathBuf::from("/a")));
        let n1 = cfg.get("n1");
        assert_eq!(n1.map(|s| s.content.clone()), Some(set(&["iso"])));
        assert_eq!(
            n1.and_then(|s| s.path.clone()),
            Some(PathBuf::from("/mnt/pve/n1"))
        );
        assert_eq!(n1.map(|s| s.shared), Some(true));
        assert_eq!(
            n1.and_then(|s| s.options.get("server").cloned()).as_deref(),
            Some("10.0.0.1")
        );
    }

    #[test]
    fn header_without_blank_line_is_a_stray_property() {
        let cfg = StorageConfig::parse("dir: a1\n\tpath /a\ndir: b1\n\tpath /b\n");
        assert_eq!(cfg.storages.len(), 1);
        assert_eq!(
            cfg.get("a1").and_then(|s| s.path.clone()),
            Some(PathBuf::from("/a"))
        );
    }

    #[test]
    fn bare_booleans() {
        let cfg = StorageConfig::parse(
            "dir: d1\n\tpath /d\n\tdisable\n\tshared\n\tcreate-subdirs 0\n\nbtrfs: b1\n\tpath /b\n\tmkdir 0\n",
        );
        let d1 = cfg.get("d1");
        assert_eq!(
            d1.map(|s| (s.disabled, s.shared, s.create_subdirs, s.create_base_path)),
            Some((true, true, false, true))
        );
        let b1 = cfg.get("b1");
        assert_eq!(
            b1.map(|s| (s.create_subdirs, s.create_base_path)),
            Some((false, false))
        );
        // Not a boolean: a bare key has no value.
        let cfg = StorageConfig::parse("dir: d2\n\tpath\n");
        assert!(cfg.get("d2").is_none());
    }

    #[test]
    fn duplicate_and_bad_keys() {
        let cfg = StorageConfig::parse(
            "dir: d1\n\tpath /d\n\tcontent iso\n\tcontent vztmpl\n\tfoo bar\n\tdisable yes\n\tserver x\n",
        );
        let d1 = cfg.get("d1");
        // The first value wins; the duplicate, unknown and mistyped keys are dropped.
        assert_eq!(d1.map(|s| s.content.clone()), Some(set(&["iso"])));
        assert_eq!(d1.map(|s| s.disabled), Some(false));
        assert_eq!(d1.map(|s| s.options.is_empty()), Some(true));
        // A value that failed its check does not count as set.
        let cfg = StorageConfig::parse("dir: d1\n\tpath /d\n\tdisable yes\n\tdisable 1\n");
        assert_eq!(cfg.get("d1").map(|s| s.disabled), Some(true));
    }

    #[test]
    fn invalid_ids_and_sections() {
        let text = "dir: a\n\tpath /a\n\ndir: bad id\n\ndir: x_\n\tpath /x\n\ndir: ok1\n\tpath relative\n\ndir: ok2\n\tpath /with space\n\ndir: ok3\n\tcontent iso\n\ndir: ok4\n\tpath /o\n";
        let cfg = StorageConfig::parse(text);
        let ids: Vec<_> = cfg.storages.iter().map(|s| s.id.as_str()).collect();
        // a: too short; x_: illegal last char; ok1: bad path format, then path missing;
        // ok2: illegal dir path; ok3: no path.
        assert_eq!(ids, ["ok4"]);
    }

    #[test]
    fn unknown_and_block_types() {
        let cfg = StorageConfig::parse(
            "LVM: vg1\n\tvgname pve\n\tcontent rootdir,images\n\tpath /x\n\nmyplugin: p1\n\tpath /p\n\tcontent iso\n\tdisable\n\tsomekey\n\ndrbd: r1\n\tcontent images\n",
        );
        let vg1 = cfg.get("vg1");
        assert_eq!(vg1.map(|s| s.kind.as_str()), Some("lvm"));
        assert_eq!(
            vg1.map(|s| (s.is_file_based(), s.content.clone())),
            Some((false, set(&["images", "rootdir"])))
        );
        let p1 = cfg.get("p1");
        assert_eq!(
            p1.map(|s| (s.kind.as_str(), s.is_file_based(), s.disabled)),
            Some(("myplugin", false, true))
        );
        assert_eq!(p1.map(|s| s.content.clone()), Some(set(&["iso"])));
        assert_eq!(cfg.get("r1").map(|s| s.shared), Some(true));
    }

    #[test]
    fn content_rules() {
        let cfg = StorageConfig::parse(
            "dir: d1\n\tpath /d\n\tcontent none\n\ndir: d2\n\tpath /d\n\tcontent none,iso\n\nisolib: i1\n\tpath /i\n\nisolib: i2\n\tpath /i\n\tcontent iso,backup,import\n\nisolib: i3\n\tpath /i\n\tcontent backup\n\ncephfs: c1\n\tcontent bogus\n",
        );
        assert_eq!(
            cfg.get("d1").map(|s| s.content.clone()),
            Some(set(&["none"]))
        );
        assert!(cfg.get("d2").is_none());
        assert_eq!(
            cfg.get("i1").map(|s| s.content.clone()),
            Some(set(&["iso"]))
        );
        assert_eq!(
            cfg.get("i2").map(|s| s.content.clone()),
            Some(set(&["import", "iso"]))
        );
        assert!(cfg.get("i3").is_none());
        // An invalid content list is rejected as a whole: the default applies.
        assert_eq!(
            cfg.get("c1").map(|s| s.content.clone()),
            Some(set(&["backup"]))
        );
        assert_eq!(cfg.get("c1").map(|s| s.shared), Some(true));
    }

    #[test]
    fn nodes_lists() {
        let cfg = StorageConfig::parse(
            "dir: d1\n\tpath /d\n\tnodes pve1 pve2;pve3\n\ndir: d2\n\tpath /d\n\tnodes pve1,bad_node\n\ndir: d3\n\tpath /d\n\tnodes ,\n",
        );
        assert_eq!(
            cfg.get("d1").and_then(|s| s.nodes.clone()),
            Some(set(&["pve1", "pve2", "pve3"]))
        );
        // One bad name rejects the whole list: no restriction at all.
        assert_eq!(cfg.get("d2").map(|s| s.nodes.is_none()), Some(true));
        assert_eq!(
            cfg.get("d3").and_then(|s| s.nodes.clone()),
            Some(BTreeSet::new())
        );
    }

    #[test]
    fn later_section_replaces_earlier() {
        let cfg = StorageConfig::parse(
            "dir: d1\n\tpath /one\n\ndir: e1\n\tpath /e\n\ndir: d1\n\tpath /two\n",
        );
        let ids: Vec<_> = cfg.storages.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["e1", "d1"]);
        assert_eq!(
            cfg.get("d1").and_then(|s| s.path.clone()),
            Some(PathBuf::from("/two"))
        );
        let cfg = StorageConfig::parse("dir: d1\n\tpath /one\n\ndir: d1\n\tcontent none,iso\n");
        assert!(cfg.get("d1").is_none());
    }

    #[test]
    fn content_dirs_drop_unsupported() {
        let cfg = StorageConfig::parse("isolib: i1\n\tpath /i\n\tcontent-dirs iso=cd,backup=b\n");
        assert_eq!(
            cfg.get("i1").map(|s| s.content_dirs.clone()),
            Some(BTreeMap::from([("iso".to_owned(), "cd".to_owned())]))
        );
    }

    #[test]
    fn load_errors() {
        let missing = Path::new("/nonexistent/isolib/storage.cfg");
        assert_eq!(
            StorageConfig::load(missing).map_err(|e| e.to_string()),
            Err(
                "unable to read '/nonexistent/isolib/storage.cfg': No such file or directory"
                    .to_owned()
            )
        );
    }

    #[test]
    fn load_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("storage.cfg");
        std::fs::write(&file, SPEC_EXAMPLE)?;
        assert_eq!(
            StorageConfig::load(&file)?,
            StorageConfig::parse(SPEC_EXAMPLE)
        );
        Ok(())
    }
}
