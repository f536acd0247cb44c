//! PAM's shared stacks, `/etc/pam.d/common-{auth,account,password,session,session-noninteractive}`,
//! made at build time from the profiles packages drop in `/usr/share/pam-configs/` and the
//! templates in `/usr/share/pam/` — the work libpam-runtime's postinst does with
//! `pam-auth-update --package`. Without these files every PAM service (sshd, login, sudo) fails
//! to initialise.
//!
//! Rules (as documented in pam-auth-update(8)): profiles marked `Default: yes` are enabled,
//! ordered by `Priority` (highest first, then by file name). For each stack, the `Primary`
//! profiles' lines form the primary block — the first one uses its `-Initial` variant when it
//! has one, and `success=end` becomes a jump over the rest of the block and the `pam_deny` that
//! follows it; with no primary module the block is one `[default=1] pam_permit.so`. `Additional`
//! lines follow the template's fallback, then `-Final` lines. The non-interactive session stack
//! leaves out profiles marked `Session-Interactive-Only: yes`.

use std::collections::BTreeMap;

use crate::rootfs::{Entry, Tree};

const PROFILES_DIR: &str = "/usr/share/pam-configs";
const TEMPLATES_DIR: &str = "/usr/share/pam";

/// One `/usr/share/pam-configs/NAME` file: its fields, multi-line values as lists of lines.
#[derive(Debug, Default, Clone)]
pub struct Profile {
    pub name: String,
    pub fields: BTreeMap<String, Vec<String>>,
}

