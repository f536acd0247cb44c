//! The lint on the real tree, and on broken copies of it (each must fail, naming file and symbol).

use buildroot::lint::{self, Finding};
mod common;

use common::{copy_dir, repo};
use std::fs;
use std::path::PathBuf;

#[test]
fn the_real_tree_is_clean() {
    let summary = lint::lint(&repo().join("buildroot-external")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.name, buildroot::EXTERNAL_NAME);
    assert_eq!(summary.defconfigs, ["minikube_rs_aarch64_defconfig", "minikube_rs_x86_64_defconfig"]);
    assert_eq!(summary.packages, ["minikube-agent"]);
    assert!(summary.upstream_symbols >= 40, "{summary:?}");
}

/// A copy of what the lint reads: the tree, the workspace manifest, the ISO spec and overlays.
/// Overlay files the lead has not written yet are created in the copy only if missing.
struct Copy {
    _dir: tempfile::TempDir,
    repo: PathBuf,
}

impl Copy {
    fn new() -> Copy {
        let dir = tempfile::tempdir().unwrap();
        let src = repo();
        let repo = dir.path().join("repo");
        copy_dir(&src.join("buildroot-external"), &repo.join("buildroot-external"));
        copy_dir(&src.join("iso"), &repo.join("iso"));
        copy_dir(&src.join("overlay"), &repo.join("overlay"));
        fs::copy(src.join("Cargo.toml"), repo.join("Cargo.toml")).unwrap();
        for unit in ["minikube-agent-boot.service", "minikube-agent.service"] {
            let p = repo.join("overlay/usr/lib/systemd/system").join(unit);
            if !p.exists() {
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, "[Unit]\n").unwrap();
            }
        }
        fs::create_dir_all(repo.join("iso/overlay")).unwrap();
        if !repo.join("iso/init.sh").exists() {
            fs::write(repo.join("iso/init.sh"), "#!/bin/sh\n").unwrap();
        }
        Copy { _dir: dir, repo }
    }
    fn external(&self) -> PathBuf {
        self.repo.join("buildroot-external")
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.external().join(rel)
    }
    fn edit(&self, rel: &str, f: impl FnOnce(String) -> String) {
        let p = self.path(rel);
        let text = fs::read_to_string(&p).unwrap();
        fs::write(&p, f(text)).unwrap();
    }
    fn findings(&self) -> Vec<Finding> {
        match lint::lint(&self.external()) {
            Ok(s) => panic!("the broken copy passed the lint: {s:?}"),
            Err(e) => {
                // The report names every finding.
                let text = e.to_string();
                for f in &e.findings {
                    assert!(text.contains(&f.to_string()));
                }
                e.findings
            }
        }
    }
}

const X86: &str = "configs/minikube_rs_x86_64_defconfig";

