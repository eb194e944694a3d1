//! `/etc/pve/user.cfg`, read the way acl:`AccessControl.pm` parse_user_config reads it.
//!
//! One entry per line, fields separated by `:` and trimmed:
//!
//! ```text
//! user:<userid>:<enable>:<expire>:<firstname>:<lastname>:<email>:<comment>:<keys>:
//! token:<userid>!<name>:<expire>:<privsep>:<comment>:
//! group:<name>:<userid,...>:<comment>:
//! pool:<name>:<comment>:<vmid,...>:<storage,...>:
//! role:<name>:<privilege,...>:
//! acl:<propagate>:<path>:<userid|@group|tokenid,...>:<role,...>:
//! ```
//!
//! Lines are read in order, so a `token:` needs its `user:` earlier in the file and an
//! `acl:` can only name roles and tokens defined above it (PVE's writer emits users and their
//! tokens, groups, pools, roles, then ACLs). A line that does not fit is logged and skipped,
//! never fatal. `root@pam` exists and is enabled even without a `user:` line.
//!
//! One deliberate difference: a `role:` line for a built-in role name is ignored, so built-in
//! roles keep their privileges. PVE's writer never emits such a line and its API refuses to
//! create roles in the `PVE` namespace.

use std::collections::{BTreeMap, BTreeSet};

use tracing::warn;

use super::acl::{AclNode, Member};
use super::authid::{ROOT_USER, split_tokenid, verify_username};
use super::fields::{is_simple_name, parse_expire, split_fields};
use super::path::normalize_path;
use super::privs::{BUILTIN_ROLES, builtin_role_privileges, is_valid_privilege};
use crate::pve::ids::is_valid_storage_id;
use crate::pve::perl::{split_list, truthy};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) enable: bool,
    /// Epoch seconds, 0 = never.
    pub(crate) expire: i64,
    /// The `keys` field is set: a second factor of PVE's older kind (yubico or oath ids).
    pub(crate) tfa_keys: bool,
    pub(crate) tokens: BTreeMap<String, Token>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) expire: i64,
    pub(crate) privsep: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Pool {
    pub(crate) vms: BTreeSet<String>,
    pub(crate) storage: BTreeSet<String>,
}

#[derive(Debug)]
pub(crate) struct UserConfig {
    pub(crate) users: BTreeMap<String, User>,
    /// group → member user ids
    pub(crate) groups: BTreeMap<String, BTreeSet<String>>,
    /// role → privileges, built-in roles included
    pub(crate) roles: BTreeMap<String, BTreeSet<String>>,
    pub(crate) pools: BTreeMap<String, Pool>,
    pub(crate) acl: AclNode,
}

