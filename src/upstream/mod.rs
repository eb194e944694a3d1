//! What distributions publish beside their images: checksum files (`sums`) and their OpenPGP
//! signatures (`openpgp`), and PVE's appliance index (`aplinfo`), fetched on the node that
//! downloads, through the same HTTP clients and URL policy as the images.

pub mod aplinfo;
pub mod openpgp;
pub mod sums;
pub mod track;

use sha2::Digest;

use crate::download::{Algorithm, Checksum, Fetcher};

/// Checksum files are small; a bigger answer is not one.
const MAX_SUMS_SIZE: usize = 4 << 20;

/// Where a download's checksum came from, for its catalog record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumSource {
    pub url: String,
    /// Of the checksum file as fetched.
    pub sha256: String,
    /// The certificate whose key signed the checksum file, when a keyring checked it.
    pub signer: Option<String>,
}

/// How a checksum file's signature is checked: detached at `url`, else cleartext in the file.
pub struct SignatureCheck {
    pub url: Option<String>,
    pub keyring: openpgp::Keyring,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("unable to fetch '{url}': {reason}")]
    Fetch { url: String, reason: String },
    #[error("checksum file '{url}' {source}")]
    Sums {
        url: String,
        #[source]
        source: sums::SumsError,
    },
    #[error("checksum file '{url}' {source}")]
    Signature {
        url: String,
        #[source]
        source: openpgp::PgpError,
    },
    #[error("checksum file '{url}' is not signed, but keyring '{keyring}' was given")]
    Unsigned { url: String, keyring: String },
    #[error(
        "checksum file '{url}' gives a {got} checksum, weaker than the minimum {min} (min-checksum-algorithm)"
    )]
    TooWeak {
        url: String,
        got: &'static str,
        min: &'static str,
    },
}

/// The checksum `url` (a checksum file) lists for `target`, else for `url_name` (the image
/// URL's last path segment), at least as strong as `min`; with `signature`, only from a file
/// whose signature a key of the keyring made.
pub async fn checksum_from(
    fetcher: &Fetcher,
    verify_certificates: bool,
    url: &str,
    signature: Option<&SignatureCheck>,
    target: &str,
    url_name: &str,
    min: Algorithm,
) -> Result<(Checksum, ChecksumSource), UpstreamError> {
    let (body, final_name) = fetch_small(fetcher, verify_certificates, url).await?;
    let text = String::from_utf8_lossy(&body).into_owned();
    let sig_err = |source| UpstreamError::Signature {
        url: url.to_owned(),
        source,
    };
    let (signed, signer) = match signature {
        None => (sums::signed_text(&text).to_owned(), None),
        Some(SignatureCheck {
            url: Some(sig_url),
            keyring,
        }) => {
            let (sig, _) = fetch_small(fetcher, verify_certificates, sig_url).await?;
            let fp = keyring.verify_detached(&sig, &body).map_err(sig_err)?;
            (sums::signed_text(&text).to_owned(), Some(fp))
        }
        Some(SignatureCheck { url: None, keyring }) => {
            if sums::signed_text(&text).len() == text.len() {
                return Err(UpstreamError::Unsigned {
                    url: url.to_owned(),
                    keyring: keyring.name().to_owned(),
                });
            }
            let (signed, fp) = keyring.verify_cleartext(&text).map_err(sig_err)?;
            (signed, Some(fp))
        }
    };
    let sums_err = |source| UpstreamError::Sums {
        url: url.to_owned(),
        source,
    };
    let entries = sums::parse(&signed, &final_name).map_err(sums_err)?;
    let entry = sums::find(&entries, target, url_name).map_err(sums_err)?;
    if sums::strength(entry.algorithm) < sums::strength(min) {
        return Err(UpstreamError::TooWeak {
            url: url.to_owned(),
            got: entry.algorithm.name(),
            min: min.name(),
        });
    }
    let digest = sha2::Sha256::digest(&body);
    Ok((
        Checksum {
            algorithm: entry.algorithm,
            expected: entry.hex,
        },
        ChecksumSource {
            url: url.to_owned(),
            sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
            signer,
        },
    ))
}

