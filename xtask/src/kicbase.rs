//! `cargo xtask kicbase`: the node-in-a-container image (out/kicbase.tar), without a daemon, for
//! one architecture or several (`--arch amd64,arm64`: one archive with a nested image index).

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use crate::agent_build::Arch;

#[derive(clap::Args)]
pub struct KicbaseArgs {
    /// The image spec.
    #[arg(long, default_value = "kicbase/spec.toml")]
    spec: PathBuf,
    /// Output archive (an OCI layout that is also a docker-archive).
    #[arg(long, short, default_value = "out/kicbase.tar")]
    out: PathBuf,
    /// Image reference NAME:TAG (default: kicbase:vVERSION).
    #[arg(long)]
    tag: Option<String>,
    /// Layer compression: gzip or zstd.
    #[arg(long, default_value = "gzip")]
    compression: String,
    /// Compression level (default: gzip 6, zstd 3).
    #[arg(long)]
    level: Option<i32>,
    /// Blob store and layer cache kept between builds (default: kicbase/ in cargo's target
    /// directory, which CARGO_TARGET_DIR moves).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The architectures, a comma list: amd64, arm64 or amd64,arm64 (one archive whose index
    /// lists both; each engine loads its host's). arm64's agent is cross-built.
    #[arg(long, default_value = "amd64", value_delimiter = ',', value_parser = crate::agent_build::arch_parser())]
    arch: Vec<Arch>,
    /// Use this agent binary instead of building the static one (one architecture only).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// `org.opencontainers.image.source`.
    #[arg(long, default_value = "https://github.com/kubernetes/minikube")]
    source_url: String,
    #[command(flatten)]
    common: crate::CommonArgs,
}

fn compression(name: &str, level: Option<i32>) -> Result<image::oci::Compression> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    Ok(match name {
        "gzip" => {
            let level = level.unwrap_or(6);
            if !(0..=9).contains(&level) {
                bail!("--level {level}: gzip levels are 0..=9");
            }
            image::oci::Compression::Gzip { level: level as u32, threads }
        }
        "zstd" => image::oci::Compression::Zstd { level: level.unwrap_or(3), threads },
        other => bail!("--compression {other:?}: expected gzip or zstd"),
    })
}

/// Layer digests and sizes of the previous build (from `<stem>.layers.json`).
fn previous_layers(path: &std::path::Path) -> BTreeSet<String> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["layers"].as_array().map(|a| a.iter().filter_map(|l| l["digest"].as_str().map(String::from)).collect()))
        .unwrap_or_default()
}

/// Each architecture's static agent (`--agent` stands for the one architecture's) and crictl.
/// Also the workspace files crictl is built from, for the provenance.
fn targets(a: &KicbaseArgs) -> Result<(Vec<image::kicbase::ArchTarget>, Vec<PathBuf>)> {
    if a.agent.is_some() && a.arch.len() != 1 {
        bail!("--agent is one binary: give one --arch with it");
    }
    let mut out = Vec::new();
    let mut files = Vec::new();
    for &arch in &a.arch {
        let agent = match &a.agent {
            Some(p) => p.clone(),
            None => crate::agent_build::build_guest_for(arch)?.agent,
        };
        let bin = std::fs::read(&agent).with_context(|| format!("read the agent binary {}", agent.display()))?;
        let extra_files = BTreeMap::from([("/usr/bin/minikube-agent".to_string(), (bin, 0o755))]);
        // crictl, which minikube's bootstrap runs on the node (Debian 12 has no cri-tools).
        let (crictl, crictl_files) = crate::kubernetes::node_crictl(arch, &a.common)?;
        files = crictl_files;
        out.push(image::kicbase::ArchTarget { arch, extra_files, go_binaries: vec![crictl] });
    }
    Ok((out, files))
}

