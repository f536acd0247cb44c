//! What maintainer scripts would have done, done declaratively on the tree: accounts
//! (base-passwd, systemd's sysusers.d, the spec's users and groups), alternatives symlinks, the
//! CA bundle, systemd unit enablement and masks, machine-id, the dpkg status database,
//! os-release and version files. Every function is deterministic.

use crate::rootfs::{Entry, Kind, Tree};
use crate::spec::Spec;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("systemd.enable: unit {unit:?} not found under /usr/lib/systemd/system or /etc/systemd/system")]
    UnitNotFound { unit: String },
    #[error("alternatives.\"{link}\": target {target} is not in the image")]
    MissingAlternative { link: String, target: String },
    #[error("users.{user}: group {group:?} does not exist")]
    UnknownGroup { user: String, group: String },
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

/// A passwd line.
#[derive(Debug, Clone)]
pub struct PwEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

/// A group line.
#[derive(Debug, Clone)]
pub struct GrEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The account database being built.
#[derive(Debug, Default)]
pub struct Accounts {
    pub users: Vec<PwEntry>,
    pub groups: Vec<GrEntry>,
}

impl Accounts {
    fn has_user(&self, n: &str) -> bool {
        self.users.iter().any(|u| u.name == n)
    }
    fn group_mut(&mut self, n: &str) -> Option<&mut GrEntry> {
        self.groups.iter_mut().find(|g| g.name == n)
    }
    fn gid_of(&self, n: &str) -> Option<u32> {
        self.groups.iter().find(|g| g.name == n).map(|g| g.gid)
    }
    /// Next free system id (counting down from 999, like systemd-sysusers).
    fn free_id(&self) -> u32 {
        let used: BTreeSet<u32> = self.users.iter().map(|u| u.uid).chain(self.groups.iter().map(|g| g.gid)).collect();
        (100..1000).rev().find(|i| !used.contains(i)).unwrap_or(999)
    }
    fn add_group(&mut self, name: &str, gid: Option<u32>) -> u32 {
        if let Some(g) = self.gid_of(name) {
            return g;
        }
        let gid = gid.unwrap_or_else(|| self.free_id());
        self.groups.push(GrEntry { name: name.into(), gid, members: vec![] });
        gid
    }

