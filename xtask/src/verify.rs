//! Provenance at the command line: `record` after `cargo xtask iso` / `kicbase` (the statement
//! beside the artifact), and `cargo xtask verify ARTIFACT`: the artifact against its statement,
//! the statement against the tree now, then a rebuild into a temporary directory (never `out/`)
//! with the same SOURCE_DATE_EPOCH, compared byte for byte. The logic is `image::provenance`.

use anyhow::{bail, Context, Result};
use image::provenance::{self, check, collect};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The artifact (out/minikube.iso, out/minikube-arm64.iso, out/kicbase.tar, ...); its
    /// provenance is read from beside it (out/minikube.provenance.json).
    artifact: PathBuf,
    /// Keep the rebuild's directory (printed) instead of removing it.
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    common: crate::CommonArgs,
}

/// Write the provenance of `artifact`, built by `cargo xtask COMMAND ARGS` from `spec` with
/// `tools`, beside it.
pub fn record(artifact: &Path, command: &str, args: Vec<String>, spec: &image::spec::Spec, tools: &[&str], epoch: u64) -> Result<PathBuf> {
    let root = std::env::current_dir()?;
    let files = collect::spec_files(spec, &root);
    let inputs = provenance::Inputs {
        command: command.into(),
        args,
        source: collect::source(&root)?,
        materials: collect::materials(&root, &files)?,
        epoch,
        builder_id: collect::builder_id(),
        tools: collect::tools(tools)?,
    };
    Ok(provenance::write(artifact, &inputs)?)
}

/// The tools whose versions the provenance of an artifact for `arches` records.
pub fn tools(iso: bool, arches: &[platform::Arch]) -> Vec<&'static str> {
    let mut t: Vec<&str> = collect::RUST_TOOLS.to_vec();
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
    let rebuilt = tmp.path().join(name);
    let mut args: Vec<String> = vec![ext.command.clone()];
    args.extend(ext.args.iter().cloned());
    args.extend(["--out".into(), rebuilt.display().to_string()]);
    match ext.command.as_str() {
        "iso" => args.extend(["--layer-cache".into(), tmp.path().join("layers").display().to_string()]),
        "kicbase" => args.extend(["--work-dir".into(), tmp.path().join("work").display().to_string()]),
        other => bail!("{}: externalParameters.command {other:?}: verify rebuilds iso and kicbase only", prov.display()),
    }
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

    let result = check::bytes(&a.artifact, &rebuilt)?;
    let names = layer_names(&a.artifact, &rebuilt);
    // Kept, the directory stays where it is (same paths); else it is removed on return.
    let kept = if a.keep { Some(tmp.keep()) } else { None };
    match result {
        check::Comparison::Equal { size } => {
            println!(
                "{}: the rebuild is byte for byte the same ({size} bytes, sha256 {sha}); rebuilt in {build_time:.1?}, verified in {:.1?}",
                a.artifact.display(),
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
        check::Comparison::Differ { offset, original, rebuilt: size, members } => {
            let mut msg = format!("{}: the rebuild differs from byte {offset} on (sizes {original} and {size})", a.artifact.display());
            for m in &members {
                let (what, n) = match m {
                    check::MemberDiff::OnlyInOriginal(n) => ("only in the original", n),
                    check::MemberDiff::OnlyInRebuild(n) => ("only in the rebuild", n),
                    check::MemberDiff::Changed(n) => ("changed", n),
                };
                let layer = names.get(n.as_str()).map(|l| format!(" ({l})")).unwrap_or_default();
                msg.push_str(&format!("\n  {n}{layer}: {what}"));
            }
            if let Some(k) = kept {
                msg.push_str(&format!("\nrebuild kept in {}", k.display()));
            }
            bail!(msg)
        }
    }
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
