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
/// Dropped without commit, or when a commit fails before the rename, the temporary file is removed.
///
/// Three ways to write it: through `Write` (or [`AtomicFile::file`]) as a stream; by an external
/// program given [`AtomicFile::temp_path`]; or, when the name is known only once the bytes are
/// (a content-addressed store), from [`AtomicFile::create_in`] to [`AtomicFile::commit_as`].
pub struct AtomicFile {
    file: Option<File>,
    temp: PathBuf,
    /// `None` when created with [`AtomicFile::create_in`]: the name comes with `commit_as`.
    target: Option<PathBuf>,
}

impl AtomicFile {
    /// Start replacing `target` by a file with permission bits `mode` (umask is not applied).
    pub fn create(target: &Path, mode: u32) -> io::Result<AtomicFile> {
        let dir = parent_dir(target)?;
        let name = target.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: no file name", target.display())))?;
        let mut f = AtomicFile::create_in(dir, &name.to_string_lossy(), mode)?;
        f.target = Some(target.to_path_buf());
        Ok(f)
    }

    /// Start a file in `dir` whose name is chosen when it is complete (for example the digest of
    /// its bytes): finish it with [`AtomicFile::commit_as`]. `stem` only makes the temporary name
    /// (`TEMP_PREFIX` + stem + pid + counter) telling; permission bits `mode`, umask not applied.
    pub fn create_in(dir: &Path, stem: &str, mode: u32) -> io::Result<AtomicFile> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!("{TEMP_PREFIX}{stem}.{}.{n}", std::process::id()));
        let file = OpenOptions::new().write(true).create_new(true).mode(mode & 0o7777).open(&temp)?;
        let f = AtomicFile { file: Some(file), temp, target: None };
        f.file().set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        Ok(f)
    }

    /// The open temporary file (for `fchown` and the like).
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("file present until commit")
    }

    /// Path of the temporary file. An external program may write the file through it (such as
    /// `mksquashfs - PATH`), provided it writes this same file (opens it, truncating or not) and
    /// does not replace it: a commit finding another file at this path fails.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// fsync the data, rename over the target given to [`AtomicFile::create`], fsync the
    /// directory. A file from [`AtomicFile::create_in`] has no target yet: an error, and the
    /// temporary file is removed.
    pub fn commit(self) -> io::Result<()> {
        let Some(target) = self.target.clone() else {
            let temp = self.temp.display().to_string();
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{temp}: no target to commit to (use commit_as)")));
        };
        self.commit_as(&target)
    }

    /// fsync the data, rename to `target`, fsync the directory. `target` must be in the directory
    /// the temporary file is in (a rename across directories may cross file systems and would
    /// not be atomic). On any error before the rename the temporary file is removed.
    pub fn commit_as(mut self, target: &Path) -> io::Result<()> {
        let dir = parent_dir(target)?;
        if parent_dir(&self.temp).ok() != Some(dir) {
            let msg = format!("{}: not in the directory of its temporary file {}", target.display(), self.temp.display());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
        let file = self.file.as_ref().expect("file present until commit");
        file.sync_all()?;
        if !same_file(file, &self.temp)? {
            let msg = format!("{}: replaced while being written (by another file)", self.temp.display());
            return Err(io::Error::other(msg));
        }
        drop(self.file.take());
        if let Err(e) = fs::rename(&self.temp, target) {
            let _ = fs::remove_file(&self.temp);
            return Err(e);
        }
        sync_dir(dir)
    }
}

/// Whether `path` still names the open `file`.
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (file.metadata()?, fs::symlink_metadata(path)?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
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

    #[test]
    fn named_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = AtomicFile::create_in(dir.path(), "blob", 0o644).unwrap();
        assert!(is_temp_name(&f.temp_path().file_name().unwrap().to_string_lossy()));
        f.write_all(b"content").unwrap();
        let target = dir.path().join("ed7002b439e9ac845f22357d822bac1444730fbdb6016d3ec9432297b9ec9f73");
        f.commit_as(&target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"content");
        assert_eq!(fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn a_failed_commit_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        // No target yet.
        let f = AtomicFile::create_in(dir.path(), "blob", 0o644).unwrap();
        assert!(f.commit().is_err());
        // A target in another directory.
        let f = AtomicFile::create_in(dir.path(), "blob", 0o644).unwrap();
        assert!(f.commit_as(&other.path().join("x")).is_err());
        // The rename fails (the target is a non-empty directory).
        let target = dir.path().join("t");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"").unwrap();
        assert!(AtomicFile::create(&target, 0o644).unwrap().commit().is_err());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["t"], "only the directory is left");
        assert_eq!(fs::read_dir(other.path()).unwrap().count(), 0);
    }

    #[test]
    fn written_by_another_program_through_the_temp_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.sqfs");
        // Truncated and rewritten in place, as a tool opening the path does: committed.
        let f = AtomicFile::create(&p, 0o644).unwrap();
        fs::write(f.temp_path(), b"by the tool").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"by the tool");
        // Replaced by another file: refused, and nothing is left behind.
        let f = AtomicFile::create(&p, 0o644).unwrap();
        fs::remove_file(f.temp_path()).unwrap();
        fs::write(f.temp_path(), b"another file").unwrap();
        assert!(f.commit().is_err());
        assert_eq!(fs::read(&p).unwrap(), b"by the tool");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
