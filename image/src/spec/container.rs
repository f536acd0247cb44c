//! `[container]`: the OCI config of a container image and the rules that split its files into
//! layers, read as written (`RawContainer`) and checked as a whole.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// `[container]`: how a container image runs (the OCI config) and how its files are split into
/// layers. Read from TOML as written (`RawContainer`), then checked as a whole (`TryFrom`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawContainer")]
pub struct ContainerSection {
    /// The command the container runs (OCI `Entrypoint`): never empty, the program an absolute
    /// path.
    pub entrypoint: Vec<String>,
    /// Arguments after the entrypoint (OCI `Cmd`); empty when the spec gives none.
    pub cmd: Vec<String>,
    /// `KEY=value` (OCI `Env`), in the spec's order, each key once.
    pub env: Vec<String>,
    /// The signal that stops the container cleanly (OCI `StopSignal`), e.g. `SIGRTMIN+3`,
    /// systemd's.
    pub stop_signal: Option<String>,
    /// Ports the image exposes (OCI `ExposedPorts`), each once.
    pub exposed_ports: Vec<Port>,
    /// Image labels. The build adds `org.opencontainers.image.version` and `.revision` (so the
    /// spec cannot set those two).
    pub labels: BTreeMap<String, String>,
    /// Layer names, bottom first; each is also the layer's history entry ("kicbase layer N:
    /// NAME"). The top layer is the only one whose dates may follow SOURCE_DATE_EPOCH.
    pub layers: Vec<String>,
    /// Which layer a path goes to: the first rule that matches it. The last rule is
    /// `select = "rest"`, so every path has a layer, and every layer has a rule.
    pub place: Vec<Placement>,
}

/// One rule of `[[container.place]]`: the paths `select` matches go to layer `layer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Index into [`ContainerSection::layers`].
    pub layer: usize,
    pub select: Select,
}

/// Which paths a [`Placement`] matches. In TOML a rule has exactly one of `select = "local" |
/// "packages" | "top-level" | "rest"`, `paths = [...]`, `brought_by = [...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// `select = "local"`: the files of the spec's overlays and the files the build adds (the
    /// agent binary). Directories are not matched (they go with what is under them).
    Local,
    /// `paths = [...]`: exactly these absolute paths.
    Paths(BTreeSet<String>),
    /// `brought_by = [...]`: the files of the packages only these `packages.include` entries
    /// bring in: the package set minus the set resolved once more without them.
    BroughtBy(Vec<String>),
    /// `select = "packages"`: the files of any package.
    Packages,
    /// `select = "top-level"`: `/` and the entries right under it (the merged-/usr links,
    /// top-level directories).
    TopLevel,
    /// `select = "rest"`: every path; the last rule.
    Rest,
}

/// An exposed port: `22/tcp`, `53/udp`; a bare number is TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    pub number: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        };
        write!(f, "{}/{proto}", self.number)
    }
}

impl std::str::FromStr for Port {
    type Err = String;
    fn from_str(s: &str) -> Result<Port, String> {
        let (n, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => return Err(format!("{s:?}: the protocol is tcp, udp or sctp")),
        };
        match n.parse::<u16>() {
            Ok(number) if number > 0 && n.bytes().all(|b| b.is_ascii_digit()) => Ok(Port { number, protocol }),
            _ => Err(format!("{s:?}: not a port (1 to 65535, then /tcp, /udp or /sctp)")),
        }
    }
}

/// `[container]` as written; [`ContainerSection`] is what it becomes once checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainer {
    entrypoint: Vec<String>,
    #[serde(default)]
    cmd: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    stop_signal: Option<String>,
    #[serde(default)]
    exposed_ports: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    layers: Vec<String>,
    place: Vec<RawPlacement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlacement {
    layer: String,
    select: Option<SelectWord>,
    paths: Option<Vec<String>>,
    brought_by: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum SelectWord {
    Local,
    Packages,
    TopLevel,
    Rest,
}

/// Labels the build writes from the version and the commit.
const BUILD_LABELS: [&str; 2] = ["org.opencontainers.image.version", "org.opencontainers.image.revision"];

/// `SIGRTMIN+3`, `SIGTERM`, or a signal number.
fn is_signal(s: &str) -> bool {
    if let Some(name) = s.strip_prefix("SIG") {
        let (base, offset) = match name.find(['+', '-']) {
            Some(i) => (&name[..i], Some(&name[i + 1..])),
            None => (name, None),
        };
        !base.is_empty()
            && base.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && offset.is_none_or(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()))
    } else {
        s.parse::<u8>().is_ok_and(|n| n > 0)
    }
}

