//! The defconfigs against the Debian flavor's spec: every symbol known, the overlays the same,
//! the paths they take from the tree present, the isolinux menu's command line the spec's, and
//! the spec's `/init` and units what the board scripts install and enable.

use super::*;

impl Context {
    pub(super) fn spec(&mut self) -> Option<Spec> {
        let path = self.repo.join(ISO_SPEC);
        match Spec::load(&path) {
            Ok(s) => Some(s),
            Err(e) => {
                self.push(Finding::Spec { spec: path, problem: e.to_string() });
                None
            }
        }
    }

    pub(super) fn check_defconfigs(&mut self, name: &str, known: &BTreeSet<String>, list: &Path, spec: Option<&Spec>) -> Vec<String> {
        let dir = self.external.join("configs");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => {
                rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with("_defconfig"))).collect()
            }
            Err(e) => {
                self.push(Finding::Read { path: dir, problem: e.to_string() });
                return Vec::new();
            }
        };
        files.sort();
        if files.is_empty() {
            self.push(Finding::Read { path: dir, problem: "no *_defconfig file".into() });
        }
        let mut names = Vec::new();
        for file in files {
            names.push(file.file_name().unwrap_or_default().to_string_lossy().into_owned());
            let Some(text) = self.read(&file) else { continue };
            let opts = defconfig::parse(&text);
            self.check_defconfig(&file, &opts, name, known, list, spec);
        }
        names
    }

    pub(super) fn check_defconfig(&mut self, file: &Path, opts: &[ConfigOption], name: &str, known: &BTreeSet<String>, list: &Path, spec: Option<&Spec>) {
        let ext_var = format!("$(BR2_EXTERNAL_{name}_PATH)");
        let ext_dir = self.external.to_string_lossy().into_owned();
        let resolve = |v: &str| -> Vec<PathBuf> { v.split_whitespace().map(|p| PathBuf::from(p.replace(&ext_var, &ext_dir))).collect() };
        for opt in opts {
            if opt.symbol.starts_with("BR2_") && !known.contains(&opt.symbol) {
                self.push(Finding::UnknownSymbol { file: file.to_path_buf(), line: opt.line, symbol: opt.symbol.clone(), list: list.to_path_buf() });
            }
            // Paths taken from this tree must exist (the overlay check below is stricter).
            if let Some(v) = opt.string_value() {
                if v.contains(&ext_var) {
                    for path in resolve(v) {
                        if !path.exists() {
                            self.push(Finding::MissingPath { file: file.to_path_buf(), line: opt.line, symbol: opt.symbol.clone(), path });
                        }
                    }
                }
            }
        }
        let get = |sym: &str| opts.iter().find(|o| o.symbol == sym);
        if get("BR2_DOWNLOAD_FORCE_CHECK_HASHES").and_then(|o| o.value.as_deref()) != Some("y") {
            self.push(Finding::MissingOption { file: file.to_path_buf(), option: "BR2_DOWNLOAD_FORCE_CHECK_HASHES=y".into() });
        }
        let Some(spec) = spec else { return };
        // The overlays: the same directories, in the same order, as the Debian flavor.
        let expected: Vec<PathBuf> = spec.files.overlays.iter().map(|p| normalize(&spec.resolve_path(p))).collect();
        match get("BR2_ROOTFS_OVERLAY") {
            Some(o) => {
                let found: Vec<PathBuf> = resolve(o.string_value().unwrap_or_default()).iter().map(|p| normalize(p)).collect();
                if found != expected || expected.iter().any(|p| !p.is_dir()) {
                    self.push(Finding::Overlay { file: file.to_path_buf(), line: o.line, found, expected, spec: spec.path.clone() });
                }
            }
            None => self.push(Finding::MissingOption { file: file.to_path_buf(), option: "BR2_ROOTFS_OVERLAY".into() }),
        }
        // The isolinux menu boots with the Debian flavor's kernel arguments.
        if let (Some(menu), Some(boot)) = (get("BR2_TARGET_ROOTFS_ISO9660_BOOT_MENU"), &spec.boot) {
            let Some(path) = resolve(menu.string_value().unwrap_or_default()).into_iter().next() else { return };
            if let Ok(text) = std::fs::read_to_string(&path) {
                let found = isolinux_cmdline(&text).unwrap_or_default();
                let expected = boot.cmdline.split_whitespace().collect::<Vec<_>>().join(" ");
                if found != expected {
                    self.push(Finding::Cmdline { file: path, found, expected, spec: spec.path.clone() });
                }
            }
        }
    }

    pub(super) fn check_spec_links(&mut self, spec: &Spec) {
        // [boot] init is the script post-build.sh installs as /init.
        if let Some(boot) = &spec.boot {
            let init = normalize(&spec.resolve_path(&boot.init));
            let expected = normalize(&self.repo.join(INIT_SCRIPT));
            if init != expected {
                self.push(Finding::Spec {
                    spec: spec.path.clone(),
                    problem: format!("[boot] init is {}, but post-build.sh installs {}", init.display(), expected.display()),
                });
            } else if !init.is_file() {
                self.push(Finding::Spec {
                    spec: spec.path.clone(),
                    problem: format!("[boot] init {} does not exist (post-build.sh installs it as /init)", init.display()),
                });
            }
        }
        // Units: what the spec enables from the overlays is enabled here too; ours come from there.
        let list_path = self.external.join(BOARD_DIR).join("systemd-enable.txt");
        let Some(text) = self.read(&list_path) else { return };
        let listed: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        let overlays: Vec<PathBuf> = spec.files.overlays.iter().map(|p| spec.resolve_path(p)).collect();
        let in_overlays = |unit: &str| {
            overlays.iter().any(|o| ["usr/lib/systemd/system", "lib/systemd/system", "etc/systemd/system"].iter().any(|d| o.join(d).join(unit).is_file()))
        };
        for unit in &spec.systemd.enable {
            if in_overlays(unit) && !listed.contains(&unit.as_str()) {
                self.push(Finding::Unit {
                    file: list_path.clone(),
                    unit: unit.clone(),
                    problem: format!("is enabled by {} and provided by the overlays, but not listed", spec.path.display()),
                });
            }
        }
        for unit in listed.iter().filter(|u| u.starts_with("minikube-")) {
            if !in_overlays(unit) {
                self.push(Finding::Unit {
                    file: list_path.clone(),
                    unit: unit.to_string(),
                    problem: "is ours but no overlay of iso/spec.toml provides it".into(),
                });
            }
        }
    }
}

/// The kernel arguments of the first APPEND line of an isolinux menu, without `initrd=`.
pub fn isolinux_cmdline(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| l.to_ascii_uppercase().starts_with("APPEND "))?;
    let args: Vec<&str> = line[7..].split_whitespace().filter(|a| !a.starts_with("initrd=")).collect();
    Some(args.join(" "))
}
