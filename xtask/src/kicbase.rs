//! `cargo xtask kicbase`: the node-in-a-container image (out/kicbase.tar), without a daemon.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::PathBuf;

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
    /// Use this agent binary instead of building the static one.
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

pub fn run(a: KicbaseArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let spec = image::spec::Spec::load(&a.spec)?;
    let mut opts = crate::options(&a.common)?;
    let agent = match &a.agent {
        Some(p) => p.clone(),
        None => crate::agent_build::build_static()?,
    };
    let bin = std::fs::read(&agent).with_context(|| format!("read the agent binary {}", agent.display()))?;
    opts.extra_files.insert("/usr/bin/minikube-agent".into(), (bin, 0o755));
    let reference = a.tag.clone().unwrap_or_else(|| format!("kicbase:v{}", opts.version));
    let (name, tag) = reference
        .rsplit_once(':')
        .filter(|(n, _)| !n.is_empty() && !n.ends_with('/'))
        .with_context(|| format!("--tag {reference:?}: expected NAME:TAG"))?;
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
    let stem = a.out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "kicbase".into());
    let summary_path = a.out.with_file_name(format!("{stem}.layers.json"));
    let before = previous_layers(&summary_path);

    let b = image::kicbase::build(&spec, &opts, &k)?;

    let layers: Vec<serde_json::Value> = b
        .image
        .layers
        .iter()
        .zip(&b.layer_names)
        .map(|(l, n)| serde_json::json!({"name": n, "digest": l.digest, "size": l.size, "tar_size": l.tar_size, "entries": l.entries}))
        .collect();
    let doc = serde_json::json!({
        "reference": b.image.meta.reference(),
        "manifest_digest": b.image.manifest_digest,
        "config_digest": b.image.config_digest,
        "archive_sha256": b.archive.sha256,
        "layers": layers,
    });
    pki::atomic::write_atomic(&summary_path, &serde_json::to_vec_pretty(&doc)?, 0o644).with_context(|| summary_path.display().to_string())?;

    let compressed: u64 = b.image.layers.iter().map(|l| l.size).sum();
    let tar_bytes: u64 = b.image.layers.iter().map(|l| l.tar_size).sum();
    for (l, n) in b.image.layers.iter().zip(&b.layer_names) {
        println!("  layer {n:9} {:>6.1} MB compressed, {:>6.1} MB tar, {:>6} entries  {}", l.size as f64 / 1e6, l.tar_size as f64 / 1e6, l.entries, l.digest);
    }
    if !before.is_empty() {
        let new: Vec<_> = b.image.layers.iter().zip(&b.layer_names).filter(|(l, _)| !before.contains(&l.digest)).collect();
        let bytes: u64 = new.iter().map(|(l, _)| l.size).sum();
        println!(
            "re-shipped since the previous build: {bytes} bytes ({:.2} MB) in {} layer(s) [{}] + config and manifest",
            bytes as f64 / 1e6,
            new.len(),
            new.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    println!(
        "{}: {} ({:.1} MB archive, {:.1} MB compressed layers, {:.1} MB layer tars, {:.1} MB file content, {} packages) manifest {} in {:.1?} [assemble {:.1?}, layers {:.1?} ({} cached), archive {:.1?}]",
        a.out.display(),
        b.image.meta.reference(),
        b.archive.size as f64 / 1e6,
        compressed as f64 / 1e6,
        tar_bytes as f64 / 1e6,
        b.unpacked_bytes as f64 / 1e6,
        b.packages.len(),
        b.image.manifest_digest,
        started.elapsed(),
        b.assemble_time,
        b.layers_time,
        b.cached_layers.iter().filter(|c| **c).count(),
        b.archive_time,
    );
    println!("package list {}, SBOM (CycloneDX 1.5) {}", b.package_list.display(), b.sbom.display());
    Ok(())
}
