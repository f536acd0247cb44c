//! Unpacking `.deb` files into a [`Tree`] without root: the `ar` container, its `data.tar.*`
//! member (xz, zstd, gzip or plain) read with the `tar` crate, owners and modes kept as values.
//!
//! Debian bookworm is merged-/usr: `/bin`, `/sbin` and `/lib*` are symlinks into `/usr`. Package
//! paths under those directories are stored under `/usr` (what dpkg would do through the links).

use crate::rootfs::{normalize, parent, Entry, Kind, Tree};
use std::io::Read;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{deb}: {message}")]
    Format { deb: String, message: String },
    #[error("{deb}: {source}")]
    Io { deb: String, source: std::io::Error },
}

/// Top-level directories that are symlinks into /usr on a merged-/usr system.
pub const MERGED_USR: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Create the merged-/usr links (`/bin -> usr/bin`...) in `tree`.
pub fn add_merged_usr_links(tree: &mut Tree, mtime: u64) {
    for d in MERGED_USR {
        if *d == "lib32" || *d == "libx32" {
            continue;
        }
        let mut e = Entry::symlink(format!("usr/{d}"));
        e.mtime = mtime;
        tree.insert(&format!("/{d}"), e);
        let mut dir = Entry::dir(0o755);
        dir.mtime = mtime;
        if !tree.contains(&format!("/usr/{d}")) {
            tree.insert(&format!("/usr/{d}"), dir);
        }
    }
}

/// Map a package path onto the merged-/usr layout.
pub fn merged_path(p: &str) -> String {
    for d in MERGED_USR {
        let top = format!("/{d}");
        if p == top || p.starts_with(&format!("{top}/")) {
            return format!("/usr{p}");
        }
    }
    p.to_string()
}

/// The files a package brought (for /var/lib/dpkg/info/NAME.list), in archive order.
pub type FileList = Vec<String>;

/// Read the `data.tar*` member of a .deb and add its entries to `tree`.
pub fn unpack(deb_path: &Path, name: &str, tree: &mut Tree) -> Result<FileList, DebError> {
    let bytes = std::fs::read(deb_path).map_err(|source| DebError::Io { deb: name.into(), source })?;
    unpack_bytes(&bytes, name, tree)
}

pub fn unpack_bytes(bytes: &[u8], name: &str, tree: &mut Tree) -> Result<FileList, DebError> {
    let ferr = |m: String| DebError::Format { deb: name.into(), message: m };
    let mut ar = ar::Archive::new(bytes);
    while let Some(entry) = ar.next_entry() {
        let mut entry = entry.map_err(|e| ferr(format!("bad ar archive: {e}")))?;
        let id = String::from_utf8_lossy(entry.header().identifier()).trim_end_matches('/').to_string();
        if !id.starts_with("data.tar") {
            continue;
        }
        let mut raw = Vec::with_capacity(entry.header().size() as usize);
        entry.read_to_end(&mut raw).map_err(|source| DebError::Io { deb: name.into(), source })?;
        let reader = member_reader(&id, &raw, name)?;
        return unpack_tar(reader, name, tree);
    }
    Err(ferr("no data.tar member (is this a .deb?)".into()))
}

/// The `control` file of a .deb (its `control.tar*` member), as text: the package's own
/// stanza (what dpkg records as installed), read without unpacking the data.
pub fn control(deb_path: &Path, name: &str) -> Result<String, DebError> {
    let ferr = |m: String| DebError::Format { deb: name.into(), message: m };
    let ioerr = |source| DebError::Io { deb: name.into(), source };
    let file = std::fs::File::open(deb_path).map_err(ioerr)?;
    let mut ar = ar::Archive::new(std::io::BufReader::new(file));
    while let Some(entry) = ar.next_entry() {
        let mut entry = entry.map_err(|e| ferr(format!("bad ar archive: {e}")))?;
        let id = String::from_utf8_lossy(entry.header().identifier()).trim_end_matches('/').to_string();
        if !id.starts_with("control.tar") {
            continue;
        }
        let mut raw = Vec::with_capacity(entry.header().size() as usize);
        entry.read_to_end(&mut raw).map_err(ioerr)?;
        let mut archive = tar::Archive::new(member_reader(&id, &raw, name)?);
        for e in archive.entries().map_err(ioerr)? {
            let mut e = e.map_err(ioerr)?;
            if normalize(&String::from_utf8_lossy(&e.path_bytes())).as_deref() == Some("/control") {
                let mut text = String::new();
                e.read_to_string(&mut text).map_err(ioerr)?;
                return Ok(text);
            }
        }
        return Err(ferr(format!("{id} has no control file")));
    }
    Err(ferr("no control.tar member (is this a .deb?)".into()))
}

/// A decompressing reader for an ar member named `*.tar[.xz|.zst|.gz]`.
fn member_reader<'a>(id: &str, raw: &'a [u8], deb: &str) -> Result<Box<dyn Read + 'a>, DebError> {
    Ok(match id.rsplit('.').next() {
        Some("xz") => Box::new(liblzma::read::XzDecoder::new(raw)),
        Some("zst") => Box::new(zstd::stream::read::Decoder::new(raw).map_err(|source| DebError::Io { deb: deb.into(), source })?),
        Some("gz") => Box::new(flate2::read::GzDecoder::new(raw)),
        Some("tar") => Box::new(raw),
        _ => return Err(DebError::Format { deb: deb.into(), message: format!("unsupported member {id}") }),
    })
}

