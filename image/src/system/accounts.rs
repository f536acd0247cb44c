//! Accounts: base-passwd's master files, systemd's sysusers.d fragments and the spec's users and
//! groups, written as /etc/passwd, group, shadow and gshadow; the spec's home directories.

use super::{put_file, text, SystemError};
use crate::rootfs::{Entry, Tree};
use crate::spec::Spec;
use std::collections::BTreeSet;

const PASSWD_MASTER: &str = "/usr/share/base-passwd/passwd.master";
const GROUP_MASTER: &str = "/usr/share/base-passwd/group.master";

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

    /// Seed from base-passwd's master files. An id that is not a number is an error naming the
    /// file, the line and the field (never a stand-in id).
    pub fn from_base_passwd(tree: &Tree) -> Result<Accounts, SystemError> {
        let mut a = Accounts::default();
        let pw = text(tree, PASSWD_MASTER)
            .ok_or_else(|| SystemError::Bad { path: PASSWD_MASTER.into(), message: "missing (is base-passwd in the package set?)".into() })?;
        for (n, l) in pw.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                continue;
            }
            let id = |i: usize, field: &'static str| parse_id(PASSWD_MASTER, n + 1, "user", f[0], field, f[i]);
            a.users.push(PwEntry { name: f[0].into(), uid: id(2, "uid")?, gid: id(3, "gid")?, gecos: f[4].into(), home: f[5].into(), shell: f[6].into() });
        }
        let gr = text(tree, GROUP_MASTER).unwrap_or_default();
        for (n, l) in gr.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                continue;
            }
            let gid = parse_id(GROUP_MASTER, n + 1, "group", f[0], "gid", f[2])?;
            a.groups.push(GrEntry { name: f[0].into(), gid, members: vec![] });
        }
        Ok(a)
    }

    /// Apply systemd sysusers.d fragments found in the tree (`u`, `g` and `m` lines), so that
    /// system users exist at build time with stable ids. An id field is `-`, a number, `uid:gid`
    /// (the gid a number or a group name) or a path (the id of that file's owner at boot, which
    /// a build cannot know: a free id is chosen, as for `-`); anything else is an error naming
    /// the file and line.
    pub fn apply_sysusers(&mut self, tree: &Tree) -> Result<(), SystemError> {
        let files: Vec<(String, String)> = tree
            .children_of("/usr/lib/sysusers.d")
            .filter(|(k, _)| k.ends_with(".conf"))
            .filter_map(|(k, e)| e.content().map(|c| (k.clone(), String::from_utf8_lossy(c).into_owned())))
            .collect();
        for (path, body) in files {
            for (n, line) in body.lines().enumerate() {
                let bad = |what: &'static str, name: &str, value: &str| SystemError::BadId {
                    path: path.clone(),
                    line: n + 1,
                    what,
                    name: name.into(),
                    field: "id",
                    value: value.into(),
                };
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let f = split_quoted(line);
                let field = |i: usize| f.get(i).map(String::as_str).filter(|s| *s != "-");
                match field(0) {
                    Some("g") => {
                        let Some(name) = field(1) else { continue };
                        let gid = match field(2) {
                            None => None,
                            Some(s) if s.starts_with('/') => None,
                            Some(s) => Some(s.parse().map_err(|_| bad("group", name, s))?),
                        };
                        self.add_group(name, gid);
                    }
                    Some("u") => {
                        let Some(name) = field(1) else { continue };
                        if self.has_user(name) {
                            continue;
                        }
                        let (uid, gid) = match field(2) {
                            Some(s) if s.starts_with('/') => (None, None),
                            Some(s) if s.contains(':') => {
                                let (u, g) = s.split_once(':').unwrap_or_default();
                                let uid = if u == "-" { None } else { Some(u.parse().map_err(|_| bad("user", name, s))?) };
                                // A group given by name is not looked up: the user's own group
                                // gets a free id, as when no gid is given.
                                let gid = g.parse().ok();
                                (uid, gid)
                            }
                            Some(s) => {
                                let id = s.parse().map_err(|_| bad("user", name, s))?;
                                (Some(id), Some(id))
                            }
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
        Ok(())
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
                let grp = self.group_mut(g).ok_or_else(|| SystemError::UnknownGroup { user: u.name.clone(), group: g.clone() })?;
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

/// A numeric id read from line `line` of `path`.
fn parse_id(path: &str, line: usize, what: &'static str, name: &str, field: &'static str, value: &str) -> Result<u32, SystemError> {
    value.parse().map_err(|_| SystemError::BadId { path: path.into(), line, what, name: name.into(), field, value: value.into() })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysusers_lines() {
        assert_eq!(
            split_quoted(r#"u systemd-network - "systemd Network Management" /run"#),
            ["u", "systemd-network", "-", "systemd Network Management", "/run"]
        );
        let mut t = Tree::new();
        t.insert(
            "/usr/lib/sysusers.d/x.conf",
            Entry::file(b"g render - -\nu messagebus - \"System Message Bus\" /nonexistent\nm messagebus render\n".to_vec(), 0o644),
        );
        let mut a = Accounts::default();
        a.groups.push(GrEntry { name: "root".into(), gid: 0, members: vec![] });
        a.users.push(PwEntry { name: "root".into(), uid: 0, gid: 0, gecos: "".into(), home: "/root".into(), shell: "/bin/bash".into() });
        a.apply_sysusers(&t).unwrap();
        let mb = a.users.iter().find(|u| u.name == "messagebus").unwrap();
        assert!(mb.uid < 1000 && mb.uid >= 100);
        assert!(a.groups.iter().any(|g| g.name == "render" && g.members == ["messagebus"]));
    }

    #[test]
    fn a_malformed_id_names_the_file_the_line_and_the_field() {
        let mut t = Tree::new();
        t.insert(PASSWD_MASTER, Entry::file(b"root:*:0:0:root:/root:/bin/bash\n\ndaemon:*:1:x1:daemon:/usr/sbin:/usr/sbin/nologin\n".to_vec(), 0o644));
        let e = Accounts::from_base_passwd(&t).unwrap_err().to_string();
        assert!(e.contains(PASSWD_MASTER) && e.contains(":3:") && e.contains("gid") && e.contains("\"x1\""), "{e}");
        t.insert(PASSWD_MASTER, Entry::file(b"root:*:0:0:root:/root:/bin/bash\n".to_vec(), 0o644));
        t.insert(GROUP_MASTER, Entry::file(b"root:*:0:\nadm:*:four:\n".to_vec(), 0o644));
        let e = Accounts::from_base_passwd(&t).unwrap_err().to_string();
        assert!(e.contains(GROUP_MASTER) && e.contains(":2:") && e.contains("\"adm\"") && e.contains("\"four\""), "{e}");
    }

    #[test]
    fn a_malformed_sysusers_id_names_the_file_and_line_and_a_path_id_is_accepted() {
        let mut t = Tree::new();
        t.insert("/usr/lib/sysusers.d/ok.conf", Entry::file(b"u owned /var/lib/x \"Owner of x\"\nu pinned 311:312\n".to_vec(), 0o644));
        let mut a = Accounts::default();
        a.apply_sysusers(&t).unwrap();
        assert!(a.users.iter().any(|u| u.name == "owned" && u.uid < 1000));
        assert!(a.users.iter().any(|u| u.name == "pinned" && u.uid == 311));
        t.insert("/usr/lib/sysusers.d/z.conf", Entry::file(b"# comment\nu broken 12x\n".to_vec(), 0o644));
        let e = Accounts::default().apply_sysusers(&t).unwrap_err().to_string();
        assert!(e.contains("/usr/lib/sysusers.d/z.conf:2:") && e.contains("\"broken\"") && e.contains("\"12x\""), "{e}");
    }
}
