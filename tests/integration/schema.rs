//! The exported API description (`api-schema/`): the checked-in files are exactly what the code
//! generates, and the running daemon enforces every parameter constraint they state: for each
//! parameter of each endpoint, a request that violates it gets a 400 naming that parameter.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::util::{Daemon, NODE, TOKEN_ID, TOKEN_SECRET};
use serde_json::Value;

const FILES: [&str; 2] = ["isolib-api.json", "openapi.json"];

fn checked_in(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("api-schema")
        .join(name)
}

#[test]
fn checked_in_files_match_the_code() {
    let out = tempfile::tempdir().expect("tempdir");
    let status = Command::new(env!("CARGO_BIN_EXE_isolib"))
        .arg("schema")
        .arg("--out")
        .arg(out.path())
        .status()
        .expect("run isolib schema");
    assert!(status.success(), "isolib schema failed");
    let mut written: Vec<String> = std::fs::read_dir(out.path())
        .expect("read out dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, FILES);
    for name in FILES {
        let generated = std::fs::read(out.path().join(name)).expect("generated file");
        let in_git = std::fs::read(checked_in(name)).unwrap_or_default();
        assert!(
            generated == in_git,
            "api-schema/{name} differs from what the code generates: run `cargo run -- schema` \
             and commit the result"
        );
    }
}

/// Values that satisfy a parameter, for the parameters a request needs besides the one under
/// test. Each is checked against the exported constraints before it is used.
const VALID: &[(&str, &str)] = &[
    ("node", NODE),
    ("storage", "local"),
    ("url", "http://127.0.0.1:9/x.iso"),
    ("checksum-url", "http://127.0.0.1:9/SHA256SUMS"),
    ("signature-url", "http://127.0.0.1:9/SHA256SUMS.sign"),
    ("keyring", "debian"),
    ("template", "debian-12-standard_12.7-1_amd64.tar.zst"),
    ("content", "iso"),
    ("filename", "x.iso"),
    ("checksum", "0123456789abcdef"),
    ("checksum-algorithm", "sha256"),
    (
        "upid",
        "UPID:testnode:00000001:00000001:00000001:download:x.iso:root@pam!packer:",
    ),
    ("volume", "local:iso/x.iso"),
    ("username", "root@pam"),
    ("password", "not-the-password"),
    (
        "inventory",
        r#"{"format-version":1,"node":"testnode","exported":0,"volumes":[]}"#,
    ),
    ("notes", "a note"),
    ("tmpfilename", "/var/tmp/pveupload-0123abcd"),
    ("name", "debian-13"),
    ("pattern", r"debian-([0-9.]+)-amd64-netinst\.iso"),
    ("feed", "fcos"),
    ("keep", "2"),
    ("interval", "3600"),
    ("format", "kickstart"),
    ("files", r#"{"ks.cfg":"text\n"}"#),
    ("mac", "52:54:00:12:34:56"),
    ("nodes", NODE),
    ("sources", NODE),
    (
        "sha256",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ),
];

/// Per named format: values it accepts (also used to violate an enum without tripping the
/// format first) and one it rejects.
const FORMATS: &[(&str, &[&str], &str)] = &[
    ("pve-node", &[NODE], "-bad-"),
    ("pve-storage-id", &["local"], "a"),
    ("pve-storage-content", &["iso", "images", "backup"], "foo"),
    ("pve-node-list", &[NODE, "all"], "-bad-"),
];

/// Parameters that are not tested, with the reason. Every other parameter must be.
const NOT_COVERED: &[(&str, &str, &str, &str)] = &[];

#[derive(Debug, Clone)]
enum Sent {
    /// This value, in the path for a path parameter, else in the query or form body.
    Value(String),
    /// The key twice (`k=a&k=b`): PVE sees an array.
    Twice,
    /// Left out, for a parameter that is not optional.
    Omitted,
    /// A valid value, without the parameter it `requires`.
    WithoutPartner,
}

#[derive(Debug)]
struct Violation {
    sent: Sent,
    /// What the daemon must answer: the HTTP status, the only key of `errors` (the parameter
    /// itself, but the missing partner for [`Sent::WithoutPartner`]) and the start of its text
    /// (for a 500, of the status line's reason).
    status: u16,
    key: String,
    text: String,
}

fn str_field<'a>(spec: &'a Value, key: &str) -> Option<&'a str> {
    spec.get(key).and_then(Value::as_str)
}

