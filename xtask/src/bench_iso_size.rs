//! The ISO's size against its boot time:
//!
//! - `cargo xtask bench iso --contents ISO...`: what the bytes of each ISO are (`image::contents`:
//!   the medium's files, and the package layer per class, per package, per `[[files.unused]]`
//!   entry of iso/spec.toml, compressed sizes estimated as squashfs stores them);
//! - `cargo xtask bench iso --against OLD.iso [--compressors zstd-15,xz] --boots N`: the current
//!   spec's ISO built with each squashfs compressor (default: the spec's own), its size, and N
//!   boots of each, alternating with OLD.iso (the baseline, in the same run): wall time from qemu
//!   start to `minikube-init: root ready` and to the agent's `minikube-iso: ready`, medians.

use anyhow::{Context, Result};
use image::spec::{RootMode, Spec};
use image::squashfs::Compressor;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

pub fn contents(isos: &[PathBuf]) -> Result<()> {
    let spec = Spec::load(Path::new("iso/spec.toml"))?;
    let sq = spec.boot.as_ref().map(|b| b.squashfs).context("iso/spec.toml has no [boot]")?;
    let level = if sq.compressor == Compressor::Zstd { sq.level.unwrap_or(15) } else { 15 };
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    for iso in isos {
        let t = Instant::now();
        let r =
            image::contents::measure(iso, &spec.files.unused, level, sq.block_kib as usize, jobs).with_context(|| format!("measuring {}", iso.display()))?;
        println!("== {}: {:.1} MB (measured in {})", iso.display(), mb(r.medium_total), crate::bench_iso::secs(t.elapsed()));
        let medium: Vec<String> = r.medium.iter().map(|(p, s)| format!("{p} {:.2} MB", mb(*s))).collect();
        println!("medium: {}", medium.join(", "));
        println!(
            "package layer: {} distinct files, {:.1} MB raw, {:.1} MB estimated packed (zstd-{level}, {} KiB blocks one by one; squashfs also packs small files' tails together); identical copies: {} files, {:.1} MB raw, stored once",
            r.layer.files,
            mb(r.layer.raw),
            mb(r.layer.packed),
            sq.block_kib,
            r.duplicates.files,
            mb(r.duplicates.raw)
        );
        let row = |name: &str, b: &image::contents::Bytes| {
            println!(
                "  {name:<40} {:>6} files {:>8.1} MB raw {:>7.1} MB packed {:>5.1}%",
                b.files,
                mb(b.raw),
                mb(b.packed),
                100.0 * b.packed as f64 / r.layer.packed.max(1) as f64
            )
        };
        println!("by path class (packed, largest first):");
        for (c, b) in &r.by_class {
            row(c, b);
        }
        println!("by package, the 30 largest (packed):");
        for (p, b) in r.by_package.iter().take(30) {
            row(p, b);
        }
        let rest = r.by_package.iter().skip(30).fold(image::contents::Bytes::default(), |mut a, (_, b)| {
            a.files += b.files;
            a.raw += b.raw;
            a.packed += b.packed;
            a
        });
        row(&format!("the other {} packages", r.by_package.len().saturating_sub(30)), &rest);
        println!("what iso/spec.toml's [[files.unused]] entries match here:");
        for (paths, b) in &r.unused {
            row(paths, b);
        }
    }
    Ok(())
}

/// `zstd-15`, `xz`, `gzip-9`: a squashfs compressor with its optional level.
pub fn parse_compressor(s: &str) -> Result<(Compressor, Option<i32>), String> {
    let (name, level) = match s.split_once('-') {
        Some((n, l)) => (n, Some(l.parse::<i32>().map_err(|_| format!("{s:?}: the level after '-' must be a number"))?)),
        None => (s, None),
    };
    Ok((name.parse()?, level))
}

pub fn against(old: &Path, arch: image::arch::Arch, compressors: &[(Compressor, Option<i32>)], boots: usize) -> Result<()> {
    anyhow::ensure!(old.is_file(), "--against {}: no such ISO", old.display());
    let spec_path = crate::default_spec(arch);
    let spec = Spec::load(&spec_path)?;
    let own = spec.boot.as_ref().map(|b| (b.squashfs.compressor, b.squashfs.level)).with_context(|| format!("{} has no [boot]", spec_path.display()))?;
    let variants = if compressors.is_empty() { vec![own] } else { compressors.to_vec() };
    let (opts, _) = crate::iso_options(arch, &crate::CommonArgs { mirror: None, cache: None, jobs: 6 })?;
    let dir = tempfile::tempdir()?;
    let name = |(c, l): (Compressor, Option<i32>)| format!("{}{}", c.name(), l.map(|l| format!("-{l}")).unwrap_or_default());
    println!("ISO size and boot: baseline {} ({:.1} MB) against {} built now", old.display(), mb(std::fs::metadata(old)?.len()), spec_path.display());
    let mut isos = vec![("baseline".to_string(), old.to_path_buf())];
    for v in variants {
        let mut s = spec.clone();
        let b = s.boot.as_mut().expect("[boot]");
        (b.squashfs.compressor, b.squashfs.level) = v;
        let out = dir.path().join(format!("{}.iso", name(v)));
        let t = Instant::now();
        let r = image::isobuild::build(&s, &opts, None, Some(RootMode::Squashfs), &out)?;
        println!(
            "[{}] ISO {:.1} MB ({:.3}x baseline), package layer {:.1} MB, {} packages; built in {} ({})",
            name(v),
            mb(r.size),
            r.size as f64 / std::fs::metadata(old)?.len() as f64,
            mb(r.base_size),
            r.packages.len(),
            crate::bench_iso::secs(t.elapsed()),
            if r.base_reused { "package layer from the cache" } else { "package layer made" }
        );
        isos.push((name(v), out));
    }
    if boots > 0 {
        println!(
            "boots ({}), {boots} each, alternating, 2048 MiB; wall times from qemu start, medians:",
            launcher::resources::qemu::choose_accel_for(arch).name()
        );
        let mut per = vec![Vec::new(); isos.len()];
        for _ in 0..boots {
            for (i, (_, iso)) in isos.iter().enumerate() {
                per[i].push(crate::bench_iso::boot_once(iso, 2048, arch)?);
            }
        }
        for (i, (label, _)) in isos.iter().enumerate() {
            crate::bench_iso::report_boots(label, &per[i], if i == 0 { None } else { Some(&per[0]) });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressor_names_with_and_without_level() {
        assert_eq!(parse_compressor("zstd-15").unwrap(), (Compressor::Zstd, Some(15)));
        assert_eq!(parse_compressor("xz").unwrap(), (Compressor::Xz, None));
        assert!(parse_compressor("zstd-x").unwrap_err().contains("number"));
        assert!(parse_compressor("brotli").unwrap_err().contains("brotli"));
    }
}
