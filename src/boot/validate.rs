//! The rules that tie a host to its image and config, as the pxemanager seed states them: the
//! config exists; it is in the image's `boot-configs`; an image without such a list takes no
//! config. One the seed lacks: when the host's firmware is known, the image has an El Torito
//! entry for it. Each failure names the field it is about.

use super::book::{Book, Firmware, Host, LOCALBOOT};
use crate::catalog::Record;

#[derive(Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub text: String,
}

fn invalid(field: &'static str, text: String) -> Invalid {
    Invalid { field, text }
}

/// Checks `host` against the book (other hosts, configs) and its image's record, which the
/// caller looked up (`None`: the volume has none).
pub fn host(book: &Book, name: &str, host: &Host, image: Option<&Record>) -> Result<(), Invalid> {
    if let Some((other, _)) = book
        .hosts
        .iter()
        .find(|(n, h)| n.as_str() != name && h.mac == host.mac)
    {
        return Err(invalid(
            "mac",
            format!("MAC address {} is host '{other}''s", host.mac),
        ));
    }
    if let Some(ip) = host.ip
        && let Some((other, _)) = book
            .hosts
            .iter()
            .find(|(n, h)| n.as_str() != name && h.ip == Some(ip))
    {
        return Err(invalid(
            "ip",
            format!("IP address {ip} is host '{other}''s"),
        ));
    }
    if let Some(config) = &host.config
        && !book.configs.contains_key(config)
    {
        return Err(invalid(
            "config",
            format!("boot config '{config}' does not exist"),
        ));
    }
    let Some(volid) = host.volume() else {
        // `localboot` (an installed system fetching its config) takes any config.
        return Ok(());
    };
    let Some(record) = image else {
        return Err(invalid(
            "image",
            format!("volume '{volid}' has no catalog record"),
        ));
    };
    if let Some(config) = &host.config {
        if record.boot_configs.is_empty() {
            return Err(invalid(
                "config",
                format!("image '{volid}' lists no boot configs, so it takes none"),
            ));
        }
        if !record.boot_configs.contains(config) {
            return Err(invalid(
                "config",
                format!(
                    "boot config '{config}' is not one of image '{volid}''s ({})",
                    record.boot_configs.join(", ")
                ),
            ));
        }
    }
    if let Some(firmware) = host.firmware {
        let boot = record.iso.as_ref().map(|i| i.boot).unwrap_or_default();
        let has = match firmware {
            Firmware::Bios => boot.bios,
            Firmware::Uefi => boot.uefi,
        };
        if !has {
            return Err(invalid(
                "image",
                format!(
                    "image '{volid}' has no El Torito boot entry for {} firmware",
                    firmware.name()
                ),
            ));
        }
    }
    Ok(())
}

/// An image's config list: every name must be a config.
pub fn boot_configs(book: &Book, names: &[String]) -> Result<(), Invalid> {
    match names.iter().find(|n| !book.configs.contains_key(*n)) {
        Some(n) => Err(invalid(
            "boot-configs",
            format!("boot config '{n}' does not exist"),
        )),
        None => Ok(()),
    }
}

/// A config may go only when no host uses it.
pub fn config_unused(book: &Book, config: &str) -> Result<(), Invalid> {
    match book
        .hosts
        .iter()
        .find(|(_, h)| h.config.as_deref() == Some(config))
    {
        Some((host, _)) => Err(invalid(
            "name",
            format!("boot config '{config}' is used by host '{host}'"),
        )),
        None => Ok(()),
    }
}

/// `image` as given: a volume ID, `localboot`, or empty for none.
pub fn image_param(image: &str) -> Result<Option<String>, Invalid> {
    if image.is_empty() {
        return Ok(None);
    }
    if image == LOCALBOOT || crate::pve::ids::parse_volume_id(image).is_some() {
        return Ok(Some(image.to_owned()));
    }
    Err(invalid(
        "image",
        format!("'{image}' is neither a volume ID nor '{LOCALBOOT}'"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::book::BootConfig;
    use crate::catalog::iso9660::{Boot, IsoInfo};

    fn book() -> Book {
        let mut b = Book::default();
        for name in ["coreos-builder", "fedora-server"] {
            b.configs.insert(
                name.into(),
                BootConfig {
                    format: "ignition".into(),
                    files: Default::default(),
                    description: String::new(),
                },
            );
        }
        b
    }

    fn h(image: &str, config: Option<&str>, firmware: Option<Firmware>) -> Host {
        Host {
            mac: "52:54:00:00:00:01".into(),
            ip: None,
            image: Some(image.into()),
            config: config.map(Into::into),
            firmware,
        }
    }

    fn record(configs: &[&str], bios: bool, uefi: bool) -> Record {
        Record {
            boot_configs: configs.iter().map(|c| c.to_string()).collect(),
            iso: Some(IsoInfo {
                boot: Boot { bios, uefi },
                ..IsoInfo::default()
            }),
            ..Record::default()
        }
    }

    #[test]
    fn the_seeds_rules() {
        let b = book();
        let coreos = record(&["coreos-builder"], true, false);
        let bare = record(&[], true, true);
        let v = "local:iso/coreos.iso";
        assert_eq!(
            host(&b, "h", &h(v, Some("coreos-builder"), None), Some(&coreos)),
            Ok(())
        );
        let e = host(&b, "h", &h(v, Some("nope"), None), Some(&coreos)).expect_err("missing");
        assert_eq!(
            (e.field, e.text.as_str()),
            ("config", "boot config 'nope' does not exist")
        );
        let e = host(&b, "h", &h(v, Some("fedora-server"), None), Some(&coreos))
            .expect_err("not listed");
        assert_eq!(e.field, "config");
        assert!(
            e.text
                .contains("not one of image 'local:iso/coreos.iso''s (coreos-builder)"),
            "{}",
            e.text
        );
        let e =
            host(&b, "h", &h(v, Some("fedora-server"), None), Some(&bare)).expect_err("no list");
        assert_eq!(
            e.text,
            "image 'local:iso/coreos.iso' lists no boot configs, so it takes none"
        );
        assert_eq!(host(&b, "h", &h(v, None, None), Some(&bare)), Ok(()));
        assert_eq!(
            host(&b, "h", &h("localboot", Some("fedora-server"), None), None),
            Ok(())
        );
    }

    #[test]
    fn firmware_needs_its_el_torito_entry() {
        let b = book();
        let bios_only = record(&[], true, false);
        let v = "local:iso/x.iso";
        assert_eq!(
            host(&b, "h", &h(v, None, Some(Firmware::Bios)), Some(&bios_only)),
            Ok(())
        );
        let e =
            host(&b, "h", &h(v, None, Some(Firmware::Uefi)), Some(&bios_only)).expect_err("uefi");
        assert_eq!(
            (e.field, e.text.as_str()),
            (
                "image",
                "image 'local:iso/x.iso' has no El Torito boot entry for uefi firmware"
            )
        );
    }

    #[test]
    fn macs_and_addresses_are_one_hosts() {
        let mut b = book();
        b.hosts.insert("a".into(), h("localboot", None, None));
        let e = host(&b, "b", &h("localboot", None, None), None).expect_err("same mac");
        assert_eq!(e.field, "mac");
        assert_eq!(
            host(&b, "a", &h("localboot", None, None), None),
            Ok(()),
            "itself"
        );
    }
}
