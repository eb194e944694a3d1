//! A volume that arrives whole from this host (an upload, `isolib add`): a temp file in the
//! storage's staging directory, written and hashed in one pass by the download engine's sink,
//! then checked, recorded and renamed into place. Until then no listing sees it; dropped
//! before that, the temp file goes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::catalog::{self, Facts, Record, Source, Stamp};
use crate::download::{Checksum, ContentCheck, Finished, content_check};
use crate::storage::{DownloadTarget, Storage};

/// The suffix of an intake's temp file; the name carries the node and a uuid, so each daemon
/// collects only its own leftovers (`collect`).
const SUFFIX: &str = ".intake";

pub struct Intake {
    pub dest: PathBuf,
    pub content: String,
    check: ContentCheck,
    temp: PathBuf,
    placed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("unable to create temporary file '{}': {source}", .path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("checksum mismatch: got '{got}' != expect '{expected}'")]
    ChecksumMismatch { got: String, expected: String },
    #[error("failed to verify file: {0}")]
    Verify(content_check::ContentCheckError),
    #[error("refusing to override existing file '{}'", .0.display())]
    Exists(PathBuf),
    #[error("unable to place '{}': {source}", .path.display())]
    Place { path: PathBuf, source: io::Error },
}

impl Intake {
    /// A temp file for `filename` (already normalized and checked as `target`) of `content`
    /// on `storage`, named with `tag` (download::new_tag). The file is readable too: the
    /// content check reads it.
    pub fn create(
        storage: &Storage,
        content: &str,
        filename: &str,
        target: &DownloadTarget,
        tag: &str,
    ) -> Result<(Intake, File), IntakeError> {
        let staging = storage
            .staging_dir(content)
            .ok_or_else(|| IntakeError::Create {
                path: PathBuf::from(filename),
                source: io::Error::other("storage definition has no path"),
            })?;
        let dir = storage.subdir(content).unwrap_or_default();
        let temp = staging.join(format!("{filename}.{tag}{SUFFIX}"));
        let create = |path: &Path| {
            std::fs::create_dir_all(&staging)?;
            std::fs::create_dir_all(&dir)?;
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(path)
        };
        let file = create(&temp).map_err(|source| IntakeError::Create {
            path: temp.clone(),
            source,
        })?;
        let import_ext = match target {
            DownloadTarget::Import { ext } => Some(ext.as_str()),
            _ => None,
        };
        Ok((
            Intake {
                dest: dir.join(filename),
                content: content.to_owned(),
                check: ContentCheck::for_download(content, import_ext),
                temp,
                placed: false,
            },
            file,
        ))
    }

    pub fn temp(&self) -> &Path {
        &self.temp
    }

    /// The user's checksum against the digest the sink computed while the bytes arrived:
    /// PVE's text, no second pass.
    pub fn check_checksum(
        finished: &Finished,
        checksum: Option<&Checksum>,
    ) -> Result<(), IntakeError> {
        match (checksum, &finished.digest) {
            (Some(c), Some(got)) if !c.matches(got) => Err(IntakeError::ChecksumMismatch {
                got: got.clone(),
                expected: c.expected.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// The content check PVE runs on the temp file; `log` gets the lines PVE would warn.
    pub async fn check_content(
        &self,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Option<catalog::ImageInfo>, IntakeError> {
        content_check::verify_with_log(&self.check, &self.temp, log)
            .await
            .map_err(IntakeError::Verify)
    }

    /// Records the temp file's facts under the final name, then renames it into place (over
    /// an existing volume only with `replace`) and makes that durable.
    pub async fn place(
        self,
        finished: Finished,
        image: Option<catalog::ImageInfo>,
        source: Source,
        checksum: Option<Checksum>,
        osinfo_dir: PathBuf,
        replace: bool,
    ) -> Result<PathBuf, IntakeError> {
        let dest = self.dest.clone();
        tokio::task::spawn_blocking(move || {
            self.place_now(
                finished,
                image,
                source,
                checksum.as_ref(),
                &osinfo_dir,
                replace,
            )
        })
        .await
        .map_err(|e| IntakeError::Place {
            path: dest,
            source: io::Error::other(e),
        })?
    }

    fn place_now(
        mut self,
        finished: Finished,
        image: Option<catalog::ImageInfo>,
        source: Source,
        checksum: Option<&Checksum>,
        osinfo_dir: &Path,
        replace: bool,
    ) -> Result<PathBuf, IntakeError> {
        let place_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IntakeError::Place { path, source }
        };
        if !replace && self.dest.exists() {
            return Err(IntakeError::Exists(self.dest.clone()));
        }
        let name = self
            .dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stamp = Stamp::of(&finished.file.metadata().map_err(place_err(&self.temp))?);
        drop(finished.file);
        let facts: Facts = catalog::facts(
            finished.observed,
            stamp,
            &self.content,
            &name,
            image,
            osinfo_dir,
        );
        let mut record = Record::new(facts, source);
        record.checksum = checksum.map(|c| catalog::UserChecksum {
            algorithm: c.algorithm.name().to_owned(),
            value: c.expected.to_ascii_lowercase(),
        });
        catalog::store::save(&self.dest, &record).map_err(place_err(&self.dest))?;
        std::fs::rename(&self.temp, &self.dest).map_err(place_err(&self.dest))?;
        self.placed = true;
        if let Some(dir) = self.dest.parent() {
            crate::fsutil::sync_dir(dir).map_err(place_err(dir))?;
        }
        Ok(self.dest.clone())
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        if !self.placed
            && let Err(e) = std::fs::remove_file(&self.temp)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(
                "unable to remove temporary file '{}': {e}",
                self.temp.display()
            );
        }
    }
}

/// Removes the intake temp files of `node` in `staging_dir` that no process can be writing:
/// at daemon start, every one the daemon left (an upload dies with its daemon); `isolib add`
/// runs in its own process, so its files are removed only once older than `keep`. Blocking.
pub fn collect(staging_dir: &Path, node: &str, keep: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(staging_dir) else {
        return 0;
    };
    let mine = format!(".{node}-");
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(base) = name.strip_suffix(SUFFIX) else {
            continue;
        };
        if !base.contains(&mine) {
            continue;
        }
        let old = crate::fsutil::age(&entry).is_none_or(|age| age >= keep);
        let by_cli = base.ends_with(ADD_MARK);
        if (!by_cli || old) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// What `isolib add` puts in its tag, so the daemon tells its files from its own uploads.
pub const ADD_MARK: &str = "-add";
