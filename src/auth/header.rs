//! Credentials out of a `Cookie` or `Authorization` header value, as http:`Formatter.pm`
//! extract_auth_value does it (spec §6.1): the regex `(?:^|\s)<KEY>(?:=| )([^;]*)`, first
//! match, then percent-decoding. The key may thus be followed by `=` or by a space, and the
//! value runs up to the next `;`.

use percent_encoding::percent_decode_str;
use regex::Regex;

/// The value stored under `key` in `header`, percent-decoded.
///
/// An empty value gives `None`: PVE tests the result for Perl truth, so an empty credential
/// counts as absent there too.
pub fn extract_auth_value(header: &str, key: &str) -> Option<String> {
    // `\s` is written out as ASCII: Perl matches the header's raw bytes, where `\s` is
    // space, \t, \n, \v, \f and \r.
    let pattern = format!(
        r"(?:^|[ \t\n\x0B\x0C\r]){}(?:=| )([^;]*)",
        regex::escape(key)
    );
    let re = Regex::new(&pattern).ok()?;
    let raw = re.captures(header)?.get(1)?.as_str();
    if raw.is_empty() {
        return None;
    }
    // URI::Escape's uri_unescape: only %XX is decoded ('+' stays), bad escapes stay as they are.
    Some(percent_decode_str(raw).decode_utf8_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_followed_by_equals_sign() {
        assert_eq!(
            extract_auth_value("PVEAPIToken=ci@pve!build=0f0e-11", "PVEAPIToken").as_deref(),
            Some("ci@pve!build=0f0e-11")
        );
    }

    #[test]
    fn key_followed_by_space() {
        assert_eq!(
            extract_auth_value("PVEAPIToken ci@pve!build=abc", "PVEAPIToken").as_deref(),
            Some("ci@pve!build=abc")
        );
    }

    #[test]
    fn value_is_percent_decoded_but_plus_is_kept() {
        assert_eq!(
            extract_auth_value(
                "PVEAuthCookie=PVE%3Aroot%40pam%3A6745D3E2%3A%3Aab+c%2F%3D",
                "PVEAuthCookie"
            )
            .as_deref(),
            Some("PVE:root@pam:6745D3E2::ab+c/=")
        );
        // A broken escape is left alone.
        assert_eq!(
            extract_auth_value("PVEAuthCookie=a%zz", "PVEAuthCookie").as_deref(),
            Some("a%zz")
        );
    }

    #[test]
    fn finds_the_cookie_among_others_and_stops_at_semicolon() {
        let header = "lang=en; PVEAuthCookie=PVE%3Aroot%40pam%3AAA; theme=dark";
        assert_eq!(
            extract_auth_value(header, "PVEAuthCookie").as_deref(),
            Some("PVE:root@pam:AA")
        );
    }

    #[test]
    fn key_must_start_the_header_or_follow_whitespace() {
        assert_eq!(
            extract_auth_value("XPVEAuthCookie=abc", "PVEAuthCookie"),
            None
        );
        assert_eq!(
            extract_auth_value("a=1;PVEAuthCookie=abc", "PVEAuthCookie"),
            None
        );
        assert_eq!(
            extract_auth_value("a=1;\tPVEAuthCookie=abc", "PVEAuthCookie").as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn missing_or_empty_value_is_none() {
        assert_eq!(extract_auth_value("", "PVEAuthCookie"), None);
        assert_eq!(extract_auth_value("other=1", "PVEAuthCookie"), None);
        assert_eq!(
            extract_auth_value("PVEAuthCookie=; x=1", "PVEAuthCookie"),
            None
        );
        // The key is literal text, not a pattern.
        assert_eq!(extract_auth_value("PVEAPITokenX=1", "PVEAPIToken."), None);
    }

    #[test]
    fn first_occurrence_wins() {
        assert_eq!(
            extract_auth_value("PVEAuthCookie=one; PVEAuthCookie=two", "PVEAuthCookie").as_deref(),
            Some("one")
        );
    }
}
