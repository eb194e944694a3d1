//! TLS to another node that accepts nothing but that node's own certificate, by its SHA-256
//! fingerprint, as PVE pins a node's (`/etc/pve/nodes/<n>/pve-ssl.pem`). The chain above it
//! (PVE's cluster CA) and the host name are not judged: the fingerprint is the trust.

use openssl::error::ErrorStack;
use openssl::ssl::{ConnectConfiguration, SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509VerifyResult;

use super::peers::Peer;

/// A client configuration that completes the handshake only with `peer`'s certificate.
pub fn configuration(peer: &Peer) -> Result<ConnectConfiguration, ErrorStack> {
    let pinned = peer.fingerprint;
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    // AES-128-GCM first: as strong as this link needs, and cheaper for both ends of a copy of
    // gigabytes (OpenSSL servers follow the client's order unless told otherwise).
    builder.set_ciphersuites(
        "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
    )?;
    builder.set_verify_callback(SslVerifyMode::PEER, move |_, chain| {
        if chain.error_depth() != 0 {
            return true;
        }
        chain
            .current_cert()
            .and_then(|c| c.digest(openssl::hash::MessageDigest::sha256()).ok())
            .is_some_and(|d| d.as_ref() == pinned)
    });
    let mut config = builder.build().configure()?;
    config.set_verify_hostname(false);
    config.set_use_server_name_indication(false);
    Ok(config)
}

/// Whether a failed handshake failed on the certificate (rather than the connection).
pub fn refused_certificate(ssl: &openssl::ssl::SslRef) -> bool {
    ssl.verify_result() != X509VerifyResult::OK
}
