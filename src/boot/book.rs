//! The boot book: every boot config and host, one JSON file replaced atomically. On a PVE
//! node it lives in the cluster file system (`<pve-dir>/isolib/boot.json`, a file of isolib's
//! own) so every node's daemon serves the same hosts; standalone, in the state directory.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// What a config's files are for; the installer that reads them.
pub const FORMATS: &[&str] = &[
    "ignition",
    "kickstart",
    "cloud-init",
    "autoinstall",
    "preseed",
    "raw",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootConfig {
    pub format: String,
    /// File name → content.
    pub files: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl BootConfig {
    /// The Content-Type its files are served with.
    pub fn content_type(&self) -> &'static str {
        match self.format.as_str() {
            "ignition" => "application/json",
            "cloud-init" | "autoinstall" => "text/cloud-config; charset=utf-8",
            _ => "text/plain; charset=utf-8",
        }
    }
}

/// The firmware a host boots with, when it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Bios,
    Uefi,
}

impl Firmware {
    pub fn parse(s: &str) -> Option<Firmware> {
        match s {
            "bios" => Some(Firmware::Bios),
            "uefi" => Some(Firmware::Uefi),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        }
    }
}

/// An image a host boots: a volume, or its own disk.
pub const LOCALBOOT: &str = "localboot";

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// Lower case, colon-separated.
    pub mac: String,
    pub ip: Option<IpAddr>,
    /// A volume ID, or `localboot`.
    pub image: Option<String>,
    pub config: Option<String>,
    pub firmware: Option<Firmware>,
}

impl Host {
    /// The volume it boots, if any.
    pub fn volume(&self) -> Option<&str> {
        self.image.as_deref().filter(|i| *i != LOCALBOOT)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Book {
    #[serde(default)]
    pub configs: BTreeMap<String, BootConfig>,
    #[serde(default)]
    pub hosts: BTreeMap<String, Host>,
}

impl Book {
    pub fn host_by_mac(&self, mac: &str) -> Option<(&String, &Host)> {
        self.hosts.iter().find(|(_, h)| h.mac == mac)
    }

    pub fn host_by_ip(&self, ip: IpAddr) -> Option<(&String, &Host)> {
        let ip = canonical(ip);
        self.hosts
            .iter()
            .find(|(_, h)| h.ip.map(canonical) == Some(ip))
    }

    /// The hosts that boot `volid`.
    pub fn hosts_of(&self, volid: &str) -> Vec<&String> {
        self.hosts
            .iter()
            .filter(|(_, h)| h.volume() == Some(volid))
            .map(|(n, _)| n)
            .collect()
    }
}

/// IPv4 as IPv4 even when a dual-stack socket reports it mapped into IPv6.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub fn path(config: &Config) -> PathBuf {
    match &config.pve_dir {
        Some(pve) => pve.join("isolib").join("boot.json"),
        None => config.state_dir.join("boot.json"),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("boot book '{path}': {reason}")]
pub struct BookError {
    pub path: String,
    pub reason: String,
}

/// The book at `path`; none yet is an empty one.
pub fn load(path: &Path) -> Result<Book, BookError> {
    let err = |reason: String| BookError {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read(path) {
        Ok(text) => serde_json::from_slice(&text).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Book::default()),
        Err(e) => Err(err(e.to_string())),
    }
}

/// One change at a time: read, change, write back; a change that refuses (`Err`) writes
/// nothing. On a PVE node every node's daemon changes the same file, so the change is made
/// under PVE's cluster-wide lock; elsewhere within this daemon.
pub fn update<T, E>(
    config: &Config,
    change: impl FnOnce(&mut Book) -> Result<T, E>,
) -> Result<Result<T, E>, BookError> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let path = &path(config);
    let _cluster = match &config.pve_dir {
        Some(pve) => Some(
            crate::cluster::pve_lock::acquire(pve, "isolib-boot").map_err(|e| BookError {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
        ),
        None => None,
    };
    let mut book = load(path)?;
    let out = match change(&mut book) {
        Ok(out) => out,
        Err(refused) => return Ok(Err(refused)),
    };
    let err = |reason: String| BookError {
        path: path.display().to_string(),
        reason,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let text = serde_json::to_vec_pretty(&book).map_err(|e| err(e.to_string()))?;
    crate::fsutil::replace_file(path, &crate::fsutil::temp_beside(path), &text, 0o640)
        .map_err(|e| err(e.to_string()))?;
    Ok(Ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_found_by_mac_ip_and_image() {
        let mut book = Book::default();
        book.hosts.insert(
            "web1".into(),
            Host {
                mac: "52:54:00:12:34:56".into(),
                ip: Some("10.0.0.5".parse().expect("ip")),
                image: Some("local:iso/a.iso".into()),
                config: None,
                firmware: None,
            },
        );
        assert_eq!(
            book.host_by_mac("52:54:00:12:34:56").map(|h| h.0.as_str()),
            Some("web1")
        );
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().expect("ip");
        assert!(book.host_by_ip(mapped).is_some());
        assert_eq!(book.hosts_of("local:iso/a.iso"), ["web1"]);
        assert!(book.hosts_of("local:iso/b.iso").is_empty());
    }

    #[test]
    fn changes_are_written_back() {
        let d = tempfile::tempdir().expect("tempdir");
        // A PVE node's: the file in the cluster file system, changed under PVE's lock.
        std::fs::create_dir(d.path().join("pve")).expect("pve dir");
        let config = Config::resolve(crate::config::RawConfig {
            pve_dir: Some(d.path().join("pve").display().to_string()),
            state_dir: Some(d.path().join("state")),
            ..Default::default()
        })
        .expect("config");
        let p = path(&config);
        assert_eq!(p, d.path().join("pve/isolib/boot.json"));
        assert_eq!(load(&p).expect("empty"), Book::default());
        update(&config, |b| {
            b.configs.insert(
                "ks".into(),
                BootConfig {
                    format: "kickstart".into(),
                    files: BTreeMap::from([("ks.cfg".into(), "text\n".into())]),
                    description: String::new(),
                },
            );
            Ok::<_, ()>(())
        })
        .expect("update")
        .expect("accepted");
        let refused = update(&config, |b| {
            b.configs.clear();
            Err::<(), _>("no")
        });
        assert_eq!(refused.expect("read"), Err("no"));
        assert_eq!(
            load(&p).expect("load").configs["ks"].files["ks.cfg"],
            "text\n"
        );
        assert!(
            !d.path().join("pve/priv/lock/isolib-boot").exists(),
            "the lock is released"
        );
    }
}