fn format_entry(name: &str) -> &'static (&'static str, &'static [&'static str], &'static str) {
    FORMATS
        .iter()
        .find(|(n, _, _)| *n == name)
        .unwrap_or_else(|| {
            panic!("no values known for format '{name}': add it to FORMATS in tests/schema.rs")
        })
}

/// Whether `value` meets the exported constraints that can be checked without the daemon's
/// code (formats only through the FORMATS table).
fn satisfies(spec: &Value, value: &str) -> bool {
    let len = value.chars().count() as u64;
    let ok_type = match str_field(spec, "type") {
        Some("boolean") => matches!(value, "0" | "1"),
        Some("integer") => value.parse::<i64>().is_ok_and(|n| {
            spec["minimum"].as_i64().is_none_or(|m| n >= m)
                && spec["maximum"].as_i64().is_none_or(|m| n <= m)
        }),
        Some("string") => true,
        other => panic!("unknown type {other:?}"),
    };
    ok_type
        && spec["minLength"].as_u64().is_none_or(|m| len >= m)
        && spec["maxLength"].as_u64().is_none_or(|m| len <= m)
        && str_field(spec, "pattern")
            .is_none_or(|p| regex::Regex::new(p).expect("pattern").is_match(value))
        && str_field(spec, "format").is_none_or(|f| format_entry(f).1.contains(&value))
        && spec["enum"]
            .as_array()
            .is_none_or(|e| e.iter().any(|v| v.as_str() == Some(value)))
}

/// The violations the exported constraints of one parameter allow, each with PVE's answer.
fn violations(name: &str, spec: &Value, in_path: bool) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut node_lookup = None;
    let mut v = |sent: Sent, text: String| {
        out.push(Violation {
            sent,
            status: 400,
            key: name.to_string(),
            text,
        })
    };
    let ty = str_field(spec, "type").expect("type");
    match ty {
        "boolean" => v(
            Sent::Value("maybe".into()),
            "type check ('boolean') failed - got 'maybe'".into(),
        ),
        "integer" => {
            v(
                Sent::Value("x".into()),
                "type check ('integer') failed - got 'x'".into(),
            );
            if let Some(min) = spec["minimum"].as_i64() {
                v(
                    Sent::Value((min - 1).to_string()),
                    format!("value must have a minimum value of {min}"),
                );
            }
            if let Some(max) = spec["maximum"].as_i64() {
                v(
                    Sent::Value((max + 1).to_string()),
                    format!("value must have a maximum value of {max}"),
                );
            }
        }
        "string" => {
            if let Some(min) = spec["minLength"].as_u64().filter(|m| *m > 0) {
                v(
                    Sent::Value("a".repeat(min as usize - 1)),
                    format!("value must be at least {min} characters long"),
                );
            }
            if let Some(max) = spec["maxLength"].as_u64() {
                v(
                    Sent::Value("a".repeat(max as usize + 1)),
                    format!("value may only be {max} characters long"),
                );
            }
            if let Some(p) = str_field(spec, "pattern") {
                let re = regex::Regex::new(p).expect("exported pattern compiles");
                let bad = ["!", "-", "a", "0", " "]
                    .into_iter()
                    .find(|c| !re.is_match(c))
                    .unwrap_or_else(|| panic!("{name}: no non-matching value for /{p}/"));
                v(
                    Sent::Value(bad.into()),
                    "value does not match the regex pattern".into(),
                );
            }
            if let Some(f) = str_field(spec, "format") {
                let bad = format_entry(f).2;
                if in_path && name == "node" {
                    // PVE resolves the node before it validates: an unknown node is a
                    // hostname-lookup failure (500), whatever the format says.
                    node_lookup = Some(Violation {
                        sent: Sent::Value(bad.into()),
                        status: 500,
                        key: name.to_string(),
                        text: format!("hostname lookup '{bad}' failed"),
                    });
                } else {
                    v(Sent::Value(bad.into()), "invalid format - ".into());
                }
            }
            if let Some(values) = spec["enum"].as_array() {
                let allowed: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
                // A value the format accepts, so the enumeration is what rejects it.
                let candidates = str_field(spec, "format")
                    .map(|f| format_entry(f).1.to_vec())
                    .unwrap_or_default();
                let bad = candidates
                    .into_iter()
                    .chain(["not-in-enum"])
                    .find(|c| !allowed.contains(c))
                    .unwrap_or("not-in-enum");
                v(
                    Sent::Value(bad.into()),
                    format!("value '{bad}' does not have a value in the enumeration"),
                );
            }
        }
        other => panic!("{name}: unknown type {other}"),
    }
    // Every parameter may be sent twice. Off the path that is an array, which no type allows.
    // A path parameter cannot carry an array in the path; repeating it in the query
    // contradicts the path, which the URI merge rejects with a 400 naming it (PVE's
    // RESTHandler does the same).
    if in_path {
        v(
            Sent::Twice,
            "duplicate parameter (already defined in URI) with conflicting values!".into(),
        );
    } else {
        v(
            Sent::Twice,
            format!("type check ('{ty}') failed - got ARRAY"),
        );
    }
    if spec.get("optional").is_none() && !in_path {
        out.push(Violation {
            sent: Sent::Omitted,
            status: 400,
            key: name.to_string(),
            text: "property is missing and it is not optional".into(),
        });
    }
    if let Some(partner) = str_field(spec, "requires") {
        // PVE names the missing partner, not the parameter that needs it.
        out.push(Violation {
            sent: Sent::WithoutPartner,
            status: 400,
            key: partner.to_string(),
            text: format!("missing property required by '{name}'"),
        });
    }
    out.extend(node_lookup);
    out
}