#[test]
fn an_intact_copy_is_clean() {
    let c = Copy::new();
    lint::lint(&c.external()).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_made_up_package_in_a_defconfig_is_named_with_file_and_line() {
    let c = Copy::new();
    c.edit(X86, |t| t + "BR2_PACKAGE_NO_SUCH_THING=y\n");
    let findings = c.findings();
    assert_eq!(findings.len(), 1, "{findings:?}");
    let Finding::UnknownSymbol { file, line, symbol, list } = &findings[0] else { panic!("{findings:?}") };
    assert_eq!(file, &c.path(X86));
    assert_eq!(symbol, "BR2_PACKAGE_NO_SUCH_THING");
    let text = fs::read_to_string(c.path(X86)).unwrap();
    assert_eq!(text.lines().nth(line - 1), Some("BR2_PACKAGE_NO_SUCH_THING=y"));
    assert!(list.ends_with(format!("{}-packages.txt", buildroot::PINNED_RELEASE)));
    let message = findings[0].to_string();
    assert!(message.contains("minikube_rs_x86_64_defconfig") && message.contains("BR2_PACKAGE_NO_SUCH_THING"), "{message}");
}

#[test]
fn any_unknown_symbol_is_caught_not_only_packages() {
    // The shape of the bug found in a real 2025.02.16 tree: a sub-option that release lacks, and
    // a made-up non-package option; kconfig would drop both without a word.
    let c = Copy::new();
    c.edit(X86, |t| t + "BR2_PACKAGE_IPTABLES_NFTABLES_DEFAULT=y\nBR2_TARGET_ROOTFS_MADE_UP=y\n");
    let findings = c.findings();
    let symbols: Vec<&str> = findings
        .iter()
        .filter_map(|f| match f {
            Finding::UnknownSymbol { symbol, .. } => Some(symbol.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(symbols, ["BR2_PACKAGE_IPTABLES_NFTABLES_DEFAULT", "BR2_TARGET_ROOTFS_MADE_UP"], "{findings:?}");
}

#[test]
fn an_unset_unknown_package_is_caught_too() {
    let c = Copy::new();
    c.edit(X86, |t| t + "# BR2_PACKAGE_BOGUS is not set\n");
    let findings = c.findings();
    assert!(matches!(&findings[..], [Finding::UnknownSymbol { symbol, .. }] if symbol == "BR2_PACKAGE_BOGUS"), "{findings:?}");
}

#[test]
fn a_package_without_hash_file_is_named() {
    let c = Copy::new();
    fs::remove_file(c.path("package/minikube-agent/minikube-agent.hash")).unwrap();
    let findings = c.findings();
    assert_eq!(findings.len(), 1, "{findings:?}");
    let message = findings[0].to_string();
    assert!(message.contains("package/minikube-agent") && message.contains("minikube-agent.hash"), "{message}");
}

#[test]
fn a_new_package_needs_hash_sourcing_and_known_dependencies() {
    let c = Copy::new();
    let dir = c.path("package/foo");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("Config.in"), "config BR2_PACKAGE_FOO\n\tbool \"foo\"\n\tselect BR2_PACKAGE_MADE_UP\n").unwrap();
    fs::write(dir.join("foo.mk"), "FOO_VERSION = 1\nFOO_SITE = http://example.invalid\n$(eval $(generic-package))\n").unwrap();
    // A downloaded package may not use the local-package excuse.
    fs::write(dir.join("foo.hash"), "# no hash: trust me\n").unwrap();
    let findings = c.findings();
    let messages: Vec<String> = findings.iter().map(ToString::to_string).collect();
    assert_eq!(findings.len(), 3, "{messages:#?}");
    assert!(
        findings.iter().any(|f| matches!(f, Finding::UnknownSymbol { symbol, file, line: 3, .. }
        if symbol == "BR2_PACKAGE_MADE_UP" && file.ends_with("package/foo/Config.in"))),
        "{messages:#?}"
    );
    assert!(findings.iter().any(|f| matches!(f, Finding::NotSourced { package, .. } if package == "foo")), "{messages:#?}");
    assert!(
        findings.iter().any(|f| matches!(f, Finding::Hash { file, problem }
        if file.ends_with("package/foo/foo.hash") && problem.contains("FOO_SITE_METHOD"))),
        "{messages:#?}"
    );
}

#[test]
fn a_local_package_must_say_why_it_has_no_hash() {
    let c = Copy::new();
    fs::write(c.path("package/minikube-agent/minikube-agent.hash"), "# nothing here\n").unwrap();
    let findings = c.findings();
    assert!(matches!(&findings[..], [Finding::Hash { file, .. }] if file.ends_with("minikube-agent.hash")), "{findings:?}");
}

#[test]
fn overlays_must_be_the_debian_flavors() {
    let c = Copy::new();
    // A private copy of the overlay would be a second source of truth.
    copy_dir(&c.repo.join("overlay"), &c.path("board/minikube-rs/overlay"));
    c.edit(X86, |t| t.replace("$(BR2_EXTERNAL_MINIKUBE_RS_PATH)/../overlay ", "$(BR2_EXTERNAL_MINIKUBE_RS_PATH)/board/minikube-rs/overlay "));
    let findings = c.findings();
    assert!(
        matches!(&findings[..], [Finding::Overlay { file, found, expected, .. }]
        if file == &c.path(X86) && found.len() == 2 && found[0].ends_with("board/minikube-rs/overlay")
            && expected[0].ends_with("overlay") && expected[1].ends_with("iso/overlay")),
        "{findings:?}"
    );
}

#[test]
fn the_external_name_must_match_what_the_files_use() {
    let c = Copy::new();
    c.edit("package/minikube-agent/minikube-agent.mk", |t| t.replace("BR2_EXTERNAL_MINIKUBE_RS_PATH", "BR2_EXTERNAL_MINIKUBE_PATH"));
    let findings = c.findings();
    assert!(!findings.is_empty());
    for f in &findings {
        assert!(
            matches!(f, Finding::ExternalName { file, found, expected, .. }
            if file.ends_with("minikube-agent.mk") && found == "MINIKUBE" && expected == "MINIKUBE_RS"),
            "{findings:?}"
        );
    }
}

#[test]
fn minikubes_own_name_is_refused() {
    let c = Copy::new();
    c.edit("external.desc", |t| t.replace("name: MINIKUBE_RS", "name: MINIKUBE"));
    let findings = c.findings();
    assert!(matches!(&findings[0], Finding::ExternalDesc { problem, .. } if problem.contains("minikube's own")), "{findings:?}");
}

#[test]
fn forced_hash_checking_is_required() {
    let c = Copy::new();
    c.edit(X86, |t| t.replace("BR2_DOWNLOAD_FORCE_CHECK_HASHES=y\n", ""));
    let findings = c.findings();
    assert!(matches!(&findings[..], [Finding::MissingOption { option, .. }] if option.starts_with("BR2_DOWNLOAD_FORCE_CHECK_HASHES")), "{findings:?}");
}

#[test]
fn paths_from_the_tree_must_exist() {
    let c = Copy::new();
    fs::remove_file(c.path("board/minikube-rs/linux.fragment")).unwrap();
    let findings = c.findings();
    assert_eq!(findings.len(), 2, "{findings:?}"); // both defconfigs use it
    for f in &findings {
        assert!(
            matches!(f, Finding::MissingPath { symbol, path, .. }
            if symbol == "BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES" && path.ends_with("linux.fragment")),
            "{findings:?}"
        );
    }
}

#[test]
fn the_isolinux_cmdline_follows_the_spec() {
    let c = Copy::new();
    c.edit("board/minikube-rs/isolinux.cfg", |t| t.replace("loglevel=4", "loglevel=7"));
    let findings = c.findings();
    assert!(
        matches!(&findings[..], [Finding::Cmdline { found, expected, .. }]
        if found.contains("loglevel=7") && expected.contains("loglevel=4")),
        "{findings:?}"
    );
}

#[test]
fn the_agent_package_carries_the_workspace_version() {
    let c = Copy::new();
    c.edit("package/minikube-agent/minikube-agent.mk", |t| t.replace("MINIKUBE_AGENT_VERSION = ", "MINIKUBE_AGENT_VERSION = 9"));
    let findings = c.findings();
    assert!(matches!(&findings[..], [Finding::PackageVariable { variable, .. }] if variable == "MINIKUBE_AGENT_VERSION"), "{findings:?}");
}

#[test]
fn overlay_units_the_spec_enables_must_be_enabled() {
    let c = Copy::new();
    c.edit("board/minikube-rs/systemd-enable.txt", |t| t.replace("minikube-agent.service\n", ""));
    let findings = c.findings();
    assert!(matches!(&findings[..], [Finding::Unit { unit, .. }] if unit == "minikube-agent.service"), "{findings:?}");
}

#[test]
fn the_upstream_list_names_its_release_and_how_it_was_gathered() {
    let list = lint::upstream_list_path(&repo().join("buildroot-external"));
    let text = fs::read_to_string(&list).unwrap();
    assert!(text.lines().take(5).any(|l| l.starts_with('#') && l.contains(buildroot::PINNED_RELEASE)));
    assert!(text.contains("NOT the full package list"));
    let (symbols, bad) = lint::parse_upstream_list(&text);
    assert!(bad.is_empty(), "{bad:?}");
    // Every entry says how it was verified.
    for line in text.lines().filter(|l| l.starts_with("BR2_PACKAGE_")) {
        let how = line.split('\t').nth(1).unwrap_or_default();
        assert!(["config", "select", "mk", "package", "minikube"].contains(&how), "{line}");
    }
    assert!(symbols.contains("BR2_PACKAGE_DOCKER_ENGINE"));
}
