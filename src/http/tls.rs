//! The TLS acceptor: the configured pair, or a self-signed pair generated once in the state dir
//! (as PVE's pve-ssl.pem is made at install time). TLS 1.2 and 1.3: bpg's Terraform provider
//! requires 1.3 by default (clients-and-plugin.md §C.3).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod};
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509, X509NameBuilder};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS setup failed: {0}")]
    Ssl(#[from] openssl::error::ErrorStack),
    #[error("unable to write '{}': {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn acceptor(cert: &Path, key: &Path) -> Result<SslAcceptorBuilder, TlsError> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_private_key_file(key, SslFiletype::PEM)?;
    b.set_certificate_chain_file(cert)?;
    b.check_private_key()?;
    Ok(b)
}

/// `<state>/tls/{cert,key}.pem`, made on first use; the key is readable by the owner only.
pub fn self_signed(state_dir: &Path, node: &str) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = state_dir.join("tls");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.is_file() && key_path.is_file() {
        return Ok((cert_path, key_path));
    }
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Write { path, source }
    };
    fs::create_dir_all(&dir).map_err(write_err(&dir))?;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", node)?;
    name.append_entry_by_text("O", "isolib self-signed")?;
    let name = name.build();
    let mut serial = BigNum::new()?;
    serial.rand(128, MsbOption::MAYBE_ZERO, false)?;
    let mut x = X509::builder()?;
    x.set_version(2)?;
    let serial = serial.to_asn1_integer()?;
    x.set_serial_number(&serial)?;
    x.set_subject_name(&name)?;
    x.set_issuer_name(&name)?;
    x.set_pubkey(&key)?;
    let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(3650)?);
    x.set_not_before(&not_before)?;
    x.set_not_after(&not_after)?;
    let san = SubjectAlternativeName::new()
        .dns(node)
        .dns("localhost")
        .ip("127.0.0.1")
        .ip("::1")
        .build(&x.x509v3_context(None, None))?;
    x.append_extension(san)?;
    x.sign(&key, MessageDigest::sha256())?;
    let cert = x.build();

    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&key_path)
        .map_err(write_err(&key_path))?;
    f.write_all(&key.private_key_to_pem_pkcs8()?)
        .map_err(write_err(&key_path))?;
    fs::write(&cert_path, cert.to_pem()?).map_err(write_err(&cert_path))?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_loads_and_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (c, k) = self_signed(dir.path(), "n1").expect("generate");
        let first = fs::read(&c).expect("cert");
        acceptor(&c, &k).expect("acceptor");
        let (c2, _) = self_signed(dir.path(), "n1").expect("again");
        assert_eq!(fs::read(c2).expect("cert"), first, "generated once");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&k).expect("key").permissions().mode() & 0o777,
            0o600
        );
    }
}