fn valid_value(method: &str, path: &str, name: &str, spec: &Value) -> &'static str {
    let value = VALID
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| {
            panic!(
                "{method} {path}: no valid value for '{name}': add one to VALID in tests/schema.rs"
            )
        });
    assert!(
        satisfies(spec, value),
        "{method} {path}: VALID value '{value}' for '{name}' breaks its exported schema {spec}"
    );
    value
}

/// Percent-encodes a path value, keeping `/` (a `{volume}` spans segments) and `:@!`.
fn enc_path(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b'/' | b':' | b'@' | b'!' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Endpoint<'a> {
    method: &'a str,
    path: &'a str,
    properties: &'a serde_json::Map<String, Value>,
}

impl Endpoint<'_> {
    fn in_path(&self, name: &str) -> bool {
        self.path.contains(&format!("{{{name}}}"))
    }

    /// The request for `violation` of `name`: the path filled with valid values, the required
    /// parameters and the ones they and `name` require, valid, and the violation.
    fn request(&self, name: &str, violation: &Violation) -> Vec<u8> {
        let mut path = self.path.to_string();
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut needed: BTreeSet<&str> = self
            .properties
            .iter()
            .filter(|(n, s)| s.get("optional").is_none() && !self.in_path(n))
            .map(|(n, _)| n.as_str())
            .collect();
        let requires = |n: &str| {
            self.properties
                .get(n)
                .and_then(|s| str_field(s, "requires"))
        };
        // Whatever goes in also brings the parameter it requires, except the one under test
        // when the violation is leaving that out.
        let mut todo: Vec<&str> = needed.iter().copied().collect();
        if !matches!(violation.sent, Sent::WithoutPartner) {
            todo.push(name);
        }
        while let Some(n) = todo.pop() {
            if let Some(p) = requires(n).filter(|p| *p != name && needed.insert(p)) {
                todo.push(p);
            }
        }
        needed.remove(name);
        for (n, spec) in self.properties {
            if !self.in_path(n) {
                continue;
            }
            let value = match (&violation.sent, n == name) {
                (Sent::Value(bad), true) => bad.clone(),
                _ => valid_value(self.method, self.path, n, spec).to_string(),
            };
            path = path.replace(&format!("{{{n}}}"), &enc_path(&value));
        }
        for n in needed {
            let v = valid_value(self.method, self.path, n, &self.properties[n]);
            pairs.push((n.to_string(), v.to_string()));
        }
        match &violation.sent {
            Sent::Value(bad) if !self.in_path(name) => pairs.push((name.into(), bad.clone())),
            Sent::Value(_) | Sent::Omitted => {}
            Sent::Twice => {
                pairs.push((name.into(), "x1".into()));
                pairs.push((name.into(), "x2".into()));
            }
            Sent::WithoutPartner => {
                let v = valid_value(self.method, self.path, name, &self.properties[name]);
                pairs.push((name.into(), v.to_string()));
            }
        }
        let form = serde_urlencoded::to_string(&pairs).expect("urlencode");
        let auth = format!("Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}\r\n");
        let head = |target: String| {
            format!(
                "{} /api2/json{target} HTTP/1.1\r\nHost: x\r\n{auth}",
                self.method
            )
        };
        match self.method {
            "POST" | "PUT" => format!(
                "{}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                head(path),
                form.len()
            ),
            _ if form.is_empty() => format!("{}\r\n", head(path)),
            _ => format!("{}\r\n", head(format!("{path}?{form}"))),
        }
        .into_bytes()
    }
}

