//! Provenance at the command line: `record` after `cargo xtask iso` / `kicbase` / `kubernetes`
//! (the statement beside the artifact), and `cargo xtask verify ARTIFACT`: the artifact against its statement,
//! the statement against the tree now, then a rebuild into a temporary directory (never `out/`)
//! with the same SOURCE_DATE_EPOCH, compared byte for byte. The logic is `image::provenance`.

use anyhow::{bail, Context, Result};
use image::provenance::{self, check, collect};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The artifact (out/minikube.iso, out/minikube-arm64.iso, out/kicbase.tar, a Kubernetes
    /// bundle's bundle.json, ...); its provenance is read from beside it
    /// (out/minikube.provenance.json, bundle.provenance.json).
    artifact: PathBuf,
    /// Keep the rebuild's directory (printed) instead of removing it.
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    common: crate::CommonArgs,
}

/// Write the provenance of `artifact`, built by `cargo xtask COMMAND ARGS` from `spec` and the
/// workspace's `more` files (the ISO's crictl module) with `tools`, beside it.
pub fn record(artifact: &Path, command: &str, args: Vec<String>, spec: &image::spec::Spec, more: &[PathBuf], tools: &[&str], epoch: u64) -> Result<PathBuf> {
    let root = std::env::current_dir()?;
    let name = artifact.file_name().context("the artifact has no file name")?.to_string_lossy().into_owned();
    let mut files = collect::spec_files(spec, &root);
    files.extend(more.iter().cloned());
    record_files(artifact, &[name], command, args, &collect::relative(&root, &files), tools, epoch)
}

/// Write the provenance of an artifact of several files (`names`, relative to `artifact`'s
/// directory), built by `cargo xtask COMMAND ARGS` from the workspace's `files` with `tools`,
/// beside `artifact`.
pub fn record_files(artifact: &Path, names: &[String], command: &str, args: Vec<String>, files: &[PathBuf], tools: &[&str], epoch: u64) -> Result<PathBuf> {
    let root = std::env::current_dir()?;
    let inputs = provenance::Inputs {
        command: command.into(),
        args,
        source: collect::source(&root)?,
        materials: collect::materials(&root, files)?,
        epoch,
        builder_id: collect::builder_id(),
        tools: collect::tools(tools)?,
    };
    Ok(provenance::write_files(artifact, names, &inputs)?)
}

/// The tools whose versions the provenance of a node image for `arches` records: Rust's, Go's
/// (both images hold crictl), the ISO's and the arm64 linker.
pub fn tools(iso: bool, arches: &[platform::Arch]) -> Vec<&'static str> {
    let mut t: Vec<&str> = collect::RUST_TOOLS.to_vec();
    t.push(collect::GO);
    if iso {
        t.extend(collect::ISO_TOOLS);
    }
    if arches.contains(&platform::Arch::Aarch64) {
        t.push(collect::ARM64_LINKER);
    }
    t
}

