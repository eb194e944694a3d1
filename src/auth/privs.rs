//! Privileges and the built-in ("special") roles of PVE 9.
//!
//! Mirrors acl:`AccessControl.pm` `$privgroups` and create_roles(): every privilege belongs
//! to one category and one tier (root, admin, user, audit), and the built-in roles are derived
//! from that table rather than listed by hand, so the two cannot drift apart:
//!
//! * `Administrator`: every privilege; `NoAccess`: none (it also masks everything else, see
//!   `acl.rs`).
//! * `PVE<Cat>Admin`: admin + user + audit of the category; `PVEAdmin`: the same over all
//!   categories, minus `Mapping.Modify`.
//! * `PVE<Cat>User`: user + audit, only for categories that have a user tier.
//! * `PVEAuditor`: every audit privilege; `PVETemplateUser`: `VM.Clone` + `VM.Audit`.
//!
//! Root-tier privileges (`Sys.Modify`, `Sys.AccessNetwork`, ...) and `Permissions.Modify`
//! (in no tier since libpve-access-control 8.0) are therefore only in `Administrator`.
//! `Sys.AccessNetwork` dates from 8.1.2 (acl 36c1814); PVE 9 replaced `VM.Monitor` with the
//! `VM.GuestAgent.*` privileges and added `VM.Replicate`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

pub(crate) const NO_ACCESS: &str = "NoAccess";
const ADMINISTRATOR: &str = "Administrator";

/// Names of the built-in roles; `role:` lines in user.cfg cannot redefine them.
pub const BUILTIN_ROLES: &[&str] = &[
    "Administrator",
    "NoAccess",
    "PVEAdmin",
    "PVEAuditor",
    "PVEDatastoreAdmin",
    "PVEDatastoreUser",
    "PVEMappingAdmin",
    "PVEMappingUser",
    "PVEPoolAdmin",
    "PVEPoolUser",
    "PVESDNAdmin",
    "PVESDNUser",
    "PVESysAdmin",
    "PVETemplateUser",
    "PVEUserAdmin",
    "PVEVMAdmin",
    "PVEVMUser",
];

struct PrivGroup {
    category: &'static str,
    root: &'static [&'static str],
    admin: &'static [&'static str],
    user: &'static [&'static str],
    audit: &'static [&'static str],
}

const PRIV_GROUPS: &[PrivGroup] = &[
    PrivGroup {
        category: "VM",
        root: &[],
        admin: &[
            "VM.Config.Disk",
            "VM.Config.CPU",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.HWType",
            "VM.Config.Options",
            "VM.Allocate",
            "VM.Clone",
            "VM.GuestAgent.Unrestricted",
            "VM.Migrate",
            "VM.Replicate",
            "VM.Snapshot",
            "VM.Snapshot.Rollback",
        ],
        user: &[
            "VM.Config.CDROM",
            "VM.Config.Cloudinit",
            "VM.Console",
            "VM.Backup",
            "VM.GuestAgent.FileRead",
            "VM.GuestAgent.FileSystemMgmt",
            "VM.GuestAgent.FileWrite",
            "VM.PowerMgmt",
        ],
        audit: &["VM.Audit", "VM.GuestAgent.Audit"],
    },
    PrivGroup {
        category: "Sys",
        root: &[
            "Sys.PowerMgmt",
            "Sys.Modify",
            "Sys.Incoming",
            "Sys.AccessNetwork",
        ],
        admin: &["Sys.Console", "Sys.Syslog"],
        user: &[],
        audit: &["Sys.Audit"],
    },
    PrivGroup {
        category: "Datastore",
        root: &[],
        admin: &["Datastore.Allocate", "Datastore.AllocateTemplate"],
        user: &["Datastore.AllocateSpace"],
        audit: &["Datastore.Audit"],
    },
    PrivGroup {
        category: "SDN",
        root: &[],
        admin: &["SDN.Allocate", "SDN.Audit"],
        user: &["SDN.Use"],
        audit: &["SDN.Audit"],
    },
    PrivGroup {
        category: "User",
        root: &["Realm.Allocate"],
        admin: &["User.Modify", "Group.Allocate", "Realm.AllocateUser"],
        user: &[],
        audit: &[],
    },
    PrivGroup {
        category: "Pool",
        root: &[],
        admin: &["Pool.Allocate"],
        user: &["Pool.Audit"],
        audit: &["Pool.Audit"],
    },
    PrivGroup {
        category: "Mapping",
        root: &[],
        admin: &["Mapping.Modify"],
        user: &["Mapping.Use"],
        audit: &["Mapping.Audit"],
    },
];

/// Valid, but in no tier: only `Administrator` (and root@pam) hold it.
const UNGROUPED: &[&str] = &["Permissions.Modify"];

type Privs = BTreeSet<&'static str>;

/// Every privilege PVE knows.
pub fn all_privileges() -> &'static BTreeSet<&'static str> {
    static ALL: OnceLock<Privs> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: Privs = UNGROUPED.iter().copied().collect();
        for g in PRIV_GROUPS {
            for tier in [g.root, g.admin, g.user, g.audit] {
                all.extend(tier.iter().copied());
            }
        }
        all
    })
}

pub(crate) fn is_valid_privilege(name: &str) -> bool {
    all_privileges().contains(name)
}