const UNDECLARED: &str = "not-a-parameter";

/// Sends the request for `v` and describes the mismatch, if the answer is not the expected one.
fn check(d: &Daemon, ep: &Endpoint, name: &str, v: &Violation) -> Option<String> {
    let r = d.raw(&ep.request(name, v));
    let got = r.status_line.split(' ').nth(1).unwrap_or_default();
    let ok = if v.status == 400 {
        let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        got == "400"
            && body["errors"].as_object().is_some_and(|e| {
                e.len() == 1
                    && e.get(&v.key)
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.starts_with(&v.text))
            })
    } else {
        got == v.status.to_string() && r.status_line.contains(&v.text)
    };
    (!ok).then(|| {
        format!(
            "{} {} '{name}' sent {:?}: want {} {{{}: '{}'}}, got '{}' {}",
            ep.method,
            ep.path,
            v.sent,
            v.status,
            v.key,
            v.text,
            r.status_line,
            String::from_utf8_lossy(&r.body)
        )
    })
}

#[test]
fn every_exported_parameter_is_enforced() {
    let text = std::fs::read_to_string(checked_in("isolib-api.json")).expect("isolib-api.json");
    let api: Value = serde_json::from_str(&text).expect("json");
    let d = Daemon::start();
    let mut covered = BTreeSet::new();
    let mut all = BTreeSet::new();
    let mut failures = Vec::new();
    let mut requests = 0;
    for entry in api.as_array().expect("list") {
        let method = str_field(entry, "method").expect("method");
        let path = str_field(entry, "path").expect("path");
        let properties = entry["parameters"]["properties"]
            .as_object()
            .expect("properties");
        let ep = Endpoint {
            method,
            path,
            properties,
        };
        // additionalProperties 0: a parameter the endpoint does not declare is refused.
        if entry["parameters"]["additionalProperties"] == 0 {
            let v = Violation {
                sent: Sent::Value("1".into()),
                status: 400,
                key: UNDECLARED.into(),
                text: "property is not defined in schema and the schema does not allow additional properties".into(),
            };
            requests += 1;
            failures.extend(check(&d, &ep, UNDECLARED, &v));
        }
        for (name, spec) in properties {
            all.insert((method, path, name.as_str()));
            if NOT_COVERED
                .iter()
                .any(|(m, p, n, _)| (*m, *p, *n) == (method, path, name.as_str()))
            {
                continue;
            }
            for v in violations(name, spec, ep.in_path(name)) {
                requests += 1;
                failures.extend(check(&d, &ep, name, &v));
            }
            covered.insert((method, path, name.as_str()));
        }
    }
    for (m, p, n, why) in NOT_COVERED {
        assert!(
            all.contains(&(*m, *p, *n)),
            "NOT_COVERED lists {m} {p} '{n}' ({why}), which the export does not have"
        );
    }
    assert_eq!(
        covered.len() + NOT_COVERED.len(),
        all.len(),
        "parameters neither tested nor listed in NOT_COVERED"
    );
    assert!(requests > 0);
    assert!(
        failures.is_empty(),
        "{} of {requests} violating requests were not rejected as expected:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
