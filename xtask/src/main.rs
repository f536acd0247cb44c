//! `cargo xtask`: the project's command line. Thin: it parses arguments, finds the workspace and
//! calls the `image` (and other) libraries, where the logic lives.

mod agent_build;
mod bench_agent;
mod bench_compress;
mod bench_hostile;
mod bench_iso;
mod bench_iso_size;
mod bench_kic;
mod bench_kubernetes;
mod bench_launcher;
mod bench_minikube;
mod bench_stages;
mod buildroot;
mod kicbase;
mod kubernetes;
mod lock;
mod minikube;
mod test_run;
mod verify;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build minikube's node images: ISO, kicbase, agent")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Flavor {
    /// Rootfs from Debian packages, unpacked by our own code (default).
    Debian,
    /// Buildroot with our BR2_EXTERNAL tree (buildroot-external/).
    Buildroot,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum RootArg {
    Squashfs,
    Initramfs,
}

impl From<RootArg> for image::spec::RootMode {
    fn from(r: RootArg) -> Self {
        match r {
            RootArg::Squashfs => image::spec::RootMode::Squashfs,
            RootArg::Initramfs => image::spec::RootMode::Initramfs,
        }
    }
}

#[derive(Parser)]
struct IsoArgs {
    #[arg(long, value_enum, default_value = "debian")]
    flavor: Flavor,
    /// The image spec (Debian flavor; default iso/spec.toml, iso/spec-arm64.toml for arm64).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Output file (default out/minikube.iso, out/minikube-arm64.iso for arm64).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Initramfs compression: gzip, bzip2, xz, zstd or none (default: the spec's).
    #[arg(long)]
    compression: Option<image::compress::Compression>,
    /// Compression level (default: the spec's, else the format's default).
    #[arg(long)]
    level: Option<i32>,
    /// Where the booted root lives: squashfs layers on the medium under a small initramfs, or
    /// everything in the initramfs (the old way; the benchmark's baseline). Default: the spec's.
    #[arg(long, value_enum)]
    root: Option<RootArg>,
    #[command(flatten)]
    common: CommonArgs,
    /// Buildroot flavor: a buildroot checkout of the pinned release.
    #[arg(long, value_name = "DIR")]
    buildroot: Option<PathBuf>,
    /// Buildroot flavor: run make inside a container (podman or docker).
    #[arg(long, value_name = "ENGINE", value_parser = ["podman", "docker"])]
    in_container: Option<String>,
    /// Target architecture: amd64 or arm64 (also x86_64, aarch64). Debian flavor: default amd64;
    /// arm64 is built on any host, nothing of the target runs. Buildroot flavor: default this
    /// machine's.
    #[arg(long)]
    arch: Option<String>,
    /// Where the package layer is cached (default: rootfs/ in the package cache); `cargo xtask
    /// verify` gives an empty directory so that its rebuild makes every layer.
    #[arg(long, value_name = "DIR")]
    layer_cache: Option<PathBuf>,
}

/// The Debian flavor's spec for `arch`.
pub fn default_spec(arch: image::arch::Arch) -> PathBuf {
    match arch {
        image::arch::Arch::X86_64 => "iso/spec.toml".into(),
        image::arch::Arch::Aarch64 => "iso/spec-arm64.toml".into(),
    }
}

/// The ISO's path for `arch`: amd64 keeps minikube's name.
fn default_iso(arch: image::arch::Arch) -> PathBuf {
    match arch {
        image::arch::Arch::X86_64 => "out/minikube.iso".into(),
        other => format!("out/minikube-{}.iso", other.debian()).into(),
    }
}

