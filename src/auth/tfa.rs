//! Whether PVE would ask a user for a second factor. This daemon checks passwords only, so it
//! issues a ticket only where PVE would need nothing more; every doubt counts as a second factor.
//!
//! PVE keeps second factors in three places (acl:`AccessControl.pm` authenticate_user and the
//! TFA code behind it): `priv/tfa.cfg` (JSON, `users` → user id → entries by kind), the `keys`
//! field of a user.cfg user line (the older yubico/oath ids), and a realm-wide `tfa` property
//! in `domains.cfg`.

use std::collections::BTreeSet;
use std::path::Path;

use super::config::AccessConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondFactors {
    /// Users with any tfa.cfg entry; `None` when tfa.cfg could not be read or understood.
    users: Option<BTreeSet<String>>,
    /// Realms whose domains.cfg section requires a second factor; `None` when unreadable.
    realms: Option<BTreeSet<String>>,
}

impl SecondFactors {
    /// None configured anywhere: the standalone daemon, which has no such files.
    pub fn none() -> SecondFactors {
        SecondFactors {
            users: Some(BTreeSet::new()),
            realms: Some(BTreeSet::new()),
        }
    }

    /// Reads both files; a missing file holds no second factors, an unreadable one is doubt.
    pub fn load(tfa_cfg: &Path, domains_cfg: &Path) -> SecondFactors {
        SecondFactors {
            users: read(tfa_cfg).and_then(|t| tfa_users(&t)),
            realms: read(domains_cfg).map(|t| tfa_realms(&t)),
        }
    }

    /// True unless the daemon is sure PVE would let `user` in with the password alone.
    pub fn required(&self, user: &str, access: &AccessConfig) -> bool {
        let realm = user.rsplit_once('@').map_or("", |(_, r)| r);
        let (Some(users), Some(realms)) = (&self.users, &self.realms) else {
            return true;
        };
        users.contains(user) || realms.contains(realm) || access.has_tfa_keys(user)
    }
}

fn read(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(String::new()),
        Err(e) => {
            tracing::warn!("unable to read '{}': {e}", path.display());
            None
        }
    }
}

/// Users with at least one entry of any kind. Disabled entries count too: refusing a user PVE
/// would admit is an inconvenience, admitting one PVE would challenge is a hole.
fn tfa_users(text: &str) -> Option<BTreeSet<String>> {
    if text.trim().is_empty() {
        return Some(BTreeSet::new());
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .inspect_err(|e| tracing::warn!("unable to parse tfa.cfg: {e}"))
        .ok()?;
    let Some(users) = value.get("users") else {
        return Some(BTreeSet::new());
    };
    let users = users.as_object()?;
    Some(
        users
            .iter()
            .filter(|(_, entries)| has_entries(entries))
            .map(|(user, _)| user.clone())
            .collect(),
    )
}

fn has_entries(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(kinds) => kinds.values().any(|k| match k {
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Null => false,
            serde_json::Value::Object(o) => !o.is_empty(),
            _ => true,
        }),
        serde_json::Value::Null => false,
        _ => true,
    }
}

/// Realms (section ids) with a `tfa` property, from the section-config text of domains.cfg.
fn tfa_realms(text: &str) -> BTreeSet<String> {
    let mut realms = BTreeSet::new();
    let mut current: Option<&str> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            current = None;
        } else if !line.starts_with([' ', '\t']) {
            current = line.split_once(':').map(|(_, id)| id.trim());
        } else if let Some(realm) = current
            && line.split_whitespace().next() == Some("tfa")
        {
            realms.insert(realm.to_string());
        }
    }
    realms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> AccessConfig {
        AccessConfig::parse(
            "user:alice@pve:1:0::::::\nuser:bob@pve:1:0:::::x!abc:\nuser:carol@pam:1:0::::::\n",
            "",
        )
        .expect("user.cfg")
    }

    #[test]
    fn each_source_of_second_factors_counts() {
        let f = SecondFactors {
            users: tfa_users(
                r#"{"users":{"alice@pve":{"totp":[{"enable":false}]},"dave@pve":{"totp":[]}}}"#,
            ),
            realms: Some(tfa_realms(
                "pam: pam\n\tcomment x\n\ttfa type=oath\n\npve: pve\n\tcomment y\n",
            )),
        };
        let a = access();
        assert!(
            f.required("alice@pve", &a),
            "a tfa.cfg entry, even disabled"
        );
        assert!(f.required("bob@pve", &a), "user.cfg keys");
        assert!(f.required("carol@pam", &a), "the realm requires one");
        assert!(!f.required("dave@pve", &a), "an empty entry list is none");
        assert!(!f.required("root@pve", &a));
        assert!(
            !SecondFactors::none()
                .required("alice@pve", &AccessConfig::parse("", "").expect("empty"))
        );
    }

    #[test]
    fn doubt_is_a_second_factor() {
        assert_eq!(tfa_users("not json"), None);
        assert_eq!(tfa_users(r#"{"users":[]}"#), None);
        let f = SecondFactors {
            users: None,
            realms: Some(BTreeSet::new()),
        };
        assert!(f.required("dave@pve", &access()));
    }

    #[test]
    fn missing_files_hold_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = SecondFactors::load(&dir.path().join("tfa.cfg"), &dir.path().join("domains.cfg"));
        assert_eq!(f, SecondFactors::none());
    }
}
