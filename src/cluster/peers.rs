//! Where another node's daemon listens and which certificate it must present. On a PVE node:
//! the address from `<pve-dir>/.members` (pmxcfs's member list), the port every node's daemon
//! shares (`peer-port`, else the `listen` port), and the SHA-256 fingerprint of the node's own
//! certificate `<pve-dir>/nodes/<node>/pve-ssl.pem`, which its daemon serves. Standalone: the
//! `peers` setting, one `NAME HOST:PORT FINGERPRINT` each.

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    /// `host:port`.
    pub addr: String,
    /// SHA-256 of the certificate (DER) the peer must present.
    pub fingerprint: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PeerError {
    #[error("invalid peer '{0}': expected NAME HOST:PORT SHA256-FINGERPRINT")]
    Syntax(String),
    #[error("invalid certificate fingerprint '{0}': expected 32 bytes in hex")]
    Fingerprint(String),
    #[error("node '{0}' is offline")]
    Offline(String),
    #[error("unable to read {what}: {reason}")]
    Read { what: String, reason: String },
}

/// `AB:CD:...` or `abcd...`, as `openssl x509 -fingerprint -sha256` and PVE's GUI show it.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], PeerError> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    let bad = || PeerError::Fingerprint(text.to_owned());
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
}

/// One `peers` entry.
pub fn parse_peer(text: &str) -> Result<Peer, PeerError> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [name, addr, fp] = parts[..] else {
        return Err(PeerError::Syntax(text.to_owned()));
    };
    let port_ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !crate::pve::ids::is_valid_node_name(name) || !port_ok {
        return Err(PeerError::Syntax(text.to_owned()));
    }
    Ok(Peer {
        name: name.to_owned(),
        addr: addr.to_owned(),
        fingerprint: parse_fingerprint(fp)?,
    })
}

/// pmxcfs's `.members`: `{"nodename": ..., "nodelist": {"pve1": {"id": 1, "online": 1, "ip": ...}}}`.
#[derive(Debug, Deserialize)]
struct Members {
    #[serde(default)]
    nodelist: std::collections::BTreeMap<String, Member>,
}

#[derive(Debug, Deserialize)]
struct Member {
    #[serde(default)]
    online: u8,
    ip: Option<String>,
}

/// The other members of the PVE cluster, online or not.
pub fn pve_members(pve_dir: &Path, local: &str) -> Result<Vec<String>, PeerError> {
    let path = pve_dir.join(".members");
    match std::fs::read(&path) {
        Ok(text) => {
            let members: Members = serde_json::from_slice(&text).map_err(|e| PeerError::Read {
                what: path.display().to_string(),
                reason: e.to_string(),
            })?;
            Ok(members
                .nodelist
                .into_keys()
                .filter(|n| n != local)
                .collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(PeerError::Read {
            what: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

/// `node` as a PVE cluster knows it; `None` when it is not a member.
pub fn from_pve(pve_dir: &Path, node: &str, port: u16) -> Result<Option<Peer>, PeerError> {
    let read = |what: &Path| {
        std::fs::read(what).map_err(|e| PeerError::Read {
            what: what.display().to_string(),
            reason: e.to_string(),
        })
    };
    let members_path = pve_dir.join(".members");
    let members: Members = match std::fs::read(&members_path) {
        Ok(text) => serde_json::from_slice(&text).map_err(|e| PeerError::Read {
            what: members_path.display().to_string(),
            reason: e.to_string(),
        })?,
        // A node outside a cluster has no member list: no other nodes.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(PeerError::Read {
                what: members_path.display().to_string(),
                reason: e.to_string(),
            });
        }
    };
    let Some(member) = members.nodelist.get(node) else {
        return Ok(None);
    };
    if member.online == 0 {
        return Err(PeerError::Offline(node.to_owned()));
    }
    let Some(ip) = &member.ip else {
        return Err(PeerError::Offline(node.to_owned()));
    };
    let cert_path = pve_dir.join("nodes").join(node).join("pve-ssl.pem");
    let pem = read(&cert_path)?;
    let fingerprint = openssl::x509::X509::from_pem(&pem)
        .and_then(|c| c.digest(openssl::hash::MessageDigest::sha256()))
        .map_err(|e| PeerError::Read {
            what: cert_path.display().to_string(),
            reason: e.to_string(),
        })?;
    let mut fp = [0u8; 32];
    fp.copy_from_slice(&fingerprint);
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.clone()
    };
    Ok(Some(Peer {
        name: node.to_owned(),
        addr: format!("{host}:{port}"),
        fingerprint: fp,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_as_written() {
        let fp = "AB:".repeat(31) + "AB";
        let p = parse_peer(&format!("n2 10.0.0.2:8016 {fp}")).expect("peer");
        assert_eq!(p.name, "n2");
        assert_eq!(p.addr, "10.0.0.2:8016");
        assert_eq!(p.fingerprint, [0xab; 32]);
        assert_eq!(
            parse_peer(&format!("n2 10.0.0.2:8016 {}", "ab".repeat(32))),
            Ok(p)
        );
        assert!(matches!(
            parse_peer("n2 10.0.0.2 x"),
            Err(PeerError::Syntax(_))
        ));
        assert!(matches!(
            parse_peer("n2 10.0.0.2:1 abcd"),
            Err(PeerError::Fingerprint(_))
        ));
    }

    #[test]
    fn members_and_node_certificates() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(from_pve(d.path(), "n2", 8016), Ok(None), "no cluster");
        std::fs::write(
            d.path().join(".members"),
            r#"{"nodename":"n1","version":3,"cluster":{"name":"c","version":2,"nodes":3,"quorate":1},
"nodelist":{"n1":{"id":1,"online":1,"ip":"10.0.0.1"},"n2":{"id":2,"online":1,"ip":"10.0.0.2"},
"n3":{"id":3,"online":0,"ip":"10.0.0.3"}}}"#,
        )
        .expect("members");
        let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).expect("rsa"))
            .expect("key");
        let mut b = openssl::x509::X509Builder::new().expect("builder");
        b.set_pubkey(&key).expect("pubkey");
        let now = openssl::asn1::Asn1Time::days_from_now(0).expect("now");
        let later = openssl::asn1::Asn1Time::days_from_now(1).expect("later");
        b.set_not_before(&now).expect("not before");
        b.set_not_after(&later).expect("not after");
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .expect("sign");
        let cert = b.build();
        let dir = d.path().join("nodes/n2");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("pve-ssl.pem"), cert.to_pem().expect("pem")).expect("write");
        let p = from_pve(d.path(), "n2", 8016)
            .expect("read")
            .expect("member");
        assert_eq!(p.addr, "10.0.0.2:8016");
        let digest = cert
            .digest(openssl::hash::MessageDigest::sha256())
            .expect("digest");
        assert_eq!(&p.fingerprint[..], &digest[..]);
        assert_eq!(
            from_pve(d.path(), "n3", 8016),
            Err(PeerError::Offline("n3".into()))
        );
        assert_eq!(from_pve(d.path(), "n9", 8016), Ok(None));
        assert_eq!(
            pve_members(d.path(), "n1"),
            Ok(vec!["n2".into(), "n3".into()])
        );
    }
}
