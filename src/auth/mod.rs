//! Authentication and authorization, the way Proxmox VE's pve-access-control does it.
//!
//! What lives here, and which upstream source each part mirrors (spec/pve-api.md §1.2, §6):
//!
//! * [`AuthId`]: `user@realm` or `user@realm!token` (acl:`Auth/Plugin.pm` verify_username,
//!   acl:`AccessControl.pm` split_tokenid).
//! * [`AccessConfig`]: `user.cfg` + `priv/token.cfg` parsed as acl:`AccessControl.pm`
//!   parse_user_config and acl:`TokenConfig.pm` read them; API-token verification as in
//!   `verify_token`; effective privileges and permission checks as in acl:`RPCEnvironment.pm`
//!   permissions() / check() / check_any().
//! * [`BUILTIN_ROLES`]: the special roles derived from PVE's privilege groups.
//! * [`extract_auth_value`]: the credential extractor of http:`Formatter.pm`.
//! * [`add_token`]: `isolib token add`, editing both files in place.
//!
//! Layout: `authid` (ids), `privs` (privileges, built-in roles), `path` (ACL path rules),
//! `fields` (Perl field semantics), `user_cfg` / `token_cfg` (parsers), `acl` (ACL tree and
//! role propagation), `permissions` (roles → privileges, pools, privsep), `config` (the public
//! facade), `header`, `token_add` + `atomic_write` (the CLI edit), `error`.

mod acl;
mod atomic_write;
mod authid;
mod config;
mod csrf;
mod error;
mod fields;
mod header;
mod keys;
mod login;
mod pam;
mod path;
mod permissions;
mod privs;
mod shadow;
mod tfa;
mod ticket;
mod token_add;
mod token_cfg;
mod user_cfg;

pub use authid::AuthId;
pub use config::AccessConfig;
pub use error::AuthError;
pub use header::extract_auth_value;
pub use keys::{KeyError, KeyPaths};
pub use login::{Issued, LoginError, LoginSettings, Tickets};
pub use pam::PVE_SERVICE as DEFAULT_PAM_SERVICE;
pub use privs::{BUILTIN_ROLES, all_privileges, builtin_role_privileges};
pub use shadow::{ShadowError, set_password};
pub use tfa::SecondFactors;
pub use token_add::{add_token, add_user};