impl Profile {
    /// Parse the RFC 822-like format: `Field: value`, continuation lines indented.
    pub fn parse(name: &str, text: &str) -> Profile {
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut current: Option<String> = None;
        for line in text.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(f) = &current {
                    let l = line.trim();
                    if !l.is_empty() {
                        fields.entry(f.clone()).or_default().push(l.to_string());
                    }
                }
            } else if let Some((k, v)) = line.split_once(':') {
                let key = k.trim().to_ascii_lowercase();
                let v = v.trim();
                let values = fields.entry(key.clone()).or_default();
                if !v.is_empty() {
                    values.push(v.to_string());
                }
                current = Some(key);
            } else {
                current = None;
            }
        }
        Profile { name: name.to_string(), fields }
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn enabled_by_default(&self) -> bool {
        self.value("default").is_some_and(|v| v.eq_ignore_ascii_case("yes"))
    }

    pub fn priority(&self) -> i64 {
        self.value("priority").and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    fn lines(&self, key: &str) -> &[String] {
        self.fields.get(key).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The five stacks: file name, PAM type, profile field prefix, template variable prefix.
const STACKS: &[(&str, &str, &str, &str)] = &[
    ("common-auth", "auth", "auth", "auth"),
    ("common-account", "account", "account", "account"),
    ("common-password", "password", "password", "password"),
    ("common-session", "session", "session", "session"),
    ("common-session-noninteractive", "session", "session", "session_nonint"),
];

/// The primary and additional blocks of one stack.
pub fn blocks(profiles: &[Profile], pam_type: &str, field: &str, noninteractive: bool) -> (String, String) {
    let usable = |p: &&Profile| !(noninteractive && p.value("session-interactive-only").is_some_and(|v| v.eq_ignore_ascii_case("yes")));
    let kind = |p: &Profile| p.value(&format!("{field}-type")).unwrap_or("").to_ascii_lowercase();
    let primaries: Vec<&Profile> = profiles.iter().filter(usable).filter(|p| kind(p) == "primary" && !p.lines(field).is_empty()).collect();
    let mut primary_lines: Vec<String> = Vec::new();
    for (i, p) in primaries.iter().enumerate() {
        let initial = format!("{field}-initial");
        let lines = if i == 0 && !p.lines(&initial).is_empty() { p.lines(&initial) } else { p.lines(field) };
        primary_lines.extend(lines.iter().cloned());
    }
    let n = primary_lines.len();
    let mut primary = String::new();
    if n == 0 {
        primary.push_str(&format!("{pam_type}\t[default=1]\t\t\tpam_permit.so\n"));
    }
    for (i, line) in primary_lines.iter().enumerate() {
        // Jump over the remaining primary lines and the pam_deny after the block.
        let line = line.replace("success=end", &format!("success={}", n - i));
        primary.push_str(&format!("{pam_type}\t{line}\n"));
    }
    let mut additional = String::new();
    for p in profiles.iter().filter(usable).filter(|p| kind(p) == "additional") {
        for line in p.lines(field) {
            additional.push_str(&format!("{pam_type}\t{line}\n"));
        }
    }
    // `-Final` lines close the stack, after every other additional line.
    for p in profiles.iter().filter(usable) {
        for line in p.lines(&format!("{field}-final")) {
            additional.push_str(&format!("{pam_type}\t{line}\n"));
        }
    }
    (primary, additional)
}

/// Write the common-* stacks into `tree` when the image has PAM's templates and profiles and
/// the stacks are not there yet. Returns the files written.
pub fn configure(tree: &mut Tree, epoch: u64) -> Vec<String> {
    let mut profiles: Vec<Profile> = tree
        .children_of(PROFILES_DIR)
        .filter_map(|(path, e)| {
            let name = path.rsplit('/').next()?;
            Some(Profile::parse(name, &String::from_utf8_lossy(e.content()?)))
        })
        .filter(Profile::enabled_by_default)
        .collect();
    profiles.sort_by(|a, b| b.priority().cmp(&a.priority()).then_with(|| a.name.cmp(&b.name)));
    let mut written = Vec::new();
    for (file, pam_type, field, var) in STACKS {
        let target = format!("/etc/pam.d/{file}");
        if tree.contains(&target) {
            continue;
        }
        let Some(template) = tree.get(&format!("{TEMPLATES_DIR}/{file}")).and_then(Entry::content) else { continue };
        let template = String::from_utf8_lossy(template).into_owned();
        let (primary, additional) = blocks(&profiles, pam_type, field, *var == "session_nonint");
        let mut out = String::new();
        for line in template.lines() {
            if line == format!("${var}_primary") {
                out.push_str(&primary);
            } else if line == format!("${var}_additional") {
                out.push_str(&additional);
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        let mut e = Entry::file(out.into_bytes(), 0o644);
        e.mtime = epoch;
        tree.insert(&target, e);
        written.push(target);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIX: &str = "Name: Unix authentication\nDefault: yes\nPriority: 256\nAuth-Type: Primary\nAuth:\n\t[success=end default=ignore]\tpam_unix.so nullok try_first_pass\n\
        Auth-Initial:\n\t[success=end default=ignore]\tpam_unix.so nullok\nAccount-Type: Primary\nAccount:\n\t[success=end new_authtok_reqd=done default=ignore]\tpam_unix.so\n\
        Session-Type: Additional\nSession:\n\trequired\tpam_unix.so\nPassword-Type: Primary\nPassword:\n\t[success=end default=ignore]\tpam_unix.so obscure use_authtok try_first_pass yescrypt\n\
        Password-Initial:\n\t[success=end default=ignore]\tpam_unix.so obscure yescrypt\n";
    const SYSTEMD: &str =
        "Name: systemd\nDefault: yes\nPriority: 0\nSession-Interactive-Only: yes\nSession-Type: Additional\nSession:\n\toptional\tpam_systemd.so\n";
    const CAP: &str = "Name: caps\nDefault: yes\nPriority: 0\nAuth-Type: Additional\nAuth-Final:\n\toptional\tpam_cap.so\n";
    const MKHOME: &str = "Name: mkhomedir\nDefault: no\nPriority: 0\nSession-Type: Additional\nSession:\n\toptional\tpam_mkhomedir.so\n";
    const LDAP: &str = "Name: ldap\nDefault: yes\nPriority: 128\nAuth-Type: Primary\nAuth:\n\t[success=end default=ignore]\tpam_ldap.so use_first_pass\n\
        Auth-Initial:\n\t[success=end default=ignore]\tpam_ldap.so\n";

    fn tree(profiles: &[(&str, &str)]) -> Tree {
        let mut t = Tree::new();
        for (n, text) in profiles {
            t.insert(&format!("{PROFILES_DIR}/{n}"), Entry::file(text.as_bytes().to_vec(), 0o644));
        }
        for (file, _, _, var) in STACKS {
            let tpl = format!("# {file}\n${var}_primary\nX\trequisite\t\t\tpam_deny.so\nX\trequired\t\t\tpam_permit.so\n${var}_additional\n");
            t.insert(&format!("{TEMPLATES_DIR}/{file}"), Entry::file(tpl.into_bytes(), 0o644));
        }
        t
    }

    fn read(t: &Tree, f: &str) -> String {
        String::from_utf8(t.get(&format!("/etc/pam.d/{f}")).unwrap().content().unwrap().to_vec()).unwrap()
    }

    #[test]
    fn debian_defaults_give_debians_stacks() {
        let mut t = tree(&[("unix", UNIX), ("systemd", SYSTEMD), ("capability", CAP), ("mkhomedir", MKHOME)]);
        assert_eq!(configure(&mut t, 7).len(), 5);
        assert_eq!(
            read(&t, "common-auth"),
            "# common-auth\nauth\t[success=1 default=ignore]\tpam_unix.so nullok\nX\trequisite\t\t\tpam_deny.so\nX\trequired\t\t\tpam_permit.so\nauth\toptional\tpam_cap.so\n"
        );
        assert!(read(&t, "common-account").contains("account\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so\n"));
        assert!(read(&t, "common-password").contains("password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt\n"));
        let session = read(&t, "common-session");
        assert!(session.starts_with("# common-session\nsession\t[default=1]\t\t\tpam_permit.so\n"), "{session}");
        assert!(session.ends_with("session\trequired\tpam_unix.so\nsession\toptional\tpam_systemd.so\n"), "{session}");
        assert!(!session.contains("mkhomedir"), "Default: no profiles stay off");
        let nonint = read(&t, "common-session-noninteractive");
        assert!(nonint.contains("pam_unix.so") && !nonint.contains("pam_systemd"), "{nonint}");
        assert_eq!(t.get("/etc/pam.d/common-auth").unwrap().mtime, 7);
    }

    #[test]
    fn several_primaries_jump_over_the_rest_of_the_block() {
        let (primary, _) = blocks(
            &{
                let mut v = vec![Profile::parse("unix", UNIX), Profile::parse("ldap", LDAP)];
                v.sort_by_key(|p| std::cmp::Reverse(p.priority()));
                v
            },
            "auth",
            "auth",
            false,
        );
        assert_eq!(primary, "auth\t[success=2 default=ignore]\tpam_unix.so nullok\nauth\t[success=1 default=ignore]\tpam_ldap.so use_first_pass\n");
    }

    #[test]
    fn existing_stacks_and_missing_templates_are_left_alone() {
        let mut t = tree(&[("unix", UNIX)]);
        t.insert("/etc/pam.d/common-auth", Entry::file(b"mine\n".to_vec(), 0o644));
        let written = configure(&mut t, 0);
        assert!(!written.contains(&"/etc/pam.d/common-auth".to_string()));
        assert_eq!(read(&t, "common-auth"), "mine\n");
        let mut empty = Tree::new();
        assert!(configure(&mut empty, 0).is_empty());
    }
}