    /// Seed from base-passwd's master files.
    pub fn from_base_passwd(tree: &Tree) -> Result<Accounts, SystemError> {
        let mut a = Accounts::default();
        let pw = text(tree, "/usr/share/base-passwd/passwd.master").ok_or_else(|| SystemError::Bad {
            path: "/usr/share/base-passwd/passwd.master".into(),
            message: "missing (is base-passwd in the package set?)".into(),
        })?;
        for l in pw.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                continue;
            }
            let id = |v: &str, what: &str| {
                v.parse::<u32>().map_err(|_| SystemError::Bad {
                    path: "/usr/share/base-passwd/passwd.master".into(),
                    message: format!("user {:?}: {what} {v:?} is not a number", f[0]),
                })
            };
            a.users.push(PwEntry {
                name: f[0].into(),
                uid: id(f[2], "uid")?,
                gid: id(f[3], "gid")?,
                gecos: f[4].into(),
                home: f[5].into(),
                shell: f[6].into(),
            });
        }
        let gr = text(tree, "/usr/share/base-passwd/group.master").unwrap_or_default();
        for l in gr.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                continue;
            }
            let gid = f[2].parse::<u32>().map_err(|_| SystemError::Bad {
                path: "/usr/share/base-passwd/group.master".into(),
                message: format!("group {:?}: gid {:?} is not a number", f[0], f[2]),
            })?;
            a.groups.push(GrEntry { name: f[0].into(), gid, members: vec![] });
        }
        Ok(a)
    }

    /// Apply systemd sysusers.d fragments found in the tree (`u`, `g` and `m` lines), so that
    /// system users exist at build time with stable ids.
    pub fn apply_sysusers(&mut self, tree: &Tree) {
        let files: Vec<(String, String)> = tree
            .children_of("/usr/lib/sysusers.d")
            .filter(|(k, _)| k.ends_with(".conf"))
            .filter_map(|(k, e)| e.content().map(|c| (k.clone(), String::from_utf8_lossy(c).into_owned())))
            .collect();
        for (_, body) in files {
            for line in body.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let f = split_quoted(line);
                let field = |i: usize| f.get(i).map(String::as_str).filter(|s| *s != "-");
                match field(0) {
                    Some("g") => {
                        let Some(name) = field(1) else { continue };
                        let gid = field(2).and_then(|s| s.parse().ok());
                        self.add_group(name, gid);
                    }
                    Some("u") => {
                        let Some(name) = field(1) else { continue };
                        if self.has_user(name) {
                            continue;
                        }
                        let (uid, gid) = match field(2) {
                            Some(s) if s.contains(':') => {
                                let (u, g) = s.split_once(':').unwrap();
                                (u.parse().ok(), g.parse().ok())
                            }
                            Some(s) => (s.parse().ok(), s.parse().ok()),
                            None => (None, None),
                        };
                        let uid = uid.filter(|u| !self.users.iter().any(|x| x.uid == *u)).unwrap_or_else(|| self.free_id());
                        let gid = self.gid_of(name).unwrap_or_else(|| self.add_group(name, gid.or(Some(uid))));
                        self.users.push(PwEntry {
                            name: name.into(),
                            uid,
                            gid,
                            gecos: field(3).unwrap_or("").into(),
                            home: field(4).unwrap_or("/").into(),
                            shell: field(5).unwrap_or("/usr/sbin/nologin").into(),
                        });
                    }
                    Some("m") => {
                        if let (Some(u), Some(g)) = (field(1), field(2)) {
                            self.add_group(g, None);
                            let grp = self.group_mut(g).unwrap();
                            if !grp.members.iter().any(|m| m == u) {
                                grp.members.push(u.into());
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Apply the spec's groups and users.
    pub fn apply_spec(&mut self, spec: &Spec) -> Result<(), SystemError> {
        for g in &spec.groups {
            match self.group_mut(&g.name) {
                Some(existing) => existing.gid = g.gid,
                None => self.groups.push(GrEntry { name: g.name.clone(), gid: g.gid, members: vec![] }),
            }
        }
        for u in &spec.users {
            let gid = match u.gid {
                Some(gid) => {
                    if !self.groups.iter().any(|g| g.gid == gid) {
                        self.groups.push(GrEntry { name: u.name.clone(), gid, members: vec![] });
                    }
                    gid
                }
                None => self.add_group(&u.name, Some(u.uid)),
            };
            self.users.retain(|x| x.name != u.name);
            self.users.push(PwEntry {
                name: u.name.clone(),
                uid: u.uid,
                gid,
                gecos: u.gecos.clone(),
                home: u.home.clone().unwrap_or_else(|| format!("/home/{}", u.name)),
                shell: u.shell.clone(),
            });
            for g in &u.groups {
                let grp = self
                    .group_mut(g)
                    .ok_or_else(|| SystemError::UnknownGroup { user: u.name.clone(), group: g.clone() })?;
                if !grp.members.contains(&u.name) {
                    grp.members.push(u.name.clone());
                }
            }
        }
        Ok(())
    }

    /// Write /etc/passwd, group, shadow, gshadow. Root has an empty password (console login,
    /// like the minikube ISO); every other account is locked.
    pub fn write(&self, tree: &mut Tree, epoch: u64) {
        let day = epoch / 86400;
        let mut passwd = String::new();
        let mut shadow = String::new();
        for u in &self.users {
            passwd.push_str(&format!("{}:x:{}:{}:{}:{}:{}\n", u.name, u.uid, u.gid, u.gecos, u.home, u.shell));
            let pw = if u.name == "root" { "" } else { "*" };
            shadow.push_str(&format!("{}:{}:{}:0:99999:7:::\n", u.name, pw, day));
        }
        let mut group = String::new();
        let mut gshadow = String::new();
        for g in &self.groups {
            group.push_str(&format!("{}:x:{}:{}\n", g.name, g.gid, g.members.join(",")));
            gshadow.push_str(&format!("{}:*::{}\n", g.name, g.members.join(",")));
        }
        let shadow_gid = self.gid_of("shadow").unwrap_or(42);
        put_file(tree, "/etc/passwd", passwd, 0o644, epoch);
        put_file(tree, "/etc/group", group, 0o644, epoch);
        let mut s = Entry::file(shadow, 0o640).with_owner(0, shadow_gid);
        s.mtime = epoch;
        tree.insert("/etc/shadow", s);
        let mut gs = Entry::file(gshadow, 0o640).with_owner(0, shadow_gid);
        gs.mtime = epoch;
        tree.insert("/etc/gshadow", gs);
    }
}

/// Split a sysusers line into fields, honouring double quotes.
fn split_quoted(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Create the spec's users' home directories.
pub fn make_homes(tree: &mut Tree, spec: &Spec, acc: &Accounts, epoch: u64) {
    for u in spec.users.iter().filter(|u| u.create_home) {
        if let Some(pw) = acc.users.iter().find(|p| p.name == u.name) {
            let mut d = Entry::dir(0o750).with_owner(pw.uid, pw.gid);
            d.mtime = epoch;
            tree.insert(&pw.home, d);
            let mut s = Entry::dir(0o700).with_owner(pw.uid, pw.gid);
            s.mtime = epoch;
            tree.insert(&format!("{}/.ssh", pw.home), s);
        }
    }
}

/// The alternatives symlinks of the spec; the target must be in the tree.
pub fn apply_alternatives(tree: &mut Tree, alts: &BTreeMap<String, String>, epoch: u64) -> Result<(), SystemError> {
    for (link, target) in alts {
        let t = crate::deb::merged_path(target);
        if !tree.contains(&t) {
            return Err(SystemError::MissingAlternative { link: link.clone(), target: target.clone() });
        }
        put_link(tree, &crate::deb::merged_path(link), &t, epoch);
    }
    Ok(())
}

/// Copy template files inside the tree (what `ucf` does in postinst scripts).
pub fn apply_copies(tree: &mut Tree, copies: &BTreeMap<String, String>, epoch: u64) -> Result<(), SystemError> {
    for (dest, src) in copies {
        let e = tree.get(&crate::deb::merged_path(src)).cloned().ok_or_else(|| SystemError::Bad {
            path: src.clone(),
            message: format!("copies.\"{dest}\": source is not in the image"),
        })?;
        let mut e = e;
        e.mtime = epoch;
        // A copy is a file of its own, never a hard link to its template.
        if let Kind::File(c) = &e.kind {
            e.kind = Kind::File(std::sync::Arc::new(c.as_ref().clone()));
        }
        tree.insert(&crate::deb::merged_path(dest), e);
    }
    Ok(())
}

/// File capabilities from the spec's `[capabilities]` (what `setcap` in a maintainer script does).
pub fn apply_capabilities(tree: &mut Tree, caps: &BTreeMap<String, crate::caps::FileCaps>) -> Result<(), SystemError> {
    for (path, c) in caps {
        let p = crate::deb::merged_path(path);
        if !matches!(tree.get(&p).map(|e| &e.kind), Some(Kind::File(_))) {
            return Err(SystemError::Bad { path: path.clone(), message: format!("capabilities.\"{path}\": not a regular file in the image") });
        }
        tree.set_xattr(&p, crate::caps::XATTR, c.xattr_value());
    }
    Ok(())
}

/// The CA bundle and per-certificate links, as update-ca-certificates makes them.
/// `hash` computes OpenSSL's subject hash of a PEM certificate (hash links are skipped if None).
pub fn ca_certificates(tree: &mut Tree, epoch: u64, hash: Option<&dyn Fn(&[u8]) -> Option<String>>) {
    let certs: Vec<(String, Vec<u8>)> = tree
        .children_of("/usr/share/ca-certificates")
        .filter(|(k, e)| k.ends_with(".crt") && e.content().is_some())
        .map(|(k, e)| (k.clone(), e.content().unwrap().to_vec()))
        .collect();
    if certs.is_empty() {
        return;
    }
    let mut conf = String::from("# Generated at image build time: every certificate is trusted.\n");
    let mut bundle = Vec::new();
    let mut hashes: BTreeMap<String, u32> = BTreeMap::new();
    for (path, pem) in &certs {
        let rel = path.trim_start_matches("/usr/share/ca-certificates/");
        conf.push_str(rel);
        conf.push('\n');
        bundle.extend_from_slice(pem);
        if !pem.ends_with(b"\n") {
            bundle.push(b'\n');
        }
        let base = rel.rsplit('/').next().unwrap().trim_end_matches(".crt");
        let pem_name = format!("{base}.pem");
        put_link(tree, &format!("/etc/ssl/certs/{pem_name}"), path, epoch);
        if let Some(h) = hash.and_then(|f| f(pem)) {
            let n = hashes.entry(h.clone()).or_insert(0);
            put_link(tree, &format!("/etc/ssl/certs/{h}.{n}"), &pem_name, epoch);
            *n += 1;
        }
    }
    put_file(tree, "/etc/ca-certificates.conf", conf, 0o644, epoch);
    put_file(tree, "/etc/ssl/certs/ca-certificates.crt", bundle, 0o644, epoch);
}

/// Find a unit file in the tree.
fn unit_path(tree: &Tree, unit: &str) -> Option<String> {
    for dir in ["/etc/systemd/system", "/usr/lib/systemd/system"] {
        let p = format!("{dir}/{unit}");
        if tree.contains(&p) {
            return Some(p);
        }
    }
    None
}

/// `[Install]` keys of a unit file.
fn install_section(body: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_install = false;
    for l in body.lines() {
        let l = l.trim();
        if l.starts_with('[') {
            in_install = l == "[Install]";
            continue;
        }
        if !in_install || l.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            out.entry(k.trim().to_string()).or_default().extend(v.split_whitespace().map(String::from));
        }
    }
    out
}

/// Enable units as `systemctl enable` would: wants/requires symlinks, aliases, `Also=`.
pub fn enable_units(tree: &mut Tree, units: &[String], epoch: u64) -> Result<(), SystemError> {
    let mut todo: Vec<String> = units.to_vec();
    let mut done = BTreeSet::new();
    while let Some(unit) = todo.pop() {
        if !done.insert(unit.clone()) {
            continue;
        }
        // A template instance (getty@tty1.service) is enabled through its template file.
        let (file_unit, instance) = match unit.split_once('@') {
            Some((pre, rest)) if !rest.starts_with('.') => {
                let (inst, suffix) = rest.rsplit_once('.').unwrap_or((rest, "service"));
                (format!("{pre}@.{suffix}"), Some(inst.to_string()))
            }
            _ => (unit.clone(), None),
        };
        let path = unit_path(tree, &file_unit).ok_or_else(|| SystemError::UnitNotFound { unit: unit.clone() })?;
        let body = text(tree, &path).unwrap_or_default();
        let inst = install_section(&body);
        let instance = instance.or_else(|| inst.get("DefaultInstance").and_then(|v| v.first().cloned()));
        let link_name = match (&instance, file_unit.split_once("@.")) {
            (Some(i), Some((pre, suffix))) => format!("{pre}@{i}.{suffix}"),
            _ => file_unit.clone(),
        };
        for (key, dir) in [("WantedBy", "wants"), ("RequiredBy", "requires")] {
            for target in inst.get(key).into_iter().flatten() {
                put_link(tree, &format!("/etc/systemd/system/{target}.{dir}/{link_name}"), &path, epoch);
            }
        }
        for alias in inst.get("Alias").into_iter().flatten() {
            put_link(tree, &format!("/etc/systemd/system/{alias}"), &path, epoch);
        }
        todo.extend(inst.get("Also").into_iter().flatten().cloned());
    }
    Ok(())
}

pub fn mask_units(tree: &mut Tree, units: &[String], epoch: u64) {
    for u in units {
        put_link(tree, &format!("/etc/systemd/system/{u}"), "/dev/null", epoch);
    }
}

/// /var/lib/dpkg/status and info/*.list so that `dpkg -l` knows what is installed.
pub fn dpkg_database(tree: &mut Tree, installed: &[(&crate::apt::Package, Vec<String>)], epoch: u64) {
    let mut status = String::new();
    for (p, files) in installed {
        let mut first = true;
        for line in p.stanza.lines() {
            if line.starts_with("Filename:") || line.starts_with("Size:") || line.starts_with("SHA256:") || line.starts_with("MD5sum:") || line.starts_with("Description-md5:") {
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

/// Identity files: os-release naming the project, /etc/VERSION, /version.json, hostname, hosts,
/// an empty machine-id (generated at first boot).
pub fn identity(tree: &mut Tree, spec: &Spec, version: &str, base: &str, epoch: u64) {
    let os_release = format!(
        "PRETTY_NAME=\"minikube node {version} ({base})\"\nNAME=\"minikube node\"\nID=minikube-node\nID_LIKE=debian\nVERSION_ID=\"{version}\"\nVERSION=\"{version} ({base})\"\nVARIANT_ID={}\nHOME_URL=\"https://minikube.sigs.k8s.io/\"\n",
        spec.image.name
    );
    put_file(tree, "/usr/lib/os-release", os_release, 0o644, epoch);
    put_link(tree, "/etc/os-release", "../usr/lib/os-release", epoch);
    put_file(tree, "/etc/VERSION", format!("v{version}\n"), 0o644, epoch);
    put_file(tree, "/etc/hostname", format!("{}\n", spec.image.hostname), 0o644, epoch);
    if !tree.contains("/etc/hosts") || text(tree, "/etc/hosts").is_some_and(|t| !t.contains("127.0.1.1")) {
        put_file(
            tree,
            "/etc/hosts",
            format!("127.0.0.1\tlocalhost\n127.0.1.1\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\n", spec.image.hostname),
            0o644,
            epoch,
        );
    }
    put_file(tree, "/etc/machine-id", "", 0o444, epoch);
    put_link(tree, "/var/lib/dbus/machine-id", "/etc/machine-id", epoch);
    if !tree.contains("/etc/fstab") {
        put_file(tree, "/etc/fstab", "# the root is set up by the initramfs; the data disk is mounted by minikube-agent boot\n", 0o644, epoch);
    }
}

/// `/version.json`: image, version, commit, base and SOURCE_DATE_EPOCH (kept apart from
/// [`identity`] because it names the commit, which the cached package part must not depend on).
pub fn version_json(tree: &mut Tree, spec: &Spec, version: &str, commit: &str, base: &str, epoch: u64) {
    let json = serde_json::json!({
        "image": spec.image.name,
        "version": format!("v{version}"),
        "commit": commit,
        "base": base,
        "source_date_epoch": epoch,
    });
    put_file(tree, "/version.json", format!("{}\n", serde_json::to_string_pretty(&json).unwrap()), 0o644, epoch);
}

/// Whether the unit (or, for an instance like `getty@tty1.service`, its template) is in the tree.
pub fn has_unit(tree: &Tree, unit: &str) -> bool {
    let file_unit = match unit.split_once('@') {
        Some((pre, rest)) if !rest.starts_with('.') => {
            let suffix = rest.rsplit_once('.').map(|(_, s)| s).unwrap_or("service");
            format!("{pre}@.{suffix}")
        }
        _ => unit.to_string(),
    };
    unit_path(tree, &file_unit).is_some()
}

/// FHS links that base-files' maintainer script makes: /var/run -> /run, /var/lock -> /run/lock.
pub fn runtime_dir_links(tree: &mut Tree, epoch: u64) {
    for (link, target) in [("/var/run", "/run"), ("/var/lock", "/run/lock")] {
        if !is_link_to(tree, link, target) {
            tree.remove_tree(link);
            put_link(tree, link, target, epoch);
        }
    }
    if !tree.contains("/run") {
        let mut d = Entry::dir(0o755);
        d.mtime = epoch;
        tree.insert("/run", d);
    }
}

/// Remove paths matching `drop` globs unless they match `keep` globs. Returns entries removed.
pub fn drop_paths(tree: &mut Tree, drop: &[String], keep: &[String]) -> usize {
    let before = tree.len();
    let matches = |pat: &str, path: &str| glob_match(pat, path);
    // Remove p if p or one of its ancestors matches a drop pattern, and no keep pattern matches
    // p itself; directories that still hold kept files stay.
    let kept: Vec<String> = tree.iter().filter(|(k, _)| keep.iter().any(|g| matches(g, k))).map(|(k, _)| k.clone()).collect();
    tree.retain(|k, _| {
        let mut cur = Some(k);
        let mut dropped = false;
        while let Some(p) = cur {
            if drop.iter().any(|g| matches(g, p)) {
                dropped = true;
                break;
            }
            cur = crate::rootfs::parent(p);
        }
        if !dropped {
            return true;
        }
        // keep it if it is kept itself or is an ancestor of a kept path
        kept.iter().any(|kp| kp == k || kp.starts_with(&format!("{k}/")))
    });
    before - tree.len()
}

/// Glob over path components: `*` matches any run of characters inside one component.
pub fn glob_match(pat: &str, path: &str) -> bool {
    let pc: Vec<&str> = pat.split('/').collect();
    let xc: Vec<&str> = path.split('/').collect();
    pc.len() == xc.len() && pc.iter().zip(xc.iter()).all(|(p, x)| component_match(p.as_bytes(), x.as_bytes()))
}

fn component_match(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| component_match(&p[1..], &s[i..])),
        Some(c) => s.first() == Some(c) && component_match(&p[1..], &s[1..]),
    }
}

/// Type check used by tests and callers: is `path` a symlink to `target`?
pub fn is_link_to(tree: &Tree, path: &str, target: &str) -> bool {
    matches!(tree.get(path), Some(Entry { kind: Kind::Symlink(t), .. }) if t == target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_run_becomes_a_link() {
        let mut t = Tree::new();
        t.insert("/var/run/sshd", Entry::dir(0o755));
        runtime_dir_links(&mut t, 0);
        assert!(is_link_to(&t, "/var/run", "/run"));
        assert!(is_link_to(&t, "/var/lock", "/run/lock"));
        assert!(!t.contains("/var/run/sshd"));
        assert!(matches!(t.get("/run").unwrap().kind, Kind::Dir));
    }

    #[test]
    fn globs() {
        assert!(glob_match("/usr/share/doc/*/copyright", "/usr/share/doc/bash/copyright"));
        assert!(!glob_match("/usr/share/doc/*/copyright", "/usr/share/doc/bash/x/copyright"));
        assert!(glob_match("/usr/share/man", "/usr/share/man"));
        assert!(glob_match("xt_*", "xt_conntrack"));
    }

    #[test]
    fn drop_keeps_copyright() {
        let mut t = Tree::new();
        t.insert("/usr/share/doc/bash/copyright", Entry::file(b"c".to_vec(), 0o644));
        t.insert("/usr/share/doc/bash/README", Entry::file(b"r".to_vec(), 0o644));
        t.insert("/usr/share/man/man1/ls.1.gz", Entry::file(b"m".to_vec(), 0o644));
        let n = drop_paths(&mut t, &["/usr/share/doc/*/*".into(), "/usr/share/man".into()], &["/usr/share/doc/*/copyright".into()]);
        assert_eq!(n, 4);
        assert!(t.contains("/usr/share/doc/bash/copyright"));
        assert!(!t.contains("/usr/share/doc/bash/README"));
        assert!(!t.contains("/usr/share/man"));
    }

    #[test]
    fn enable_follows_install_section() {
        let mut t = Tree::new();
        t.insert("/usr/lib/systemd/system/a.service", Entry::file(b"[Unit]\n[Install]\nWantedBy=multi-user.target\nAlias=b.service\nAlso=c.socket\n".to_vec(), 0o644));
        t.insert("/usr/lib/systemd/system/c.socket", Entry::file(b"[Install]\nWantedBy=sockets.target\n".to_vec(), 0o644));
        t.insert("/usr/lib/systemd/system/getty@.service", Entry::file(b"[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n".to_vec(), 0o644));
        enable_units(&mut t, &["a.service".into(), "getty@.service".into()], 0).unwrap();
        assert!(is_link_to(&t, "/etc/systemd/system/multi-user.target.wants/a.service", "/usr/lib/systemd/system/a.service"));
        assert!(is_link_to(&t, "/etc/systemd/system/b.service", "/usr/lib/systemd/system/a.service"));
        assert!(is_link_to(&t, "/etc/systemd/system/sockets.target.wants/c.socket", "/usr/lib/systemd/system/c.socket"));
        assert!(is_link_to(&t, "/etc/systemd/system/getty.target.wants/getty@tty1.service", "/usr/lib/systemd/system/getty@.service"));
        let e = enable_units(&mut t, &["nope.service".into()], 0).unwrap_err();
        assert!(e.to_string().contains("nope.service"));
    }

    #[test]
    fn sysusers_lines() {
        assert_eq!(split_quoted(r#"u systemd-network - "systemd Network Management" /run"#), ["u", "systemd-network", "-", "systemd Network Management", "/run"]);
        let mut t = Tree::new();
        t.insert("/usr/lib/sysusers.d/x.conf", Entry::file(b"g render - -\nu messagebus - \"System Message Bus\" /nonexistent\nm messagebus render\n".to_vec(), 0o644));
        let mut a = Accounts::default();
        a.groups.push(GrEntry { name: "root".into(), gid: 0, members: vec![] });
        a.users.push(PwEntry { name: "root".into(), uid: 0, gid: 0, gecos: "".into(), home: "/root".into(), shell: "/bin/bash".into() });
        a.apply_sysusers(&t);
        let mb = a.users.iter().find(|u| u.name == "messagebus").unwrap();
        assert!(mb.uid < 1000 && mb.uid >= 100);
        assert!(a.groups.iter().any(|g| g.name == "render" && g.members == ["messagebus"]));
    }
}
