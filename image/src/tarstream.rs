//! A [`Tree`] as a deterministic tar stream: the one tar writer of the crate (OCI layers and the
//! squashfs root image's input).
//!
//! Entries come in tree order (parents first), with paths relative to the root (`usr/bin/`,
//! `usr/bin/env`), GNU headers (GNU long-name/long-link records for names over 100 bytes), each
//! entry's exact uid/gid/mode/mtime, device numbers for device nodes, and no user/group names.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;

use tar::{EntryType, Header};

use crate::rootfs::{Entry, Kind, Tree};

/// Write every entry of `tree` but the root. With `hard_links`, a file whose content value is the
/// very one of an earlier file with the same metadata (a hard link in the package) is written as
/// a hard link to it. Errors carry the path being written.
pub fn write_tree<W: Write>(tree: &Tree, out: W, hard_links: bool) -> Result<(u64, W), (String, io::Error)> {
    let mut b = tar::Builder::new(out);
    let mut seen: HashMap<*const Vec<u8>, (&str, &Entry)> = HashMap::new();
    let mut n = 0u64;
    for (path, entry) in tree.iter() {
        if path == "/" {
            continue;
        }
        let mut link_to = None;
        if let (true, Kind::File(c)) = (hard_links, &entry.kind) {
            let key = Arc::as_ptr(c);
            match seen.get(&key) {
                Some((first, fe)) if same_meta(fe, entry) => link_to = Some(*first),
                Some(_) => {}
                None => {
                    seen.insert(key, (path.as_str(), entry));
                }
            }
        }
        let r = append_xattrs(&mut b, tree, path).and_then(|()| match link_to {
            Some(first) => append_hard_link(&mut b, path, first, entry),
            None => append_entry(&mut b, path, entry),
        });
        r.map_err(|e| (path.clone(), e))?;
        n += 1;
    }
    let w = b.into_inner().map_err(|e| ("(end of archive)".to_string(), e))?;
    Ok((n, w))
}

/// The path's extended attributes as a PAX header (`SCHILY.xattr.NAME`, as GNU tar writes them)
/// before its entry; nothing for a path without any.
pub fn append_xattrs<W: Write>(b: &mut tar::Builder<W>, tree: &Tree, path: &str) -> io::Result<()> {
    let Some(x) = tree.xattrs(path).filter(|x| !x.is_empty()) else { return Ok(()) };
    let keys: Vec<String> = x.keys().map(|k| format!("SCHILY.xattr.{k}")).collect();
    b.append_pax_extensions(keys.iter().map(String::as_str).zip(x.values().map(Vec::as_slice)))
}

fn same_meta(a: &Entry, b: &Entry) -> bool {
    a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.mtime == b.mtime
}

fn header(e: &Entry) -> io::Result<Header> {
    let mut h = Header::new_gnu();
    h.set_mode(e.mode & 0o7777);
    h.set_uid(u64::from(e.uid));
    h.set_gid(u64::from(e.gid));
    h.set_mtime(e.mtime);
    h.set_device_major(0)?;
    h.set_device_minor(0)?;
    Ok(h)
}

fn append_hard_link<W: Write>(b: &mut tar::Builder<W>, path: &str, target: &str, e: &Entry) -> io::Result<()> {
    let mut h = header(e)?;
    h.set_entry_type(EntryType::Link);
    put_long(b, &mut h, path.trim_start_matches('/').as_bytes(), EntryType::GNULongName)?;
    put_long(b, &mut h, target.trim_start_matches('/').as_bytes(), EntryType::GNULongLink)?;
    h.set_size(0);
    h.set_cksum();
    b.append(&h, io::empty())
}

const NAME_LEN: usize = 100;

/// Append one entry (not a hard link).
pub fn append_entry<W: Write>(b: &mut tar::Builder<W>, path: &str, e: &Entry) -> io::Result<()> {
    let mut name = path.trim_start_matches('/').to_string();
    let mut h = header(e)?;
    let mut link: Option<&str> = None;
    let mut data: &[u8] = &[];
    match &e.kind {
        Kind::Dir => {
            name.push('/');
            h.set_entry_type(EntryType::Directory);
        }
        Kind::File(content) => {
            h.set_entry_type(EntryType::Regular);
            data = content;
        }
        Kind::Symlink(target) => {
            h.set_entry_type(EntryType::Symlink);
            link = Some(target);
        }
        Kind::CharDev { major, minor } => {
            h.set_entry_type(EntryType::Char);
            h.set_device_major(*major)?;
            h.set_device_minor(*minor)?;
        }
        Kind::BlockDev { major, minor } => {
            h.set_entry_type(EntryType::Block);
            h.set_device_major(*major)?;
            h.set_device_minor(*minor)?;
        }
        Kind::Fifo => h.set_entry_type(EntryType::Fifo),
    }
    put_long(b, &mut h, name.as_bytes(), EntryType::GNULongName)?;
    if let Some(target) = link {
        put_long(b, &mut h, target.as_bytes(), EntryType::GNULongLink)?;
    }
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data)
}

/// Store a name (or link target) byte-exactly in the header; if it does not fit in the 100-byte
/// field, first emit a GNU long-name ('L') / long-link ('K') record holding it, and keep a
/// truncated copy in the header as GNU tar does.
fn put_long<W: Write>(b: &mut tar::Builder<W>, h: &mut Header, value: &[u8], kind: EntryType) -> io::Result<()> {
    if value.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"));
    }
    let field = if kind == EntryType::GNULongName { &mut h.as_old_mut().name } else { &mut h.as_old_mut().linkname };
    let n = value.len().min(NAME_LEN);
    field.fill(0);
    field[..n].copy_from_slice(&value[..n]);
    if value.len() > NAME_LEN {
        let mut ext = Header::new_gnu();
        ext.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        ext.set_mode(0o644);
        ext.set_uid(0);
        ext.set_gid(0);
        ext.set_mtime(0);
        ext.set_entry_type(kind);
        let mut payload = value.to_vec();
        payload.push(0);
        ext.set_size(payload.len() as u64);
        ext.set_cksum();
        b.append(&ext, payload.as_slice())?;
    }
    Ok(())
}
