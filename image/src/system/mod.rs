//! What maintainer scripts would have done, done declaratively on the tree. Every function is
//! deterministic; [`crate::assemble`] calls them in order. One module per duty:
//!
//! - `accounts`: base-passwd, systemd's sysusers.d, the spec's users and groups, homes;
//! - `files`: docs dropped, alternatives links, template copies, capabilities, the CA bundle,
//!   /var/run and /var/lock;
//! - `units`: systemd unit enablement from `[Install]`, masks;
//! - `dpkg`: the dpkg status database;
//! - `identity`: os-release, /etc/VERSION, hostname, hosts, machine-id, /version.json.
//!
//! Their functions are re-exported here (`system::enable_units`, `system::Accounts`, ...).

mod accounts;
mod dpkg;
mod files;
mod identity;
mod units;

/// The path glob now lives with the tree; re-exported for existing callers.
pub use crate::rootfs::glob_match;
pub use accounts::{make_homes, Accounts, GrEntry, PwEntry};
pub use dpkg::dpkg_database;
pub use files::{apply_alternatives, apply_capabilities, apply_copies, ca_certificates, drop_paths, drop_unused, runtime_dir_links, UnusedDropped};
pub use identity::{identity, version_json};
pub use units::{enable_units, has_unit, mask_units};

use crate::rootfs::{Entry, Kind, Tree};

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("systemd.enable: unit {unit:?} not found under /usr/lib/systemd/system or /etc/systemd/system")]
    UnitNotFound { unit: String },
    #[error("alternatives.\"{link}\": target {target} is not in the image")]
    MissingAlternative { link: String, target: String },
    #[error("users.{user}: group {group:?} does not exist")]
    UnknownGroup { user: String, group: String },
    /// A user or group id in an account file that is not a number.
    #[error("{path}:{line}: {what} {name:?}: {field} {value:?} is not a number")]
    BadId { path: String, line: usize, what: &'static str, name: String, field: &'static str, value: String },
    #[error("{path}: {message}")]
    Bad { path: String, message: String },
}

fn text(tree: &Tree, path: &str) -> Option<String> {
    tree.get(path).and_then(|e| e.content()).map(|c| String::from_utf8_lossy(c).into_owned())
}

fn put_file(tree: &mut Tree, path: &str, content: impl Into<Vec<u8>>, mode: u32, mtime: u64) {
    let mut e = Entry::file(content, mode);
    e.mtime = mtime;
    tree.insert(path, e);
}

fn put_link(tree: &mut Tree, path: &str, target: &str, mtime: u64) {
    let mut e = Entry::symlink(target);
    e.mtime = mtime;
    tree.insert(path, e);
}

/// Type check used by tests and callers: is `path` a symlink to `target`?
pub fn is_link_to(tree: &Tree, path: &str, target: &str) -> bool {
    matches!(tree.get(path), Some(Entry { kind: Kind::Symlink(t), .. }) if t == target)
}
