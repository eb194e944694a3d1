//! URLs may carry credentials (`http://user:secret@host/x.iso`). They are used for the request
//! but never shown: every text that leaves the daemon (task log lines, task exit statuses, API
//! error messages, its own log) goes through [`userinfo`], which replaces the userinfo part of
//! any URL in it with `***`. Doing it where text leaves, rather than where each message is
//! made, also covers texts that quote a URL without our knowing, such as an HTTP library's
//! error message.

use std::borrow::Cow;

/// What replaces the userinfo of a URL.
pub const MASK: &str = "***";

/// `text` with the userinfo of every `scheme://userinfo@host` in it replaced by [`MASK`].
pub fn userinfo(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#', or at what cannot be in a URL; its
        // userinfo, if any, before its last '@' (RFC 3986 allows none in userinfo unencoded,
        // but clients send one anyway).
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#') || c.is_whitespace() || "'\"<>()`".contains(c)
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        if head_is_scheme(head)
            && let Some(at) = authority.rfind('@')
        {
            out.push_str(MASK);
            out.push_str(&authority[at..]);
            changed = true;
        } else {
            out.push_str(authority);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// A writer with [`userinfo`] applied to what goes through it: the daemon's own log is
/// `Redacting(std::io::stderr())`. tracing writes each event with one call, so no URL is split
/// across two.
pub struct Redacting<W>(pub W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(userinfo(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Whether `head` (text up to and including `://`) ends in a URL scheme.
fn head_is_scheme(head: &str) -> bool {
    let scheme = &head[..head.len() - 3];
    let start = scheme
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
        .map_or(0, |i| i + 1);
    scheme[start..].starts_with(|c: char| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_userinfo_in_any_url_of_a_text() {
        assert_eq!(
            userinfo("downloading http://user:secret@host:8080/x.iso to /a"),
            "downloading http://***@host:8080/x.iso to /a"
        );
        assert_eq!(
            userinfo("URL 'https://tok@10.0.0.1/x' is not allowed; https://a:b@c?d@e"),
            "URL 'https://***@10.0.0.1/x' is not allowed; https://***@c?d@e"
        );
        // A '@' in the password itself, sent unencoded.
        assert_eq!(userinfo("ftp://u:p@ss@h/"), "ftp://***@h/");
        assert_eq!(
            userinfo("error sending request for url (http://u:p@h/x.iso)"),
            "error sending request for url (http://***@h/x.iso)"
        );
    }

    #[test]
    fn the_log_writer_masks_what_it_writes() {
        use std::io::Write;
        let mut out = Redacting(Vec::new());
        out.write_all(b"fetching http://u:secret@h/x.iso\n")
            .expect("write");
        assert_eq!(
            String::from_utf8_lossy(&out.0),
            "fetching http://***@h/x.iso\n"
        );
    }

    #[test]
    fn leaves_other_text_alone() {
        for text in [
            "http://host/x.iso",
            "mail me at a@b.c",
            "http://host/path@not-userinfo",
            "no url",
            "://x@y",
        ] {
            assert!(matches!(userinfo(text), Cow::Borrowed(_)), "{text}");
        }
    }
}