#[derive(clap::Args, Clone)]
pub struct CommonArgs {
    /// Debian mirror URL (default: read from this machine's apt sources).
    #[arg(long)]
    mirror: Option<String>,
    /// Package cache directory (default: $MINIKUBE_IMAGE_CACHE or ~/.cache/minikube-image).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Parallel downloads.
    #[arg(long, default_value_t = 6)]
    jobs: usize,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the bootable minikube ISO (out/minikube.iso).
    Iso(IsoArgs),
    /// Build the static in-guest agent (minikube-agent) and print its path.
    Agent {
        /// The guest's architecture; arm64 is cross-built on amd64 (`bash scripts/setup.sh`
        /// installs the cross toolchain).
        #[arg(long, default_value = "amd64", value_parser = agent_build::arch_parser())]
        arch: agent_build::Arch,
    },
    /// Build the node container image (out/kicbase.tar), without a daemon.
    Kicbase(kicbase::KicbaseArgs),
    /// Resolve a spec's packages against today's mirror and write its lock file if it has
    /// none, else check it and print what changed (added, removed, upgraded, security).
    Lock(lock::LockArgs),
    /// Build Kubernetes, etcd, CoreDNS, crictl and pause from their Go modules into the
    /// launcher's cache, with the control plane's images (`minikube-node start` preloads them).
    Kubernetes(kubernetes::KubernetesArgs),
    /// Build the real minikube (k8s.io/minikube, v1.38+) and its storage-provisioner image from
    /// the Go module into out/tools/; `--home DIR` fills that MINIKUBE_HOME from the bundle.
    Minikube(minikube::MinikubeArgs),
    /// Check an artifact against the provenance beside it (its digest, the commit, spec and lock
    /// digests, the tool versions), rebuild it into a temporary directory with the same
    /// SOURCE_DATE_EPOCH and compare the bytes.
    Verify(verify::VerifyArgs),
    /// Build syft (the outside SBOM scanner, pinned in bundle/go/syft) into out/tools/syft.
    Syft,
    /// Build the ISO (the end-to-end tests boot it), then run every test of the workspace.
    Test {
        /// Extra arguments for `cargo test`, e.g. `-p image` or `-- name_filter`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks (medians, with ratios against a baseline measured in the same run).
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Cold/warm/rebuild times, sizes per compressor, boot to ready.
    Iso {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Boots to measure (0 to skip).
        #[arg(long, default_value_t = 1)]
        boots: usize,
        /// Skip the cold (empty cache) builds, which download every package again.
        #[arg(long)]
        skip_cold: bool,
        /// Also measure the package layer in each squashfs compressor and erofs (and boot each
        /// squashfs variant `--boots` times).
        #[arg(long)]
        formats: bool,
        /// Compare the ISO of this architecture (arm64) with amd64's, in the same run: warm
        /// build time ratio, sizes, boots to ready.
        #[arg(long, value_parser = agent_build::arch_parser())]
        arch: Option<agent_build::Arch>,
        /// Instead: what the bytes of these ISOs are (per medium file, path class, package and
        /// `[[files.unused]]` entry), no build, no boot.
        #[arg(long, value_name = "ISO", num_args = 1..)]
        contents: Vec<PathBuf>,
        /// Instead: this ISO as the baseline against iso/spec.toml (iso/spec-arm64.toml with
        /// `--arch arm64`) built now (per `--compressors`), sizes and `--boots` boots each,
        /// alternating.
        #[arg(long, value_name = "ISO")]
        against: Option<PathBuf>,
        /// With --against: the squashfs compressors to build and boot (`zstd-15,xz`; default:
        /// the spec's own).
        #[arg(long, value_delimiter = ',', value_parser = bench_iso_size::parse_compressor)]
        compressors: Vec<(image::squashfs::Compressor, Option<i32>)>,
    },
    /// The agent: `info` round trip over mTLS and all provisioning operations, vs plain TCP.
    Agent {
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Instead: the agent binary under N hostile sockets (idle, slow handshake, garbage,
        /// wrong CA) while 20 authenticated clients loop, against N = 0 as the baseline.
        #[arg(long, value_name = "N")]
        hostile: Option<usize>,
        /// Seconds each hostile-load run lasts.
        #[arg(long, default_value_t = 20)]
        secs: u64,
    },
    /// Real clusters from the Kubernetes bundle: kic start -> Ready and restart, N kic nodes ->
    /// all Ready, qemu start -> Ready; bundle sizes and (--build, --cold) build times.
    Kubernetes {
        /// Fresh kic starts (each followed by a restart).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Nodes of the multi-node kic run (1 to skip).
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// qemu starts (0 to skip).
        #[arg(long, default_value_t = 1)]
        qemu: usize,
        /// Also build the bundle into an empty cache (Go's caches as they are).
        #[arg(long)]
        build: bool,
        /// With --build: also with empty Go caches (downloads every module, compiles everything).
        #[arg(long)]
        cold: bool,
    },
    /// The real minikube (out/tools/minikube) against minikube-node, kic on podman and/or a VM
    /// with qemu, same kicbase or ISO and bundle: start -> Ready and restart -> Ready, medians,
    /// ratios, memory.
    Minikube {
        /// Rounds of each (alternating which goes first), per driver.
        #[arg(long, default_value_t = 2)]
        runs: usize,
        /// Which race: kic on podman, a VM with qemu (minikube's qemu2; minutes per start under
        /// TCG), or both.
        #[arg(long, value_enum, default_value = "podman")]
        driver: bench_minikube::Race,
    },
    /// Initramfs compressors on a directory tree (default: a synthetic tree).
    Compress { dir: Option<PathBuf> },
    /// The launcher: boots of out/minikube.iso, median time per provisioning step, then the
    /// same provisioning through the agent and over SSH (minikube's way) on that node, as a ratio.
    Launcher {
        /// Boots to measure (the first formats the data disk).
        #[arg(long, default_value_t = 3)]
        boots: usize,
        /// Rounds of agent-versus-SSH provisioning on the running node (0 to skip).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Size in MiB of the stand-in kubelet both ways copy (BENCH_KUBELET=PATH: a real one).
        #[arg(long, default_value_t = 64)]
        kubelet_mb: usize,
        /// Rounds of the container drivers side by side, podman and docker (0 to skip).
        #[arg(long, default_value_t = 3)]
        kic_runs: usize,
        /// Fresh VMs with each kind of data disk (minikube's magic, ours made on the host),
        /// alternating (0 to skip).
        #[arg(long, default_value_t = 0)]
        disk_runs: usize,
        /// Rounds of boots measured stage by stage, fresh and restarted (0 to skip).
        #[arg(long, default_value_t = 0)]
        stage_runs: usize,
        /// With --stage-runs: an older ISO measured in the same rounds, alternating.
        #[arg(long, value_name = "ISO")]
        baseline_iso: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("cd {}", root.display()))?;
    match cli.cmd {
        Cmd::Iso(a) => iso(a),
        Cmd::Kicbase(a) => kicbase::run(a),
        Cmd::Lock(a) => lock::run(a),
        Cmd::Verify(a) => verify::run(a),
        Cmd::Kubernetes(a) => kubernetes::run(a),
        Cmd::Minikube(a) => minikube::run(a),
        Cmd::Syft => syft(),
        Cmd::Test { args } => test(args),
        Cmd::Bench { what } => match what {
            BenchCmd::Iso { contents, .. } if !contents.is_empty() => bench_iso_size::contents(&contents),
            BenchCmd::Iso { against: Some(old), compressors, boots, arch, .. } => {
                bench_iso_size::against(&old, arch.unwrap_or(image::arch::Arch::X86_64), &compressors, boots)
            }
            BenchCmd::Iso { runs, boots, skip_cold, formats, arch, .. } => bench_iso::run(bench_iso::BenchArgs { runs, boots, skip_cold, formats, arch }),
            BenchCmd::Agent { iterations, hostile: None, .. } => bench_agent::run(iterations),
            BenchCmd::Agent { hostile: Some(n), secs, .. } => bench_hostile::run(n, secs),
            BenchCmd::Compress { dir } => bench_compress::run(dir.as_deref()),
            BenchCmd::Minikube { runs, driver } => bench_minikube::run(runs, driver),
            BenchCmd::Kubernetes { runs, nodes, qemu, build, cold } => bench_kubernetes::run(bench_kubernetes::Args { runs, nodes, qemu, build, cold }),
            BenchCmd::Launcher { boots, rounds, kubelet_mb, kic_runs, disk_runs, stage_runs, baseline_iso } => {
                if stage_runs > 0 {
                    bench_stages::run(stage_runs, bench_launcher::bench_iso()?, baseline_iso)?;
                }
                if boots > 0 {
                    bench_launcher::run(boots, rounds, kubelet_mb)?;
                }
                if disk_runs > 0 {
                    bench_launcher::disks(disk_runs)?;
                }
                if kic_runs > 0 {
                    bench_kic::run(kic_runs)?;
                }
                Ok(())
            }
        },
        Cmd::Agent { arch } => {
            let p = agent_build::build_static_for(arch)?;
            println!("{}", p.display());
            Ok(())
        }
    }
}

fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// SOURCE_DATE_EPOCH, else the time of the last commit (so builds of one commit are identical).
/// There is no fallback: without the variable, git must print the last commit's time.
pub fn source_date_epoch() -> Result<u64> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        let epoch: u64 = v.trim().parse().with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?;
        anyhow::ensure!(epoch <= image::oci::MAX_EPOCH, "SOURCE_DATE_EPOCH={epoch} is past the year 9999 (at most {})", image::oci::MAX_EPOCH);
        return Ok(epoch);
    }
    last_commit_time(&Shell::new()?).context("SOURCE_DATE_EPOCH is not set and the last commit's time could not be read: set SOURCE_DATE_EPOCH")
}

