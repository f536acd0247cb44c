//! The out-of-tree buildroot build of the minikube ISO.
//!
//! `make -C <buildroot> O=out/buildroot/<arch> BR2_EXTERNAL=buildroot-external <defconfig>`, then
//! `make` with the same arguments; downloads (`BR2_DL_DIR`) and ccache (`BR2_CCACHE_DIR`) live in
//! `out/buildroot/{dl,ccache}` and survive between runs; the ISO is copied to `out/minikube.iso`
//! atomically. With a container engine, the same make runs inside a Debian container that has
//! buildroot's host dependencies (like minikube's buildroot-image), as the owner of the workspace.

use crate::{lint, PINNED_RELEASE};
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use tracing::info;

/// Where buildroot is cloned from when no checkout is given.
pub const DEFAULT_GIT_URL: &str = "https://gitlab.com/buildroot.org/buildroot.git";
/// Tag of the builder image made for `--in-container`.
pub const BUILDER_IMAGE: &str = "localhost/minikube-rs-buildroot-builder:bookworm";

/// Target architecture of the ISO (the workspace's one arch type).
pub use image::arch::Arch;

/// Container engine for `--in-container`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Podman,
    Docker,
}

impl Engine {
    pub fn program(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "podman" => Ok(Engine::Podman),
            "docker" => Ok(Engine::Docker),
            other => Err(format!("unknown container engine {other:?} (podman or docker)")),
        }
    }
}

/// Directories of a build, all derived from the workspace root and the output directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub repo: PathBuf,
    pub out: PathBuf,
}

impl Layout {
    /// The usual layout: `<repo>/out`.
    pub fn new(repo: &Path) -> Layout {
        Layout { repo: repo.to_path_buf(), out: repo.join("out") }
    }
    pub fn external(&self) -> PathBuf {
        self.repo.join("buildroot-external")
    }
    /// Buildroot's `O=` for one architecture.
    pub fn output(&self, arch: Arch) -> PathBuf {
        self.out.join("buildroot").join(arch.name())
    }
    /// Download cache, shared by architectures and kept between runs.
    pub fn dl_dir(&self) -> PathBuf {
        self.out.join("buildroot").join("dl")
    }
    pub fn ccache_dir(&self) -> PathBuf {
        self.out.join("buildroot").join("ccache")
    }
    /// Where the pinned release is cloned when no checkout is given.
    pub fn checkout(&self) -> PathBuf {
        self.out.join("buildroot").join(format!("buildroot-{PINNED_RELEASE}"))
    }
    /// The image buildroot leaves for us (both architectures write this name).
    pub fn built_iso(&self, arch: Arch) -> PathBuf {
        self.output(arch).join("images").join("rootfs.iso9660")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{dir} is not a buildroot tree (no Makefile with `export BR2_VERSION := ...`)")]
    NotBuildroot { dir: PathBuf },
    #[error("{makefile}: buildroot {found}, but this tree is written for {expected} (pass --buildroot with a {expected} checkout)")]
    Release { makefile: PathBuf, found: String, expected: String },
    #[error("no buildroot checkout: cloning {url} (tag {tag}) into {dir} failed: {detail}. Without network access, pass --buildroot DIR with a buildroot {tag} tree")]
    NoCheckout { url: String, tag: String, dir: PathBuf, detail: String },
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("`{command}` failed ({status})")]
    Command { command: String, status: std::process::ExitStatus },
    #[error("buildroot finished but {path} does not exist")]
    MissingImage { path: PathBuf },
    #[error(transparent)]
    Lint(#[from] lint::LintError),
}

/// A program with its arguments and extra environment: what gets run, printable for errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<OsString>,
    pub env: Vec<(String, OsString)>,
    pub stdin: Option<Vec<u8>>,
}

impl Invocation {
    pub fn new(program: &str) -> Invocation {
        Invocation { program: program.into(), args: Vec::new(), env: Vec::new(), stdin: None }
    }
    pub fn arg(mut self, a: impl Into<OsString>) -> Invocation {
        self.args.push(a.into());
        self
    }

    /// Run it, inheriting stdout/stderr; a non-zero exit is an error naming the command.
    pub fn run(&self) -> Result<(), DriverError> {
        info!(command = %self, "running");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).envs(self.env.iter().map(|(k, v)| (k, v)));
        let status = if let Some(input) = &self.stdin {
            cmd.stdin(std::process::Stdio::piped());
            let mut child = cmd.spawn().map_err(|source| DriverError::Spawn { program: self.program.clone(), source })?;
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(input).map_err(|source| DriverError::Spawn { program: self.program.clone(), source })?;
            drop(pipe);
            child.wait()
        } else {
            cmd.status()
        }
        .map_err(|source| DriverError::Spawn { program: self.program.clone(), source })?;
        if status.success() {
            Ok(())
        } else {
            Err(DriverError::Command { command: self.to_string(), status })
        }
    }
}

