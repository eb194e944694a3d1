//! Effective privileges of an auth id on an ACL path: acl:`RPCEnvironment.pm` permissions()
//! and its compile_acl_path helper.
//!
//! 1. `root@pam` has every privilege, on every path.
//! 2. A user gets the roles that `acl.rs` resolves for the path. A guest (`/vms/<id>`) or
//!    storage (`/storage/<id>`) in a pool also gets the roles held on `/pool/<pool>`, without
//!    propagation; a pool's `NoAccess` masks the path's own roles, but the path's own
//!    `NoAccess` always stays.
//! 3. A token must exist in user.cfg. Without privilege separation it has exactly its
//!    owner's privileges. With it, it has the privileges granted to the token itself that its
//!    owner also holds on the same path (spec §1.2).
//!
//! Whether the user is enabled or the token expired is not looked at here: that is decided
//! when the request is authenticated.

use std::collections::BTreeSet;

use super::acl::Subject;
use super::authid::{AuthId, ROOT_USER, verify_username};
use super::path::normalize_path;
use super::privs::{NO_ACCESS, all_privileges};
use super::user_cfg::UserConfig;

pub(crate) fn effective_privileges(cfg: &UserConfig, who: &AuthId, path: &str) -> BTreeSet<String> {
    if who.is_root() {
        return everything();
    }
    let Some(path) = normalize_path(path) else {
        return BTreeSet::new();
    };
    let Some(name) = who.token_name() else {
        return user_privileges(cfg, who.user(), &path);
    };
    let Some(token) = cfg.token(who.user(), name) else {
        return BTreeSet::new();
    };
    let owner = user_privileges(cfg, who.user(), &path);
    if !token.privsep {
        return owner;
    }
    let tokenid = who.to_string();
    let own = subject_privileges(cfg, Subject::Token(&tokenid), &path);
    own.intersection(&owner).cloned().collect()
}

fn everything() -> BTreeSet<String> {
    all_privileges().iter().map(|p| p.to_string()).collect()
}

fn user_privileges(cfg: &UserConfig, userid: &str, path: &str) -> BTreeSet<String> {
    if userid == ROOT_USER {
        return everything();
    }
    if !verify_username(userid) {
        return BTreeSet::new();
    }
    subject_privileges(cfg, Subject::User(userid), path)
}

fn subject_privileges(cfg: &UserConfig, subject: Subject<'_>, path: &str) -> BTreeSet<String> {
    let mut roles = cfg.acl.roles(subject, path, &cfg.groups);
    let from_pools = pool_roles(cfg, subject, path);
    if !from_pools.is_empty() && !roles.contains(NO_ACCESS) {
        if from_pools.contains(NO_ACCESS) {
            roles = BTreeSet::from([NO_ACCESS.to_string()]);
        } else {
            roles.extend(from_pools);
        }
    }
    roles
        .iter()
        .filter_map(|role| cfg.roles.get(role))
        .flatten()
        .cloned()
        .collect()
}

/// Roles `subject` holds through the pools that contain the guest or storage at `path`.
fn pool_roles(cfg: &UserConfig, subject: Subject<'_>, path: &str) -> BTreeSet<String> {
    let vmid = path.strip_prefix("/vms/");
    let storage = path.strip_prefix("/storage/");
    let mut roles = BTreeSet::new();
    if vmid.is_none() && storage.is_none() {
        return roles;
    }
    for (name, pool) in &cfg.pools {
        let member = vmid.is_some_and(|id| pool.vms.contains(id))
            || storage.is_some_and(|id| pool.storage.contains(id));
        if member {
            roles.extend(
                cfg.acl
                    .roles(subject, &format!("/pool/{name}"), &cfg.groups),
            );
        }
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "\
user:alice@pve:1:0:
token:alice@pve!sep:0:1:
token:alice@pve!full:0:0:
user:bob@pve:1:0:
group:ops:bob@pve:
pool:lab::100:local:
role:Downloader:Datastore.AllocateTemplate,Sys.AccessNetwork:
acl:1:/storage:alice@pve:PVEDatastoreAdmin:
acl:1:/:alice@pve!sep:Administrator:
acl:1:/storage/nfs:alice@pve!full:NoAccess:
acl:1:/pool/lab:@ops:PVEVMUser,PVEDatastoreUser:
acl:1:/vms/100:bob@pve:PVEAuditor:
acl:1:/pool/lab:alice@pve:NoAccess:
";

    fn privs(who: &str, path: &str) -> Vec<String> {
        let cfg = UserConfig::parse(CFG);
        let who: AuthId = who.parse().unwrap_or_else(|e| panic!("{e}"));
        effective_privileges(&cfg, &who, path).into_iter().collect()
    }

    #[test]
    fn root_has_every_privilege_anywhere() {
        assert_eq!(privs("root@pam", "/nodes/x").len(), all_privileges().len());
        assert_eq!(
            privs("root@pam", "not a path").len(),
            all_privileges().len()
        );
    }

    #[test]
    fn privsep_token_gets_intersection_with_owner() {
        // Token holds Administrator on /, owner only PVEDatastoreAdmin on /storage.
        assert_eq!(
            privs("alice@pve!sep", "/storage/nfs"),
            [
                "Datastore.Allocate",
                "Datastore.AllocateSpace",
                "Datastore.AllocateTemplate",
                "Datastore.Audit"
            ]
        );
        assert!(privs("alice@pve!sep", "/nodes/pve1").is_empty());
    }

    #[test]
    fn token_without_privsep_has_owner_privileges_ignoring_its_own_acl() {
        assert_eq!(
            privs("alice@pve!full", "/storage/nfs"),
            privs("alice@pve", "/storage/nfs")
        );
        assert!(!privs("alice@pve!full", "/storage/nfs").is_empty());
    }

    #[test]
    fn unknown_token_has_nothing() {
        assert!(privs("alice@pve!nope", "/storage/nfs").is_empty());
        assert!(privs("nobody@pve!tok", "/").is_empty());
    }

    #[test]
    fn pool_roles_reach_members_without_propagating() {
        // bob: group ops has PVEVMUser+PVEDatastoreUser on /pool/lab; his own PVEAuditor on
        // /vms/100 is kept and the pool roles are added.
        let vm = privs("bob@pve", "/vms/100");
        assert!(vm.contains(&"VM.PowerMgmt".to_string()));
        assert!(vm.contains(&"Sys.Audit".to_string()));
        let storage = privs("bob@pve", "/storage/local");
        assert!(storage.contains(&"Datastore.AllocateSpace".to_string()));
        assert!(privs("bob@pve", "/storage/other").is_empty());
        assert!(privs("bob@pve", "/vms/101").is_empty());
    }

    #[test]
    fn pool_no_access_masks_regular_roles() {
        // alice has PVEDatastoreAdmin via /storage, but NoAccess on the pool holding local.
        assert!(privs("alice@pve", "/storage/local").is_empty());
        assert!(!privs("alice@pve", "/storage/nfs").is_empty());
    }

    #[test]
    fn invalid_path_has_nothing() {
        assert!(privs("alice@pve", "/storage/bad path").is_empty());
        assert!(privs("alice@pve", "").is_empty());
    }
}