/// `git log -1 --format=%ct` in `sh`'s directory: an error, never epoch 0, when git fails or
/// prints anything but a number.
fn last_commit_time(sh: &Shell) -> Result<u64> {
    let c = cmd!(sh, "git log -1 --format=%ct");
    let shown = c.to_string();
    let text = read(c)?;
    text.parse().with_context(|| format!("`{shown}` printed {text:?}, not a time"))
}

/// The commit /version.json names. The one fallback: where git cannot tell (a source tree outside
/// a git checkout, built with SOURCE_DATE_EPOCH set), "unknown", with a warning saying why.
pub fn git_commit() -> Result<String> {
    commit_id(&Shell::new()?)
}

fn commit_id(sh: &Shell) -> Result<String> {
    let c = cmd!(sh, "git rev-parse --short=12 HEAD");
    let shown = c.to_string();
    match read(c) {
        Ok(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(id),
        Ok(id) => bail!("`{shown}` printed {id:?}, not a commit id"),
        Err(e) => {
            tracing::warn!("{e:#}; /version.json names the commit \"unknown\"");
            Ok("unknown".into())
        }
    }
}

/// Run `c` (not echoed) and return its standard output, trimmed; when it cannot be run or exits
/// non-zero, an error naming the command and what it printed on standard error.
pub fn read(c: xshell::Cmd<'_>) -> Result<String> {
    let shown = c.to_string();
    let o = c.quiet().ignore_status().output().with_context(|| format!("run `{shown}`"))?;
    anyhow::ensure!(o.status.success(), "`{shown}` failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim());
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

pub fn options(common: &CommonArgs) -> Result<image::assemble::Options> {
    let mut o = image::assemble::Options::new(source_date_epoch()?);
    o.mirror = common.mirror.clone();
    if let Some(c) = &common.cache {
        o.cache = fetch::Cache::new(c);
    }
    o.jobs = common.jobs;
    o.commit = git_commit()?;
    Ok(o)
}

fn test(args: Vec<String>) -> Result<()> {
    test_run::preflight()?;
    let iso_args = IsoArgs::parse_from(["iso"]);
    iso(iso_args).context("building out/minikube.iso for the end-to-end tests")?;
    iso(IsoArgs::parse_from(["iso", "--arch", "arm64"])).context("building out/minikube-arm64.iso for the end-to-end tests")?;
    #[derive(Parser)]
    struct K {
        #[command(flatten)]
        k: kicbase::KicbaseArgs,
    }
    // Both architectures in one archive: every kicbase test loads it through the engine's pick
    // of the host's architecture.
    kicbase::run(K::parse_from(["kicbase", "--arch", "amd64,arm64"]).k).context("building out/kicbase.tar (amd64 and arm64) for the end-to-end tests")?;
    // Kubernetes from its Go modules, into the launcher's cache: the real clusters' binaries and
    // images (e2e::kubernetes_bundle finds it there).
    #[derive(Parser)]
    struct B {
        #[command(flatten)]
        b: kubernetes::KubernetesArgs,
    }
    kubernetes::run(B::parse_from(["kubernetes"]).b).context("building the Kubernetes bundle for the end-to-end tests")?;
    // The real minikube and its storage-provisioner image (e2e/tests/minikube_compat.rs).
    #[derive(Parser)]
    struct M {
        #[command(flatten)]
        m: minikube::MinikubeArgs,
    }
    minikube::run(M::parse_from(["minikube"]).m).context("building minikube (out/tools/minikube) for the end-to-end tests")?;
    // The outside scanner the SBOMs are checked with (e2e/tests/outside_sbom.rs).
    syft().context("building syft (out/tools/syft) for the end-to-end tests")?;
    test_run::cargo_test(&args, &std::fs::canonicalize("out/minikube.iso")?, &std::fs::canonicalize("out/minikube-arm64.iso")?)
}

/// `cargo xtask syft`: syft from its pinned module into out/tools/ (`bundle::syft`).
fn syft() -> Result<()> {
    let t = std::time::Instant::now();
    let b = bundle::syft::build(Path::new("bundle"), Path::new("out/tools"))?;
    let s = &b.stamp;
    println!(
        "{} (syft {}, {}, sha256:{}) {} in {:.1?}",
        b.path.display(),
        s.version,
        s.go_version,
        &s.sha256[..16],
        if b.reused { "reused (same key)" } else { "built" },
        t.elapsed()
    );
    Ok(())
}

fn iso(a: IsoArgs) -> Result<()> {
    let arch: Option<image::arch::Arch> = a.arch.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?;
    if a.flavor == Flavor::Buildroot {
        return buildroot::run(buildroot::BuildrootArgs {
            buildroot: a.buildroot,
            in_container: a.in_container,
            arch: a.arch,
            output: a.out.unwrap_or_else(|| default_iso(arch.unwrap_or(image::arch::Arch::X86_64))),
            buildroot_git_url: ::buildroot::driver::DEFAULT_GIT_URL.to_string(),
        });
    }
    if a.buildroot.is_some() || a.in_container.is_some() {
        bail!("--buildroot and --in-container belong to --flavor buildroot");
    }
    let arch = arch.unwrap_or(image::arch::Arch::X86_64);
    let spec_path = a.spec.clone().unwrap_or_else(|| default_spec(arch));
    let out = a.out.clone().unwrap_or_else(|| default_iso(arch));
    let spec = image::spec::Spec::load(&spec_path)?;
    if spec.source.arch != arch {
        bail!("{}: source.arch is {}, but the build is for --arch {}", spec_path.display(), spec.source.arch.debian(), arch.debian());
    }
    let (mut opts, crictl_files) = iso_options(arch, &a.common)?;
    opts.layer_cache = a.layer_cache.clone();
    // --level alone keeps the spec's format.
    let comp = match (a.compression, a.level) {
        (Some(c), level) => Some((c, level)),
        (None, Some(level)) => Some((spec.boot.as_ref().map(|b| b.compression).unwrap_or(image::compress::Compression::Zstd), Some(level))),
        (None, None) => None,
    };
    let t = std::time::Instant::now();
    let r = image::isobuild::build(&spec, &opts, comp, a.root.map(Into::into), &out)?;
    println!("{}", report_line(&out, &r, t.elapsed()));
    let prov = verify::record(&out, "iso", iso_provenance_args(&spec_path, arch, &a), &spec, &crictl_files, &verify::tools(true, &[arch]), opts.epoch)?;
    println!("{}: provenance (in-toto, SLSA v1)", prov.display());
    Ok(())
}

/// What an ISO for `arch` is built with, besides its spec: the package options, the agent and
/// `/init` built for it, and crictl (minikube's bootstrap runs it on the node; Debian 12 has no
/// cri-tools). Also the workspace files crictl is built from, for the provenance.
pub fn iso_options(arch: image::arch::Arch, common: &CommonArgs) -> Result<(image::assemble::Options, Vec<PathBuf>)> {
    let mut opts = options(common)?;
    let bins = agent_build::build_guest_for(arch)?;
    let bin = std::fs::read(&bins.agent).with_context(|| format!("read {}", bins.agent.display()))?;
    opts.extra_files.insert("/usr/bin/minikube-agent".into(), (bin, 0o755));
    opts.init_binary = Some(std::fs::read(&bins.init).with_context(|| format!("read {}", bins.init.display()))?);
    let (crictl, crictl_files) = kubernetes::node_crictl(arch, common)?;
    opts.go_binaries.push(crictl);
    Ok((opts, crictl_files))
}

/// The arguments of `cargo xtask iso` that shape the ISO's bytes, as `cargo xtask verify` gives
/// them again (not the output, caches or mirror).
fn iso_provenance_args(spec: &Path, arch: image::arch::Arch, a: &IsoArgs) -> Vec<String> {
    let mut v = vec!["--spec".to_string(), spec.display().to_string(), "--arch".into(), arch.debian().into()];
    if let Some(r) = a.root {
        v.extend(["--root".into(), r.to_possible_value().expect("no skipped variants").get_name().to_string()]);
    }
    if let Some(c) = a.compression {
        v.extend(["--compression".into(), c.name().to_string()]);
    }
    if let Some(l) = a.level {
        v.extend(["--level".into(), l.to_string()]);
    }
    v
}

/// One line on what `cargo xtask iso` built (tests read the "package layer" part).
pub fn report_line(out: &Path, r: &image::isobuild::IsoBuild, total: std::time::Duration) -> String {
    let root = match r.root {
        image::spec::RootMode::Squashfs => format!(
            "root squashfs: package layer {} MB {} (key {}), local layer {} KB",
            r.base_size / 1_000_000,
            if r.base_reused { "reused" } else { "built" },
            &r.base_key[..12.min(r.base_key.len())],
            r.top_size / 1000
        ),
        image::spec::RootMode::Initramfs => "root in the initramfs".to_string(),
    };
    format!(
        "{}: {} MB (initrd {:.1} MB, rootfs {} MB, {} packages, kernel {}; {root}) in {:.1?} [assemble {:.1?}, compress {:.1?}, iso {:.1?}]",
        out.display(),
        r.size / 1_000_000,
        r.initrd_size as f64 / 1e6,
        r.rootfs_bytes / 1_000_000,
        r.packages.len(),
        r.kernel_version,
        total,
        r.assemble_time,
        r.compress_time,
        r.iso_time
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A shell whose `git` is a script printing `stdout` and exiting with `code`.
    fn fake_git(dir: &Path, stdout: &str, code: i32) -> Shell {
        let git = dir.join("git");
        std::fs::write(&git, format!("#!/bin/sh\nprintf '%s' '{stdout}'\necho 'git says no' >&2\nexit {code}\n")).unwrap();
        std::fs::set_permissions(&git, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A child another test thread forked while this file was open for writing holds it
        // until that child execs: running it then fails with ETXTBSY. Once it has run, no writer
        // is left (ours is closed, and new forks cannot inherit it).
        for _ in 0..200 {
            match std::process::Command::new(&git).output() {
                Err(e) if e.raw_os_error() == Some(26 /* ETXTBSY */) => std::thread::sleep(std::time::Duration::from_millis(10)),
                _ => break,
            }
        }
        let sh = Shell::new().unwrap();
        sh.set_var("PATH", dir);
        sh
    }

    #[test]
    fn commit_time_is_read_from_git() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(last_commit_time(&fake_git(d.path(), "1700000000\n", 0)).unwrap(), 1_700_000_000);
    }

    #[test]
    fn bad_git_output_is_an_error_naming_the_command_and_the_output() {
        let d = tempfile::tempdir().unwrap();
        for out in ["", "soon", "-5"] {
            let e = format!("{:#}", last_commit_time(&fake_git(d.path(), out, 0)).unwrap_err());
            assert!(e.contains("git log -1 --format=%ct") && e.contains(&format!("{out:?}")), "{e}");
        }
        let e = format!("{:#}", last_commit_time(&fake_git(d.path(), "1700000000", 1)).unwrap_err());
        assert!(e.contains("git log -1 --format=%ct") && e.contains("git says no"), "{e}");
    }

    #[test]
    fn outside_a_git_checkout_the_epoch_is_an_error_and_the_commit_unknown() {
        let d = tempfile::tempdir().unwrap();
        let sh = Shell::new().unwrap();
        sh.change_dir(d.path());
        sh.set_var("GIT_CEILING_DIRECTORIES", d.path().parent().unwrap());
        let e = format!("{:#}", last_commit_time(&sh).unwrap_err());
        assert!(e.contains("git log -1 --format=%ct") && e.contains("not a git repository"), "{e}");
        assert_eq!(commit_id(&sh).unwrap(), "unknown");
    }

    #[test]
    fn a_commit_id_that_is_not_hex_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(commit_id(&fake_git(d.path(), "0123456789ab", 0)).unwrap(), "0123456789ab");
        let e = format!("{:#}", commit_id(&fake_git(d.path(), "HEAD", 0)).unwrap_err());
        assert!(e.contains("git rev-parse --short=12 HEAD") && e.contains("\"HEAD\""), "{e}");
    }
}