impl UserConfig {
    pub(crate) fn parse(text: &str) -> Self {
        let mut cfg = UserConfig {
            users: BTreeMap::from([(ROOT_USER.to_string(), User::new(true, 0))]),
            groups: BTreeMap::new(),
            roles: BTreeMap::new(),
            pools: BTreeMap::new(),
            acl: AclNode::default(),
        };
        for role in BUILTIN_ROLES {
            let privs = builtin_role_privileges(role)
                .map(|p| p.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default();
            cfg.roles.insert(role.to_string(), privs);
        }
        // PVE owns a map vmid → pool to refuse a guest in two pools.
        let mut vm_pool: BTreeMap<String, String> = BTreeMap::new();
        for raw in text.lines() {
            let line = raw.trim();
            // PVE has no comment syntax; it would log a '#' line as unknown and skip it.
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_fields(line);
            let f = |i: usize| fields.get(i).copied().unwrap_or("");
            match f(0) {
                "user" => cfg.parse_user(f(1), f(2), f(3), f(8)),
                "token" => cfg.parse_token(f(1), f(2), f(3)),
                "group" => cfg.parse_group(f(1), f(2)),
                "role" => cfg.parse_role(f(1), f(2)),
                "acl" => cfg.parse_acl(f(1), f(2), f(3), f(4)),
                "pool" => cfg.parse_pool(f(1), f(3), f(4), &mut vm_pool),
                _ => warn!("user config - ignore config line: {line}"),
            }
        }
        cfg
    }

    fn parse_user(&mut self, userid: &str, enable: &str, expire: &str, keys: &str) {
        if !verify_username(userid) {
            warn!("user config - ignore user '{userid}' - invalid user name");
            return;
        }
        let Some(expire) = parse_expire(expire) else {
            warn!(
                "user config - ignore user '{userid}' - (illegal characters in expire '{expire}')"
            );
            return;
        };
        // A repeated user line replaces the earlier one, tokens included, as in PVE.
        let mut user = User::new(truthy(enable), expire);
        user.tfa_keys = !keys.is_empty();
        self.users.insert(userid.to_string(), user);
    }

    fn parse_token(&mut self, tokenid: &str, expire: &str, privsep: &str) {
        let Some((userid, name)) = split_tokenid(tokenid) else {
            warn!("user config - ignore invalid tokenid '{tokenid}'");
            return;
        };
        let Some(expire) = parse_expire(expire) else {
            warn!(
                "user config - ignore token '{tokenid}' - (illegal characters in expire '{expire}')"
            );
            return;
        };
        let Some(user) = self.users.get_mut(userid) else {
            warn!("user config - ignore token '{tokenid}' - user does not exist");
            return;
        };
        let token = Token {
            expire,
            privsep: truthy(privsep),
        };
        user.tokens.insert(name.to_string(), token);
    }

    fn parse_group(&mut self, group: &str, members: &str) {
        if !is_simple_name(group) {
            warn!("user config - ignore group '{group}' - invalid characters in group name");
            return;
        }
        let entry = self.groups.entry(group.to_string()).or_default();
        for member in split_list(members) {
            if !verify_username(member) {
                warn!("user config - ignore invalid group member '{member}'");
                continue;
            }
            // PVE warns about unknown users but still records them as members.
            if !self.users.contains_key(member) {
                warn!("user config - ignore invalid group member '{member}'");
            }
            entry.insert(member.to_string());
        }
    }

    fn parse_role(&mut self, role: &str, privs: &str) {
        if !is_simple_name(role) {
            warn!("user config - ignore role '{role}' - invalid characters in role name");
            return;
        }
        if builtin_role_privileges(role).is_some() {
            warn!("user config - ignore role '{role}' - cannot redefine a built-in role");
            return;
        }
        let entry = self.roles.entry(role.to_string()).or_default();
        for privilege in split_list(privs) {
            if is_valid_privilege(privilege) {
                entry.insert(privilege.to_string());
            } else {
                warn!("user config - ignore invalid privilege '{privilege}'");
            }
        }
    }

    fn parse_acl(&mut self, propagate: &str, path: &str, members: &str, roles: &str) {
        let propagate = truthy(propagate);
        let Some(path) = normalize_path(path) else {
            warn!("user config - ignore invalid path in acl '{path}'");
            return;
        };
        for role in split_list(roles) {
            if !is_simple_name(role) {
                warn!("user config - ignore invalid role name '{role}' in acl");
                continue;
            }
            if !self.roles.contains_key(role) {
                warn!("user config - ignore invalid acl role '{role}'");
                continue;
            }
            for member in split_list(members) {
                self.grant(&path, member, role, propagate);
            }
        }
    }

    fn grant(&mut self, path: &str, member: &str, role: &str, propagate: bool) {
        if let Some(group) = member.strip_prefix('@').filter(|g| is_simple_name(g)) {
            // Like users, grants to a not (yet) defined group are kept.
            if !self.groups.contains_key(group) {
                warn!("user config - ignore invalid acl group '{group}'");
            }
            self.acl.grant(path, Member::Group(group), role, propagate);
        } else if verify_username(member) {
            if !self.users.contains_key(member) {
                warn!("user config - ignore invalid acl member '{member}'");
            }
            self.acl.grant(path, Member::User(member), role, propagate);
        } else if let Some((userid, name)) = split_tokenid(member) {
            if self.token(userid, name).is_some() {
                self.acl.grant(path, Member::Token(member), role, propagate);
            } else {
                warn!("user config - ignore invalid acl token '{member}'");
            }
        } else {
            warn!("user config - invalid user/group '{member}' in acl");
        }
    }

    fn parse_pool(
        &mut self,
        pool: &str,
        vms: &str,
        storages: &str,
        vm_pool: &mut BTreeMap<String, String>,
    ) {
        if !is_pool_name(pool) {
            warn!("user config - ignore pool '{pool}' - invalid characters in pool name");
            return;
        }
        let entry = self.pools.entry(pool.to_string()).or_default();
        for vmid in split_list(vms) {
            // Stored as Perl's int($vmid), so "0100" is guest 100.
            let Some(vmid) = vmid
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| vmid.parse::<u64>().ok())
                .flatten()
            else {
                warn!("user config - ignore invalid vmid '{vmid}' in pool '{pool}'");
                continue;
            };
            let vmid = vmid.to_string();
            if vm_pool.contains_key(&vmid) {
                warn!("user config - ignore duplicate vmid '{vmid}' in pool '{pool}'");
                continue;
            }
            vm_pool.insert(vmid.clone(), pool.to_string());
            entry.vms.insert(vmid);
        }
        for storage in split_list(storages) {
            if !is_valid_storage_id(storage) {
                warn!("user config - ignore invalid storage '{storage}' in pool '{pool}'");
                continue;
            }
            entry.storage.insert(storage.to_string());
        }
    }

