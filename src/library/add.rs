//! `isolib add FILE`: a file of this host becomes a volume, as an upload would, without the
//! network: copied (or with `--move`, renamed where it can be) into the storage's staging
//! directory, hashed in the same pass, checked as a download is, recorded and renamed into
//! place. An existing volume is never overwritten.

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::intake::{ADD_MARK, Intake, IntakeError};
use crate::catalog::{Observer, Origin, Source};
use crate::download::{self, Checksum, Finished, Sink};
use crate::storage::{Storage, StorageError, check_download_filename, normalize_content_filename};

pub struct AddRequest<'a> {
    pub file: &'a Path,
    pub storage: &'a Storage,
    /// iso, vztmpl or import; `None`: told by the name.
    pub content: Option<&'a str>,
    /// The volume's name; `None`: the file's own.
    pub filename: Option<&'a str>,
    pub checksum: Option<Checksum>,
    /// Rename the file instead of copying it, when it is on the staging directory's file
    /// system (else copy it and remove it afterwards).
    pub move_file: bool,
    pub node: &'a str,
    pub user: String,
    pub osinfo_dir: &'a Path,
}

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("{key}: {message}")]
    Param { key: &'static str, message: String },
    #[error("cannot tell the content type of '{0}'; give --content iso, vztmpl or import")]
    UnknownContent(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error("unable to read '{}': {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The content type a file name says: what PVE's listing would show it as.
pub fn content_of(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let ext = |e: &str| lower.ends_with(e);
    if ext(".iso") || ext(".img") {
        Some("iso")
    } else if [".tar", ".tar.gz", ".tar.xz", ".tar.zst", ".tar.bz2"]
        .iter()
        .any(|e| ext(e))
    {
        Some("vztmpl")
    } else if [".qcow2", ".raw", ".vmdk", ".ova"].iter().any(|e| ext(e)) {
        Some("import")
    } else {
        None
    }
}

/// Adds the file; returns the volume ID. `log` gets what the content check warns.
pub async fn add(
    req: AddRequest<'_>,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<String, AddError> {
    let read_err = |source| AddError::Read {
        path: req.file.to_path_buf(),
        source,
    };
    let own_name = req
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let filename = normalize_content_filename(req.filename.unwrap_or(&own_name));
    let content = match req.content {
        Some(c) => c,
        None => content_of(&filename).ok_or_else(|| AddError::UnknownContent(filename.clone()))?,
    };
    let target = check_download_filename(content, &filename)
        .map_err(|(key, message)| AddError::Param { key, message })?;
    req.storage.check_download(content)?;
    req.storage.activate()?;
    let meta = std::fs::metadata(req.file).map_err(read_err)?;
    if !meta.is_file() {
        return Err(read_err(std::io::Error::other("not a regular file")));
    }
    let tag = format!("{}{ADD_MARK}", download::new_tag(req.node));
    let (intake, temp_file) = Intake::create(req.storage, content, &filename, &target, &tag)?;
    if intake.dest.exists() {
        return Err(IntakeError::Exists(intake.dest.clone()).into());
    }
    let algorithm = req.checksum.as_ref().map(|c| c.algorithm);
    let iso = content == "iso";
    let moved = req.move_file && std::fs::rename(req.file, intake.temp()).is_ok();
    let finished = if moved {
        drop(temp_file);
        let path = intake.temp().to_path_buf();
        tokio::task::spawn_blocking(move || hash_in_place(&path, algorithm, iso))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(read_err)?
    } else {
        copy_through_sink(req.file, temp_file, algorithm, iso)
            .await
            .map_err(read_err)?
    };
    Intake::check_checksum(&finished, req.checksum.as_ref())?;
    let image = intake.check_content(log).await?;
    let source = Source {
        origin: Origin::Local,
        url: Some(format!("file://{}", absolute(req.file).display())),
        user: Some(req.user),
        time: chrono::Utc::now().timestamp(),
        ..Source::default()
    };
    intake
        .place(
            finished,
            image,
            source,
            req.checksum,
            req.osinfo_dir.to_path_buf(),
            false,
        )
        .await?;
    if req.move_file && !moved {
        std::fs::remove_file(req.file).map_err(read_err)?;
    }
    Ok(format!("{}:{content}/{filename}", req.storage.id))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Reads a file that is already where it goes, for its facts and the user's digest. Blocking.
fn hash_in_place(
    path: &Path,
    algorithm: Option<download::Algorithm>,
    iso: bool,
) -> std::io::Result<Finished> {
    let file = std::fs::File::open(path)?;
    let mut observer = Observer::new(iso);
    let mut hasher = download::user_hasher(algorithm, None);
    observer.feed(&file, |chunk| {
        if let Some(h) = hasher.as_mut() {
            h.update(chunk);
        }
    })?;
    Ok(Finished::new(hasher, algorithm, observer.finish(), file))
}

/// Copies `from` into `into` through the download sink: one read, hashed and written.
async fn copy_through_sink(
    from: &Path,
    into: std::fs::File,
    algorithm: Option<download::Algorithm>,
    iso: bool,
) -> std::io::Result<Finished> {
    let mut src = tokio::fs::File::open(from).await?;
    let sink = Sink::start(into, algorithm, None, iso)?;
    loop {
        let mut buf = BytesMut::with_capacity(1 << 20);
        if src.read_buf(&mut buf).await? == 0 {
            break;
        }
        if !sink.send(buf.freeze()).await {
            break;
        }
    }
    sink.finish().await.map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_tells_the_content() {
        assert_eq!(content_of("debian.ISO"), Some("iso"));
        assert_eq!(content_of("x.img"), Some("iso"));
        assert_eq!(
            content_of("debian-12-standard_12.7-1_amd64.tar.zst"),
            Some("vztmpl")
        );
        assert_eq!(content_of("disk.qcow2"), Some("import"));
        assert_eq!(content_of("vm.ova"), Some("import"));
        assert_eq!(content_of("notes.txt"), None);
    }
}
