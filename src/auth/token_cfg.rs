//! `/etc/pve/priv/token.cfg`: one `<tokenid> <secret>` per line (acl:`TokenConfig.pm`).
//!
//! A line must be exactly two non-blank words separated by one space, and the first must be
//! a valid token id; anything else is logged and skipped. Blank lines are ignored. A later
//! line for the same token id wins.

use std::collections::BTreeMap;

use tracing::warn;

use super::authid::split_tokenid;

/// tokenid → secret
pub(crate) fn parse(text: &str) -> BTreeMap<String, String> {
    let mut secrets = BTreeMap::new();
    for line in text.split('\n') {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Some((id, secret)) => {
                secrets.insert(id.to_string(), secret.to_string());
            }
            None => warn!("skipping invalid token.cfg entry"),
        }
    }
    secrets
}

/// `^(\S+) (\S+)$` with a valid token id in front.
pub(crate) fn parse_line(line: &str) -> Option<(&str, &str)> {
    let (id, secret) = line.split_once(' ')?;
    let word = |s: &str| !s.is_empty() && !s.chars().any(char::is_whitespace);
    (word(id) && word(secret) && split_tokenid(id).is_some()).then_some((id, secret))
}

/// Compares a presented secret with the stored one without an early exit, so response
/// time does not tell how many leading characters were right. Only the length may leak,
/// and every stored secret has the same length (a UUID).
pub(crate) fn secrets_match(stored: &str, presented: &str) -> bool {
    let (a, b) = (stored.as_bytes(), presented.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_skips_invalid_lines() {
        let text = "\
a@pve!ci 5d6a1c2e-0000-4000-8000-000000000001

not-a-token 5d6a1c2e
b@pve!t2  two-spaces
b@pve!t3 too many words
c@pve!t4 tab\tinside
root@pam!x1 5d6a1c2e-0000-4000-8000-000000000002
a@pve!ci overridden";
        let secrets = parse(text);
        assert_eq!(secrets.len(), 2);
        assert_eq!(secrets["a@pve!ci"], "overridden");
        assert_eq!(
            secrets["root@pam!x1"],
            "5d6a1c2e-0000-4000-8000-000000000002"
        );
    }

    #[test]
    fn carriage_return_makes_a_line_invalid_as_in_pve() {
        assert!(parse("a@pve!ci secret\r\n").is_empty());
    }

    #[test]
    fn secret_comparison() {
        assert!(secrets_match("abc-123", "abc-123"));
        assert!(!secrets_match("abc-123", "abc-124"));
        assert!(!secrets_match("abc-123", "abc-12"));
        assert!(!secrets_match("abc", ""));
    }
}
