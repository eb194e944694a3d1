//! The `pam` realm: checks a password through Linux-PAM, as acl:`Auth/PAM.pm` does with
//! Authen::PAM: service [`PVE_SERVICE`], the user name *without* `@pam`, `PAM_RHOST` set to the
//! client address when known, a conversation that answers the password prompt with the
//! password, then `pam_authenticate(0)` and `pam_acct_mgmt(0)`; a failure of either is
//! reported with `pam_strerror`'s text.
//!
//! Blocking: PAM modules may sleep (pam_unix delays failures by ~2 s) or do network I/O, so
//! async callers must run [`authenticate`] in `tokio::task::spawn_blocking`.
//!
//! Links `libpam` (Debian build dependency: `libpam0g-dev`; runtime: `libpam0g` >= 1.4 for
//! `pam_start_confdir`).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

/// The PAM service PVE authenticates against (`/etc/pam.d/proxmox-ve-auth`, falling back to
/// `/etc/pam.d/other` when absent).
pub const PVE_SERVICE: &str = "proxmox-ve-auth";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PamError {
    /// acl:`Auth/PAM.pm`: an empty password (or Perl-false "0") is refused before PAM runs.
    #[error("no password")]
    NoPassword,
    #[error("{0} contains a NUL byte")]
    Nul(&'static str),
    #[error("error during PAM init: {0}")]
    Start(String),
    /// pam_authenticate failed, with pam_strerror's text (e.g. `Authentication failure`).
    #[error("{0}")]
    Authenticate(String),
    /// pam_acct_mgmt failed (account expired, locked, not permitted...).
    #[error("{0}")]
    Account(String),
}

// Linux-PAM's ABI (security/_pam_types.h, pam_appl.h).
const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_RHOST: c_int = 4;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
const PAM_MAX_NUM_MSG: c_int = 32;

#[repr(C)]
struct PamHandle {
    _opaque: [u8; 0],
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start(
        service_name: *const c_char,
        user: *const c_char,
        pam_conversation: *const PamConv,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_start_confdir(
        service_name: *const c_char,
        user: *const c_char,
        pam_conversation: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_end(pamh: *mut PamHandle, pam_status: c_int) -> c_int;
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;
}

/// Authenticates `user` (no realm) with `password` against PAM service `service`.
///
/// `rhost` becomes `PAM_RHOST` (logged by pam_unix, used by pam_access and fail2ban).
/// `confdir` makes PAM read the service file from that directory instead of `/etc/pam.d`
/// (`pam_start_confdir`), which lets tests use their own service files.
pub fn authenticate(
    service: &str,
    user: &str,
    password: &str,
    rhost: Option<&str>,
    confdir: Option<&Path>,
) -> Result<(), PamError> {
    if password.is_empty() || password == "0" {
        return Err(PamError::NoPassword);
    }
    let service = CString::new(service).map_err(|_| PamError::Nul("service"))?;
    let user = CString::new(user).map_err(|_| PamError::Nul("user"))?;
    let password = CString::new(password).map_err(|_| PamError::Nul("password"))?;
    let rhost = rhost
        .map(CString::new)
        .transpose()
        .map_err(|_| PamError::Nul("rhost"))?;
    let confdir = confdir
        .map(|dir| CString::new(dir.as_os_str().as_bytes()))
        .transpose()
        .map_err(|_| PamError::Nul("confdir"))?;

    // `conv` and `password` are declared before `session`, so they outlive the handle.
    let conv = PamConv {
        conv: Some(converse),
        appdata_ptr: password.as_ptr().cast_mut().cast(),
    };
    let mut handle: *mut PamHandle = ptr::null_mut();
    // SAFETY: every pointer is a valid NUL-terminated string or the live `conv`, and `handle`
    // is a valid out pointer.
    let rc = unsafe {
        match &confdir {
            Some(dir) => pam_start_confdir(
                service.as_ptr(),
                user.as_ptr(),
                &conv,
                dir.as_ptr(),
                &mut handle,
            ),
            None => pam_start(service.as_ptr(), user.as_ptr(), &conv, &mut handle),
        }
    };
    if rc != PAM_SUCCESS || handle.is_null() {
        let message = strerror(ptr::null_mut(), rc);
        if !handle.is_null() {
            // SAFETY: a handle pam_start returned, ended exactly once.
            unsafe { pam_end(handle, rc) };
        }
        return Err(PamError::Start(message));
    }
    let mut session = Session { handle, status: rc };

    if let Some(rhost) = &rhost {
        // SAFETY: live handle; PAM copies string items. Like PVE, a failure here is ignored.
        unsafe { pam_set_item(session.handle, PAM_RHOST, rhost.as_ptr().cast()) };
    }
    // SAFETY: live handle.
    let rc = unsafe { pam_authenticate(session.handle, 0) };
    if rc != PAM_SUCCESS {
        session.status = rc;
        return Err(PamError::Authenticate(strerror(session.handle, rc)));
    }
    // SAFETY: live handle.
    let rc = unsafe { pam_acct_mgmt(session.handle, 0) };
    if rc != PAM_SUCCESS {
        session.status = rc;
        return Err(PamError::Account(strerror(session.handle, rc)));
    }
    Ok(())
}

/// Ends the PAM transaction on every path.
struct Session {
    handle: *mut PamHandle,
    status: c_int,
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the handle came from pam_start and is ended only here.
        unsafe { pam_end(self.handle, self.status) };
    }
}

fn strerror(handle: *mut PamHandle, rc: c_int) -> String {
    // SAFETY: Linux-PAM returns a static string for any code and ignores the handle.
    let text = unsafe { pam_strerror(handle, rc) };
    if text.is_null() {
        return format!("PAM error {rc}");
    }
    // SAFETY: non-null, NUL-terminated, static.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

/// The conversation: every prompt gets the password; informational and error messages get
/// no answer and are logged. PAM frees the responses with free(), so they are malloc'ed.
/// Must not unwind: it is called from C.
unsafe extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int {
    if !(1..=PAM_MAX_NUM_MSG).contains(&num_msg)
        || msg.is_null()
        || resp.is_null()
        || appdata_ptr.is_null()
    {
        return PAM_CONV_ERR;
    }
    let count = num_msg as usize;
    let password: *const c_char = appdata_ptr.cast_const().cast();
    // SAFETY: plain allocation; zeroed, so every `resp` starts out null.
    let replies: *mut PamResponse =
        unsafe { libc::calloc(count, std::mem::size_of::<PamResponse>()) }.cast();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..count {
        // SAFETY: Linux-PAM passes an array of `num_msg` message pointers.
        let message = unsafe { *msg.add(i) };
        if message.is_null() {
            // SAFETY: `replies` holds `count` entries, filled or null.
            unsafe { free_replies(replies, count) };
            return PAM_CONV_ERR;
        }
        // SAFETY: non-null message from PAM.
        let (style, text) = unsafe { ((*message).msg_style, (*message).msg) };
        match style {
            PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON => {
                // SAFETY: `password` is the caller's live CString.
                let answer = unsafe { libc::strdup(password) };
                if answer.is_null() {
                    // SAFETY: as above.
                    unsafe { free_replies(replies, count) };
                    return PAM_BUF_ERR;
                }
                // SAFETY: i < count.
                unsafe { (*replies.add(i)).resp = answer };
            }
            PAM_ERROR_MSG | PAM_TEXT_INFO => {
                let text = if text.is_null() {
                    String::new()
                } else {
                    // SAFETY: PAM's NUL-terminated message text.
                    unsafe { CStr::from_ptr(text) }
                        .to_string_lossy()
                        .into_owned()
                };
                tracing::debug!(style, %text, "PAM message");
            }
            _ => {
                // SAFETY: as above.
                unsafe { free_replies(replies, count) };
                return PAM_CONV_ERR;
            }
        }
    }
    // SAFETY: PAM's out pointer; it takes ownership of the array and its strings.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// Frees a reply array that is not handed to PAM, wiping the password copies first.
///
/// # Safety
/// `replies` must come from calloc with `count` entries whose `resp` is null or from strdup.
unsafe fn free_replies(replies: *mut PamResponse, count: usize) {
    for i in 0..count {
        // SAFETY: per the contract.
        unsafe {
            let answer = (*replies.add(i)).resp;
            if !answer.is_null() {
                libc::explicit_bzero(answer.cast(), libc::strlen(answer));
                libc::free(answer.cast());
            }
        }
    }
    // SAFETY: per the contract.
    unsafe { libc::free(replies.cast()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const USER: &str = "isolib-pam-test";

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            // pam_exec feeds the password followed by a NUL to stdin; the script compares it
            // and the PAM_RHOST/PAM_USER environment with its arguments.
            let script = dir.path().join("check.sh");
            std::fs::write(
                &script,
                "#!/bin/sh\n\
                 pw=$(tr -d '\\000')\n\
                 [ \"$pw\" = \"$1\" ] && [ \"$PAM_RHOST\" = \"$2\" ] && [ \"$PAM_USER\" = \"$3\" ]\n",
            )
            .unwrap_or_else(|e| panic!("{e}"));
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("{e}"));
            let fixture = Fixture { dir };
            fixture.service(
                "permit",
                "auth required pam_permit.so\naccount required pam_permit.so\n",
            );
            fixture.service(
                "deny",
                "auth required pam_deny.so\naccount required pam_permit.so\n",
            );
            fixture.service(
                "account-deny",
                "auth required pam_permit.so\naccount required pam_deny.so\n",
            );
            fixture.service(
                "password",
                &format!(
                    "auth required pam_exec.so expose_authtok quiet {} s3cret-pw 192.0.2.7 {USER}\n\
                     account required pam_permit.so\n",
                    script.display()
                ),
            );
            fixture
        }

        fn service(&self, name: &str, body: &str) {
            std::fs::write(self.dir.path().join(name), body).unwrap_or_else(|e| panic!("{e}"));
        }

        fn auth(&self, service: &str, password: &str) -> Result<(), PamError> {
            authenticate(
                service,
                USER,
                password,
                Some("192.0.2.7"),
                Some(self.dir.path()),
            )
        }
    }

    #[test]
    fn permit_and_deny() {
        let f = Fixture::new();
        assert!(f.auth("permit", "anything").is_ok());
        let err = f.auth("deny", "anything").err();
        assert!(
            matches!(&err, Some(PamError::Authenticate(text)) if text == "Authentication failure"),
            "{err:?}"
        );
        assert!(matches!(
            f.auth("account-deny", "anything"),
            Err(PamError::Account(_))
        ));
    }

    #[test]
    fn the_conversation_delivers_the_password() {
        let f = Fixture::new();
        assert!(f.auth("password", "s3cret-pw").is_ok());
        assert!(matches!(
            f.auth("password", "s3cret-pX"),
            Err(PamError::Authenticate(_))
        ));
        // The script also sees PAM_RHOST, so a different client address fails.
        let other_host = authenticate(
            "password",
            USER,
            "s3cret-pw",
            Some("192.0.2.8"),
            Some(f.dir.path()),
        );
        assert!(other_host.is_err());
        // Repeated calls do not disturb each other (handles are ended every time).
        for _ in 0..20 {
            assert!(f.auth("password", "s3cret-pw").is_ok());
        }
    }

    #[test]
    fn refuses_what_pam_cannot_take() {
        let f = Fixture::new();
        assert!(matches!(f.auth("permit", ""), Err(PamError::NoPassword)));
        assert!(matches!(f.auth("permit", "0"), Err(PamError::NoPassword)));
        assert!(matches!(
            f.auth("permit", "a\0b"),
            Err(PamError::Nul("password"))
        ));
        assert!(matches!(
            authenticate("permit", "a\0b", "x", None, Some(f.dir.path())),
            Err(PamError::Nul("user"))
        ));
        // No such service and no "other" in the directory.
        let missing = f.auth("no-such-service", "anything");
        assert!(
            matches!(
                missing,
                Err(PamError::Start(_) | PamError::Authenticate(_) | PamError::Account(_))
            ),
            "{missing:?}"
        );
    }
}