fn builtin_roles() -> &'static BTreeMap<String, Privs> {
    static ROLES: OnceLock<BTreeMap<String, Privs>> = OnceLock::new();
    ROLES.get_or_init(derive_builtin_roles)
}

fn derive_builtin_roles() -> BTreeMap<String, Privs> {
    let mut roles: BTreeMap<String, Privs> = BTreeMap::new();
    roles.insert(NO_ACCESS.to_string(), Privs::new());
    roles.insert(ADMINISTRATOR.to_string(), all_privileges().clone());
    let mut pve_admin = Privs::new();
    let mut auditor = Privs::new();
    for g in PRIV_GROUPS {
        let below_root: Privs = [g.admin, g.user, g.audit].concat().into_iter().collect();
        pve_admin.extend(&below_root);
        roles.insert(format!("PVE{}Admin", g.category), below_root);
        if !g.user.is_empty() {
            let user: Privs = [g.user, g.audit].concat().into_iter().collect();
            roles.insert(format!("PVE{}User", g.category), user);
        }
        auditor.extend(g.audit.iter().copied());
    }
    // Upstream keeps Mapping.Modify to Administrator and PVEMappingAdmin.
    pve_admin.remove("Mapping.Modify");
    roles.insert("PVEAdmin".to_string(), pve_admin);
    roles.insert("PVEAuditor".to_string(), auditor);
    roles.insert(
        "PVETemplateUser".to_string(),
        ["VM.Clone", "VM.Audit"].into_iter().collect(),
    );
    roles
}

/// The privileges of a built-in role, `None` for any other name.
pub fn builtin_role_privileges(role: &str) -> Option<&'static BTreeSet<&'static str>> {
    builtin_roles().get(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> Vec<&'static str> {
        builtin_role_privileges(name)
            .unwrap_or_else(|| panic!("no role {name}"))
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn derived_roles_are_exactly_the_listed_names() {
        let derived: Vec<&str> = builtin_roles().keys().map(String::as_str).collect();
        let mut listed = BUILTIN_ROLES.to_vec();
        listed.sort_unstable();
        assert_eq!(derived, listed);
    }

    #[test]
    fn administrator_has_everything_and_no_access_nothing() {
        assert_eq!(role("Administrator").len(), all_privileges().len());
        assert!(role("NoAccess").is_empty());
        assert!(all_privileges().contains("Sys.AccessNetwork"));
        assert!(all_privileges().contains("Permissions.Modify"));
        assert!(!all_privileges().contains("VM.Monitor"));
    }

    #[test]
    fn root_tier_and_permissions_modify_only_in_administrator() {
        for privilege in [
            "Sys.AccessNetwork",
            "Sys.Modify",
            "Sys.PowerMgmt",
            "Sys.Incoming",
            "Realm.Allocate",
            "Permissions.Modify",
        ] {
            let holders: Vec<&str> = BUILTIN_ROLES
                .iter()
                .copied()
                .filter(|r| role(r).contains(&privilege))
                .collect();
            assert_eq!(holders, ["Administrator"], "{privilege}");
        }
    }

    #[test]
    fn auditor_has_the_seven_audit_privileges() {
        assert_eq!(
            role("PVEAuditor"),
            [
                "Datastore.Audit",
                "Mapping.Audit",
                "Pool.Audit",
                "SDN.Audit",
                "Sys.Audit",
                "VM.Audit",
                "VM.GuestAgent.Audit"
            ]
        );
    }

    #[test]
    fn user_and_admin_roles_follow_the_tiers() {
        assert_eq!(
            role("PVEDatastoreUser"),
            ["Datastore.AllocateSpace", "Datastore.Audit"]
        );
        assert_eq!(
            role("PVEDatastoreAdmin"),
            [
                "Datastore.Allocate",
                "Datastore.AllocateSpace",
                "Datastore.AllocateTemplate",
                "Datastore.Audit"
            ]
        );
        assert_eq!(
            role("PVESysAdmin"),
            ["Sys.Audit", "Sys.Console", "Sys.Syslog"]
        );
        assert_eq!(role("PVESDNUser"), ["SDN.Audit", "SDN.Use"]);
        assert_eq!(role("PVEPoolUser"), ["Pool.Audit"]);
        assert_eq!(role("PVETemplateUser"), ["VM.Audit", "VM.Clone"]);
        assert!(role("PVEVMUser").contains(&"VM.PowerMgmt"));
        assert!(!role("PVEVMUser").contains(&"VM.Allocate"));
        assert!(role("PVEVMAdmin").contains(&"VM.GuestAgent.Unrestricted"));
        // Sys and User have no user tier, so there is no PVESysUser / PVEUserUser.
        assert!(builtin_role_privileges("PVESysUser").is_none());
        assert!(builtin_role_privileges("PVEUserUser").is_none());
    }

    #[test]
    fn pve_admin_lacks_root_tier_and_mapping_modify() {
        let admin = role("PVEAdmin");
        assert!(admin.contains(&"Datastore.AllocateTemplate"));
        assert!(admin.contains(&"Sys.Audit"));
        assert!(admin.contains(&"Mapping.Use"));
        for missing in [
            "Mapping.Modify",
            "Sys.Modify",
            "Sys.AccessNetwork",
            "Permissions.Modify",
        ] {
            assert!(!admin.contains(&missing), "{missing}");
        }
        assert!(role("PVEMappingAdmin").contains(&"Mapping.Modify"));
    }
}
