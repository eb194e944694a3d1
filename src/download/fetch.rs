//! HTTP clients for downloads and metadata queries: the configured proxy for http and https
//! (PVE's datacenter.cfg `http_proxy`; without one no proxy at all, whatever the environment
//! says), extra CAs for internal mirrors, and the certificate-verification switch.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Certificate, Client, Proxy, redirect};

#[derive(Clone, Debug, Default)]
pub struct FetchConfig {
    pub http_proxy: Option<String>,
    pub ca_file: Option<PathBuf>,
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
}

#[derive(Clone)]
pub struct Fetcher {
    download: [Client; 2],
    metadata: [Client; 2],
}

/// wget's default read timeout, which PVE's downloads run with.
const READ_TIMEOUT: Duration = Duration::from_secs(900);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// LWP's defaults for query-url-metadata: 180 s, at most 7 redirects.
const METADATA_TIMEOUT: Duration = Duration::from_secs(180);
const METADATA_REDIRECTS: usize = 7;
/// wget follows up to 20 redirects.
const DOWNLOAD_REDIRECTS: usize = 20;

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
        let build = |verify: bool, metadata: bool| -> Result<Client, FetchSetupError> {
            let mut b = Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .tls_danger_accept_invalid_certs(!verify)
                .tls_danger_accept_invalid_hostnames(!verify);
            b = if metadata {
                b.user_agent("Proxmox VE")
                    .timeout(METADATA_TIMEOUT)
                    .redirect(redirect::Policy::limited(METADATA_REDIRECTS))
            } else {
                b.user_agent(concat!("isolib/", env!("CARGO_PKG_VERSION")))
                    .read_timeout(READ_TIMEOUT)
                    .redirect(redirect::Policy::limited(DOWNLOAD_REDIRECTS))
            };
            b = b.tls_certs_merge(cas.clone());
            b = match &cfg.http_proxy {
                Some(url) => b.proxy(Proxy::all(url).map_err(|source| FetchSetupError::Proxy {
                    url: url.clone(),
                    source,
                })?),
                None => b.no_proxy(),
            };
            b.build().map_err(FetchSetupError::Client)
        };
        Ok(Fetcher {
            download: [build(false, false)?, build(true, false)?],
            metadata: [build(false, true)?, build(true, true)?],
        })
    }

    pub fn download_client(&self, verify_certificates: bool) -> &Client {
        &self.download[usize::from(verify_certificates)]
    }

    pub fn metadata_client(&self, verify_certificates: bool) -> &Client {
        &self.metadata[usize::from(verify_certificates)]
    }
}
