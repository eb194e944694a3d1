//! What iPXE reads: MAC addresses in the forms its settings expand to (`${mac}` is
//! `52:54:00:12:34:56`, `${mac:hexhyp}` is `52-54-00-12-34-56`), and scripts.

/// A MAC address as lower-case, colon-separated hex; `None` when it is not one.
pub fn normalize_mac(text: &str) -> Option<String> {
    let hex: String = text.chars().filter(|c| !matches!(c, ':' | '-')).collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    // Separators, when present, sit between every two bytes.
    let bytes = text.as_bytes();
    let separated = text.len() == 17 && (2..17).step_by(3).all(|i| matches!(bytes[i], b':' | b'-'));
    if text.len() != 12 && !separated {
        return None;
    }
    let lower = hex.to_ascii_lowercase();
    Some(
        (0..6)
            .map(|i| &lower[i * 2..i * 2 + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// Asks again with the MAC address in the query: what a DHCP boot file points at.
pub fn chain_by_mac(base: &str) -> String {
    format!("#!ipxe\nchain {base}/boot/ipxe?mac=${{mac:hexhyp}}\n")
}

/// Boots the machine from its own disk.
pub fn exit(reason: &str) -> String {
    format!("#!ipxe\necho isolib: {}\nexit\n", one_line(reason))
}

/// Boots the image at `url`, saying what and for whom.
pub fn sanboot(image: &str, host: &str, mac: &str, url: &str) -> String {
    format!(
        "#!ipxe\necho Booting {} for {} ({})\nsanboot {}\n",
        one_line(image),
        one_line(host),
        mac,
        one_line(url)
    )
}

/// Script text stays on its line: a newline in a name would start a command.
fn one_line(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_ipxe_sends() {
        let want = Some("52:54:00:ab:cd:ef".to_owned());
        assert_eq!(normalize_mac("52:54:00:AB:CD:EF"), want);
        assert_eq!(normalize_mac("52-54-00-ab-cd-ef"), want);
        assert_eq!(normalize_mac("525400abcdef"), want);
        assert_eq!(normalize_mac("52:54:00:ab:cd"), None);
        assert_eq!(normalize_mac("52:54:00:ab:cd:eg"), None);
        assert_eq!(normalize_mac("5:254:00:ab:cd:ef:"), None);
        assert_eq!(normalize_mac("5:254:00:ab:cd:ef"), None);
    }

    #[test]
    fn scripts() {
        assert_eq!(
            sanboot(
                "local:iso/a.iso",
                "web1",
                "52:54:00:ab:cd:ef",
                "http://h:80/files/local/iso/a.iso"
            ),
            "#!ipxe\necho Booting local:iso/a.iso for web1 (52:54:00:ab:cd:ef)\nsanboot http://h:80/files/local/iso/a.iso\n"
        );
        assert_eq!(
            exit("no host\nchain evil"),
            "#!ipxe\necho isolib: no hostchain evil\nexit\n"
        );
        assert_eq!(
            chain_by_mac("http://h:8"),
            "#!ipxe\nchain http://h:8/boot/ipxe?mac=${mac:hexhyp}\n"
        );
    }
}
