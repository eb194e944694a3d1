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
