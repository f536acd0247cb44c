//! `cargo xtask bench iso`: build and boot figures for the ISO, as medians over repeated runs,
//! with ratios against a baseline measured in the same command.
//!
//! - cold build (empty package cache, so every .deb is downloaded) and warm build (cache full);
//!   ratio warm/cold;
//! - rebuild after one overlay file changed; ratio rebuild/warm;
//! - initramfs size and compression time per compressor on the real rootfs; baseline gzip;
//! - boot to `minikube-iso: ready` under the accelerator the launcher picks.

use anyhow::{Context, Result};
use image::assemble::Options;
use image::compress::Compression;
use image::spec::Spec;
use std::path::Path;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

pub fn run(runs: usize, boots: usize, skip_cold: bool) -> Result<()> {
    let runs = runs.max(1);
    let spec_path = Path::new("iso/spec.toml");
    let spec = Spec::load(spec_path)?;
    let base = crate::options(&crate::CommonArgs { mirror: None, cache: None, jobs: 6 })?;
    let agent = crate::agent_build::build_static()?;
    let mut opts = base.clone();
    opts.extra_files.insert("/usr/bin/minikube-agent".into(), (std::fs::read(&agent)?, 0o755));
    let out_dir = tempfile::tempdir()?;
    let out = out_dir.path().join("bench.iso");

    let build = |opts: &Options, spec: &Spec| -> Result<(Duration, image::isobuild::IsoBuild)> {
        let t = Instant::now();
        let r = image::isobuild::build(spec, opts, None, None, &out)?;
        Ok((t.elapsed(), r))
    };

    println!("ISO benchmark: {runs} run(s) each, medians");
    let mut cold = Vec::new();
    if !skip_cold {
        for _ in 0..runs {
            let cache = tempfile::tempdir()?;
            let mut o = opts.clone();
            o.cache = image::fetch::Cache::new(cache.path());
            cold.push(build(&o, &spec)?.0);
        }
    }
    let mut warm = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let (d, r) = build(&opts, &spec)?;
        warm.push(d);
        last = Some(r);
    }
    let last = last.unwrap();
    // Rebuild after an overlay change: the spec in a temp copy of the repo's iso/ with one
    // overlay file edited (the repo itself is not touched).
    let tmp = tempfile::tempdir()?;
    let copy = tmp.path().join("iso");
    copy_dir(Path::new("iso"), &copy)?;
    copy_dir(Path::new("overlay"), &tmp.path().join("overlay"))?;
    let mut rebuild = Vec::new();
    for i in 0..runs {
        std::fs::write(copy.join("overlay/etc/bench-edit"), format!("edit {i}\n"))?;
        let s = Spec::load(&copy.join("spec.toml"))?;
        rebuild.push(build(&opts, &s)?.0);
    }
    let w = median(warm.clone());
    if !cold.is_empty() {
        let c = median(cold);
        println!("cold build (empty cache)   {:>9}", secs(c));
        println!("warm build                 {:>9}   warm/cold = {:.2}", secs(w), w.as_secs_f64() / c.as_secs_f64());
    } else {
        println!("warm build                 {:>9}", secs(w));
    }
    let r = median(rebuild);
    println!("rebuild, 1 overlay change  {:>9}   rebuild/warm = {:.2}", secs(r), r.as_secs_f64() / w.as_secs_f64());
    println!(
        "ISO size {} MB, initrd {} MB, rootfs {} MB in {} packages, kernel {}",
        last.size / 1_000_000,
        last.initrd_size / 1_000_000,
        last.rootfs_bytes / 1_000_000,
        last.packages.len(),
        last.kernel_version
    );

    // Compressors on the same rootfs.
    let a = image::assemble::assemble(&spec, &opts)?;
    println!("initramfs of the {} MB rootfs per compressor (baseline gzip):", a.tree.content_bytes() / 1_000_000);
    let mut base_t = None;
    let mut base_s = None;
    for c in [Compression::Gzip, Compression::Zstd, Compression::Xz, Compression::Bzip2] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..runs {
            let t = Instant::now();
            size = image::compress::initrd(&a.tree, c, None, 0)?.len();
            times.push(t.elapsed());
        }
        let m = median(times);
        let (bt, bs) = (*base_t.get_or_insert(m), *base_s.get_or_insert(size));
        println!(
            "  {:<6} {:>5} MB  {:>8}   size/gzip = {:.2}  time/gzip = {:.2}",
            c.name(),
            size / 1_000_000,
            secs(m),
            size as f64 / bs as f64,
            m.as_secs_f64() / bt.as_secs_f64()
        );
    }

    if boots > 0 {
        std::fs::create_dir_all("out")?;
        let iso = Path::new("out/bench.iso");
        image::isobuild::build(&spec, &opts, None, None, iso)?;
        let accel = launcher::qemu::choose_accel();
        let mut times = Vec::new();
        for _ in 0..boots {
            let d = tempfile::tempdir()?;
            let cfg = launcher::qemu::VmConfig {
                name: "bench".into(),
                accel,
                memory_mb: 2048,
                cpus: 2,
                boot: launcher::qemu::BootMedium::Cdrom(iso.to_path_buf()),
                firmware: None,
                disks: vec![],
                fw_cfg: vec![],
                hostfwd: vec![],
                serial_log: d.path().join("console.log"),
                qmp_socket: d.path().join("qmp.sock"),
                pidfile: d.path().join("pid"),
                daemonize: false,
            };
            let t = Instant::now();
            let mut vm = launcher::qemu::start(cfg)?;
            vm.wait_for_console("minikube-iso: ready", Duration::from_secs(600))?;
            times.push(t.elapsed());
            vm.shutdown(Duration::from_secs(60))?;
        }
        let _ = std::fs::remove_file(iso);
        println!("boot to ready ({}): {} (median of {boots})", accel.name(), secs(median(times)));
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let st = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().context("cp -a")?;
    anyhow::ensure!(st.success(), "cp -a {} {} failed", from.display(), to.display());
    Ok(())
}