impl TryFrom<RawContainer> for ContainerSection {
    type Error = String;
    fn try_from(r: RawContainer) -> Result<ContainerSection, String> {
        let word = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
        match r.entrypoint.first() {
            None => return Err("container.entrypoint: empty (give the program and its arguments)".into()),
            Some(p) if !p.starts_with('/') => {
                return Err(format!("container.entrypoint: {p:?} is not an absolute path"));
            }
            Some(_) => {}
        }
        let mut keys = BTreeSet::new();
        for e in &r.env {
            let key = e.split_once('=').map(|(k, _)| k).unwrap_or("");
            if !(word(key) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')) {
                return Err(format!("container.env: {e:?} is not KEY=value"));
            }
            if !keys.insert(key) {
                return Err(format!("container.env: {key} is set twice"));
            }
        }
        if let Some(s) = r.stop_signal.as_deref().filter(|s| !is_signal(s)) {
            return Err(format!("container.stop_signal: {s:?} is not a signal (SIGTERM, SIGRTMIN+3, or a number)"));
        }
        let mut exposed_ports = Vec::new();
        for p in &r.exposed_ports {
            let port: Port = p.parse().map_err(|m| format!("container.exposed_ports: {m}"))?;
            if exposed_ports.contains(&port) {
                return Err(format!("container.exposed_ports: {port} is listed twice"));
            }
            exposed_ports.push(port);
        }
        for k in r.labels.keys() {
            if !word(k) {
                return Err(format!("container.labels: {k:?} is not a label name"));
            }
            if BUILD_LABELS.contains(&k.as_str()) {
                return Err(format!("container.labels: {k} is written by the build (from the version and commit)"));
            }
        }
        if r.layers.is_empty() {
            return Err("container.layers: no layers (name them, bottom first)".into());
        }
        for (i, l) in r.layers.iter().enumerate() {
            if !word(l) {
                return Err(format!("container.layers: {l:?} is not a layer name"));
            }
            if r.layers[..i].contains(l) {
                return Err(format!("container.layers: {l} is listed twice"));
            }
        }
        let mut place = Vec::new();
        for (i, p) in r.place.into_iter().enumerate() {
            let at = format!("container.place[{i}]");
            let layer = r
                .layers
                .iter()
                .position(|l| *l == p.layer)
                .ok_or_else(|| format!("{at}.layer: unknown layer {:?} (container.layers: {})", p.layer, r.layers.join(", ")))?;
            let select = match (p.select, p.paths, p.brought_by) {
                (Some(w), None, None) => match w {
                    SelectWord::Local => Select::Local,
                    SelectWord::Packages => Select::Packages,
                    SelectWord::TopLevel => Select::TopLevel,
                    SelectWord::Rest => Select::Rest,
                },
                (None, Some(paths), None) => {
                    if paths.is_empty() {
                        return Err(format!("{at}.paths: empty"));
                    }
                    if let Some(bad) = paths.iter().find(|p| !p.starts_with('/') || p.len() > 1 && p.ends_with('/') || p.contains("//")) {
                        return Err(format!("{at}.paths: {bad:?} is not an absolute path without a trailing slash"));
                    }
                    Select::Paths(paths.into_iter().collect())
                }
                (None, None, Some(roots)) => {
                    if roots.is_empty() {
                        return Err(format!("{at}.brought_by: empty (name packages of packages.include)"));
                    }
                    Select::BroughtBy(roots)
                }
                _ => return Err(format!("{at}: give exactly one of select, paths, brought_by")),
            };
            place.push(Placement { layer, select });
        }
        match place.iter().position(|p| p.select == Select::Rest) {
            Some(i) if i + 1 == place.len() => {}
            Some(i) => return Err(format!("container.place[{i}]: select = \"rest\" matches every path, so it is the last rule")),
            None => return Err("container.place: the last rule is select = \"rest\" (where the paths no other rule matches go)".into()),
        }
        if let Some(l) = r.layers.iter().enumerate().find(|(i, _)| !place.iter().any(|p| p.layer == *i)).map(|(_, l)| l) {
            return Err(format!("container.layers: no rule of container.place puts anything in layer {l}"));
        }
        Ok(ContainerSection {
            entrypoint: r.entrypoint,
            cmd: r.cmd,
            env: r.env,
            stop_signal: r.stop_signal,
            exposed_ports,
            labels: r.labels,
            layers: r.layers,
            place,
        })
    }
}