    pub(crate) fn token(&self, userid: &str, name: &str) -> Option<&Token> {
        self.users.get(userid)?.tokens.get(name)
    }
}

impl User {
    fn new(enable: bool, expire: i64) -> Self {
        User {
            enable,
            expire,
            tfa_keys: false,
            tokens: BTreeMap::new(),
        }
    }
}

/// Pool ids: simple names, nested up to three levels (`parent/child/grandchild`).
fn is_pool_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() <= 3 && parts.iter().all(|p| is_simple_name(p))
}

#[cfg(test)]
mod tests {
    use super::super::acl::Subject;
    use super::*;

    const SAMPLE: &str = "\
# written by hand
user:root@pam:1:0:::root@example.com:::
user:alice@pve:1:0:Alice:Smith:alice@example.com:dev:x:
token:alice@pve!ci:0:1:build token:
token:alice@pve!old:1700000000:0::
user:bob@pve:0:
user:carol@pve:1:1800000000:

group:devs:alice@pve,bob@pve:developers:
pool:lab:test pool:100,0101:local,nfs-1:
role:Downloader:Datastore.AllocateTemplate,Sys.AccessNetwork,Bogus.Priv:

acl:1:/:@devs:PVEAuditor:
acl:0:/storage/local/:alice@pve!ci:Downloader:
";

    #[test]
    fn users_with_enable_and_expire() {
        let cfg = UserConfig::parse(SAMPLE);
        let alice = &cfg.users["alice@pve"];
        assert!(alice.enable);
        assert_eq!(alice.expire, 0);
        assert!(!cfg.users["bob@pve"].enable);
        assert_eq!(cfg.users["carol@pve"].expire, 1_800_000_000);
        assert!(cfg.users["root@pam"].enable);
    }

    #[test]
    fn tokens_with_expiry_and_privsep() {
        let cfg = UserConfig::parse(SAMPLE);
        assert_eq!(
            cfg.token("alice@pve", "ci"),
            Some(&Token {
                expire: 0,
                privsep: true
            })
        );
        assert_eq!(
            cfg.token("alice@pve", "old"),
            Some(&Token {
                expire: 1_700_000_000,
                privsep: false
            })
        );
    }

