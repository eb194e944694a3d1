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
mod tests;
