//! The pieces of Perl semantics PVE's behaviour depends on: string truth, `\s`, `$` before a
//! final newline, the text of `$!`, and pve-common's `PVE::Tools::split_list`.

use std::io;

/// Perl's `\s` on byte strings: ASCII white space including the vertical tab.
pub fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C')
}

/// Perl truth of a string: only `""` and `"0"` are false (`"00"` and `"0.0"` are true).
pub fn truthy(text: &str) -> bool {
    !(text.is_empty() || text == "0")
}

/// Perl's `$` also matches before one final newline, so `"local\n"` passes `/^\w+$/`.
pub fn without_final_newline(text: &str) -> &str {
    text.strip_suffix('\n').unwrap_or(text)
}

/// The text Perl puts in `$!` for an OS error: the C library message without Rust's
/// ` (os error N)` suffix, so messages read like PVE's.
pub fn errno_text(err: &io::Error) -> String {
    let text = err.to_string();
    match err.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map(str::to_owned)
            .unwrap_or(text),
        None => text,
    }
}

/// `PVE::Tools::split_list`, which PVE uses for every list in a parameter or config value
/// (content types, nodes, group members, status filters): a text holding a NUL byte is split
/// at NULs only; otherwise commas and semicolons count as white space and the items are the
/// runs between white space. `shift || ''` makes `"0"` an empty list.
pub fn split_list(text: &str) -> Vec<&str> {
    if !truthy(text) {
        return Vec::new();
    }
    if text.contains('\0') {
        // Perl's split drops trailing empty fields.
        let mut items: Vec<&str> = text.split('\0').collect();
        while items.last().is_some_and(|i| i.is_empty()) {
            items.pop();
        }
        return items;
    }
    text.split(|c: char| c == ',' || c == ';' || is_space(c))
        .filter(|item| !item.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_and_space() {
        for (text, truth) in [
            ("", false),
            ("0", false),
            ("1", true),
            ("00", true),
            ("0.0", true),
            (" ", true),
            ("yes", true),
        ] {
            assert_eq!(truthy(text), truth, "{text:?}");
        }
        assert!(is_space('\x0B') && !is_space('\u{a0}'));
        assert_eq!(without_final_newline("a\n"), "a");
        assert_eq!(without_final_newline("a\n\n"), "a\n");
    }

    #[test]
    fn errno_text_drops_rust_suffix() {
        let err = io::Error::from_raw_os_error(2);
        assert_eq!(errno_text(&err), "No such file or directory");
        assert_eq!(errno_text(&io::Error::other("plain")), "plain");
    }

    #[test]
    fn split_list_as_pve() {
        assert_eq!(
            split_list("a@pve, b@pve;c@pve  d@pve,,"),
            ["a@pve", "b@pve", "c@pve", "d@pve"]
        );
        assert_eq!(split_list("iso,vztmpl"), ["iso", "vztmpl"]);
        assert_eq!(
            split_list(" iso, vztmpl;backup  images "),
            ["iso", "vztmpl", "backup", "images"]
        );
        assert!(split_list(",,").is_empty());
        assert_eq!(
            split_list("iso, vztmpl;import\t\x0Bbackup"),
            ["iso", "vztmpl", "import", "backup"]
        );
        assert_eq!(split_list(" ,;a"), ["a"]);
        assert!(split_list("0").is_empty());
        assert!(split_list("").is_empty());
        assert_eq!(split_list("a b\0c\0\0"), ["a b", "c"]);
        assert_eq!(split_list("\0a"), ["", "a"]);
    }
}
