//! The local Unix socket: the same API for the Perl shim and the command-line client, with the
//! peer's identity taken from the kernel (SO_PEERCRED) instead of a credential.

use std::any::Any;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use actix_web::dev::Extensions;

/// The uid of the process on the other end of a Unix-socket connection. TCP connections carry
/// none, which is how the dispatcher tells the two apart.
#[derive(Debug, Clone, Copy)]
pub struct SocketPeer {
    pub uid: Option<u32>,
}

impl SocketPeer {
    /// uid 0 is root@pam, as the issue asks; the daemon's own uid is too, because that user can
    /// read the daemon's state (token secrets included) anyway, and it lets an unprivileged
    /// daemon be driven by its own user.
    pub fn is_trusted(&self) -> bool {
        // SAFETY: geteuid cannot fail and touches no memory.
        let own = unsafe { libc::geteuid() };
        self.uid.is_some_and(|uid| uid == 0 || uid == own)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another daemon is listening on socket '{}'", .0.display())]
    InUse(PathBuf),
    #[error("unable to listen on socket '{}': {source}", .path.display())]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Records the peer of every Unix-socket connection in the connection's extensions.
pub fn on_connect(io: &dyn Any, ext: &mut Extensions) {
    if let Some(stream) = io.downcast_ref::<tokio::net::UnixStream>() {
        let uid = stream.peer_cred().ok().map(|c| c.uid());
        ext.insert(SocketPeer { uid });
    }
}

/// Binds `path`, replacing a stale socket file a crashed daemon left, but never one a running
/// daemon still answers on. The file is world-connectable on purpose: who may use it is decided
/// per connection from the peer's uid, so a refused peer gets an answer instead of EACCES.
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let bind_err = |source| SocketError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(bind_err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(bind_err)?;
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(bind_err)?;
    Ok(listener)
}