/// Add the entries of a tar stream to `tree` (paths mapped onto merged-/usr).
pub fn unpack_tar(reader: impl Read, name: &str, tree: &mut Tree) -> Result<FileList, DebError> {
    let ferr = |m: String| DebError::Format { deb: name.into(), message: m };
    let ioerr = |source| DebError::Io { deb: name.into(), source };
    let mut archive = tar::Archive::new(reader);
    let mut list = Vec::new();
    for e in archive.entries().map_err(ioerr)? {
        let mut e = e.map_err(ioerr)?;
        let raw_path = String::from_utf8_lossy(&e.path_bytes()).to_string();
        let Some(orig) = normalize(&raw_path) else {
            return Err(ferr(format!("path escapes the root: {raw_path}")));
        };
        let path = merged_path(&orig);
        let h = e.header();
        let mode = h.mode().map_err(ioerr)? & 0o7777;
        let uid = h.uid().map_err(ioerr)? as u32;
        let gid = h.gid().map_err(ioerr)? as u32;
        let mtime = h.mtime().map_err(ioerr)?;
        let et = h.entry_type();
        let kind = match et {
            tar::EntryType::Directory => {
                if path == "/" {
                    continue;
                }
                // Keep an existing directory's entry (first package wins for shared dirs).
                if let Some(Entry { kind: Kind::Dir, .. }) = tree.get(&path) {
                    list.push(orig);
                    continue;
                }
                Kind::Dir
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::with_capacity(h.size().unwrap_or(0) as usize);
                e.read_to_end(&mut data).map_err(ioerr)?;
                Kind::File(std::sync::Arc::new(data))
            }
            tar::EntryType::Symlink => {
                let target =
                    e.link_name_bytes().map(|b| String::from_utf8_lossy(&b).to_string()).ok_or_else(|| ferr(format!("symlink without target: {raw_path}")))?;
                // A relative link moved from /bin to /usr/bin would change meaning: make it
                // absolute from its original place.
                // Links within the moved directory keep their meaning; ones that climb out do not.
                let target = if path != orig && !target.starts_with('/') && target.split('/').any(|c| c == "..") {
                    let base = parent(&orig).unwrap_or("/");
                    normalize(&format!("{base}/{target}")).map(|t| merged_path(&t)).unwrap_or(target)
                } else {
                    target
                };
                Kind::Symlink(target)
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).to_string())
                    .ok_or_else(|| ferr(format!("hard link without target: {raw_path}")))?;
                let t = merged_path(&normalize(&target).unwrap_or_default());
                match tree.get(&t) {
                    Some(te) => te.kind.clone(),
                    None => return Err(ferr(format!("hard link {raw_path} to missing {target}"))),
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                if et == tar::EntryType::Char {
                    Kind::CharDev { major, minor }
                } else {
                    Kind::BlockDev { major, minor }
                }
            }
            tar::EntryType::Fifo => Kind::Fifo,
            _ => continue, // pax headers etc. are consumed by the tar crate
        };
        tree.insert(&path, Entry { kind, mode, uid, gid, mtime });
        list.push(orig);
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a tiny .deb in memory: ar { debian-binary, control.tar.gz, data.tar.xz }.
    pub(crate) fn make_deb(files: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut tb = tar::Builder::new(Vec::new());
        for (path, ty, data, link) in files {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*ty);
            h.set_mode(if *ty == tar::EntryType::Directory { 0o755 } else { 0o4755 });
            h.set_uid(0);
            h.set_gid(43);
            h.set_mtime(1_700_000_000);
            h.set_size(data.len() as u64);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            h.set_path(path).unwrap();
            h.set_cksum();
            tb.append(&h, *data).unwrap();
        }
        let tar = tb.into_inner().unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        std::io::Write::write_all(&mut xz, &tar).unwrap();
        let data = xz.finish().unwrap();
        let mut out = Vec::new();
        {
            let mut ar = ar::Builder::new(&mut out);
            let add = |ar: &mut ar::Builder<&mut Vec<u8>>, n: &str, d: &[u8]| {
                let h = ar::Header::new(n.as_bytes().to_vec(), d.len() as u64);
                ar.append(&h, d).unwrap();
            };
            add(&mut ar, "debian-binary", b"2.0\n");
            add(&mut ar, "data.tar.xz", &data);
        }
        out
    }

    #[test]
    fn unpacks_with_merged_usr_and_owners() {
        use tar::EntryType as T;
        let deb = make_deb(&[
            ("./", T::Directory, b"", ""),
            ("./bin/", T::Directory, b"", ""),
            ("./bin/tool", T::Regular, b"#!/bin/sh\n", ""),
            ("./bin/sh", T::Symlink, b"", "dash"),
            ("./bin/rel", T::Symlink, b"", "../usr/share/x"),
            ("./usr/bin/tool2", T::Link, b"", "./bin/tool"),
        ]);
        let mut t = Tree::new();
        add_merged_usr_links(&mut t, 0);
        let list = unpack_bytes(&deb, "demo", &mut t).unwrap();
        assert!(list.contains(&"/bin/tool".to_string()));
        let tool = t.get("/usr/bin/tool").unwrap();
        assert_eq!(tool.content(), Some(&b"#!/bin/sh\n"[..]));
        assert_eq!((tool.mode, tool.gid), (0o4755, 43));
        assert_eq!(t.get("/usr/bin/sh").unwrap().kind, Kind::Symlink("dash".into()));
        assert_eq!(t.get("/usr/bin/rel").unwrap().kind, Kind::Symlink("/usr/share/x".into()));
        assert_eq!(t.get("/usr/bin/tool2").unwrap().content(), Some(&b"#!/bin/sh\n"[..]));
        assert_eq!(t.get("/bin").unwrap().kind, Kind::Symlink("usr/bin".into()));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let mut t = Tree::new();
        let e = unpack_bytes(b"not a deb at all", "broken-pkg", &mut t).unwrap_err();
        assert!(e.to_string().starts_with("broken-pkg:"), "{e}");
    }
}
