//! `cargo xtask bench iso`: build and boot figures for the ISO, as medians over repeated runs,
//! with the old everything-in-RAM root (`--root initramfs`) as the baseline in the same command.
//!
//! - per root mode: warm build, rebuild after one overlay file changed, rebuild after the agent
//!   changed (cold build, empty package cache, unless `--skip-cold`);
//! - sizes: ISO, initrd, root layers;
//! - boots under the accelerator the launcher picks, alternating the two modes: wall time from
//!   qemu start to `minikube-init: root ready` and to `minikube-iso: ready`, and the memory in use
//!   at ready (MemTotal - MemAvailable), in a 4 GiB and a 2 GiB guest;
//! - `--formats`: the package layer written as squashfs with each compressor (and erofs, when
//!   mkfs.erofs is there) on the real tree: size and build time; with `--boots`, each squashfs
//!   compressor is also booted.

use anyhow::{Context, Result};
use image::assemble::Options;
use image::spec::{RootMode, Spec};
use image::squashfs::Compressor;
use platform::stats::median;
use std::path::Path;
use std::time::{Duration, Instant};
use xshell::{cmd, Shell};

pub(crate) fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

pub struct BenchArgs {
    pub runs: usize,
    pub boots: usize,
    pub skip_cold: bool,
    pub formats: bool,
    /// `--arch arm64`: the arm64 ISO against the amd64 one instead of the root modes.
    pub arch: Option<image::arch::Arch>,
}

/// One boot's figures.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Boot {
    root_ready: Option<f64>,
    ready: f64,
    uptime: f64,
    used_mb: f64,
}

