//! PVE's UPID: encoding, the decode grammar and the task-log location derived from it
//! (pve-common `PVE/UPID.pm`, spec/pve-api.md §4.1).

use std::fmt;
use std::str::FromStr;

use crate::schema::Pattern;

pub static UPID_RE: Pattern = Pattern::new(
    r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$",
);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Upid {
    pub node: String,
    /// In isolib a persisted task counter: unique per task, even within one second.
    pub pid: u32,
    /// The daemon's start time: a restart never reuses a (pid, pstart) pair.
    pub pstart: u64,
    pub starttime: i64,
    pub kind: String,
    pub id: String,
    /// `user@realm` or `user@realm!token`
    pub user: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unable to parse worker upid '{0}'")]
pub struct UpidParseError(pub String);

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.kind, self.id, self.user
        )
    }
}

impl FromStr for Upid {
    type Err = UpidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UpidParseError(s.to_string());
        if !UPID_RE.is_match(s) {
            return Err(err());
        }
        // The grammar guarantees nine fields with ':' only as separators.
        let f: Vec<&str> = s.split(':').collect();
        let hex = |v: &str| u64::from_str_radix(v, 16).map_err(|_| err());
        Ok(Upid {
            node: f[1].to_string(),
            pid: u32::try_from(hex(f[2])?).map_err(|_| err())?,
            pstart: hex(f[3])?,
            starttime: i64::try_from(hex(f[4])?).map_err(|_| err())?,
            kind: f[5].to_string(),
            id: f[6].to_string(),
            user: f[7].to_string(),
        })
    }
}

impl Upid {
    /// PVE files a task log under the last hex digit of the starttime field.
    pub fn log_subdir(&self) -> String {
        format!("{:X}", self.starttime & 0xf)
    }

    /// `user@realm` and the token name, as the task list and status report them.
    pub fn user_and_token(&self) -> (&str, Option<&str>) {
        match self.user.split_once('!') {
            Some((u, t)) => (u, Some(t)),
            None => (&self.user, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "UPID:pve1:0002A1F3:00C4B2A1:6745D3E2:download:debian-12.8.0-amd64-netinst.iso:root@pam!packer:";

    #[test]
    fn round_trip() {
        let u: Upid = SAMPLE.parse().expect("valid");
        assert_eq!(u.node, "pve1");
        assert_eq!(u.pid, 0x2A1F3);
        assert_eq!(u.starttime, 0x6745D3E2);
        assert_eq!(u.id, "debian-12.8.0-amd64-netinst.iso");
        assert_eq!(u.user_and_token(), ("root@pam", Some("packer")));
        assert_eq!(u.to_string(), SAMPLE);
        assert_eq!(u.log_subdir(), "2");
    }

    #[test]
    fn empty_id_and_nine_digit_pstart() {
        let u: Upid = "UPID:n:00000001:123456789:00000002:imgcopy::root@pam:"
            .parse()
            .expect("valid");
        assert_eq!(u.pstart, 0x123456789);
        assert_eq!(u.id, "");
    }

    #[test]
    fn rejects() {
        for bad in [
            "UPID:pve1:0002A1F3:00C4B2A1:6745D3E2:download:x:root@pam", // no trailing colon
            "UPID:-bad:0002A1F3:00C4B2A1:6745D3E2:download:x:root@pam:",
            "UPID:pve1:2A1F3:00C4B2A1:6745D3E2:download:x:root@pam:",
            "garbage",
        ] {
            assert_eq!(bad.parse::<Upid>(), Err(UpidParseError(bad.to_string())));
        }
    }
}