pub fn run(a: VerifyArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let prov = provenance::provenance_path(&a.artifact);
    let s = provenance::Statement::read(&prov)?;
    let sha = check::artifact(&a.artifact, &s, &prov)?;
    println!("{}: sha256 {sha}, as {} records", a.artifact.display(), prov.display());
    let now = check::Now::read(&std::env::current_dir()?, &s)?;
    for w in check::inputs(&s, &prov, &now)? {
        println!("warning: {w}");
    }
    let ext = &s.predicate.build_definition.external_parameters;
    println!(
        "inputs unchanged: {}, {} file(s), {} tool version(s); rebuilding `cargo xtask {} {}` with SOURCE_DATE_EPOCH={}",
        match s.source() {
            provenance::Source::Git { commit, .. } => format!("commit {commit}"),
            provenance::Source::Unknown => "no commit".into(),
        },
        s.materials().len(),
        s.predicate.run_details.builder.version.len(),
        ext.command,
        ext.args.join(" "),
        s.epoch()
    );

    // The rebuild goes beside cargo's build products, never into out/; every cache of built
    // parts (the ISO's package layer, kicbase's layers) starts empty, downloads are reused.
    let scratch = crate::agent_build::target_dir()?.join("verify");
    std::fs::create_dir_all(&scratch).with_context(|| scratch.display().to_string())?;
    let tmp = tempfile::Builder::new().prefix(pki::atomic::TEMP_PREFIX).tempdir_in(&scratch).with_context(|| scratch.display().to_string())?;
    let name = a.artifact.file_name().context("the artifact has no file name")?;
    let mut args: Vec<String> = vec![ext.command.clone()];
    args.extend(ext.args.iter().cloned());
    let path = |p: PathBuf| p.display().to_string();
    let rebuilt = match ext.command.as_str() {
        command @ ("iso" | "kicbase") => {
            let rebuilt = tmp.path().join(name);
            // An empty cache of built layers: the ISO's package layer, kicbase's layers.
            let (flag, dir) = if command == "iso" { ("--layer-cache", "layers") } else { ("--work-dir", "work") };
            args.extend(["--out".into(), path(rebuilt.clone()), flag.into(), path(tmp.path().join(dir))]);
            rebuilt
        }
        "kubernetes" => {
            // An empty cache and work directory (Go's own caches are reused, as downloads are).
            let m: platform::bundle::BundleManifest =
                serde_json::from_slice(&std::fs::read(&a.artifact)?).with_context(|| format!("{}: not a bundle manifest", a.artifact.display()))?;
            let cache = tmp.path().join("cache");
            args.extend(["--cache-dir".into(), path(cache.clone()), "--work-dir".into(), path(tmp.path().join("work"))]);
            platform::bundle::manifest_path(&cache, m.arch, &m.kubernetes_version)
        }
        other => bail!("{}: externalParameters.command {other:?}: verify rebuilds iso, kicbase and kubernetes", prov.display()),
    };
    if let Some(m) = &a.common.mirror {
        args.extend(["--mirror".into(), m.clone()]);
    }
    if let Some(c) = &a.common.cache {
        args.extend(["--cache".into(), c.display().to_string()]);
    }
    args.extend(["--jobs".into(), a.common.jobs.to_string()]);
    let exe = std::env::current_exe()?;
    let t = std::time::Instant::now();
    let status = std::process::Command::new(&exe)
        .args(&args)
        .env("SOURCE_DATE_EPOCH", s.epoch().to_string())
        .stdout(std::process::Stdio::inherit())
        .status()
        .with_context(|| format!("run {} {}", exe.display(), args.join(" ")))?;
    anyhow::ensure!(status.success(), "the rebuild `cargo xtask {}` failed ({status})", args.join(" "));
    let build_time = t.elapsed();

    // Every file the statement names, the original's beside the artifact, the rebuild's beside
    // the rebuilt one.
    let (dir, rebuilt_dir) = (a.artifact.parent().unwrap_or(Path::new(".")), rebuilt.parent().unwrap_or(Path::new(".")));
    let names = layer_names(&a.artifact, &rebuilt);
    let mut total = 0;
    let mut msg = String::new();
    for subject in s.subjects() {
        match check::bytes(&dir.join(&subject.name), &rebuilt_dir.join(&subject.name))? {
            check::Comparison::Equal { size } => total += size,
            check::Comparison::Differ { offset, original, rebuilt: size, members } => {
                msg.push_str(&format!("\n{}: the rebuild differs from byte {offset} on (sizes {original} and {size})", dir.join(&subject.name).display()));
                for m in &members {
                    let (what, n) = match m {
                        check::MemberDiff::OnlyInOriginal(n) => ("only in the original", n),
                        check::MemberDiff::OnlyInRebuild(n) => ("only in the rebuild", n),
                        check::MemberDiff::Changed(n) => ("changed", n),
                    };
                    let layer = names.get(n.as_str()).map(|l| format!(" ({l})")).unwrap_or_default();
                    msg.push_str(&format!("\n  {n}{layer}: {what}"));
                }
            }
        }
    }
    // Kept, the directory stays where it is (same paths); else it is removed on return.
    let kept = if a.keep { Some(tmp.keep()) } else { None };
    if !msg.is_empty() {
        if let Some(k) = kept {
            msg.push_str(&format!("\nrebuild kept in {}", k.display()));
        }
        bail!("{}: the rebuild is not the same bytes:{msg}", a.artifact.display())
    }
    println!(
        "{}: the rebuild is byte for byte the same ({} file(s), {total} bytes, sha256 {sha}); rebuilt in {build_time:.1?}, verified in {:.1?}",
        a.artifact.display(),
        s.subjects().len(),
        started.elapsed()
    );
    // Same inputs, same bytes: the rebuild's statement is the original's too.
    match std::fs::read(provenance::provenance_path(&rebuilt)) {
        Ok(b) if b == std::fs::read(&prov)? => println!("{}: the rebuild's provenance is the same bytes", prov.display()),
        Ok(_) => println!("warning: the rebuild's provenance differs from {} (a dirty tree?)", prov.display()),
        Err(e) => println!("warning: the rebuild wrote no provenance: {e}"),
    }
    if let Some(k) = kept {
        println!("rebuild kept in {}", k.display());
    }
    Ok(())
}

/// kicbase's blobs by their layer names, from the `layers.json` summaries beside the original
/// and the rebuild: `blobs/sha256/HEX` -> `amd64 layer NAME`.
fn layer_names(original: &Path, rebuilt: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for archive in [original, rebuilt] {
        for arch in platform::Arch::ALL {
            let summary = image::kicbase::side_file(archive, arch, "layers.json");
            let Some(v) = std::fs::read(&summary).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()) else { continue };
            for l in v["layers"].as_array().into_iter().flatten() {
                if let (Some(d), Some(n)) = (l["digest"].as_str(), l["name"].as_str()) {
                    out.insert(format!("blobs/sha256/{}", d.trim_start_matches("sha256:")), format!("{} layer {n}", arch.debian()));
                }
            }
        }
    }
    out
}
