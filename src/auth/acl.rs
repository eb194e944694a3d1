//! The ACL tree of user.cfg and role resolution along a path: acl:`AccessControl.pm` roles().
//!
//! An `acl:` line grants roles on one path to users, `@groups` or tokens, each with a
//! propagate flag. To resolve a path, PVE walks from `/` down to the path and, at every level
//! that has entries, keeps only those that apply there (propagating ones, or any at the final
//! level). At each level the subject's own entries beat its groups' entries, and whatever a
//! level yields *replaces* what the levels above gave: the deeper path wins. If the result
//! holds `NoAccess`, nothing else counts.
//!
//! A privilege-separated token is resolved as its own subject: it matches only `tokens`
//! entries, never its owner's user or group entries (that intersection happens in
//! `permissions.rs`).

use std::collections::{BTreeMap, BTreeSet};

use super::privs::NO_ACCESS;

/// role → propagate
type Grants = BTreeMap<String, bool>;

/// Who an `acl:` entry names.
pub(crate) enum Member<'a> {
    User(&'a str),
    Group(&'a str),
    Token(&'a str),
}

/// Whose roles are being resolved.
#[derive(Clone, Copy)]
pub(crate) enum Subject<'a> {
    User(&'a str),
    /// A full token id, `user@realm!name`.
    Token(&'a str),
}

/// One node of the ACL tree; the root node is `/`.
#[derive(Debug, Default)]
pub(crate) struct AclNode {
    children: BTreeMap<String, AclNode>,
    users: BTreeMap<String, Grants>,
    groups: BTreeMap<String, Grants>,
    tokens: BTreeMap<String, Grants>,
}

impl AclNode {
    /// Records a grant on a normalized path; a repeated grant of the same role keeps the
    /// last propagate flag, as PVE's parser does.
    pub(crate) fn grant(&mut self, path: &str, member: Member<'_>, role: &str, propagate: bool) {
        let mut node = self;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            node = node.children.entry(part.to_string()).or_default();
        }
        let (table, name) = match member {
            Member::User(n) => (&mut node.users, n),
            Member::Group(n) => (&mut node.groups, n),
            Member::Token(n) => (&mut node.tokens, n),
        };
        table
            .entry(name.to_string())
            .or_default()
            .insert(role.to_string(), propagate);
    }

    /// The roles `subject` holds on the normalized `path`. `groups` maps group → members.
    pub(crate) fn roles(
        &self,
        subject: Subject<'_>,
        path: &str,
        groups: &BTreeMap<String, BTreeSet<String>>,
    ) -> BTreeSet<String> {
        // "/" is the root level only; "/a/b" is root, a, b.
        let parts: Vec<&str> = if path == "/" {
            vec![""]
        } else {
            path.split('/').collect()
        };
        let last = parts.len().saturating_sub(1);
        let mut node = Some(self);
        let mut roles = BTreeSet::new();
        for (level, part) in parts.iter().enumerate() {
            if !part.is_empty() {
                node = node.and_then(|n| n.children.get(*part));
            }
            // Nothing was ever granted this deep: later levels cannot change the result.
            let Some(n) = node else { break };
            let is_final = level == last;
            let found = match subject {
                Subject::Token(id) => applicable(n.tokens.get(id), is_final),
                Subject::User(user) => applicable(n.users.get(user), is_final)
                    .or_else(|| n.group_roles(user, is_final, groups)),
            };
            if let Some(found) = found {
                roles = found;
            }
        }
        if roles.contains(NO_ACCESS) {
            return BTreeSet::from([NO_ACCESS.to_string()]);
        }
        roles
    }

    /// Roles from all groups at this node that `user` is a member of. A grant to a group
    /// that user.cfg does not define matches nobody.
    fn group_roles(
        &self,
        user: &str,
        is_final: bool,
        groups: &BTreeMap<String, BTreeSet<String>>,
    ) -> Option<BTreeSet<String>> {
        let mut found = BTreeSet::new();
        for (group, grants) in &self.groups {
            if groups
                .get(group)
                .is_some_and(|members| members.contains(user))
            {
                found.extend(applicable(Some(grants), is_final).unwrap_or_default());
            }
        }
        (!found.is_empty()).then_some(found)
    }
}

/// The roles of one entry that apply at this level; `None` when none do, so that a user
/// entry with only non-propagating roles above the target falls through to group entries.
fn applicable(grants: Option<&Grants>, is_final: bool) -> Option<BTreeSet<String>> {
    let set: BTreeSet<String> = grants?
        .iter()
        .filter(|(_, propagate)| is_final || **propagate)
        .map(|(role, _)| role.clone())
        .collect();
    (!set.is_empty()).then_some(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(list: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        list.iter()
            .map(|(g, m)| (g.to_string(), m.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn names(set: &BTreeSet<String>) -> Vec<&str> {
        set.iter().map(String::as_str).collect()
    }

    #[test]
    fn deeper_grant_replaces_the_one_above() {
        let mut acl = AclNode::default();
        acl.grant("/", Member::User("a@pve"), "PVEAuditor", true);
        acl.grant(
            "/storage/local",
            Member::User("a@pve"),
            "PVEDatastoreUser",
            true,
        );
        let g = groups(&[]);
        let u = Subject::User("a@pve");
        assert_eq!(names(&acl.roles(u, "/", &g)), ["PVEAuditor"]);
        assert_eq!(names(&acl.roles(u, "/storage", &g)), ["PVEAuditor"]);
        assert_eq!(
            names(&acl.roles(u, "/storage/local", &g)),
            ["PVEDatastoreUser"]
        );
        assert_eq!(names(&acl.roles(u, "/storage/nfs", &g)), ["PVEAuditor"]);
    }

    #[test]
    fn non_propagating_grant_applies_to_the_exact_path_only() {
        let mut acl = AclNode::default();
        acl.grant("/nodes", Member::User("a@pve"), "PVESysAdmin", false);
        let g = groups(&[]);
        let u = Subject::User("a@pve");
        assert_eq!(names(&acl.roles(u, "/nodes", &g)), ["PVESysAdmin"]);
        assert!(acl.roles(u, "/nodes/pve1", &g).is_empty());
        assert!(acl.roles(u, "/", &g).is_empty());
    }

    #[test]
    fn user_entry_beats_group_entry_at_the_same_level() {
        let mut acl = AclNode::default();
        acl.grant("/vms", Member::Group("ops"), "PVEVMAdmin", true);
        acl.grant("/vms", Member::User("a@pve"), "PVEVMUser", true);
        let g = groups(&[("ops", &["a@pve", "b@pve"])]);
        assert_eq!(
            names(&acl.roles(Subject::User("a@pve"), "/vms/100", &g)),
            ["PVEVMUser"]
        );
        assert_eq!(
            names(&acl.roles(Subject::User("b@pve"), "/vms/100", &g)),
            ["PVEVMAdmin"]
        );
    }

    #[test]
    fn non_applicable_user_entry_falls_through_to_groups() {
        let mut acl = AclNode::default();
        acl.grant("/", Member::User("a@pve"), "PVEAuditor", false);
        acl.grant("/", Member::Group("ops"), "PVEVMUser", true);
        let g = groups(&[("ops", &["a@pve"])]);
        let u = Subject::User("a@pve");
        assert_eq!(names(&acl.roles(u, "/", &g)), ["PVEAuditor"]);
        assert_eq!(names(&acl.roles(u, "/vms/100", &g)), ["PVEVMUser"]);
    }

    #[test]
    fn groups_at_one_level_add_up_and_unknown_groups_match_nobody() {
        let mut acl = AclNode::default();
        acl.grant("/", Member::Group("one"), "PVEAuditor", true);
        acl.grant("/", Member::Group("two"), "PVEVMUser", true);
        acl.grant("/", Member::Group("ghost"), "Administrator", true);
        let g = groups(&[("one", &["a@pve"]), ("two", &["a@pve"])]);
        assert_eq!(
            names(&acl.roles(Subject::User("a@pve"), "/x", &g)),
            ["PVEAuditor", "PVEVMUser"]
        );
    }

    #[test]
    fn no_access_masks_other_roles_but_a_deeper_grant_replaces_it() {
        let mut acl = AclNode::default();
        acl.grant("/", Member::User("a@pve"), "NoAccess", true);
        acl.grant("/", Member::User("a@pve"), "PVEAuditor", true);
        acl.grant(
            "/storage/iso",
            Member::User("a@pve"),
            "PVEDatastoreAdmin",
            true,
        );
        let g = groups(&[]);
        let u = Subject::User("a@pve");
        assert_eq!(names(&acl.roles(u, "/nodes", &g)), ["NoAccess"]);
        assert_eq!(
            names(&acl.roles(u, "/storage/iso", &g)),
            ["PVEDatastoreAdmin"]
        );
    }

    #[test]
    fn tokens_see_only_token_entries() {
        let mut acl = AclNode::default();
        acl.grant("/", Member::User("a@pve"), "Administrator", true);
        acl.grant("/", Member::Group("ops"), "Administrator", true);
        acl.grant(
            "/storage",
            Member::Token("a@pve!ci"),
            "PVEDatastoreUser",
            true,
        );
        let g = groups(&[("ops", &["a@pve"])]);
        let t = Subject::Token("a@pve!ci");
        assert!(acl.roles(t, "/", &g).is_empty());
        assert_eq!(names(&acl.roles(t, "/storage/x", &g)), ["PVEDatastoreUser"]);
        assert!(
            acl.roles(Subject::Token("a@pve!other"), "/storage/x", &g)
                .is_empty()
        );
    }

    #[test]
    fn last_repeated_grant_sets_propagation() {
        let mut acl = AclNode::default();
        acl.grant("/a", Member::User("a@pve"), "PVEAuditor", true);
        acl.grant("/a", Member::User("a@pve"), "PVEAuditor", false);
        assert!(
            acl.roles(Subject::User("a@pve"), "/a/b", &groups(&[]))
                .is_empty()
        );
    }
}