/// download-url's `checksum-url` and a track's checksum file: where the checksum of a download
/// comes from, checked before anything is downloaded.
pub struct SumsRequest {
    pub url: String,
    pub signature: Option<SignatureCheck>,
    /// The file name the download is stored under.
    pub target: String,
    /// The weakest algorithm the file may give (`min-checksum-algorithm`).
    pub min: Algorithm,
}

impl SumsRequest {
    /// Looks the checksum up (in the task, before a byte of the image) and puts it in `plan`.
    pub async fn apply(
        self,
        engine: &crate::download::Engine,
        plan: &mut crate::download::DownloadPlan,
        log: &dyn crate::download::LogSink,
    ) -> Result<(), String> {
        log.line(&format!("fetching checksum file {}", self.url));
        let fetcher = engine.fetcher().map_err(|e| e.to_string())?;
        let path = plan.url.split(['?', '#']).next().unwrap_or_default();
        let url_name = file_name(path);
        let (checksum, source) = checksum_from(
            &fetcher,
            plan.verify_certificates,
            &self.url,
            self.signature.as_ref(),
            &self.target,
            url_name,
            self.min,
        )
        .await
        .map_err(|e| e.to_string())?;
        if let Some(signer) = &source.signer {
            log.line(&format!("checksum file signed by {signer}: OK"));
        }
        log.line(&format!(
            "checksum file lists {} {}",
            checksum.algorithm.name(),
            checksum.expected
        ));
        plan.checksum = Some(checksum);
        plan.checksum_required = true;
        plan.checksum_source = Some(source);
        Ok(())
    }
}

/// A small file (a checksum file, a signature) and the name it has after redirects.
async fn fetch_small(
    fetcher: &Fetcher,
    verify_certificates: bool,
    url: &str,
) -> Result<(Vec<u8>, String), UpstreamError> {
    match fetch_if_changed(fetcher, verify_certificates, url, &Validators::default()).await? {
        Fetched::Body {
            body, final_url, ..
        } => {
            let name = file_name(final_url.split(['?', '#']).next().unwrap_or_default());
            Ok((body, name.to_owned()))
        }
        // No validators were sent, so no origin may answer 304.
        Fetched::NotModified => Err(UpstreamError::Fetch {
            url: url.to_owned(),
            reason: "HTTP 304 without a conditional request".into(),
        }),
    }
}

/// What identifies the version of a file an origin sent: sent back, they make a request
/// conditional (RFC 9110 §13.1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

pub enum Fetched {
    NotModified,
    Body {
        body: Vec<u8>,
        final_url: String,
        validators: Validators,
    },
}

/// A small file, unless the origin says it has not changed since `known`.
pub async fn fetch_if_changed(
    fetcher: &Fetcher,
    verify_certificates: bool,
    url: &str,
    known: &Validators,
) -> Result<Fetched, UpstreamError> {
    use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
    let fetch_err = |reason: String| UpstreamError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let mut req = fetcher
        .download(verify_certificates, url)
        .map_err(|e| fetch_err(e.to_string()))?;
    if let Some(etag) = &known.etag {
        req = req.header(IF_NONE_MATCH, etag);
    }
    if let Some(date) = &known.last_modified {
        req = req.header(IF_MODIFIED_SINCE, date);
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| fetch_err(crate::download::describe_reqwest(&e)))?;
    if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if !resp.status().is_success() {
        return Err(fetch_err(format!(
            "HTTP {} {}",
            resp.status().as_u16(),
            resp.status().canonical_reason().unwrap_or("")
        )));
    }
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let validators = Validators {
        etag: header(ETAG),
        last_modified: header(LAST_MODIFIED),
    };
    let final_url = resp.url().to_string();
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| fetch_err(crate::download::describe_reqwest(&e)))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_SUMS_SIZE {
            return Err(fetch_err(format!(
                "larger than {} MiB",
                MAX_SUMS_SIZE >> 20
            )));
        }
    }
    Ok(Fetched::Body {
        body,
        final_url,
        validators,
    })
}

/// The last segment of a URL path.
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
