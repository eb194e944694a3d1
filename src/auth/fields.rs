//! The field grammar of user.cfg lines (acl:`AccessControl.pm` parse_user_config): fields, expiry
//! and simple names.

/// `split(/:/, $line)` with each field trimmed. Perl's split drops trailing empty fields, so
/// a line ending in `:` has no empty last field.
pub(crate) fn split_fields(line: &str) -> Vec<&str> {
    let mut fields: Vec<&str> = line.split(':').map(str::trim).collect();
    while fields.last().is_some_and(|f| f.is_empty()) {
        fields.pop();
    }
    fields
}

/// An `expire` field: empty or `0` means never, otherwise decimal epoch seconds. `None` for
/// anything else, which makes PVE skip the whole line. A number too large for `i64` is
/// clamped: it lies far beyond any `now`.
pub(crate) fn parse_expire(field: &str) -> Option<i64> {
    if !crate::pve::perl::truthy(field) {
        return Some(0);
    }
    if !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(field.parse().unwrap_or(i64::MAX))
}

/// `expire` semantics shared by users and tokens: 0 never expires, and the expiry second
/// itself is still valid (`$expire && $expire < $now`).
pub(crate) fn expired(expire: i64, now: i64) -> bool {
    expire != 0 && expire < now
}

/// Names of groups, roles and pools: `[A-Za-z0-9\.\-_]+`.
pub(crate) fn is_simple_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_trimmed_and_trailing_empties_dropped() {
        assert_eq!(split_fields("user: a@pve :1::"), ["user", "a@pve", "1"]);
        assert_eq!(split_fields("acl:1:/::x:"), ["acl", "1", "/", "", "x"]);
    }

    #[test]
    fn expire_field() {
        assert_eq!(parse_expire(""), Some(0));
        assert_eq!(parse_expire("0"), Some(0));
        assert_eq!(parse_expire("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_expire("-5"), None);
        assert_eq!(parse_expire("soon"), None);
        assert_eq!(parse_expire("99999999999999999999999"), Some(i64::MAX));
        assert!(!expired(0, i64::MAX));
        assert!(!expired(100, 100));
        assert!(expired(100, 101));
    }

    #[test]
    fn simple_names() {
        assert!(is_simple_name("PVE_custom-1.0"));
        assert!(!is_simple_name(""));
        assert!(!is_simple_name("a/b"));
        assert!(!is_simple_name("a b"));
    }
}