    #[test]
    fn groups_roles_pools_and_acls() {
        let cfg = UserConfig::parse(SAMPLE);
        let devs: Vec<&str> = cfg.groups["devs"].iter().map(String::as_str).collect();
        assert_eq!(devs, ["alice@pve", "bob@pve"]);
        let role: Vec<&str> = cfg.roles["Downloader"].iter().map(String::as_str).collect();
        assert_eq!(role, ["Datastore.AllocateTemplate", "Sys.AccessNetwork"]);
        let lab = &cfg.pools["lab"];
        assert_eq!(
            lab.vms.iter().map(String::as_str).collect::<Vec<_>>(),
            ["100", "101"]
        );
        assert!(lab.storage.contains("nfs-1"));
        let roles = cfg
            .acl
            .roles(Subject::User("bob@pve"), "/nodes", &cfg.groups);
        assert!(roles.contains("PVEAuditor"));
        let token = cfg.acl.roles(
            Subject::Token("alice@pve!ci"),
            "/storage/local",
            &cfg.groups,
        );
        assert!(token.contains("Downloader"));
    }

    #[test]
    fn root_at_pam_exists_without_a_line_and_can_be_disabled() {
        let cfg = UserConfig::parse("");
        assert!(cfg.users["root@pam"].enable);
        let cfg = UserConfig::parse("user:root@pam:0:0::::::\n");
        assert!(!cfg.users["root@pam"].enable);
    }

    #[test]
    fn malformed_lines_are_skipped_not_fatal() {
        let text = "\
user:no-realm:1:0:
user:bad@pve:1:tomorrow:
user:ok@pve:1:0:
token:ok@pve:0:1:
token:ghost@pve!t1:0:1:
token:ok@pve!tk:never:1:
group:bad group:ok@pve:
role:bad/role:VM.Audit:
acl:1:/bad path:ok@pve:PVEAuditor:
acl:1:/:ok@pve:NoSuchRole:
acl:1:/:ok@pve!missing:PVEAuditor:
frobnicate:1:2:
   \t
";
        let cfg = UserConfig::parse(text);
        assert_eq!(
            cfg.users.keys().map(String::as_str).collect::<Vec<_>>(),
            ["ok@pve", "root@pam"]
        );
        assert!(cfg.users["ok@pve"].tokens.is_empty());
        assert!(cfg.groups.is_empty());
        assert!(!cfg.roles.contains_key("bad/role"));
        assert!(
            cfg.acl
                .roles(Subject::User("ok@pve"), "/", &cfg.groups)
                .is_empty()
        );
    }

    #[test]
    fn lines_are_order_dependent_like_pve() {
        // Token before its user, ACL before its role: both ignored.
        let text = "\
token:late@pve!t1:0:1:
acl:1:/:late@pve:Later:
user:late@pve:1:0:
role:Later:VM.Audit:
";
        let cfg = UserConfig::parse(text);
        assert!(cfg.token("late@pve", "t1").is_none());
        assert!(
            cfg.acl
                .roles(Subject::User("late@pve"), "/", &cfg.groups)
                .is_empty()
        );
    }

    #[test]
    fn repeated_user_line_drops_earlier_tokens() {
        let text = "user:a@pve:1:\ntoken:a@pve!t1::1:\nuser:a@pve:1:\n";
        assert!(UserConfig::parse(text).token("a@pve", "t1").is_none());
    }

    #[test]
    fn builtin_roles_cannot_be_redefined() {
        let cfg = UserConfig::parse("role:PVEAuditor:Sys.Modify:\n");
        assert!(!cfg.roles["PVEAuditor"].contains("Sys.Modify"));
        assert!(cfg.roles["Administrator"].contains("Sys.AccessNetwork"));
    }

    #[test]
    fn crlf_and_surrounding_blanks_are_tolerated() {
        let cfg = UserConfig::parse("  user:a@pve:1:0:  \r\n\r\n\tgroup:g:a@pve:\r\n");
        assert!(cfg.users.contains_key("a@pve"));
        assert!(cfg.groups["g"].contains("a@pve"));
    }

    #[test]
    fn pool_and_storage_names() {
        assert!(is_pool_name("a/b/c"));
        assert!(!is_pool_name("a/b/c/d"));
        assert!(!is_pool_name("a//b"));
        assert!(is_valid_storage_id("local-lvm"));
        assert!(is_valid_storage_id("NFS.1"));
        assert!(!is_valid_storage_id("x"));
        assert!(!is_valid_storage_id("1abc"));
        assert!(!is_valid_storage_id("abc-"));
    }
}
