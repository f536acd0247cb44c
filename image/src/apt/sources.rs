//! The machine's apt sources: one-line `.list` files and deb822 `.sources` files, read to find the
//! mirror serving a suite and the keyring that signs it ([`ArchiveConfig::from_machine`]).

use super::AptError;
use std::path::{Path, PathBuf};

/// One `deb` line or stanza from apt's sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub signed_by: Option<PathBuf>,
}

/// Parse apt sources under `root` (normally "/"): `etc/apt/sources.list`, and
/// `etc/apt/sources.list.d/*.list` (one-line style) and `*.sources` (deb822 style). A file
/// that cannot be read or parsed is an error naming it, never skipped.
pub fn read_sources(root: &Path) -> Result<Vec<Source>, AptError> {
    let mut out = Vec::new();
    let etc = root.join("etc/apt");
    if let Ok(t) = std::fs::read_to_string(etc.join("sources.list")) {
        out.extend(parse_one_line_sources(&t));
    }
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(etc.join("sources.list.d")).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.sort();
    for f in files {
        let ext = f.extension().and_then(|e| e.to_str());
        if !matches!(ext, Some("list" | "sources")) {
            continue;
        }
        let t = std::fs::read_to_string(&f).map_err(|e| AptError::Sources { path: f.clone(), message: e.to_string() })?;
        match ext {
            Some("list") => out.extend(parse_one_line_sources(&t)),
            _ => out.extend(parse_deb822_sources(&t).map_err(|message| AptError::Sources { path: f.clone(), message })?),
        }
    }
    Ok(out)
}

pub fn parse_one_line_sources(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace().peekable();
        if words.next() != Some("deb") {
            continue;
        }
        let mut signed_by = None;
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            let mut opts = String::new();
            for w in words.by_ref() {
                opts.push_str(w);
                opts.push(' ');
                if w.ends_with(']') {
                    break;
                }
            }
            for o in opts.trim_matches(|c| c == '[' || c == ']' || c == ' ').split_whitespace() {
                if let Some(v) = o.strip_prefix("signed-by=") {
                    signed_by = Some(PathBuf::from(v));
                }
            }
        }
        let Some(uri) = words.next() else { continue };
        let Some(suite) = words.next() else { continue };
        out.push(Source {
            uri: uri.trim_end_matches('/').to_string(),
            suites: vec![suite.to_string()],
            components: words.map(String::from).collect(),
            signed_by,
        });
    }
    out
}

pub fn parse_deb822_sources(text: &str) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    let doc = text.parse::<deb822_fast::Deb822>().map_err(|e| format!("not deb822: {e}"))?;
    for p in doc.iter() {
        let types = p.get("Types").unwrap_or("");
        if !types.split_whitespace().any(|t| t == "deb") {
            continue;
        }
        if p.get("Enabled").is_some_and(|v| v.trim() == "no") {
            continue;
        }
        let words = |k: &str| -> Vec<String> { p.get(k).unwrap_or("").split_whitespace().map(String::from).collect() };
        let signed_by = p.get("Signed-By").map(|s| s.trim()).filter(|s| s.starts_with('/')).map(PathBuf::from);
        for uri in words("URIs") {
            out.push(Source {
                uri: uri.trim_end_matches('/').to_string(),
                suites: words("Suites"),
                components: words("Components"),
                signed_by: signed_by.clone(),
            });
        }
    }
    Ok(out)
}

/// The mirror serving `suite`, from the machine's apt sources.
pub fn find_mirror<'a>(sources: &'a [Source], suite: &str) -> Option<&'a Source> {
    sources.iter().find(|s| s.suites.iter().any(|x| x == suite))
}

/// Where and what to read from the archive.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub mirror: String,
    pub suite: String,
    pub arch: String,
    pub components: Vec<String>,
    pub keyring: Option<PathBuf>,
}

impl ArchiveConfig {
    /// Mirror from `mirror` or else the machine's apt sources; keyring from the source's
    /// Signed-By or the Debian archive keyring when present.
    pub fn from_machine(mirror: Option<&str>, suite: &str, arch: &str, components: &[String]) -> Result<Self, AptError> {
        let sources = read_sources(Path::new("/"))?;
        let (mirror, signed_by) = match mirror {
            Some(m) => (m.trim_end_matches('/').to_string(), None),
            None => {
                let s = find_mirror(&sources, suite)
                    .ok_or_else(|| AptError::NoMirror { suite: suite.into(), searched: "/etc/apt/sources.list and /etc/apt/sources.list.d".into() })?;
                (s.uri.clone(), s.signed_by.clone())
            }
        };
        let default_keyring = PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg");
        let keyring = signed_by.filter(|p| p.exists()).or_else(|| default_keyring.exists().then_some(default_keyring));
        Ok(ArchiveConfig { mirror, suite: suite.into(), arch: arch.into(), components: components.to_vec(), keyring })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_source_styles() {
        let one = "# c\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian/ bookworm main contrib\ndeb-src http://x y z\n";
        let s = parse_one_line_sources(one);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].uri, "http://m.example/debian");
        assert_eq!(s[0].suites, ["bookworm"]);
        assert_eq!(s[0].signed_by.as_deref(), Some(Path::new("/k.gpg")));
        let d = "Types: deb\nURIs: http://a/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/k.gpg\n\nTypes: deb-src\nURIs: http://b\nSuites: x\n";
        let s = parse_deb822_sources(d).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(find_mirror(&s, "bookworm-updates").unwrap().uri, "http://a/debian");
        assert!(find_mirror(&s, "trixie").is_none());
    }

    #[test]
    fn an_unparsable_sources_file_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("etc/apt/sources.list.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("good.list"), "deb http://m.example/debian bookworm main\n").unwrap();
        std::fs::write(d.join("broken.sources"), "Types: deb\nthis line is not a field\n").unwrap();
        let e = read_sources(root.path()).unwrap_err().to_string();
        assert!(e.contains(&d.join("broken.sources").display().to_string()), "{e}");
        std::fs::remove_file(d.join("broken.sources")).unwrap();
        assert_eq!(read_sources(root.path()).unwrap().len(), 1);
    }
}