pub fn run(a: KicbaseArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let spec = image::spec::Spec::load(&a.spec)?;
    let opts = crate::options(&a.common)?;
    let (targets, crictl_files) = targets(&a)?;
    let reference = a.tag.clone().unwrap_or_else(|| format!("kicbase:v{}", opts.version));
    let (name, tag) =
        reference.rsplit_once(':').filter(|(n, _)| !n.is_empty() && !n.ends_with('/')).with_context(|| format!("--tag {reference:?}: expected NAME:TAG"))?;
    let k = image::kicbase::KicbaseOptions {
        name: name.to_string(),
        tag: tag.to_string(),
        source_url: a.source_url.clone(),
        compression: compression(&a.compression, a.level)?,
        work_dir: match &a.work_dir {
            Some(d) => d.clone(),
            None => crate::agent_build::target_dir()?.join("kicbase"),
        },
        out: a.out.clone(),
    };
    // Each architecture's layers of the previous build, read before this one rewrites them.
    let before: HashMap<Arch, BTreeSet<String>> =
        a.arch.iter().map(|&arch| (arch, previous_layers(&image::kicbase::side_file(&a.out, arch, "layers.json")))).collect();

    let b = image::kicbase::build(&spec, &opts, &k, &targets)?;

    for ab in &b.arches {
        let summary_path = image::kicbase::side_file(&a.out, ab.arch, "layers.json");
        report_arch(&b, ab, &summary_path, &before[&ab.arch])?;
    }
    let names: Vec<&str> = b.arches.iter().map(|ab| ab.arch.debian()).collect();
    let prov = image::provenance::provenance_path(&a.out);
    if a.agent.is_some() {
        // An agent binary from elsewhere: no statement can say what built it (an older one
        // would name other bytes).
        let _ = std::fs::remove_file(&prov);
        tracing::warn!("--agent: no provenance for {} (its agent was not built from this tree)", a.out.display());
    } else {
        let p =
            crate::verify::record(&a.out, "kicbase", provenance_args(&a, &reference), &spec, &crictl_files, &crate::verify::tools(false, &a.arch), opts.epoch)?;
        println!("{}: provenance (in-toto, SLSA v1)", p.display());
    }
    println!(
        "{}: {} [{}] ({:.1} MB archive, {} {}) in {:.1?} [archive {:.1?}]",
        a.out.display(),
        b.arches[0].image.meta.reference(),
        names.join(", "),
        b.archive.size as f64 / 1e6,
        if b.arches.len() == 1 { "manifest" } else { "index" },
        b.archive.manifest_digest,
        started.elapsed(),
        b.archive_time,
    );
    Ok(())
}

/// The arguments of `cargo xtask kicbase` that shape the archive's bytes, as `cargo xtask
/// verify` gives them again (not the output, work directory, caches or mirror).
fn provenance_args(a: &KicbaseArgs, reference: &str) -> Vec<String> {
    let arches: Vec<&str> = a.arch.iter().map(|x| x.debian()).collect();
    let mut v = vec!["--spec".to_string(), a.spec.display().to_string(), "--arch".into(), arches.join(","), "--tag".into(), reference.into()];
    v.extend(["--compression".into(), a.compression.clone()]);
    if let Some(l) = a.level {
        v.extend(["--level".into(), l.to_string()]);
    }
    v.extend(["--source-url".into(), a.source_url.clone()]);
    v
}

/// One architecture: its `<stem>[-ARCH].layers.json` summary and its lines of output.
fn report_arch(b: &image::kicbase::Build, ab: &image::kicbase::ArchBuild, summary_path: &std::path::Path, before: &BTreeSet<String>) -> Result<()> {
    let arch = ab.arch.debian();
    let layers: Vec<serde_json::Value> = ab
        .image
        .layers
        .iter()
        .zip(&b.layer_names)
        .map(|(l, n)| serde_json::json!({"name": n, "digest": l.digest, "size": l.size, "tar_size": l.tar_size, "entries": l.entries}))
        .collect();
    let doc = serde_json::json!({
        "reference": ab.image.meta.reference(),
        "manifest_digest": ab.image.manifest_digest,
        "config_digest": ab.image.config_digest,
        "archive_sha256": b.archive.sha256,
        "layers": layers,
    });
    pki::atomic::write_atomic(summary_path, &serde_json::to_vec_pretty(&doc)?, 0o644).with_context(|| summary_path.display().to_string())?;

    let compressed: u64 = ab.image.layers.iter().map(|l| l.size).sum();
    let tar_bytes: u64 = ab.image.layers.iter().map(|l| l.tar_size).sum();
    for (l, n) in ab.image.layers.iter().zip(&b.layer_names) {
        println!(
            "  {arch} layer {n:9} {:>6.1} MB compressed, {:>6.1} MB tar, {:>6} entries  {}",
            l.size as f64 / 1e6,
            l.tar_size as f64 / 1e6,
            l.entries,
            l.digest
        );
    }
    if !before.is_empty() {
        let new: Vec<_> = ab.image.layers.iter().zip(&b.layer_names).filter(|(l, _)| !before.contains(&l.digest)).collect();
        let bytes: u64 = new.iter().map(|(l, _)| l.size).sum();
        println!(
            "{arch}: re-shipped since the previous build: {bytes} bytes ({:.2} MB) in {} layer(s) [{}] + config and manifest",
            bytes as f64 / 1e6,
            new.len(),
            new.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    println!(
        "{arch}: {:.1} MB compressed layers, {:.1} MB layer tars, {:.1} MB file content, {} packages, manifest {} [assemble {:.1?}, layers {:.1?} ({} cached)]",
        compressed as f64 / 1e6,
        tar_bytes as f64 / 1e6,
        ab.unpacked_bytes as f64 / 1e6,
        ab.packages.len(),
        ab.image.manifest_digest,
        ab.assemble_time,
        ab.layers_time,
        ab.cached_layers.iter().filter(|c| **c).count(),
    );
    println!("{arch}: package list {}, SBOM (CycloneDX 1.5) {}, layers {}", ab.package_list.display(), ab.sbom.display(), summary_path.display());
    Ok(())
}