pub(crate) fn boot_once(iso: &Path, memory_mb: u32, arch: image::arch::Arch) -> Result<Boot> {
    let d = tempfile::tempdir()?;
    let cfg = launcher::resources::qemu::VmConfig {
        name: "bench".into(),
        arch,
        accel: launcher::resources::qemu::choose_accel_for(arch),
        memory_mb,
        cpus: 2,
        boot: launcher::resources::qemu::BootMedium::Cdrom(iso.to_path_buf()),
        firmware: None,
        kernel: None,
        disks: vec![],
        fw_cfg: vec![],
        hostfwd: vec![],
        cluster_nic: None,
        serial_log: d.path().join("console.log"),
        qmp_socket: d.path().join("qmp.sock"),
        pidfile: d.path().join("pid"),
        daemonize: false,
    };
    let t = Instant::now();
    let mut vm = launcher::resources::qemu::start(cfg)?;
    let mut root_ready = None;
    let line = loop {
        if root_ready.is_none() && launcher::resources::qemu::find_line(&vm.config.serial_log, minikube_init::ROOT_READY_MARKER).is_some() {
            root_ready = Some(t.elapsed().as_secs_f64());
        }
        if let Some(l) = launcher::resources::qemu::find_line(&vm.config.serial_log, "minikube-iso: ready") {
            break l;
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(600), "no ready marker after 600 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let ready = t.elapsed().as_secs_f64();
    vm.shutdown(Duration::from_secs(60))?;
    let num = |key: &str| ready_number(&line, key);
    Ok(Boot { root_ready, ready, uptime: num("uptime").unwrap_or(f64::NAN), used_mb: num("memory used").unwrap_or(f64::NAN) })
}

/// The number after `key` in the ISO's ready line (`minikube-iso: ready (system running, uptime
/// 20.1s, memory used 288 MB)`).
pub(crate) fn ready_number(line: &str, key: &str) -> Option<f64> {
    let i = line.find(key)? + key.len();
    line[i..].trim_start().split(|c: char| !(c.is_ascii_digit() || c == '.')).next()?.parse().ok()
}

pub(crate) fn report_boots(label: &str, b: &[Boot], base: Option<&[Boot]>) {
    let m = |f: fn(&Boot) -> f64, v: &[Boot]| median(v.iter().map(f).collect::<Vec<f64>>());
    let ratio = |f: fn(&Boot) -> f64| base.map(|bb| format!("  ({:.2}x baseline)", m(f, b) / m(f, bb))).unwrap_or_default();
    let rr: Vec<f64> = b.iter().filter_map(|x| x.root_ready).collect();
    println!(
        "  {label:<26} root ready {:>7}  ready {:>6.1}s wall{}  uptime {:>5.1}s  memory used {:>5.0} MB{}",
        if rr.is_empty() { "-".to_string() } else { format!("{:.1}s", median(rr)) },
        m(|x| x.ready, b),
        ratio(|x| x.ready),
        m(|x| x.uptime, b),
        m(|x| x.used_mb, b),
        ratio(|x| x.used_mb),
    );
}

pub fn run(a: BenchArgs) -> Result<()> {
    let runs = a.runs.max(1);
    if let Some(arch) = a.arch.filter(|a| *a != image::arch::Arch::X86_64) {
        return against_amd64(arch, runs, a.boots);
    }
    let spec_path = Path::new("iso/spec.toml");
    let spec = Spec::load(spec_path)?;
    let (opts, _) = crate::iso_options(image::arch::Arch::X86_64, &crate::CommonArgs { mirror: None, cache: None, jobs: 6 })?;
    let agent = opts.extra_files["/usr/bin/minikube-agent"].0.clone();
    let out_dir = tempfile::tempdir()?;

    let build = |opts: &Options, spec: &Spec, root: RootMode, out: &Path| -> Result<(Duration, image::isobuild::IsoBuild)> {
        let t = Instant::now();
        let r = image::isobuild::build(spec, opts, None, Some(root), out)?;
        Ok((t.elapsed(), r))
    };
    // A temp copy of iso/ and overlay/ whose overlay gets edited (the repo is not touched).
    let tmp = tempfile::tempdir()?;
    let copy = tmp.path().join("iso");
    copy_dir(Path::new("iso"), &copy)?;
    copy_dir(Path::new("overlay"), &tmp.path().join("overlay"))?;

    println!("ISO benchmark: {runs} run(s) each, medians; baseline = --root initramfs");
    let mut isos = Vec::new();
    let mut warm_base = None;
    for root in [RootMode::Initramfs, RootMode::Squashfs] {
        let out = out_dir.path().join(format!("{}.iso", root.name()));
        if !a.skip_cold {
            let mut cold = Vec::new();
            for _ in 0..runs {
                let cache = tempfile::tempdir()?;
                let mut o = opts.clone();
                o.cache = fetch::Cache::new(cache.path());
                cold.push(build(&o, &spec, root, &out)?.0);
            }
            println!("[{}] cold build (empty cache)     {:>9}", root.name(), secs(median(cold)));
        }
        // The first build may fill the layer cache; the warm figure is the runs after it.
        let (_, mut last) = build(&opts, &spec, root, &out)?;
        let mut warm = Vec::new();
        for _ in 0..runs {
            let (d, r) = build(&opts, &spec, root, &out)?;
            warm.push(d);
            last = r;
        }
        let mut overlay = Vec::new();
        let mut agent_change = Vec::new();
        for i in 0..runs {
            std::fs::write(copy.join("overlay/etc/bench-edit"), format!("edit {i}\n"))?;
            let s = Spec::load(&copy.join("spec.toml"))?;
            let (d, r) = build(&opts, &s, root, &out_dir.path().join("edit.iso"))?;
            overlay.push(d);
            if root == RootMode::Squashfs {
                anyhow::ensure!(r.base_reused, "an overlay change rebuilt the package layer");
            }
            let mut o = opts.clone();
            let mut changed = agent.clone();
            changed.extend_from_slice(format!("bench {i}").as_bytes());
            o.extra_files.insert("/usr/bin/minikube-agent".into(), (changed, 0o755));
            agent_change.push(build(&o, &spec, root, &out_dir.path().join("edit.iso"))?.0);
        }
        let w = median(warm);
        let base_w = *warm_base.get_or_insert(w);
        println!(
            "[{}] warm build {:>9} ({:.2}x baseline)   rebuild after an overlay change {:>9}   after an agent change {:>9}",
            root.name(),
            secs(w),
            w.as_secs_f64() / base_w.as_secs_f64(),
            secs(median(overlay)),
            secs(median(agent_change))
        );
        println!(
            "[{}] ISO {:.1} MB, initrd {:.1} MB{}, rootfs {} MB in {} packages, kernel {}",
            root.name(),
            last.size as f64 / 1e6,
            last.initrd_size as f64 / 1e6,
            if root == RootMode::Squashfs {
                format!(", package layer {:.1} MB, local layer {:.2} MB", last.base_size as f64 / 1e6, last.top_size as f64 / 1e6)
            } else {
                String::new()
            },
            last.rootfs_bytes / 1_000_000,
            last.packages.len(),
            last.kernel_version
        );
        isos.push((root, out));
    }

    if a.boots > 0 {
        println!(
            "boots ({}), {} each, alternating; wall times from qemu start:",
            launcher::resources::qemu::choose_accel_for(image::arch::Arch::X86_64).name(),
            a.boots
        );
        for mem in [4096u32, 2048] {
            let mut per: Vec<Vec<Boot>> = vec![Vec::new(); isos.len()];
            for _ in 0..a.boots {
                for (i, (_, iso)) in isos.iter().enumerate() {
                    per[i].push(boot_once(iso, mem, image::arch::Arch::X86_64)?);
                }
            }
            for (i, (root, _)) in isos.iter().enumerate() {
                report_boots(&format!("{} {} MiB", root.name(), mem), &per[i], if i == 0 { None } else { Some(&per[0]) });
            }
        }
    }

    if a.formats {
        formats(&spec, &opts, a.boots, runs)?;
    }
    Ok(())
}

/// `--arch ARCH`: ARCH's ISO against amd64's in the same command: cold build time (the package
/// layer made again from cached .debs: no network in the figure) and warm build time, sizes, and boots to ready under the accelerator
/// each gets here, alternating (a foreign architecture is TCG).
fn against_amd64(arch: image::arch::Arch, runs: usize, boots: usize) -> Result<()> {
    use image::arch::Arch;
    let out_dir = tempfile::tempdir()?;
    println!("ISO benchmark: {} against amd64, {runs} cold and {runs} warm build(s) each, medians", arch.debian());
    let mut isos = Vec::new();
    let mut amd64_build = None;
    for a in [Arch::X86_64, arch] {
        let spec = Spec::load(&crate::default_spec(a))?;
        let (opts, _) = crate::iso_options(a, &crate::CommonArgs { mirror: None, cache: None, jobs: 6 })?;
        let out = out_dir.path().join(format!("{}.iso", a.debian()));
        // The first build fetches what is missing; then the package layer is dropped from the
        // cache so the next build makes it again from the cached .debs (cold, no network).
        let mut last = image::isobuild::build(&spec, &opts, None, None, &out)?;
        let layer = opts.cache.root().join("rootfs").join(&last.base_key);
        let mut colds = Vec::new();
        for _ in 0..runs {
            std::fs::remove_dir_all(&layer).with_context(|| format!("drop the cached package layer {}", layer.display()))?;
            let t = Instant::now();
            last = image::isobuild::build(&spec, &opts, None, None, &out)?;
            colds.push(t.elapsed());
        }
        let cold = median(colds);
        let mut warm = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            last = image::isobuild::build(&spec, &opts, None, None, &out)?;
            warm.push(t.elapsed());
        }
        let w = median(warm);
        let (bc, bw) = *amd64_build.get_or_insert((cold, w));
        println!(
            "[{}] cold build {:>9} ({:.2}x amd64), warm build {:>9} ({:.2}x amd64)   ISO {:.1} MB, initrd {:.1} MB, package layer {:.1} MB, {} packages, kernel {}",
            a.debian(),
            secs(cold),
            cold.as_secs_f64() / bc.as_secs_f64(),
            secs(w),
            w.as_secs_f64() / bw.as_secs_f64(),
            last.size as f64 / 1e6,
            last.initrd_size as f64 / 1e6,
            last.base_size as f64 / 1e6,
            last.packages.len(),
            last.kernel_version
        );
        isos.push((a, out));
    }
    if boots > 0 {
        println!("boots, {boots} each, alternating, 2048 MiB; wall times from qemu start:");
        let mut per: Vec<Vec<Boot>> = vec![Vec::new(); isos.len()];
        for _ in 0..boots {
            for (i, (a, iso)) in isos.iter().enumerate() {
                per[i].push(boot_once(iso, 2048, *a)?);
            }
        }
        for (i, (a, _)) in isos.iter().enumerate() {
            let label = format!("{} ({})", a.debian(), launcher::resources::qemu::choose_accel_for(*a).name());
            report_boots(&label, &per[i], if i == 0 { None } else { Some(&per[0]) });
        }
    }
    Ok(())
}

/// The package layer in each format: size, build time (and boots of each squashfs compressor).
fn formats(spec: &Spec, opts: &Options, boots: usize, runs: usize) -> Result<()> {
    let http = fetch::Http::default();
    let index = image::assemble::open_index(spec, opts, &http)?;
    let set = image::assemble::resolve_spec(spec, &index)?;
    let b = image::assemble::assemble_base(spec, opts, &index, &set, &http)?;
    let dir = tempfile::tempdir()?;
    println!("package layer ({} MB of files) per format, build time median of {runs}:", b.tree.content_bytes() / 1_000_000);
    let variants: Vec<(Compressor, Option<i32>)> = vec![
        (Compressor::Gzip, Some(9)),
        (Compressor::Lz4, None),
        (Compressor::Lz4, Some(9)),
        (Compressor::Lzo, None),
        (Compressor::Xz, None),
        (Compressor::Zstd, Some(3)),
        (Compressor::Zstd, Some(15)),
        (Compressor::Zstd, Some(19)),
    ];
    let mut boot_isos = Vec::new();
    for (c, level) in &variants {
        let o = image::squashfs::Options { compressor: *c, level: *level, block_kib: 128, epoch: opts.epoch };
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..runs {
            let t = Instant::now();
            size = image::squashfs::write(&b.tree, &o, &dir.path().join("x.sqfs"))?.size;
            times.push(t.elapsed());
        }
        let name = format!("squashfs {}{}", c.name(), level.map(|l| format!("-{l}")).unwrap_or_default());
        println!("  {name:<20} {:>7.1} MB  {:>8}", size as f64 / 1e6, secs(median(times)));
        if boots > 0 {
            let mut s = spec.clone();
            let bs = s.boot.as_mut().expect("[boot]");
            bs.squashfs.compressor = *c;
            bs.squashfs.level = *level;
            let iso = dir.path().join(format!("{}.iso", name.replace(' ', "-")));
            image::isobuild::build(&s, opts, None, Some(RootMode::Squashfs), &iso)?;
            boot_isos.push((name, iso));
        }
    }
    let sh = Shell::new()?;
    if which(&sh, "mkfs.erofs") {
        // mkfs.erofs 1.5 (Debian 12) reads only a directory: unpack the tree as root to measure.
        let tar = dir.path().join("root.tar");
        let f = std::fs::File::create(&tar)?;
        image::tarstream::write_tree(&b.tree, std::io::BufWriter::new(f), true).map_err(|(p, e)| anyhow::anyhow!("{p}: {e}"))?;
        let unpacked = dir.path().join("root");
        std::fs::create_dir_all(&unpacked)?;
        cmd!(sh, "tar --same-owner --numeric-owner -xpf {tar} -C {unpacked}").quiet().run().context("tar -x for erofs")?;
        for z in ["lz4", "lz4hc"] {
            let img = dir.path().join("x.erofs");
            let t = Instant::now();
            let epoch = opts.epoch.to_string();
            crate::read(cmd!(sh, "mkfs.erofs -z{z} -T {epoch} {img} {unpacked}"))?;
            let d = t.elapsed();
            println!("  erofs {z:<14} {:>7.1} MB  {:>8}  (from an unpacked directory: needs root)", std::fs::metadata(&img)?.len() as f64 / 1e6, secs(d));
        }
    }
    for (name, iso) in boot_isos {
        let v: Vec<Boot> = (0..boots).map(|_| boot_once(&iso, 4096, image::arch::Arch::X86_64)).collect::<Result<_>>()?;
        report_boots(&name, &v, None);
    }
    Ok(())
}

fn which(sh: &Shell, tool: &str) -> bool {
    let script = format!("command -v {tool}");
    cmd!(sh, "sh -c {script}").quiet().output().is_ok()
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let sh = Shell::new()?;
    Ok(cmd!(sh, "cp -a {from} {to}").quiet().run()?)
}
