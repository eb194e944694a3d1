//! HTTP clients for downloads and metadata queries: the configured proxy for http and https
//! (PVE's datacenter.cfg `http_proxy`; without one no proxy at all, whatever the environment
//! says), extra CAs for internal mirrors, the certificate-verification switch, the redirect
//! limit, and the URL policy on every request, redirect and resolved address.
//!
//! With a proxy the daemon connects only to the proxy, which is the operator's own setting and
//! is trusted: scheme and host rules still judge the URL and every redirect, and net rules judge
//! addresses written in URLs, but the addresses of names are the proxy's business (it resolves
//! them), so it must enforce its own address rules.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Certificate, Client, Method, Proxy, RequestBuilder, Url, redirect};

use super::resolve::PolicyResolver;
use super::url_policy::{PolicyError, Target, UrlPolicy};

#[derive(Clone, Debug)]
pub struct FetchConfig {
    pub http_proxy: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub policy: UrlPolicy,
    /// Redirects a download follows; metadata queries follow at most LWP's 7 of them.
    pub max_redirects: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            http_proxy: None,
            ca_file: None,
            policy: UrlPolicy::default(),
            max_redirects: DEFAULT_MAX_REDIRECTS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchSetupError {
    #[error("unable to read CA file '{path}': {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid CA file '{path}': {source}")]
    CaParse {
        path: PathBuf,
        source: reqwest::Error,
    },
    #[error("invalid http-proxy '{url}': {source}")]
    Proxy { url: String, source: reqwest::Error },
    #[error("unable to set up the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("unable to read '{path}': {source}")]
    Datacenter {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The `http_proxy` of PVE's datacenter.cfg (`key: value` lines), if set.
pub fn datacenter_http_proxy(text: &str) -> Option<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "http_proxy")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Clients built from `base`, with the proxy taken from datacenter.cfg (`datacenter`) when
/// `base` names none. The cache rebuilds them whenever the file changes, as PVE's workers see
/// a changed proxy at their next download.
pub fn fetchers(
    base: FetchConfig,
    datacenter: Option<PathBuf>,
) -> crate::file_cache::FileCache<Fetcher, FetchSetupError> {
    let watched = datacenter
        .filter(|_| base.http_proxy.is_none())
        .into_iter()
        .collect();
    crate::file_cache::FileCache::new(watched, move |paths| {
        let mut cfg = base.clone();
        if let Some(path) = paths.first() {
            cfg.http_proxy = match std::fs::read_to_string(path) {
                Ok(text) => datacenter_http_proxy(&text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(FetchSetupError::Datacenter {
                        path: path.clone(),
                        source,
                    });
                }
            };
        }
        Fetcher::new(&cfg)
    })
}

/// Requests go out only through [`Fetcher::download`] and [`Fetcher::metadata`], which judge
/// the URL first; the clients judge redirects and resolved addresses.
#[derive(Clone)]
pub struct Fetcher {
    download: [Client; 2],
    metadata: [Client; 2],
    policy: Arc<UrlPolicy>,
}

/// wget's default read timeout, which PVE's downloads run with.
const READ_TIMEOUT: Duration = Duration::from_secs(900);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// LWP's defaults for query-url-metadata: 180 s, at most 7 redirects.
const METADATA_TIMEOUT: Duration = Duration::from_secs(180);
const METADATA_REDIRECTS: usize = 7;
/// wget follows up to 20 redirects.
pub const DEFAULT_MAX_REDIRECTS: usize = 20;

/// Kept apart from policy refusals, whose text is their own; it reads "too many redirects".
#[derive(Debug, thiserror::Error)]
#[error("too many redirects")]
struct TooManyRedirects;

fn redirect_policy(policy: Arc<UrlPolicy>, max: usize) -> redirect::Policy {
    redirect::Policy::custom(move |attempt| {
        // `previous` holds the first URL and every target followed so far.
        if attempt.previous().len() > max {
            return attempt.error(TooManyRedirects);
        }
        match policy.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(reason) => {
                let err = PolicyError {
                    target: Target::Redirect(attempt.url().to_string()),
                    reasons: vec![reason],
                };
                attempt.error(err)
            }
        }
    })
}

impl Fetcher {
    pub fn new(cfg: &FetchConfig) -> Result<Fetcher, FetchSetupError> {
        let mut cas = Vec::new();
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|source| FetchSetupError::CaFile {
                path: path.clone(),
                source,
            })?;
            cas =
                Certificate::from_pem_bundle(&pem).map_err(|source| FetchSetupError::CaParse {
                    path: path.clone(),
                    source,
                })?;
        }
        let policy = Arc::new(cfg.policy.clone());
        let build = |verify: bool, metadata: bool| -> Result<Client, FetchSetupError> {
            let mut b = Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .tls_danger_accept_invalid_certs(!verify)
                .tls_danger_accept_invalid_hostnames(!verify);
            b = if metadata {
                b.user_agent("Proxmox VE")
                    .timeout(METADATA_TIMEOUT)
                    .redirect(redirect_policy(
                        policy.clone(),
                        cfg.max_redirects.min(METADATA_REDIRECTS),
                    ))
            } else {
                b.user_agent(concat!("isolib/", env!("CARGO_PKG_VERSION")))
                    .read_timeout(READ_TIMEOUT)
                    .redirect(redirect_policy(policy.clone(), cfg.max_redirects))
            };
            b = b.tls_certs_merge(cas.clone());
            b = match &cfg.http_proxy {
                Some(url) => b.proxy(Proxy::all(url).map_err(|source| FetchSetupError::Proxy {
                    url: url.clone(),
                    source,
                })?),
                // Only without a proxy does the resolver see the origins' names.
                None if policy.has_net_rules() => b
                    .no_proxy()
                    .dns_resolver(PolicyResolver::new(policy.clone())),
                None => b.no_proxy(),
            };
            b.build().map_err(FetchSetupError::Client)
        };
        Ok(Fetcher {
            download: [build(false, false)?, build(true, false)?],
            metadata: [build(false, true)?, build(true, true)?],
            policy,
        })
    }

    /// A download GET of `url`, unless the policy refuses it.
    pub fn download(
        &self,
        verify_certificates: bool,
        url: &str,
    ) -> Result<RequestBuilder, PolicyError> {
        self.check(url)?;
        Ok(self.download[usize::from(verify_certificates)].get(url))
    }

    /// A metadata query of `url`, unless the policy refuses it.
    pub fn metadata(
        &self,
        verify_certificates: bool,
        method: Method,
        url: &str,
    ) -> Result<RequestBuilder, PolicyError> {
        self.check(url)?;
        Ok(self.metadata[usize::from(verify_certificates)].request(method, url))
    }

    /// A URL that does not parse is left to reqwest, which fails it with its own error.
    fn check(&self, url: &str) -> Result<(), PolicyError> {
        let Ok(parsed) = Url::parse(url) else {
            return Ok(());
        };
        self.policy
            .check_url(&parsed)
            .map_err(|reason| PolicyError {
                target: Target::Url(url.to_string()),
                reasons: vec![reason],
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datacenter_proxy_line() {
        let text =
            "keyboard: de\n# http_proxy: http://old:3128/\nhttp_proxy:  http://u:p@proxy:3128/ \n";
        assert_eq!(
            datacenter_http_proxy(text).as_deref(),
            Some("http://u:p@proxy:3128/")
        );
        assert_eq!(datacenter_http_proxy("keyboard: de\n"), None);
        assert_eq!(datacenter_http_proxy("http_proxy:\n"), None);
    }
}
