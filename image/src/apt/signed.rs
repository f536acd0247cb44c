//! The machinery of a signed apt repository, for the Debian archive and extra repositories
//! alike: `gpgv` on an InRelease, the SHA256 section of a Release file, the Packages indexes it
//! lists fetched and checked, and ASCII-armored signing keys read as gpgv reads them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use fetch::{Cache, Http, Item};
use pki::digest::sha256_hex;

use super::AptError;

/// Run `gpgv` on a clearsigned InRelease against a binary `keyring` and return the signed text
/// (what gpgv vouches for, not the file as fetched). `Ok(None)`: gpgv is not installed; `Err`:
/// the signature does not verify, with gpgv's words.
pub(crate) fn gpgv(data: &[u8], keyring: &Path) -> Result<Option<String>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let signed = dir.path().join("InRelease");
    std::fs::write(&signed, data).map_err(|e| e.to_string())?;
    let out = dir.path().join("Release");
    let res = std::process::Command::new("gpgv").arg("--keyring").arg(keyring).arg("--output").arg(&out).arg(&signed).output();
    match res {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot run gpgv: {e}")),
        Ok(o) if !o.status.success() => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Ok(_) => std::fs::read_to_string(&out).map(Some).map_err(|e| e.to_string()),
    }
}

/// `path -> (sha256, size)` from the Release file's SHA256 section.
pub fn parse_release_hashes(text: &str) -> BTreeMap<String, (String, u64)> {
    let mut out = BTreeMap::new();
    let mut in_sha = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_sha = line.trim_end() == "SHA256:";
            continue;
        }
        if in_sha {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.len() == 3 {
                if let Ok(n) = w[1].parse() {
                    out.insert(w[2].to_string(), (w[0].to_string(), n));
                }
            }
        }
    }
    out
}

/// A Packages index's file names, most compressed first.
pub(crate) const PACKAGES_FILES: [&str; 3] = ["Packages.xz", "Packages.gz", "Packages"];

/// Fetch the first of `names` (relative to `base`, the Release file's directory) that the Release
/// file lists, check its size and SHA256 against it (the cache keeps checked copies) and return
/// it decompressed by its suffix. `None` when the Release file lists none of them.
pub(crate) fn fetch_listed(
    http: &Http,
    cache: &Cache,
    base: &str,
    hashes: &BTreeMap<String, (String, u64)>,
    names: &[String],
) -> Result<Option<String>, AptError> {
    let Some((rel, (sha, size))) = names.iter().find_map(|n| hashes.get(n).map(|h| (n, h))) else {
        return Ok(None);
    };
    let url = format!("{base}/{rel}");
    let item = Item { name: rel.clone(), url: url.clone(), sha256: sha.clone(), size: *size };
    let raw = match cache.lookup(&item) {
        Some(p) => std::fs::read(&p).map_err(|e| AptError::Index { url: url.clone(), message: e.to_string() })?,
        None => {
            let d = http.get(&url)?;
            let got = sha256_hex(&d);
            if &got != sha || d.len() as u64 != *size {
                return Err(AptError::Index { url, message: format!("does not match the Release file (sha256 {got}, expected {sha})") });
            }
            cache.put(&d)?;
            d
        }
    };
    let mut rd: Box<dyn std::io::Read> = if rel.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new(&raw[..]))
    } else if rel.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(&raw[..]))
    } else {
        Box::new(&raw[..])
    };
    let mut text = String::new();
    rd.read_to_string(&mut text).map_err(|e| AptError::Index { url, message: e.to_string() })?;
    Ok(Some(text))
}

/// Read an ASCII-armored OpenPGP public key file and return the binary key(s), as gpgv reads them.
pub fn read_key(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file: save the repository's ASCII-armored signing key there (often published as Release.key)".to_string(),
        _ => e.to_string(),
    })?;
    dearmor(&text, "PUBLIC KEY BLOCK")
}

/// The binary packets of every `-----BEGIN PGP <kind>-----` block in `text` (armor headers and
/// the CRC line are skipped; gpgv rejects damaged packets itself).
pub fn dearmor(text: &str, kind: &str) -> Result<Vec<u8>, String> {
    let (begin, end) = (format!("-----BEGIN PGP {kind}-----"), format!("-----END PGP {kind}-----"));
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        match &mut body {
            None if line == begin => body = Some(String::new()),
            None => {}
            Some(b) if line == end => {
                out.extend(base64(b)?);
                body = None;
            }
            // Header lines ("Comment: ...") hold a colon, which base64 never does; "=XXXX" is the CRC.
            Some(_) if line.contains(':') || line.starts_with('=') => {}
            Some(b) => b.push_str(line),
        }
    }
    if body.is_some() {
        return Err(format!("no {end:?} line"));
    }
    if out.is_empty() {
        return Err(format!("not an ASCII-armored OpenPGP key (no {begin:?} block)"));
    }
    Ok(out)
}

fn base64(s: &str) -> Result<Vec<u8>, String> {
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.bytes().take_while(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("armored key: {:?} is not base64", c as char)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dearmor_reads_blocks_and_refuses_other_input() {
        // "hello, key" in base64, with a header and a CRC line.
        let armored = "x\n-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: test\n\naGVsbG8s\nIGtleQ==\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n";
        assert_eq!(dearmor(armored, "PUBLIC KEY BLOCK").unwrap(), b"hello, key");
        let two = format!("{armored}{armored}");
        assert_eq!(dearmor(&two, "PUBLIC KEY BLOCK").unwrap().len(), 20);
        assert!(dearmor("binary\0junk", "PUBLIC KEY BLOCK").unwrap_err().contains("not an ASCII-armored"));
        assert!(dearmor("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\naGVs", "PUBLIC KEY BLOCK").unwrap_err().contains("END PGP"));
        assert!(dearmor("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\na*b\n-----END PGP PUBLIC KEY BLOCK-----", "PUBLIC KEY BLOCK").is_err());
    }

    #[test]
    fn release_hash_section() {
        let t = "Origin: Debian\nMD5Sum:\n 00 1 main/x\nSHA256:\n abcd 123 main/binary-amd64/Packages.xz\n";
        let h = parse_release_hashes(t);
        assert_eq!(h.get("main/binary-amd64/Packages.xz"), Some(&("abcd".to_string(), 123)));
        assert!(!h.contains_key("main/x"));
    }
}
