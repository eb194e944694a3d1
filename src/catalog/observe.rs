//! The facts of a file gathered from its bytes as they are written, in the one pass every
//! writer already makes (download, upload, `isolib add`, verification): the sha256 always, the
//! ISO descriptors when the volume is an ISO image.

use std::io::{self, Read};

use sha2::Digest;

use super::iso9660::{IsoInfo, IsoProbe};

pub struct Observer {
    sha256: sha2::Sha256,
    len: u64,
    iso: Option<IsoProbe>,
}

/// What the bytes said.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub sha256: String,
    pub len: u64,
    pub iso: Option<IsoInfo>,
}

impl Observer {
    /// `iso`: look for ISO 9660 descriptors too (iso content).
    pub fn new(iso: bool) -> Observer {
        Observer {
            sha256: sha2::Sha256::new(),
            len: 0,
            iso: iso.then(IsoProbe::new),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        self.len += data.len() as u64;
        if let Some(p) = self.iso.as_mut() {
            p.feed(data);
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Observed {
        let len = self.len;
        Observed {
            sha256: self
                .sha256
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            len,
            iso: self.iso.and_then(|p| p.finish(len)),
        }
    }

    /// Feeds everything `reader` yields, handing each chunk to `also` as well (another hash, a
    /// pace); returns how many bytes that was. Blocking.
    pub fn feed(&mut self, mut reader: impl Read, mut also: impl FnMut(&[u8])) -> io::Result<u64> {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.update(&buf[..n]);
            also(&buf[..n]);
            total += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_what_it_is_fed_however_it_arrives() {
        let mut whole = Observer::new(false);
        whole.update(b"abc");
        let mut parts = Observer::new(true);
        parts.feed(&b"abc"[..], |_| {}).expect("feed");
        let (a, b) = (whole.finish(), parts.finish());
        assert_eq!(
            a.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(a.sha256, b.sha256);
        assert_eq!((a.len, b.iso), (3, None));
    }
}
