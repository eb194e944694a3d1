//! The URL policy: which URLs the daemon may fetch, by scheme, host name and network. An
//! operator running the daemon as root uses it to keep download-url and query-url-metadata away
//! from internal addresses. PVE has no such setting (it fetches any http(s) URL), so the
//! default policy allows exactly that.
//!
//! Rules are `scheme:https`, `host:deb.debian.org`, `host:*.debian.org` (any name below
//! debian.org, not debian.org itself) and `net:10.0.0.0/8` (IPv4 or IPv6, a bare address is a
//! single host). The three kinds are judged separately, and a URL must pass all three:
//!
//! - a deny rule that matches refuses, whatever the allow rules say;
//! - allow rules of a kind, when there are any, let only what they match through; without any
//!   the kind is open (for schemes: http and https, all isolib can fetch).
//!
//! Host rules match names only: an address in the URL matches no host rule, so it fails an
//! allow list of hosts, and net rules judge it. Net rules judge every address the daemon
//! connects to: an address in the URL at once, and a name's addresses as it resolves them (see
//! `resolve.rs`). An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) counts as its IPv4 address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use reqwest::Url;

/// Schemes isolib can fetch; the open scheme set.
const FETCHABLE_SCHEMES: [&str; 2] = ["http", "https"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    Scheme(String),
    Host(HostPattern),
    Net(Net),
}

/// An exact host name, or with `suffix` every name below `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    name: String,
    suffix: bool,
}

/// An IP network; the address has no bits set past the prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("expected scheme:NAME, host:NAME, host:*.DOMAIN or net:ADDRESS[/PREFIX]")]
    Form,
    #[error("unknown rule type '{0}'; expected scheme, host or net")]
    Kind(String),
    #[error("scheme must be http or https, the only ones isolib fetches")]
    Scheme,
    #[error("'{0}' is an address; use net:{0}")]
    HostIsAddress(String),
    #[error("a wildcard may only stand for the leading labels, as in *.example.org")]
    Wildcard,
    #[error(
        "'{0}' is not a host name (letters, digits, '-' and '.'; punycode for international names)"
    )]
    HostName(String),
    #[error("'{0}' is not an IP address")]
    Address(String),
    #[error("prefix '{0}' is out of range (0-32 for IPv4, 0-128 for IPv6)")]
    Prefix(String),
    #[error("host bits are set; the network is {0}")]
    HostBits(Net),
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Rule, RuleError> {
        let (kind, value) = text.split_once(':').ok_or(RuleError::Form)?;
        let value = value.trim();
        if value.is_empty() {
            return Err(RuleError::Form);
        }
        match kind.trim() {
            "scheme" => {
                let scheme = value.to_ascii_lowercase();
                if !FETCHABLE_SCHEMES.contains(&scheme.as_str()) {
                    return Err(RuleError::Scheme);
                }
                Ok(Rule::Scheme(scheme))
            }
            "host" => value.parse().map(Rule::Host),
            "net" => value.parse().map(Rule::Net),
            other => Err(RuleError::Kind(other.to_string())),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Scheme(s) => write!(f, "scheme:{s}"),
            Rule::Host(h) => write!(f, "host:{h}"),
            Rule::Net(n) => write!(f, "net:{n}"),
        }
    }
}

impl FromStr for HostPattern {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<HostPattern, RuleError> {
        let lower = text.to_ascii_lowercase();
        let (suffix, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.contains('*') {
            return Err(RuleError::Wildcard);
        }
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            return Err(RuleError::HostIsAddress(bare.to_string()));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(RuleError::HostName(text.to_string()));
        }
        Ok(HostPattern {
            name: name.to_string(),
            suffix,
        })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.suffix {
            f.write_str("*.")?;
        }
        f.write_str(&self.name)
    }
}

impl HostPattern {
    /// `host` is lower case without a trailing dot, as [`url_host`] gives it.
    fn matches(&self, host: &str) -> bool {
        if !self.suffix {
            return host == self.name;
        }
        host.strip_suffix(self.name.as_str())
            .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.'))
    }
}

impl FromStr for Net {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Net, RuleError> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| RuleError::Address(addr_text.to_string()))?;
        let bits = max_prefix(addr);
        let prefix = match prefix_text {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| RuleError::Prefix(p.to_string()))?,
        };
        let net = Net {
            addr: mask(addr, prefix),
            prefix,
        };
        if net.addr != addr {
            return Err(RuleError::HostBits(net));
        }
        // Addresses are judged in their canonical form, so a mapped network is an IPv4 one.
        if let IpAddr::V6(v6) = addr
            && let Some(v4) = v6.to_ipv4_mapped()
            && prefix >= 96
        {
            return Ok(Net {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Ok(net)
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Net {
    /// `addr` is canonical (see [`UrlPolicy::check_addr`]).
    fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(addr, self.prefix) == self.addr
            }
            _ => false,
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// One list of rules (`url-allow` or `url-deny`), sorted by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct RuleSet {
    schemes: Vec<String>,
    hosts: Vec<HostPattern>,
    nets: Vec<Net>,
}

impl RuleSet {
    fn new(rules: Vec<Rule>) -> RuleSet {
        let mut set = RuleSet::default();
        for r in rules {
            match r {
                Rule::Scheme(s) => set.schemes.push(s),
                Rule::Host(h) => set.hosts.push(h),
                Rule::Net(n) => set.nets.push(n),
            }
        }
        set
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    allow: RuleSet,
    deny: RuleSet,
}

/// Why one URL, host or address is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("scheme '{0}' is denied")]
    SchemeDenied(String),
    #[error("scheme '{0}' is not one of the allowed schemes")]
    SchemeNotAllowed(String),
    #[error("host '{host}' matches denied host '{rule}'")]
    HostDenied { host: String, rule: HostPattern },
    #[error("host '{0}' is not one of the allowed hosts")]
    HostNotAllowed(String),
    #[error("address {addr} is in denied network {net}")]
    AddressDenied { addr: IpAddr, net: Net },
    #[error("address {0} is not in an allowed network")]
    AddressNotAllowed(IpAddr),
}

/// What was refused: the requested URL, a redirect's target, or a host name whose addresses
/// all failed (the resolver knows the name, not the URL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Url(String),
    Redirect(String),
    Host(String),
}

/// A refusal with what it refused; its text is what the task or the request fails with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub target: Target,
    pub reasons: Vec<Refusal>,
}

