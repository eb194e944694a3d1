//! `isolib user add USER@REALM`: the user line in user.cfg and, for realm `pve`, a password in
//! shadow.cfg, read from stdin when it is not a terminal and asked for twice when it is.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use clap::Subcommand;

use super::{CliError, load_config};
use crate::auth::{self, AuthId};
use crate::config::RawConfig;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user, or set the password of an existing one (realm pve: password in
    /// shadow.cfg; realm pam: the system checks the password)
    Add {
        /// USER@REALM, realm pve or pam
        userid: String,
        /// Grant this role (a built-in PVE role or a `role:` line of user.cfg)
        #[arg(long)]
        role: Option<String>,
        /// ACL path for the role
        #[arg(long, default_value = "/")]
        path: String,
        /// TOML config file (for user-cfg, shadow-cfg, state-dir)
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: RawConfig,
    },
}

pub fn run(command: UserCommand) -> Result<(), CliError> {
    let UserCommand::Add {
        userid,
        role,
        path,
        config,
        flags,
    } = command;
    let cfg = load_config(config, flags)?;
    if let Some(dir) = cfg.pve_dir {
        return Err(CliError::PveOwned {
            dir,
            command: "user add` / `pveum passwd",
        });
    }
    let id: AuthId = userid
        .parse()
        .ok()
        .filter(|id: &AuthId| !id.is_token())
        .ok_or_else(|| CliError::UserId(userid.clone()))?;
    let (name, realm) = id
        .user()
        .rsplit_once('@')
        .ok_or_else(|| CliError::UserId(userid.clone()))?;
    let password = match realm {
        "pve" => Some(read_password()?),
        "pam" => None,
        _ => return Err(CliError::UserId(userid)),
    };
    super::create_parent(&cfg.user_cfg)?;
    super::create_parent(&cfg.shadow_cfg)?;
    if let Some(password) = password {
        auth::set_password(&cfg.shadow_cfg, name, &password)?;
    }
    let created = auth::add_user(&cfg.user_cfg, &id, role.as_deref(), &path)?;
    println!("{} user {id}", if created { "created" } else { "updated" });
    Ok(())
}

/// PVE's minimum password length (acl:`AccessControl.pm`).
const MIN_PASSWORD_LEN: usize = 5;

fn read_password() -> Result<String, CliError> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Enter new password: ")?;
        let second = rpassword::prompt_password("Retype new password: ")?;
        if first != second {
            return Err(CliError::Password("passwords do not match"));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(CliError::Password(
            "password is too short (at least 5 characters)",
        ));
    }
    Ok(password)
}
