//! Atomic file replacement: write a temporary file beside the target, fsync it, rename it over
//! the target, fsync the directory. Readers see the old file or the new one, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Every temporary file name starts with this, so that servers can refuse to expose them and
/// clean-ups can find them.
pub const TEMP_PREFIX: &str = ".minikube-tmp.";

/// Whether a file name is one of our temporary files.
pub fn is_temp_name(file_name: &str) -> bool {
    file_name.starts_with(TEMP_PREFIX)
}

/// Remove our temporary files (and directories) left in `dir` by a writer that was killed
/// before it could clean up; returns how many. For a directory that one build writes at a time,
/// such as `out/`, at the start of the build.
pub fn remove_stale_temps(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        if is_temp_name(&e.file_name().to_string_lossy()) {
            if e.file_type()?.is_dir() {
                fs::remove_dir_all(e.path())?;
            } else {
                fs::remove_file(e.path())?;
            }
            n += 1;
        }
    }
    Ok(n)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written in place of `target`; it replaces `target` only on [`AtomicFile::commit`].
/// Dropped without commit, the temporary file is removed.
pub struct AtomicFile {
    file: Option<File>,
    temp: PathBuf,
    target: PathBuf,
}

impl AtomicFile {
    /// Start replacing `target` by a file with permission bits `mode` (umask is not applied).
    pub fn create(target: &Path, mode: u32) -> io::Result<AtomicFile> {
        let dir = parent_dir(target)?;
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: no file name", target.display())))?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!("{TEMP_PREFIX}{}.{}.{n}", name.to_string_lossy(), std::process::id()));
        let file = OpenOptions::new().write(true).create_new(true).mode(mode & 0o7777).open(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        Ok(AtomicFile { file: Some(file), temp, target: target.to_path_buf() })
    }

    /// The open temporary file (for `fchown` and the like).
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("file present until commit")
    }

    /// Path of the temporary file.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// fsync the data, rename over the target, fsync the directory.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().expect("file present until commit");
        file.sync_all()?;
        drop(file);
        if let Err(e) = fs::rename(&self.temp, &self.target) {
            let _ = fs::remove_file(&self.temp);
            return Err(e);
        }
        sync_dir(parent_dir(&self.target)?)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("file present until commit").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("file present until commit").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

fn parent_dir(path: &Path) -> io::Result<&Path> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p),
        Some(_) => Ok(Path::new(".")),
        None => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{}: no parent directory", path.display()))),
    }
}

/// fsync a directory (makes a rename or a new entry durable).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replace `target` with `bytes` atomically, with permission bits `mode`.
pub fn write_atomic(target: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut f = AtomicFile::create(target, mode)?;
    f.write_all(bytes)?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        fs::write(&p, b"old").unwrap();
        write_atomic(&p, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn dropped_without_commit_leaves_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"old").unwrap();
        {
            let mut f = AtomicFile::create(&p, 0o644).unwrap();
            f.write_all(b"partial").unwrap();
            assert!(is_temp_name(&f.temp_path().file_name().unwrap().to_string_lossy()));
        }
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
