//! What a container template's name says: PVE's appliance templates are named
//! `<os>-<os version>-<package>_<version>_<arch>.tar.<ext>` (`debian-12-standard_12.7-1_amd64.tar.zst`),
//! the fields pveam's index lists as OS and Architecture.

use std::sync::LazyLock;

use regex::Regex;

use super::record::TemplateInfo;

static NAME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^([a-z][a-z0-9]*)-([^-_]+)-[^_]+_[^_]+_([a-z0-9]+)\.tar(\.[a-z0-9]+)?$").ok()
});

pub fn from_name(name: &str) -> Option<TemplateInfo> {
    let caps = NAME.as_ref()?.captures(name)?;
    Some(TemplateInfo {
        os: caps[1].to_owned(),
        version: caps[2].to_owned(),
        arch: caps[3].to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pve_template_names_and_nothing_else() {
        let t = from_name("debian-12-standard_12.7-1_amd64.tar.zst").expect("debian");
        assert_eq!(
            (t.os.as_str(), t.version.as_str(), t.arch.as_str()),
            ("debian", "12", "amd64")
        );
        let t = from_name("ubuntu-24.04-standard_24.04-2_amd64.tar.zst").expect("ubuntu");
        assert_eq!(t.version, "24.04");
        let t = from_name("alpine-3.20-default_20240908_arm64.tar.xz").expect("alpine");
        assert_eq!((t.os.as_str(), t.arch.as_str()), ("alpine", "arm64"));
        assert_eq!(from_name("my-backup.tar.gz"), None);
        assert_eq!(from_name("nginx_latest.tar"), None);
    }
}
