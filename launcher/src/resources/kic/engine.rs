//! The container engine's client (podman or docker, with its global arguments), where the node
//! image comes from, and loading an archive into the engine once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::archive::{read_for, write_one_image, SavedImage};
use super::KicError;
use crate::model::Driver;

/// The container engine's command line client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engine {
    /// Program, e.g. `podman` or `docker`.
    pub program: String,
    /// Arguments before every subcommand, e.g. `-H unix:///tmp/x/docker.sock`.
    pub global_args: Vec<String>,
}

impl Engine {
    pub fn podman() -> Self {
        Engine { program: "podman".into(), global_args: Vec::new() }
    }
    pub fn docker() -> Self {
        Engine { program: "docker".into(), global_args: Vec::new() }
    }

    /// The container engine of a kic driver (None for qemu). The docker client honours
    /// `DOCKER_HOST`, podman its own configuration.
    pub fn of(driver: Driver) -> Option<Engine> {
        match driver {
            Driver::Qemu => None,
            Driver::Podman => Some(Engine::podman()),
            Driver::Docker => Some(Engine::docker()),
        }
    }

    /// The cgroup version the engine runs containers with (1 or 2), as `info` reports it
    /// (docker: `.CgroupVersion` "1"; podman: `.Host.CgroupsVersion` "v1").
    pub fn cgroup_version(&self) -> Result<u8, KicError> {
        let fmt = if self.is_docker() { "{{.CgroupVersion}}" } else { "{{.Host.CgroupsVersion}}" };
        let out = self.run(&["info".into(), "--format".into(), fmt.into()])?;
        match out.trim().trim_start_matches('v') {
            "1" => Ok(1),
            "2" => Ok(2),
            other => Err(KicError::Command {
                command: render(&self.program, &self.global_args, &["info".into(), "--format".into(), fmt.into()]),
                status: "answered".into(),
                stderr: format!("not a cgroup version: {other:?}"),
            }),
        }
    }