impl fmt::Display for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.env {
            write!(f, "{k}={} ", v.to_string_lossy())?;
        }
        f.write_str(&self.program)?;
        for a in &self.args {
            write!(f, " {}", a.to_string_lossy())?;
        }
        Ok(())
    }
}

/// The release of a buildroot tree, from `export BR2_VERSION := X` in its Makefile.
pub fn tree_release(dir: &Path) -> Result<String, DriverError> {
    let makefile = dir.join("Makefile");
    let text = std::fs::read_to_string(&makefile).map_err(|_| DriverError::NotBuildroot { dir: dir.to_path_buf() })?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("export BR2_VERSION :="))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| DriverError::NotBuildroot { dir: dir.to_path_buf() })
}

/// Check that `dir` is a buildroot tree of the pinned release.
pub fn check_release(dir: &Path) -> Result<(), DriverError> {
    let found = tree_release(dir)?;
    if found != PINNED_RELEASE {
        return Err(DriverError::Release { makefile: dir.join("Makefile"), found, expected: PINNED_RELEASE.into() });
    }
    Ok(())
}

/// The buildroot tree to use: `explicit` if given, else the clone under `out/` (made now with
/// `git clone --depth 1 --branch <release>` if missing). Either way it must be the pinned release.
pub fn ensure_checkout(explicit: Option<&Path>, layout: &Layout, git_url: &str) -> Result<PathBuf, DriverError> {
    if let Some(dir) = explicit {
        check_release(dir)?;
        return Ok(dir.to_path_buf());
    }
    let dir = layout.checkout();
    if !dir.join("Makefile").is_file() {
        let parent = dir.parent().expect("checkout dir has a parent");
        std::fs::create_dir_all(parent).map_err(|source| DriverError::Io { path: parent.to_path_buf(), source })?;
        let tmp = parent.join(format!(".{}.partial", dir.file_name().unwrap_or_default().to_string_lossy()));
        let _ = std::fs::remove_dir_all(&tmp);
        info!(url = git_url, tag = PINNED_RELEASE, dir = %dir.display(), "cloning buildroot");
        let output = Command::new("git")
            // Give up on a stalled transfer instead of hanging for hours.
            .args(["-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=60"])
            .args(["clone", "--quiet", "--depth", "1", "--branch", PINNED_RELEASE, git_url])
            .arg(&tmp)
            .output()
            .map_err(|source| DriverError::Spawn { program: "git".into(), source })?;
        if !output.status.success() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(DriverError::NoCheckout {
                url: git_url.into(),
                tag: PINNED_RELEASE.into(),
                dir,
                detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        std::fs::rename(&tmp, &dir).map_err(|source| DriverError::Io { path: dir.clone(), source })?;
    }
    check_release(&dir)?;
    Ok(dir)
}

/// `make -C <buildroot> O=<out> BR2_EXTERNAL=<tree> <goals>` with the caches in the environment.
pub fn make_invocation(buildroot: &Path, layout: &Layout, arch: Arch, goals: &[&str]) -> Invocation {
    let mut inv = Invocation::new("make").arg("-C").arg(buildroot).arg(kv("O", &layout.output(arch))).arg(kv("BR2_EXTERNAL", &layout.external()));
    for g in goals {
        inv = inv.arg(*g);
    }
    inv.env.push(("BR2_DL_DIR".into(), layout.dl_dir().into_os_string()));
    inv.env.push(("BR2_CCACHE_DIR".into(), layout.ccache_dir().into_os_string()));
    inv
}

fn kv(key: &str, path: &Path) -> OsString {
    let mut s = OsString::from(format!("{key}="));
    s.push(path);
    s
}

/// The builder image's Containerfile: Debian with buildroot's mandatory host packages.
pub fn builder_containerfile() -> String {
    let packages = [
        "bash",
        "bc",
        "binutils",
        "build-essential",
        "bzip2",
        "ca-certificates",
        "cpio",
        "diffutils",
        "file",
        "findutils",
        "g++",
        "gcc",
        "git",
        "gzip",
        "libncurses-dev",
        "make",
        "patch",
        "perl",
        "python3",
        "rsync",
        "sed",
        "tar",
        "unzip",
        "wget",
        "which",
        "xz-utils",
    ];
    format!(
        "FROM docker.io/library/debian:bookworm\n\
         RUN apt-get update \\\n && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {} \\\n && rm -rf /var/lib/apt/lists/*\n",
        packages.join(" ")
    )
}

/// `<engine> build -t <tag> -f - <context>` fed with [`builder_containerfile`].
pub fn builder_image_invocation(engine: Engine, context: &Path) -> Invocation {
    let mut inv = Invocation::new(engine.program()).arg("build").arg("-t").arg(BUILDER_IMAGE).arg("-f").arg("-").arg(context);
    inv.stdin = Some(builder_containerfile().into_bytes());
    inv
}

/// Wrap `inner` (a make invocation) to run in the builder image: the same absolute paths are
/// mounted (so O=, BR2_EXTERNAL= and the caches mean the same inside), as user `uid:gid`.
pub fn container_invocation(engine: Engine, inner: &Invocation, mounts: &[PathBuf], workdir: &Path, uid: u32, gid: u32) -> Invocation {
    let mut inv = Invocation::new(engine.program()).arg("run").arg("--rm").arg("--user").arg(format!("{uid}:{gid}"));
    if engine == Engine::Podman {
        // Rootless podman: map our uid to the same uid inside, so files stay ours.
        inv = inv.arg("--userns=keep-id");
    }
    inv = inv.arg("-e").arg("HOME=/tmp");
    for (k, v) in &inner.env {
        let mut e = OsString::from(format!("{k}="));
        e.push(v);
        inv = inv.arg("-e").arg(e);
    }
    for m in mounts {
        let mut v = m.clone().into_os_string();
        v.push(":");
        v.push(m);
        inv = inv.arg("-v").arg(v);
    }
    inv = inv.arg("-w").arg(workdir).arg(BUILDER_IMAGE).arg(&inner.program);
    for a in &inner.args {
        inv = inv.arg(a);
    }
    inv
}

/// Copy `src` to `dst` atomically through [`pki::atomic`]: a temporary file beside `dst` (removed
/// on any error), fsync, rename, fsync the directory. The copy is 0600, as it always was.
pub fn install_atomically(src: &Path, dst: &Path) -> Result<(), DriverError> {
    let dir = dst.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| DriverError::Io { path: dir.to_path_buf(), source })?;
    let mut input = std::fs::File::open(src).map_err(|source| DriverError::Io { path: src.to_path_buf(), source })?;
    let mut tmp = pki::atomic::AtomicFile::create(dst, 0o644).map_err(|source| DriverError::Io { path: dir.to_path_buf(), source })?;
    std::io::copy(&mut input, &mut tmp).map_err(|source| DriverError::Io { path: tmp.temp_path().to_path_buf(), source })?;
    tmp.commit().map_err(|source| DriverError::Io { path: dst.to_path_buf(), source })
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub layout: Layout,
    pub arch: Arch,
    /// A buildroot checkout of the pinned release; cloned into `out/` when `None`.
    pub buildroot: Option<PathBuf>,
    pub git_url: String,
    pub container: Option<Engine>,
    /// Where the ISO goes (`out/minikube.iso`).
    pub iso: PathBuf,
}

/// Lint the tree, get buildroot, configure and build out of tree, install the ISO.
pub fn build(opts: &BuildOptions) -> Result<PathBuf, DriverError> {
    let layout = &opts.layout;
    let summary = lint::lint(&layout.external())?;
    info!(defconfigs = ?summary.defconfigs, packages = ?summary.packages, "BR2_EXTERNAL tree is clean");
    let buildroot = ensure_checkout(opts.buildroot.as_deref(), layout, &opts.git_url)?;
    for d in [layout.output(opts.arch), layout.dl_dir(), layout.ccache_dir()] {
        std::fs::create_dir_all(&d).map_err(|source| DriverError::Io { path: d.clone(), source })?;
    }
    let defconfig = opts.arch.defconfig();
    let steps = [make_invocation(&buildroot, layout, opts.arch, &[&defconfig]), make_invocation(&buildroot, layout, opts.arch, &[])];
    match opts.container {
        None => {
            for s in &steps {
                s.run()?;
            }
        }
        Some(engine) => {
            builder_image_invocation(engine, &layout.external()).run()?;
            let meta = std::fs::metadata(&layout.repo).map_err(|source| DriverError::Io { path: layout.repo.clone(), source })?;
            let (uid, gid) = owner(&meta);
            let mut mounts = vec![layout.repo.clone(), buildroot.clone()];
            if !layout.out.starts_with(&layout.repo) {
                mounts.push(layout.out.clone());
            }
            let all = mounts.clone();
            mounts.retain(|m| !mounts_cover(&all, m));
            for s in &steps {
                container_invocation(engine, s, &mounts, &layout.repo, uid, gid).run()?;
            }
        }
    }
    let built = layout.built_iso(opts.arch);
    if !built.is_file() {
        return Err(DriverError::MissingImage { path: built });
    }
    install_atomically(&built, &opts.iso)?;
    info!(iso = %opts.iso.display(), "ISO installed");
    Ok(opts.iso.clone())
}

/// True when another mount in `all` already contains `m`.
fn mounts_cover(all: &[PathBuf], m: &Path) -> bool {
    all.iter().any(|o| o != m && m.starts_with(o))
}

#[cfg(unix)]
fn owner(meta: &std::fs::Metadata) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    (meta.uid(), meta.gid())
}
