//! OpenPGP signatures over checksum files, detached (`SHA256SUMS.sign`, `CHECKSUM.asc`) or
//! cleartext (Fedora's and AlmaLinux's CHECKSUM), checked against a keyring the operator
//! configured: `<keyrings>/<name>.pgp`, certificates binary or ASCII-armored. The
//! implementation is rpgp (the `pgp` crate, MIT/Apache-2.0, pure Rust); see the README for why.

use std::path::{Path, PathBuf};

use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::KeyDetails;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PgpError {
    #[error("keyring '{name}' is not configured (no {})", .path.display())]
    NoKeyring { name: String, path: PathBuf },
    #[error("keyring '{name}' holds no usable OpenPGP certificate: {reason}")]
    BadKeyring { name: String, reason: String },
    #[error("is not an OpenPGP signature: {0}")]
    NotASignature(String),
    #[error("was signed by key {key}, which is not in keyring '{keyring}'")]
    UnknownKey { key: String, keyring: String },
    #[error("has a signature that does not verify (key {key} of keyring '{keyring}')")]
    BadSignature { key: String, keyring: String },
}

/// The certificates of one keyring.
pub struct Keyring {
    name: String,
    certs: Vec<SignedPublicKey>,
}

impl Keyring {
    /// `<dir>/<name>.pgp`. Certificates whose own bindings do not verify are left out.
    pub fn load(dir: &Path, name: &str) -> Result<Keyring, PgpError> {
        let path = dir.join(format!("{name}.pgp"));
        let bytes = std::fs::read(&path).map_err(|_| PgpError::NoKeyring {
            name: name.to_owned(),
            path: path.clone(),
        })?;
        let bad = |reason: String| PgpError::BadKeyring {
            name: name.to_owned(),
            reason,
        };
        let parsed: Vec<SignedPublicKey> = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            SignedPublicKey::from_armor_many(&bytes[..])
                .map_err(|e| bad(e.to_string()))?
                .0
                .filter_map(Result::ok)
                .collect()
        } else {
            SignedPublicKey::from_bytes_many(&bytes[..])
                .map_err(|e| bad(e.to_string()))?
                .filter_map(Result::ok)
                .collect()
        };
        let certs: Vec<SignedPublicKey> = parsed
            .into_iter()
            .filter(|c| c.verify_bindings().is_ok())
            .collect();
        if certs.is_empty() {
            return Err(bad("none parses and verifies".into()));
        }
        Ok(Keyring {
            name: name.to_owned(),
            certs,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks a detached signature (binary or armored) over `data`; returns the fingerprint of
    /// the certificate whose key made it.
    pub fn verify_detached(&self, signature: &[u8], data: &[u8]) -> Result<String, PgpError> {
        let sig = if signature.trim_ascii_start().starts_with(b"-----BEGIN") {
            DetachedSignature::from_armor_single(signature).map(|(s, _)| s)
        } else {
            DetachedSignature::from_bytes(signature)
        }
        .map_err(|e| PgpError::NotASignature(e.to_string()))?;
        self.verify(&sig.signature, data)
    }

    /// Checks a cleartext-signed text; returns the text it signs and the signer's fingerprint.
    pub fn verify_cleartext(&self, text: &str) -> Result<(String, String), PgpError> {
        let (msg, _) = CleartextSignedMessage::from_string(text)
            .map_err(|e| PgpError::NotASignature(e.to_string()))?;
        let signed = msg.signed_text();
        let mut last = None;
        for sig in msg.signatures() {
            match self.verify(sig, signed.as_bytes()) {
                Ok(fp) => return Ok((signed, fp)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| PgpError::NotASignature("no signature".into())))
    }

    /// The certificate (primary key or subkey) that made `sig` over `data`.
    fn verify(&self, sig: &Signature, data: &[u8]) -> Result<String, PgpError> {
        let named = |fp: &pgp::types::Fingerprint, id: pgp::types::KeyId| {
            sig.issuer_fingerprint().contains(&fp) || sig.issuer_key_id().contains(&&id)
        };
        let mut issuer_known = None;
        for cert in &self.certs {
            let primary = cert.primary_key.fingerprint();
            let cert_fp = format!("{primary:X}");
            if named(&primary, cert.primary_key.legacy_key_id()) {
                issuer_known = Some(cert_fp.clone());
                if sig.verify(cert, data).is_ok() {
                    return Ok(cert_fp);
                }
            }
            for sub in &cert.public_subkeys {
                if named(&sub.key.fingerprint(), sub.key.legacy_key_id()) {
                    issuer_known = Some(cert_fp.clone());
                    if sig.verify(sub, data).is_ok() {
                        return Ok(cert_fp);
                    }
                }
            }
        }
        Err(match issuer_known {
            Some(key) => PgpError::BadSignature {
                key,
                keyring: self.name.clone(),
            },
            None => PgpError::UnknownKey {
                key: sig
                    .issuer_fingerprint()
                    .first()
                    .map(|f| format!("{f:X}"))
                    .or_else(|| {
                        sig.issuer_key_id()
                            .first()
                            .map(|k| k.as_ref().iter().map(|b| format!("{b:02X}")).collect())
                    })
                    .unwrap_or_else(|| "(unnamed)".into()),
                keyring: self.name.clone(),
            },
        })
    }
}
