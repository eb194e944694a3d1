//! Decompression of iso downloads in the same pass as hashing and writing. PVE runs an external
//! decompressor over the finished file (spec/pve-api.md §1.5); isolib decodes while the bytes
//! stream, and adds xz. lzo has no maintained Rust decoder, so `lzop -d -c` writes straight into
//! the temp file while we feed its stdin.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

use super::direct::Direct;
use crate::catalog::{Observed, Observer};
use crate::pve::content::Compression;
use crate::pve::run_command::exit_failure;

/// The temp file, with the catalog's observer seeing every byte that goes into it.
pub struct Stored {
    out: Direct,
    observer: Observer,
}

impl Write for Stored {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.observer.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Where the downloaded bytes go: a decoder writing into the temp file.
pub enum Output {
    Gz(flate2::write::MultiGzDecoder<Stored>),
    Zst(zstd::stream::write::Decoder<'static, Stored>),
    Bz2(MultiBz),
    Xz(liblzma::write::XzDecoder<Stored>),
    /// lzop writes the file itself; its output is read back for the observer at the end.
    Lzo {
        child: Child,
        stdin: Option<ChildStdin>,
        file: File,
        observer: Observer,
    },
}

impl Output {
    /// Decodes into `file`, which is empty.
    pub fn new(file: File, compression: Compression, observer: Observer) -> io::Result<Output> {
        let w = |file: File, observer| -> io::Result<Stored> {
            Ok(Stored {
                out: Direct::new(file, 0)?,
                observer,
            })
        };
        Ok(match compression {
            Compression::Gz => Output::Gz(flate2::write::MultiGzDecoder::new(w(file, observer)?)),
            Compression::Zst => Output::Zst(zstd::stream::write::Decoder::new(w(file, observer)?)?),
            Compression::Bz2 => {
                Output::Bz2(MultiBz(bzip2::write::BzDecoder::new(w(file, observer)?)))
            }
            Compression::Xz => Output::Xz(liblzma::write::XzDecoder::new_multi_decoder(w(
                file, observer,
            )?)),
            Compression::Lzo => {
                let mut child = Command::new("lzop")
                    .args(["-d", "-c"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::from(file.try_clone()?))
                    .stderr(Stdio::piped())
                    .env("LC_ALL", "C")
                    .spawn()?;
                let stdin = child.stdin.take();
                Output::Lzo {
                    child,
                    stdin,
                    file,
                    observer,
                }
            }
        })
    }

    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Output::Gz(w) => w.write_all(data),
            Output::Zst(w) => w.write_all(data),
            Output::Bz2(w) => w.write_all(data),
            Output::Xz(w) => w.write_all(data),
            Output::Lzo { stdin, .. } => match stdin {
                Some(s) => s.write_all(data),
                None => Err(io::Error::other("decompressor input already closed")),
            },
        }
    }

    /// Flushes everything into the file and says what went in.
    pub fn finish(self) -> io::Result<(File, Observed)> {
        let done = |w: Stored| Ok((w.out.finish()?, w.observer.finish()));
        match self {
            Output::Gz(w) => done(w.finish()?),
            Output::Zst(mut w) => {
                w.flush()?;
                done(w.into_inner())
            }
            Output::Bz2(mut w) => done(w.0.finish()?),
            Output::Xz(w) => done(w.finish()?),
            Output::Lzo {
                child,
                stdin,
                mut file,
                mut observer,
            } => {
                drop(stdin);
                let out = child.wait_with_output()?;
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    let last = err.lines().last().unwrap_or_default().trim().to_string();
                    // Its last complaint, else run_command's words for how it ended.
                    let reason = match exit_failure(out.status) {
                        Some(how) if last.is_empty() => how,
                        _ => last,
                    };
                    return Err(io::Error::other(reason));
                }
                file.seek(io::SeekFrom::Start(observer.len()))?;
                observer.feed(&mut file, |_| {})?;
                Ok((file, observer.finish()))
            }
        }
    }
}

/// bzcat decodes concatenated streams (pbzip2 and lbzip2 write those); the write-side decoder
/// of the bzip2 crate stops after one, so a finished stream is followed by a fresh decoder.
pub struct MultiBz(bzip2::write::BzDecoder<Stored>);

impl MultiBz {
    fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        let mut restarted = false;
        while !data.is_empty() {
            let n = self.0.write(data)?;
            if n > 0 {
                data = &data[n..];
                restarted = false;
                continue;
            }
            if restarted {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bz2 stream makes no progress",
                ));
            }
            let inner = self.0.finish()?;
            self.0 = bzip2::write::BzDecoder::new(inner);
            restarted = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(compression: Compression, compressed: &[u8]) -> io::Result<Vec<u8>> {
        let tmp = tempfile::NamedTempFile::new()?;
        let mut out = Output::new(tmp.reopen()?, compression, Observer::new(false))?;
        for chunk in compressed.chunks(7) {
            out.write_all(chunk)?;
        }
        let (_, observed) = out.finish()?;
        let mut v = Vec::new();
        tmp.reopen()?.read_to_end(&mut v)?;
        // The observer saw exactly the decoded bytes.
        let mut again = Observer::new(false);
        again.update(&v);
        assert_eq!(observed, again.finish());
        Ok(v)
    }

    #[test]
    fn gz_multi_member_zst_bz2_xz() {
        let data = b"hello isolib\n".repeat(1000);
        let gz = |d: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(d).map(|_| e.finish())
        };
        let mut two = gz(&data[..5000]).expect("gz").expect("gz");
        two.extend(gz(&data[5000..]).expect("gz").expect("gz"));
        assert_eq!(roundtrip(Compression::Gz, &two).expect("gz"), data);
        let zst = zstd::encode_all(&data[..], 3).expect("zst");
        assert_eq!(roundtrip(Compression::Zst, &zst).expect("zst"), data);
        let bz = |d: &[u8]| {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(d).and_then(|_| e.finish()).expect("bz2")
        };
        let mut two = bz(&data[..3000]);
        two.extend(bz(&data[3000..]));
        assert_eq!(roundtrip(Compression::Bz2, &two).expect("bz2"), data);
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&data).expect("xz");
        assert_eq!(
            roundtrip(Compression::Xz, &xz.finish().expect("xz")).expect("xz"),
            data
        );
    }

    #[test]
    fn corrupt_streams_fail() {
        assert!(roundtrip(Compression::Gz, b"this is not gzip").is_err());
        assert!(roundtrip(Compression::Xz, b"this is not xz").is_err());
        assert!(roundtrip(Compression::Bz2, b"this is not bz2").is_err());
    }
}
