//! The dpkg database (`/var/lib/dpkg`): status from the index stanzas of the installed packages,
//! `info/<package>.list` with their files, so that `dpkg -l` and `dpkg -S` work in the image.

use super::put_file;
use crate::rootfs::Tree;

/// /var/lib/dpkg/status (each package's index stanza without its download fields, marked
/// installed), info/<package>.list, an empty `available` and `arch`, so that `dpkg -l` knows what
/// is installed.
pub fn dpkg_database(tree: &mut Tree, installed: &[(&crate::apt::Package, Vec<String>)], epoch: u64) {
    let mut status = String::new();
    for (p, files) in installed {
        let mut first = true;
        for line in p.stanza.lines() {
            if line.starts_with("Filename:")
                || line.starts_with("Size:")
                || line.starts_with("SHA256:")
                || line.starts_with("MD5sum:")
                || line.starts_with("Description-md5:")
            {
                continue;
            }
            status.push_str(line);
            status.push('\n');
            if first {
                status.push_str("Status: install ok installed\n");
                first = false;
            }
        }
        status.push('\n');
        let mut list = String::new();
        for f in files {
            list.push_str(if f == "/" { "/." } else { f });
            list.push('\n');
        }
        put_file(tree, &format!("/var/lib/dpkg/info/{}.list", p.name), list, 0o644, epoch);
    }
    put_file(tree, "/var/lib/dpkg/status", status, 0o644, epoch);
    put_file(tree, "/var/lib/dpkg/available", "", 0o644, epoch);
    put_file(tree, "/var/lib/dpkg/arch", "amd64\n", 0o644, epoch);
}
