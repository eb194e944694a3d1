//! Name resolution under the URL policy's net rules. Checking a name's addresses before the
//! request would leave a gap (DNS rebinding: the name resolves again, to something else, when
//! the connection is made), so the check sits in the resolver the connector itself uses: the
//! addresses it is given are the ones it connects to. Denied addresses are dropped; when none
//! is left, resolution fails with the refusal. This covers redirects too, as every hop's name
//! goes through here. Addresses written in a URL never reach a resolver; `UrlPolicy::check_url`
//! judges those.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::url_policy::{PolicyError, Target, UrlPolicy};

pub struct PolicyResolver {
    policy: Arc<UrlPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<UrlPolicy>) -> PolicyResolver {
        PolicyResolver { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // getaddrinfo on the blocking pool, as reqwest's own resolver does.
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (allowed, reasons) = filter(&policy, found);
            if allowed.is_empty() && !reasons.is_empty() {
                return Err(Box::new(PolicyError {
                    target: Target::Host(host),
                    reasons,
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            if !reasons.is_empty() {
                tracing::debug!(
                    "{host}: skipping {} denied address(es) of {}",
                    reasons.len(),
                    reasons.len() + allowed.len()
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The addresses the policy allows, in resolver order, and why the others are refused.
fn filter(
    policy: &UrlPolicy,
    found: Vec<SocketAddr>,
) -> (Vec<SocketAddr>, Vec<super::url_policy::Refusal>) {
    let mut allowed = Vec::new();
    let mut reasons = Vec::new();
    for a in found {
        match policy.check_addr(a.ip()) {
            Ok(()) => allowed.push(a),
            Err(r) if !reasons.contains(&r) => reasons.push(r),
            Err(_) => {}
        }
    }
    (allowed, reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_is_refused_when_all_its_addresses_are_denied() {
        let deny = ["net:127.0.0.0/8", "net:::1"]
            .iter()
            .map(|r| r.parse().expect("rule"))
            .collect();
        let r = PolicyResolver::new(Arc::new(UrlPolicy::new(Vec::new(), deny)));
        let err = match r.resolve("localhost".parse().expect("name")).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        let text = err.to_string();
        assert!(
            text.starts_with("host 'localhost' is not allowed: address ")
                && text.contains("is in denied network 127.0.0.0/8"),
            "{text}"
        );
        let open = PolicyResolver::new(Arc::new(UrlPolicy::default()));
        let addrs: Vec<_> = match open.resolve("localhost".parse().expect("name")).await {
            Ok(a) => a.collect(),
            Err(e) => panic!("{e}"),
        };
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[test]
    fn filter_keeps_allowed_addresses_in_order() {
        let deny = vec!["net:10.0.0.0/8".parse().expect("rule")];
        let p = UrlPolicy::new(Vec::new(), deny);
        let found: Vec<SocketAddr> = ["10.0.0.1:0", "192.0.2.1:0", "10.0.0.2:0", "192.0.2.2:0"]
            .iter()
            .map(|a| a.parse().expect("addr"))
            .collect();
        let (allowed, reasons) = filter(&p, found);
        assert_eq!(
            allowed,
            [
                "192.0.2.1:0".parse::<SocketAddr>().expect("a"),
                "192.0.2.2:0".parse().expect("a")
            ]
        );
        assert_eq!(reasons.len(), 2);
    }
}