impl std::error::Error for PolicyError {}

/// The first few reasons; a name with many addresses would otherwise make an endless line.
const MAX_REASONS_SHOWN: usize = 4;

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Url(u) => write!(f, "URL '{u}' is not allowed: ")?,
            Target::Redirect(u) => write!(f, "redirect to '{u}' is not allowed: ")?,
            Target::Host(h) => write!(f, "host '{h}' is not allowed: ")?,
        }
        for (i, r) in self.reasons.iter().take(MAX_REASONS_SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        if self.reasons.len() > MAX_REASONS_SHOWN {
            write!(f, " and {} more", self.reasons.len() - MAX_REASONS_SHOWN)?;
        }
        Ok(())
    }
}

impl PolicyError {
    /// The policy refusal somewhere in `err`'s chain of causes: reqwest wraps what the
    /// resolver and the redirect policy return.
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a PolicyError> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(p) = e.downcast_ref::<PolicyError>() {
                return Some(p);
            }
            cur = e.source();
        }
        None
    }
}

enum UrlHost {
    /// Lower case, without a trailing dot.
    Name(String),
    Address(IpAddr),
}

/// The URL parser has already read every form of an IPv4 address (`2130706433`, `0x7f.1`) into
/// dotted quads and brackets IPv6, as the connector will see them; anything else is a name.
fn url_host(url: &Url) -> Option<UrlHost> {
    let h = url.host_str()?;
    if let Some(v6) = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse().ok().map(|a| UrlHost::Address(IpAddr::V6(a)));
    }
    if let Ok(v4) = h.parse::<Ipv4Addr>() {
        return Some(UrlHost::Address(IpAddr::V4(v4)));
    }
    Some(UrlHost::Name(
        h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase(),
    ))
}

impl UrlPolicy {
    pub fn new(allow: Vec<Rule>, deny: Vec<Rule>) -> UrlPolicy {
        UrlPolicy {
            allow: RuleSet::new(allow),
            deny: RuleSet::new(deny),
        }
    }

    /// True when some rule judges addresses, so names must be resolved under the policy.
    pub fn has_net_rules(&self) -> bool {
        !self.allow.nets.is_empty() || !self.deny.nets.is_empty()
    }

    /// Scheme and host of `url`, and its address when the host is one (a name's addresses are
    /// judged as it resolves).
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        let scheme = url.scheme();
        if self.deny.schemes.iter().any(|s| s == scheme) {
            return Err(Refusal::SchemeDenied(scheme.to_string()));
        }
        let allowed = if self.allow.schemes.is_empty() {
            FETCHABLE_SCHEMES.contains(&scheme)
        } else {
            self.allow.schemes.iter().any(|s| s == scheme)
        };
        if !allowed {
            return Err(Refusal::SchemeNotAllowed(scheme.to_string()));
        }
        match url_host(url) {
            Some(UrlHost::Name(host)) => {
                if let Some(rule) = self.deny.hosts.iter().find(|h| h.matches(&host)) {
                    return Err(Refusal::HostDenied {
                        host,
                        rule: rule.clone(),
                    });
                }
                if !self.allow.hosts.is_empty()
                    && !self.allow.hosts.iter().any(|h| h.matches(&host))
                {
                    return Err(Refusal::HostNotAllowed(host));
                }
                Ok(())
            }
            // No host at all: reqwest refuses such a URL itself.
            None => Ok(()),
            Some(UrlHost::Address(addr)) => {
                if !self.allow.hosts.is_empty() {
                    return Err(Refusal::HostNotAllowed(addr.to_string()));
                }
                self.check_addr(addr)
            }
        }
    }

    /// One address the daemon would connect to.
    pub fn check_addr(&self, addr: IpAddr) -> Result<(), Refusal> {
        let addr = addr.to_canonical();
        if let Some(net) = self.deny.nets.iter().find(|n| n.contains(addr)) {
            return Err(Refusal::AddressDenied { addr, net: *net });
        }
        if !self.allow.nets.is_empty() && !self.allow.nets.iter().any(|n| n.contains(addr)) {
            return Err(Refusal::AddressNotAllowed(addr));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
