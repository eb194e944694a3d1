//! A parsed config file that is re-read when it changes on disk. Modification times are polled
//! on access rather than watched: PVE's cluster file system sends no inotify events for changes
//! made on other nodes, and the files are small.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

type Stamp = Vec<Option<(SystemTime, u64)>>;
type Loader<T, E> = Box<dyn Fn(&[PathBuf]) -> Result<T, E> + Send + Sync>;

pub struct FileCache<T, E> {
    paths: Vec<PathBuf>,
    load: Loader<T, E>,
    current: Mutex<Option<(Stamp, Arc<T>)>>,
}

impl<T, E> FileCache<T, E> {
    pub fn new(
        paths: Vec<PathBuf>,
        load: impl Fn(&[PathBuf]) -> Result<T, E> + Send + Sync + 'static,
    ) -> Self {
        FileCache {
            paths,
            load: Box::new(load),
            current: Mutex::new(None),
        }
    }

    fn stamp(&self) -> Stamp {
        self.paths
            .iter()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                Some((m.modified().ok()?, m.len()))
            })
            .collect()
    }

    /// The parsed files, re-read when a size or modification time differs from the last read.
    pub fn get(&self) -> Result<Arc<T>, E> {
        let stamp = self.stamp();
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, v)) = cur.as_ref()
            && *s == stamp
        {
            return Ok(v.clone());
        }
        let v = Arc::new((self.load)(&self.paths)?);
        *cur = Some((stamp, v.clone()));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rereads_after_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, "one").expect("write");
        let cache: FileCache<String, std::io::Error> =
            FileCache::new(vec![p.clone()], |paths| std::fs::read_to_string(&paths[0]));
        assert_eq!(*cache.get().expect("read"), "one");
        std::fs::write(&p, "three").expect("write");
        assert_eq!(*cache.get().expect("read"), "three");
    }
}
