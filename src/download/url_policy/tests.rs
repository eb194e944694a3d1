use super::*;

fn rules(list: &[&str]) -> Vec<Rule> {
    list.iter().map(|r| r.parse().expect(r)).collect()
}

fn policy(allow: &[&str], deny: &[&str]) -> UrlPolicy {
    UrlPolicy::new(rules(allow), rules(deny))
}

fn check(p: &UrlPolicy, url: &str) -> Result<(), String> {
    p.check_url(&Url::parse(url).expect(url))
        .map_err(|r| r.to_string())
}

fn addr(a: &str) -> IpAddr {
    a.parse().expect(a)
}

#[test]
fn rules_parse_and_print_canonically() {
    for (text, shown) in [
        ("scheme:HTTPS", "scheme:https"),
        ("host:Deb.Debian.org.", "host:deb.debian.org"),
        ("host:*.debian.org", "host:*.debian.org"),
        ("net:10.0.0.0/8", "net:10.0.0.0/8"),
        ("net:192.168.1.5", "net:192.168.1.5/32"),
        ("net:fd00::/8", "net:fd00::/8"),
        ("net:::1", "net:::1/128"),
        ("net:0.0.0.0/0", "net:0.0.0.0/0"),
        ("net:::ffff:10.0.0.0/104", "net:10.0.0.0/8"),
    ] {
        assert_eq!(
            text.parse::<Rule>().expect(text).to_string(),
            shown,
            "{text}"
        );
    }
}

#[test]
fn bad_rules_say_why() {
    for (text, err) in [
        ("10.0.0.0/8", RuleError::Form),
        ("net:", RuleError::Form),
        ("cidr:10.0.0.0/8", RuleError::Kind("cidr".into())),
        ("scheme:ftp", RuleError::Scheme),
        ("host:10.1.2.3", RuleError::HostIsAddress("10.1.2.3".into())),
        ("host:[::1]", RuleError::HostIsAddress("::1".into())),
        ("host:a.*.org", RuleError::Wildcard),
        ("host:*", RuleError::Wildcard),
        (
            "host:bad_name.org",
            RuleError::HostName("bad_name.org".into()),
        ),
        ("host:a..org", RuleError::HostName("a..org".into())),
        ("net:10.0.0/8", RuleError::Address("10.0.0".into())),
        ("net:10.0.0.0/33", RuleError::Prefix("33".into())),
        ("net:fd00::/129", RuleError::Prefix("129".into())),
        ("net:10.0.0.0/x", RuleError::Prefix("x".into())),
    ] {
        assert_eq!(text.parse::<Rule>(), Err(err), "{text}");
    }
    assert_eq!(
        "net:10.1.2.3/8"
            .parse::<Rule>()
            .expect_err("host bits")
            .to_string(),
        "host bits are set; the network is 10.0.0.0/8"
    );
    assert_eq!(
        "net:fd00::1/8"
            .parse::<Rule>()
            .expect_err("host bits")
            .to_string(),
        "host bits are set; the network is fd00::/8"
    );
}

#[test]
fn networks_ipv4_and_ipv6() {
    let p = policy(&[], &["net:10.0.0.0/8", "net:fc00::/7", "net:::1"]);
    assert_eq!(
        p.check_addr(addr("10.1.2.3")).map_err(|r| r.to_string()),
        Err("address 10.1.2.3 is in denied network 10.0.0.0/8".into())
    );
    assert!(p.check_addr(addr("11.0.0.1")).is_ok());
    assert!(p.check_addr(addr("fd12::1")).is_err());
    assert!(p.check_addr(addr("fe80::1")).is_ok());
    assert!(p.check_addr(addr("::1")).is_err());
    assert!(p.check_addr(addr("::2")).is_ok());
    // A mapped address is its IPv4 address, so the IPv4 rule catches it.
    assert_eq!(
        p.check_addr(addr("::ffff:10.9.9.9")),
        Err(Refusal::AddressDenied {
            addr: addr("10.9.9.9"),
            net: "10.0.0.0/8".parse().expect("net"),
        })
    );
    let all = policy(&[], &["net:0.0.0.0/0"]);
    assert!(all.check_addr(addr("255.255.255.255")).is_err());
    assert!(all.check_addr(addr("2001:db8::1")).is_ok());
}

