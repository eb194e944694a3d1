//! Whether a volume may go: retention never removes one that is protected, that a host boots
//! over the network (the boot book), or that a guest still refers to. On a PVE node the guests are the VM and container configurations under
//! `<pve-dir>/nodes/*/qemu-server/*.conf` and `lxc/*.conf`, snapshots included: a CD-ROM
//! (`ide2: local:iso/x.iso,media=cdrom`), an `import-from=` source, a container mount point.

use std::path::Path;

/// Why a volume stays, in words for the task log; `None`: nothing holds it.
pub fn held_by(
    volid: &str,
    path: &Path,
    pve_dir: Option<&Path>,
    boot: &crate::boot::book::Book,
) -> Option<String> {
    if crate::catalog::store::load(path)
        .ok()
        .and_then(|l| l.fresh())
        .is_some_and(|r| r.protected)
    {
        return Some("protected".into());
    }
    if let Some(host) = boot.hosts_of(volid).first() {
        return Some(format!("booted by host '{host}'"));
    }
    let pve_dir = pve_dir?;
    let nodes = std::fs::read_dir(pve_dir.join("nodes")).ok()?;
    let mut configs: Vec<(String, std::path::PathBuf)> = Vec::new();
    for node in nodes.flatten() {
        for (kind, label) in [("qemu-server", "VM"), ("lxc", "CT")] {
            let Ok(rd) = std::fs::read_dir(node.path().join(kind)) else {
                continue;
            };
            for conf in rd.flatten() {
                let name = conf.file_name().to_string_lossy().into_owned();
                if let Some(vmid) = name.strip_suffix(".conf") {
                    configs.push((format!("{label} {vmid}"), conf.path()));
                }
            }
        }
    }
    configs.sort();
    configs.into_iter().find_map(|(guest, conf)| {
        let text = std::fs::read_to_string(&conf).ok()?;
        refers_to(&text, volid).then(|| format!("used by {guest} ({})", conf.display()))
    })
}

/// A guest configuration line `key: value` whose value names `volid`: as the drive itself
/// (the first item) or as `file=`, `import-from=` or `volume=`.
fn refers_to(config: &str, volid: &str) -> bool {
    config.lines().any(|line| {
        let Some((key, value)) = line.split_once(':') else {
            return false;
        };
        if key.starts_with('#') || key.starts_with('[') {
            return false;
        }
        value.trim().split(',').enumerate().any(|(i, item)| {
            let item = item.trim();
            let named = match item.split_once('=') {
                Some(("file" | "import-from" | "volume", v)) => v,
                Some(_) => return false,
                None if i == 0 => item,
                None => return false,
            };
            named == volid
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::book::{Book, Host};

    const VM: &str = "boot: order=scsi0;ide2
ide2: local:iso/debian-12.9.0-amd64-netinst.iso,media=cdrom,size=632M
scsi0: local-lvm:vm-100-disk-0,import-from=local:import/noble.qcow2,size=32G
#ide3: local:iso/commented.iso,media=cdrom

[before-upgrade]
ide2: local:iso/debian-12.8.0-amd64-netinst.iso,media=cdrom
";

    #[test]
    fn cdrom_import_from_and_snapshots_count() {
        assert!(refers_to(VM, "local:iso/debian-12.9.0-amd64-netinst.iso"));
        assert!(refers_to(VM, "local:import/noble.qcow2"));
        assert!(refers_to(VM, "local:iso/debian-12.8.0-amd64-netinst.iso"));
        assert!(!refers_to(VM, "local:iso/commented.iso"));
        assert!(!refers_to(VM, "local:iso/debian-12.iso"));
        assert!(!refers_to(VM, "local:iso/debian"));
        assert!(refers_to(
            "mp0: local:iso/x.iso,mp=/mnt/x\n",
            "local:iso/x.iso"
        ));
    }

    #[test]
    fn guests_of_every_node_are_read() {
        let d = tempfile::tempdir().expect("tempdir");
        let qm = d.path().join("nodes/n2/qemu-server");
        std::fs::create_dir_all(&qm).expect("dirs");
        std::fs::write(qm.join("101.conf"), VM).expect("conf");
        let vol = d.path().join("x.iso");
        let none = Book::default();
        let why = held_by("local:import/noble.qcow2", &vol, Some(d.path()), &none).expect("held");
        assert!(why.starts_with("used by VM 101 ("), "{why}");
        assert_eq!(
            held_by("local:iso/other.iso", &vol, Some(d.path()), &none),
            None
        );
        assert_eq!(held_by("local:import/noble.qcow2", &vol, None, &none), None);
        let mut boot = Book::default();
        boot.hosts.insert(
            "web1".into(),
            Host {
                mac: "52:54:00:00:00:01".into(),
                ip: None,
                image: Some("local:iso/other.iso".into()),
                config: None,
                firmware: None,
            },
        );
        assert_eq!(
            held_by("local:iso/other.iso", &vol, None, &boot).as_deref(),
            Some("booted by host 'web1'")
        );
    }
}
