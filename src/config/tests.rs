use super::*;

#[test]
fn flags_win_over_file_over_defaults() {
    let file: RawConfig =
        toml::from_str("node = \"filenode\"\nlisten = \"127.0.0.1:9000\"\ntls = false\n")
            .expect("toml");
    let flags = RawConfig {
        listen: Some("127.0.0.1:9001".into()),
        ..Default::default()
    };
    let cfg = Config::resolve(flags.over(file)).expect("valid");
    assert_eq!(cfg.node, "filenode");
    assert_eq!(cfg.listen.port(), 9001);
    assert!(!cfg.tls);
    assert!(cfg.embedded_access && cfg.embedded_storage);
    assert!(cfg.state_dir.is_absolute());
    assert_eq!(cfg.storage_cfg, cfg.state_dir.join("storage.cfg"));
    assert_eq!(cfg.auth_fail_delay, Duration::from_secs(3));
    assert_eq!(cfg.partials.keep, Duration::from_secs(24 * 3600));
    assert_eq!(cfg.partials.collect_every, Duration::from_secs(3600));
}

#[test]
fn unknown_keys_and_bad_values_are_errors() {
    assert!(toml::from_str::<RawConfig>("bogus = 1").is_err());
    let bad = RawConfig {
        node: Some("-x".into()),
        ..Default::default()
    };
    assert_eq!(
        Config::resolve(bad).expect_err("bad node").to_string(),
        "invalid node '-x': value does not look like a valid node name"
    );
    let bad = RawConfig {
        partial_keep_hours: Some(-1.0),
        ..Default::default()
    };
    assert_eq!(
        Config::resolve(bad).expect_err("negative").to_string(),
        "invalid partial-keep-hours '-1': expected 0 to 100000 hours"
    );
    let bad: RawConfig = toml::from_str("connections = 17").expect("toml");
    assert_eq!(
        Config::resolve(bad).expect_err("too many").to_string(),
        "invalid connections '17': expected 1 to 16"
    );
    let four: RawConfig = toml::from_str("connections = 4").expect("toml");
    assert_eq!(Config::resolve(four).expect("valid").limits.connections, 4);
    let default = Config::resolve(RawConfig::default()).expect("valid");
    assert_eq!(default.limits.connections, 1, "PVE's one connection");
}

#[test]
fn url_rules_from_toml_and_bad_rules_name_key_and_reason() {
    let file: RawConfig = toml::from_str(
            "url-allow = [\"scheme:https\"]\nurl-deny = [\"net:10.0.0.0/8\", \"host:*.internal.example\"]\nmax-redirects = 3\n",
        )
        .expect("toml");
    let cfg = Config::resolve(file.clone()).expect("valid");
    assert_eq!(cfg.max_redirects, 3);
    assert_eq!(
        cfg.url_policy,
        UrlPolicy::new(
            vec!["scheme:https".parse().expect("rule")],
            vec![
                "net:10.0.0.0/8".parse().expect("rule"),
                "host:*.internal.example".parse().expect("rule"),
            ],
        )
    );
    // A flag list replaces the file's list.
    let flags = RawConfig {
        url_deny: Some(vec!["net:10.1.2.3/8".into()]),
        ..Default::default()
    };
    assert_eq!(
        Config::resolve(flags.over(file))
            .expect_err("host bits")
            .to_string(),
        "invalid url-deny 'net:10.1.2.3/8': host bits are set; the network is 10.0.0.0/8"
    );
    let bad = RawConfig {
        url_allow: Some(vec!["debian.org".into()]),
        ..Default::default()
    };
    assert_eq!(
        Config::resolve(bad).expect_err("no kind").to_string(),
        "invalid url-allow 'debian.org': expected scheme:NAME, host:NAME, host:*.DOMAIN or net:ADDRESS[/PREFIX]"
    );
}

#[test]
fn header_limits_default_to_pve_and_stay_under_actix() {
    let cfg = Config::resolve(RawConfig::default()).expect("valid");
    assert_eq!(cfg.headers, HeaderLimits::default());
    assert_eq!(cfg.max_redirects, 20);
    let big = RawConfig {
        max_header_size: Some(200_000),
        ..Default::default()
    };
    assert_eq!(
        Config::resolve(big).expect_err("too big").to_string(),
        "invalid max-header-size '200000': expected 1024 to 65536 bytes"
    );
    let many = RawConfig {
        max_header_count: Some(97),
        ..Default::default()
    };
    assert!(Config::resolve(many).is_err());
    assert_eq!(cfg.max_body_size, 512 * 1024);
    let big = RawConfig {
        max_body_size: Some(100 << 20),
        ..Default::default()
    };
    assert_eq!(
        Config::resolve(big).expect_err("too big").to_string(),
        "invalid max-body-size '104857600': expected 1024 to 67108864 bytes"
    );
}
