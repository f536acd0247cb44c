//! User and group names from the guest's /etc/passwd and /etc/group, read directly (no NSS, so
//! the static binary needs no getpwnam).

use std::path::Path;

/// Look `name` up in a passwd/group style file: the third field of its line.
fn lookup(file: &Path, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[0] == name)
        .and_then(|f| f[2].parse().ok())
}

/// Resolve `user[:group]` (names or numbers) against the guest files under `root`. Without a
/// group, the user's primary group (fourth passwd field) is used.
pub fn resolve_owner(root: &Path, spec: &str) -> Result<(u32, u32), String> {
    let passwd = root.join("etc/passwd");
    let group_file = root.join("etc/group");
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => lookup(&passwd, user).ok_or_else(|| format!("user {user:?} not in /etc/passwd"))?,
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&group_file, g).ok_or_else(|| format!("group {g:?} not in /etc/group"))?,
        },
        None => {
            let text = std::fs::read_to_string(&passwd).unwrap_or_default();
            text.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 4 && f[2].parse::<u32>().ok() == Some(uid))
                .and_then(|f| f[3].parse().ok())
                .unwrap_or(uid)
        }
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\ndocker:x:1000:1000::/home/docker:/bin/bash\n").unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\ndocker:x:999:docker\nwheel:x:10:docker\n").unwrap();
        assert_eq!(resolve_owner(d.path(), "docker:docker").unwrap(), (1000, 999));
        assert_eq!(resolve_owner(d.path(), "docker").unwrap(), (1000, 1000));
        assert_eq!(resolve_owner(d.path(), "1000:10").unwrap(), (1000, 10));
        assert_eq!(resolve_owner(d.path(), "docker:wheel").unwrap(), (1000, 10));
        assert!(resolve_owner(d.path(), "nobody").unwrap_err().contains("nobody"));
        assert!(resolve_owner(d.path(), "root:nogroup").unwrap_err().contains("nogroup"));
    }
}
