//! ACL object paths: acl:`AccessControl.pm` normalize_path and check_path.

/// PVE's normalize_path: squeeze `//`, drop a trailing `/`, force a leading `/`, and allow
/// only ASCII alphanumerics and `.-_/`. `None` where PVE returns undef, which includes an
/// empty path and, through Perl truthiness, the path `0`.
pub(crate) fn normalize_path(path: &str) -> Option<String> {
    if path.is_empty() || path == "0" {
        return None;
    }
    let mut out = String::with_capacity(path.len() + 1);
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
        .then_some(out)
}

/// The object paths an ACL may be set on (PVE's check_path, used by the ACL API). Only
/// `add_token` needs it: user.cfg itself accepts any normalized path.
pub(crate) fn check_path(path: &str) -> bool {
    let segs: Vec<&str> = if path == "/" {
        Vec::new()
    } else {
        match path.strip_prefix('/') {
            Some(rest) => rest.split('/').collect(),
            None => return false,
        }
    };
    let id = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    let vmid =
        |s: &str| s.len() >= 3 && !s.starts_with('0') && s.chars().all(|c| c.is_ascii_digit());
    let vlan = |s: &str| {
        (1..=4).contains(&s.len()) && !s.starts_with('0') && s.chars().all(|c| c.is_ascii_digit())
    };
    match segs.as_slice() {
        [] => true,
        ["access"] | ["nodes"] | ["pool"] | ["sdn"] | ["storage"] | ["vms"] | ["mapping"] => true,
        ["access", "groups"] | ["access", "realm"] | ["sdn", "zones"] => true,
        ["access", "groups" | "realm", x] => id(x),
        ["nodes" | "pool" | "storage" | "mapping", x] => id(x),
        // Pools nest up to three levels since libpve-access-control 8.0.7.
        ["pool", x, y] => id(x) && id(y),
        ["pool", x, y, z] => id(x) && id(y) && id(z),
        ["vms", x] => vmid(x),
        ["mapping", x, y] | ["sdn", "zones", x, y] => id(x) && id(y),
        ["sdn", "zones", x] => id(x),
        ["sdn", "zones", x, y, v] => id(x) && id(y) && vlan(v),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_pve() {
        assert_eq!(normalize_path("/").as_deref(), Some("/"));
        assert_eq!(normalize_path("//").as_deref(), Some("/"));
        assert_eq!(normalize_path("/vms/100/").as_deref(), Some("/vms/100"));
        assert_eq!(
            normalize_path("storage//local").as_deref(),
            Some("/storage/local")
        );
        assert_eq!(
            normalize_path("/nodes/pve-1.lan").as_deref(),
            Some("/nodes/pve-1.lan")
        );
    }

    #[test]
    fn rejects_empty_zero_and_odd_characters() {
        assert_eq!(normalize_path(""), None);
        assert_eq!(normalize_path("0"), None);
        assert_eq!(normalize_path("/storage/lo cal"), None);
        assert_eq!(normalize_path("/storage/lo:cal"), None);
        assert_eq!(normalize_path("/störäge"), None);
    }

    #[test]
    fn check_path_accepts_known_objects_only() {
        for ok in [
            "/",
            "/storage",
            "/storage/local",
            "/nodes/pve1",
            "/vms/100",
            "/pool/dev",
            "/access/groups/admins",
            "/access/realm/pve",
            "/sdn/zones/localnetwork/vmbr0",
            "/sdn/zones/z1/vnet1/42",
            "/mapping/pci/gpu0",
        ] {
            assert!(check_path(ok), "{ok}");
        }
        for bad in [
            "/vms/99",
            "/vms/0100",
            "/storage/a/b",
            "/foo",
            "/nodes/",
            "/sdn/zones/z/v/0",
        ] {
            assert!(!check_path(bad), "{bad}");
        }
    }
}
