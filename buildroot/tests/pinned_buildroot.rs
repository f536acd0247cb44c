//! Our tree inside a real buildroot tree of the pinned release. Needs BUILDROOT_DIR; ignored
//! by default so that it never counts as a pass when skipped.

use buildroot::defconfig;
use buildroot::driver::{self, Arch, Layout};
use std::path::{Path, PathBuf};
use std::process::Command;

fn buildroot_dir() -> PathBuf {
    let dir = std::env::var_os("BUILDROOT_DIR")
        .unwrap_or_else(|| panic!("BUILDROOT_DIR is not set: point it at a buildroot {} tree to run this test", buildroot::PINNED_RELEASE));
    let dir = PathBuf::from(dir);
    driver::check_release(&dir).unwrap_or_else(|e| panic!("BUILDROOT_DIR: {e}"));
    dir
}

fn external() -> PathBuf {
    Layout::new(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).external()
}

/// `make -s -C <buildroot> O=<out> BR2_EXTERNAL=<ours> <args>`, returning stdout.
fn make(buildroot: &Path, out: &Path, args: &[&str]) -> String {
    let output = Command::new("make")
        .arg("-s")
        .arg("--no-print-directory")
        .arg("-C")
        .arg(buildroot)
        .arg(format!("O={}", out.display()))
        .arg(format!("BR2_EXTERNAL={}", external().display()))
        .args(args)
        .output()
        .expect("run make");
    assert!(output.status.success(), "make {args:?} failed:\n{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
#[ignore = "needs BUILDROOT_DIR=<buildroot tree of release 2025.02.16>; run with --ignored"]
fn defconfigs_survive_savedefconfig_and_packages_are_seen() {
    let buildroot = buildroot_dir();
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let work = tempfile::tempdir().unwrap();
        let (out, out2) = (work.path().join("o"), work.path().join("o2"));
        make(&buildroot, &out, &[&arch.defconfig()]);

        // Every option we wrote is in the .config as written: no unknown or dropped symbol.
        let ours = defconfig::read(&external().join("configs").join(arch.defconfig())).unwrap();
        let config = defconfig::read(&out.join(".config")).unwrap();
        let lost = defconfig::lost_options(&ours, &config);
        assert!(lost.is_empty(), "{arch}: options lost by kconfig:\n{}", lost.iter().map(|l| format!("  {l}\n")).collect::<String>());

        // savedefconfig, then a defconfig from that file, gives the same configuration back.
        let saved = work.path().join("saved_defconfig");
        make(&buildroot, &out, &["savedefconfig", &format!("BR2_DEFCONFIG={}", saved.display())]);
        make(&buildroot, &out2, &["defconfig", &format!("BR2_DEFCONFIG={}", saved.display())]);
        let strip = |opts: Vec<defconfig::ConfigOption>| -> Vec<(String, Option<String>)> {
            opts.into_iter().filter(|o| o.symbol != "BR2_DEFCONFIG").map(|o| (o.symbol, o.value)).collect()
        };
        let again = defconfig::read(&out2.join(".config")).unwrap();
        assert_eq!(strip(config), strip(again), "{arch}: .config changed through savedefconfig");
        let lost = defconfig::lost_options(&ours, &defconfig::read(&out2.join(".config")).unwrap());
        assert!(lost.is_empty(), "{arch}: lost after the round trip: {lost:?}");

        // buildroot's make sees our package.
        let vars = make(&buildroot, &out, &["printvars", "VARS=MINIKUBE_AGENT_SITE_METHOD MINIKUBE_AGENT_VERSION PACKAGES"]);
        assert!(vars.lines().any(|l| l == "MINIKUBE_AGENT_SITE_METHOD=local"), "{arch}: {vars}");
        assert!(vars.lines().any(|l| l.starts_with("MINIKUBE_AGENT_VERSION=")), "{arch}: {vars}");
        let packages = vars.lines().find_map(|l| l.strip_prefix("PACKAGES=")).unwrap_or_default();
        assert!(packages.split_whitespace().any(|p| p == "minikube-agent"), "{arch}: PACKAGES={packages}");
    }
}