#[test]
fn wildcard_hosts_match_names_below_only() {
    let p = policy(&[], &["host:*.example.org", "host:exact.test"]);
    assert!(check(&p, "http://a.example.org/x").is_err());
    assert!(check(&p, "http://a.b.EXAMPLE.org./x").is_err());
    assert!(check(&p, "http://example.org/x").is_ok());
    assert!(check(&p, "http://badexample.org/x").is_ok());
    assert_eq!(
        check(&p, "http://exact.test./x"),
        Err("host 'exact.test' matches denied host 'exact.test'".into())
    );
    assert!(check(&p, "http://sub.exact.test/x").is_ok());
}

#[test]
fn deny_wins_and_allow_lists_close_their_kind_only() {
    let p = policy(
        &["host:*.debian.org", "net:192.168.0.0/16"],
        &["host:evil.debian.org", "net:192.168.66.0/24"],
    );
    assert!(check(&p, "https://deb.debian.org/x").is_ok());
    assert_eq!(
        check(&p, "https://evil.debian.org/x"),
        Err("host 'evil.debian.org' matches denied host 'evil.debian.org'".into())
    );
    assert_eq!(
        check(&p, "https://example.com/x"),
        Err("host 'example.com' is not one of the allowed hosts".into())
    );
    // An address is no host name, so it fails an allow list of hosts.
    assert_eq!(
        check(&p, "http://192.168.1.1/x"),
        Err("host '192.168.1.1' is not one of the allowed hosts".into())
    );
    assert!(p.check_addr(addr("192.168.1.1")).is_ok());
    assert!(p.check_addr(addr("192.168.66.1")).is_err());
    assert_eq!(
        p.check_addr(addr("8.8.8.8")).map_err(|r| r.to_string()),
        Err("address 8.8.8.8 is not in an allowed network".into())
    );
    // No scheme rules: http and https both pass.
    assert!(check(&p, "http://deb.debian.org/x").is_ok());
}

#[test]
fn schemes() {
    let open = UrlPolicy::default();
    assert!(check(&open, "http://h/x").is_ok());
    assert!(check(&open, "https://h/x").is_ok());
    assert_eq!(
        check(&open, "ftp://h/x"),
        Err("scheme 'ftp' is not one of the allowed schemes".into())
    );
    let https_only = policy(&["scheme:https"], &[]);
    assert!(check(&https_only, "http://h/x").is_err());
    assert!(check(&https_only, "https://h/x").is_ok());
    let no_http = policy(&[], &["scheme:http"]);
    assert_eq!(
        check(&no_http, "http://h/x"),
        Err("scheme 'http' is denied".into())
    );
}

#[test]
fn address_literals_are_judged_by_net_rules() {
    let p = policy(&[], &["net:127.0.0.0/8", "net:::1"]);
    assert_eq!(
        check(&p, "http://127.0.0.1:8006/x"),
        Err("address 127.0.0.1 is in denied network 127.0.0.0/8".into())
    );
    // The URL parser reads these as 127.0.0.1 too, as the connector will.
    assert!(check(&p, "http://2130706433/x").is_err());
    assert!(check(&p, "http://0x7f.1/x").is_err());
    assert!(check(&p, "http://[::1]/x").is_err());
    assert!(check(&p, "http://[::ffff:127.0.0.1]/x").is_err());
    assert!(check(&p, "http://[::2]/x").is_ok());
}

#[test]
fn error_text() {
    let e = PolicyError {
        target: Target::Url("http://10.1.2.3/x.iso".into()),
        reasons: vec![Refusal::AddressDenied {
            addr: addr("10.1.2.3"),
            net: "10.0.0.0/8".parse().expect("net"),
        }],
    };
    assert_eq!(
        e.to_string(),
        "URL 'http://10.1.2.3/x.iso' is not allowed: address 10.1.2.3 is in denied network 10.0.0.0/8"
    );
    let many = PolicyError {
        target: Target::Host("big".into()),
        reasons: (1..=6)
            .map(|i| Refusal::AddressNotAllowed(addr(&format!("10.0.0.{i}"))))
            .collect(),
    };
    assert!(
        many.to_string().starts_with(
            "host 'big' is not allowed: address 10.0.0.1 is not in an allowed network, "
        ) && many.to_string().ends_with(" and 2 more"),
        "{many}"
    );
    // reqwest nests what the resolver or the redirect policy return as sources.
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] PolicyError);
    let wrapped = Outer(e.clone());
    assert_eq!(PolicyError::find(&wrapped), Some(&e));
    assert_eq!(PolicyError::find(&std::io::Error::other("x")), None);
}
