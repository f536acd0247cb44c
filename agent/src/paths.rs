//! Guest paths: validation, allowed roots, and mapping under `--root`.

use std::path::{Component, Path, PathBuf};

use crate::error::OpError;

/// Where clients may write files.
pub const WRITE_ROOTS: &[&str] = &[
    "/etc",
    "/var/lib/minikube",
    "/var/lib/kubelet",
    "/var/tmp/minikube",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/home/docker",
    "/opt",
    "/data",
    "/tmp",
];

/// Where clients may read files (the write roots and these).
pub const READ_ROOTS: &[&str] = &["/var/log", "/var/lib", "/usr/share", "/run", "/usr/lib", "/lib"];

/// Never readable nor writable through the file operations: the agent's own state (its key).
pub const DENIED: &[&str] = &["/var/lib/minikube-agent"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The guest's file tree, possibly below a directory (`--root`).
#[derive(Debug, Clone)]
pub struct GuestRoot {
    root: PathBuf,
}

impl GuestRoot {
    pub fn new(root: &Path) -> GuestRoot {
        GuestRoot { root: root.to_path_buf() }
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The host path of a guest path the agent itself chose (already absolute and clean).
    pub fn host(&self, guest: &str) -> PathBuf {
        self.root.join(guest.trim_start_matches('/'))
    }

    /// Validate a client-supplied guest path (`field` names it in errors), check it against
    /// the allowed roots, and map it to the host.
    pub fn resolve(&self, guest: &str, field: &str, access: Access) -> Result<(String, PathBuf), OpError> {
        let clean = normalise(guest).map_err(|why| OpError::bad(field, format!("{guest:?}: {why}")))?;
        let under = |roots: &[&str]| roots.iter().any(|r| clean == *r || clean.starts_with(&format!("{r}/")));
        if under(DENIED) {
            return Err(OpError::forbidden(field, format!("{clean} is the agent's private state")));
        }
        let allowed = under(WRITE_ROOTS) || (access == Access::Read && under(READ_ROOTS));
        if !allowed {
            let roots = if access == Access::Write { WRITE_ROOTS.join(", ") } else { [WRITE_ROOTS, READ_ROOTS].concat().join(", ") };
            return Err(OpError::forbidden(field, format!("{clean} is outside the allowed roots ({roots})")));
        }
        let host = self.host(&clean);
        self.check_contained(&host, field)?;
        Ok((clean, host))
    }

    /// With `--root`, refuse paths whose existing directories lead (through symlinks) outside it.
    fn check_contained(&self, host: &Path, field: &str) -> Result<(), OpError> {
        if self.root == Path::new("/") {
            return Ok(());
        }
        let Ok(root) = self.root.canonicalize() else { return Ok(()) };
        let mut probe = host.parent();
        while let Some(p) = probe {
            if let Ok(real) = p.canonicalize() {
                if !real.starts_with(&root) {
                    return Err(OpError::forbidden(field, format!("{} leads outside the root through a symlink", p.display())));
                }
                return Ok(());
            }
            probe = p.parent();
        }
        Ok(())
    }
}

/// Absolute, `..`-free, normalised form of a guest path (`//` and `/./` collapsed, no trailing `/`).
pub fn normalise(path: &str) -> Result<String, &'static str> {
    if !path.starts_with('/') {
        return Err("must be absolute");
    }
    if path.contains('\0') {
        return Err("contains NUL");
    }
    if path.len() > 4096 {
        return Err("longer than 4096 bytes");
    }
    let mut out = String::with_capacity(path.len());
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err("contains `..`"),
            Component::Normal(s) => {
                out.push('/');
                out.push_str(s.to_str().ok_or("not UTF-8")?);
            }
            Component::Prefix(_) => return Err("has a prefix"),
        }
    }
    if out.is_empty() {
        return Err("is the root directory");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses() {
        assert_eq!(normalise("/etc//ssl/./certs/").unwrap(), "/etc/ssl/certs");
        assert!(normalise("etc/x").is_err());
        assert!(normalise("/etc/../root").is_err());
        assert!(normalise("/").is_err());
        assert!(normalise("/a\0b").is_err());
    }

    #[test]
    fn roots_are_enforced() {
        let g = GuestRoot::new(Path::new("/tmp/r"));
        assert_eq!(g.resolve("/etc/hostname", "path", Access::Write).unwrap().1, Path::new("/tmp/r/etc/hostname"));
        let e = g.resolve("/usr/bin/x", "path", Access::Write).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (403, Some("path")));
        assert!(g.resolve("/var/log/syslog", "path", Access::Read).is_ok());
        assert!(g.resolve("/var/log/syslog", "path", Access::Write).is_err());
        assert!(g.resolve("/var/lib/minikube-agent/trust/agent.key", "path", Access::Read).is_err());
        assert!(g.resolve("/etcetera/x", "path", Access::Write).is_err());
        let e = g.resolve("/etc/../x", "dest", Access::Write).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (400, Some("dest")));
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/", d.path().join("etc/escape")).unwrap();
        let g = GuestRoot::new(d.path());
        assert!(g.resolve("/etc/escape/etc/passwd", "path", Access::Write).is_err());
        assert!(g.resolve("/etc/fine", "path", Access::Write).is_ok());
    }
}