    /// Run `program global_args args`, returning stdout; a non-zero exit is an error carrying
    /// stderr.
    pub fn run(&self, args: &[String]) -> Result<String, KicError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.global_args).args(args);
        tracing::debug!(command = %render(&self.program, &self.global_args, args), "engine");
        let out = cmd.output().map_err(|source| KicError::Spawn { program: self.program.clone(), source })?;
        if !out.status.success() {
            return Err(KicError::Command {
                command: render(&self.program, &self.global_args, args),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// stdout and stderr together (what `logs` prints comes on both).
    pub(crate) fn run_combined(&self, args: &[String]) -> Result<String, KicError> {
        let out = Command::new(&self.program)
            .args(&self.global_args)
            .args(args)
            .output()
            .map_err(|source| KicError::Spawn { program: self.program.clone(), source })?;
        if !out.status.success() {
            return Err(KicError::Command {
                command: render(&self.program, &self.global_args, args),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let mut s = String::from_utf8_lossy(&out.stdout).to_string();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(s)
    }
}

/// Where the node image comes from (`--image`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// An image archive (OCI layout or `docker save` tar) to load into the engine.
    Archive(PathBuf),
    /// An image reference the engine has or can pull.
    Reference(String),
}

impl ImageSource {
    /// An existing file is an archive; so is a path that looks like one (`.tar`, `.tar.gz`,
    /// `.tgz`, or starting with `/`, `./`, `../`), to be reported missing when read; anything
    /// else without whitespace is a reference.
    pub fn parse(s: &str) -> Result<ImageSource, KicError> {
        let looks_like_path = [".tar", ".tar.gz", ".tgz"].iter().any(|x| s.ends_with(x)) || ["/", "./", "../"].iter().any(|p| s.starts_with(p));
        if Path::new(s).is_file() || looks_like_path {
            Ok(ImageSource::Archive(PathBuf::from(s)))
        } else if !s.is_empty() && !s.chars().any(char::is_whitespace) && !s.starts_with('-') {
            Ok(ImageSource::Reference(s.to_string()))
        } else {
            Err(KicError::BadImage(s.to_string()))
        }
    }
}

/// An image ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReady {
    pub reference: String,
    /// Whether this call loaded an archive.
    pub loaded: bool,
}

impl Engine {
    /// The ID (hex, without `sha256:`) of a local image, None when the engine has none of that
    /// name.
    pub fn image_id(&self, reference: &str) -> Result<Option<String>, KicError> {
        match self.run(&["image".into(), "inspect".into(), "--format".into(), "{{.Id}}".into(), reference.into()]) {
            Ok(out) => Ok(out.lines().next().map(|l| l.trim().trim_start_matches("sha256:").to_string()).filter(|s| !s.is_empty())),
            Err(e @ KicError::Spawn { .. }) => Err(e),
            Err(e) => {
                tracing::debug!("{e}");
                Ok(None)
            }
        }
    }

    /// Make the image available: an archive is loaded (`load -i`) unless the engine already
    /// has its name with the archive's ID; a reference is used as it is (`run` pulls it when
    /// missing).
    ///
    /// A multi-architecture archive: podman's `load -i` picks the host's image from the nested
    /// index itself. Docker (20.10, Debian's) reads only the docker-archive `manifest.json` and
    /// would load every architecture's image, each tagged `NAME:TAG-ARCH`: it is given instead,
    /// on `docker load`'s standard input, a docker-archive of the host's image alone (its config
    /// and layer blobs, the others skipped) whose `manifest.json` tags it with the plain
    /// `NAME:TAG`, so nothing of another architecture is loaded and the name is the same as
    /// podman's.
    pub fn ensure_image(&self, src: &ImageSource) -> Result<ImageReady, KicError> {
        let path = match src {
            ImageSource::Reference(r) => return Ok(ImageReady { reference: r.clone(), loaded: false }),
            ImageSource::Archive(p) => p,
        };
        let read = read_for(path, platform::Arch::host())?;
        let meta = read.image;
        let has = |id: Option<String>| id.is_some_and(|id| meta.ids.contains(&id));
        if has(self.image_id(&meta.reference)?) {
            return Ok(ImageReady { reference: meta.reference, loaded: false });
        }
        tracing::info!("loading {} into {}", path.display(), self.program);
        let out = match &read.multi {
            Some(entry) if self.is_docker() => self.load_one(path, entry, &meta.reference)?,
            _ => self.run(&["load".into(), "-i".into(), path.display().to_string()])?,
        };
        let reference = loaded_reference(&out).unwrap_or(meta.reference);
        if !has(self.image_id(&reference)?) {
            tracing::warn!("{} loaded {}, but its ID is not one of the archive's {:?}", self.program, reference, meta.ids);
        }
        Ok(ImageReady { reference, loaded: true })
    }

    /// Whether the program is docker (whose output formats and `load` differ from podman's).
    pub(crate) fn is_docker(&self) -> bool {
        Path::new(&self.program).file_name().is_some_and(|n| n == "docker")
    }

    /// `load` of the one image `entry` of the archive at `path`, named `reference`, streamed on
    /// standard input; returns what `load` printed.
    fn load_one(&self, path: &Path, entry: &SavedImage, reference: &str) -> Result<String, KicError> {
        let args = ["load".to_string()];
        let mut child = Command::new(&self.program)
            .args(&self.global_args)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| KicError::Spawn { program: self.program.clone(), source })?;
        let stdin = child.stdin.take().expect("piped stdin");
        // Dropped at the end of the write (even a failed one): the engine sees the end of input.
        let wrote = write_one_image(path, entry, reference, stdin);
        let out = child.wait_with_output().map_err(|source| KicError::Spawn { program: self.program.clone(), source })?;
        if !out.status.success() {
            return Err(KicError::Command {
                command: format!("{} < (the {reference} image of {})", render(&self.program, &self.global_args, &args), path.display()),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        wrote?;
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }
}

/// The name `load` printed (`Loaded image: X` from docker and podman, `Loaded image(s): X` from
/// older podman).
pub fn loaded_reference(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Loaded image: ").or_else(|| l.trim().strip_prefix("Loaded image(s): ")))
        .and_then(|r| r.split(',').next())
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
}

/// The OCI runtime to ask podman for: `runc` where the host's cgroups are not the unified
/// hierarchy (crun refuses hybrid layouts) and runc is installed; otherwise the engine's
/// default. Docker keeps its own default.
pub fn default_oci_runtime(engine: &Engine) -> Option<String> {
    let podman = Path::new(&engine.program).file_name().is_some_and(|n| n == "podman");
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    (podman && !unified && on_path("runc")).then(|| "runc".to_string())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

fn render(program: &str, global: &[String], args: &[String]) -> String {
    std::iter::once(program).chain(global.iter().map(String::as_str)).chain(args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
}
