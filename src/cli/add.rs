//! `isolib add FILE --storage ID`: registers a file of this host as a volume (library/add.rs),
//! with the daemon's configuration but without the daemon.

use std::path::PathBuf;

use super::CliError;
use super::remote::params::Checksum as ChecksumArg;
use crate::config::Config;
use crate::download::{Algorithm, Checksum};
use crate::library::add::{AddError, AddRequest, add};
use crate::storage::StorageConfig;

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// The file to add
    pub file: PathBuf,
    /// The storage to add it to
    #[arg(long, value_name = "ID")]
    pub storage: String,
    /// iso, vztmpl or import [default: told by the file name]
    #[arg(long, value_name = "TYPE")]
    pub content: Option<String>,
    /// The volume's name [default: the file's own, normalized as PVE does]
    #[arg(long, value_name = "NAME")]
    pub filename: Option<String>,
    /// The file's expected checksum, ALGO:HEX (md5, sha1, sha224, sha256, sha384, sha512)
    #[arg(long, value_name = "ALGO:HEX")]
    pub checksum: Option<ChecksumArg>,
    /// Move the file instead of copying it (a rename where the storage is on its file system)
    #[arg(long = "move")]
    pub move_file: bool,
}

pub async fn run(args: AddArgs, cfg: Config) -> Result<(), CliError> {
    let storages =
        StorageConfig::load_as(&cfg.storage_cfg, cfg.pve_dir.is_some()).map_err(AddError::from)?;
    let storage = storages
        .storage(&args.storage)
        .and_then(|s| s.check_enabled(&cfg.node).map(|()| s))
        .map_err(AddError::from)?;
    let checksum = args.checksum.and_then(|c| {
        Algorithm::parse(c.algorithm).map(|algorithm| Checksum {
            algorithm,
            expected: c.hex,
        })
    });
    let req = AddRequest {
        file: &args.file,
        storage,
        content: args.content.as_deref(),
        filename: args.filename.as_deref(),
        checksum,
        move_file: args.move_file,
        node: &cfg.node,
        user: unix_user(),
        osinfo_dir: &cfg.catalog.osinfo_dir,
    };
    let mut warn = |line: &str| eprintln!("{line}");
    let volid = add(req, &mut warn).await?;
    println!("{volid}");
    Ok(())
}

/// Who ran the command, as PVE names a PAM user.
fn unix_user() -> String {
    let name = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::getuid().to_string());
    format!("{name}@pam")
}
