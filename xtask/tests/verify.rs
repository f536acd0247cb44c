//! `cargo xtask verify ARTIFACT`'s failure paths, through the command: a tampered artifact is an
//! error naming the digest mismatch, a spec changed since the build an error naming the file;
//! both stop before any rebuild (seconds), and nothing is written beside the artifact.

use image::provenance::{collect, write, Inputs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The provenance the ISO build would write for this tree, for `artifact`.
fn inputs() -> Inputs {
    let root = workspace();
    let spec = image::spec::Spec::load(&root.join("iso/spec.toml")).unwrap();
    let files = collect::spec_files(&spec, &root);
    Inputs {
        command: "iso".into(),
        args: vec!["--spec".into(), "iso/spec.toml".into(), "--arch".into(), "amd64".into()],
        source: collect::source(&root).unwrap(),
        materials: collect::materials(&root, &files).unwrap(),
        epoch: 1_700_000_000,
        builder_id: collect::builder_id(),
        tools: collect::tools(&["rustc"]).unwrap(),
    }
}

/// `cargo xtask verify ARTIFACT`: it must fail; its stderr, and how long it took.
fn verify_fails(artifact: &Path) -> (String, Duration) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask")).arg("verify").arg(artifact).current_dir(workspace()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "verify passed:\n{}\n{stderr}", String::from_utf8_lossy(&out.stdout));
    (stderr, t.elapsed())
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn a_tampered_artifact_is_a_digest_mismatch() {
    let d = tempfile::tempdir().unwrap();
    let iso = d.path().join("minikube.iso");
    std::fs::write(&iso, b"the bytes that were built").unwrap();
    write(&iso, &inputs()).unwrap();
    let recorded = pki::digest::sha256_file(&iso).unwrap().0;
    std::fs::write(&iso, b"the bytes that were built, and more").unwrap();
    let actual = pki::digest::sha256_file(&iso).unwrap().0;
    let (e, took) = verify_fails(&iso);
    assert!(e.contains(&format!("{}: its SHA-256 is {actual}, but its provenance", iso.display())), "{e}");
    assert!(e.contains(&format!("records {recorded}: the artifact is not the one that was built")), "{e}");
    assert!(took < Duration::from_secs(30), "{took:?}: it went on to rebuild?");
    assert_eq!(listing(d.path()), ["minikube.iso", "minikube.provenance.json"]);
}

#[test]
fn a_spec_changed_since_the_build_is_named() {
    let d = tempfile::tempdir().unwrap();
    let iso = d.path().join("minikube.iso");
    std::fs::write(&iso, b"the bytes that were built").unwrap();
    // As if iso/spec.toml had other bytes when the ISO was built.
    let mut i = inputs();
    let then = "0".repeat(64);
    i.materials.iter_mut().find(|m| m.path == "iso/spec.toml").unwrap().sha256 = then.clone();
    write(&iso, &i).unwrap();
    let (e, took) = verify_fails(&iso);
    let now = pki::digest::sha256_file(&workspace().join("iso/spec.toml")).unwrap().0;
    assert!(e.contains("does not match the tree as it is now"), "{e}");
    assert!(e.contains(&format!("iso/spec.toml: changed since the build (sha256 {then} then, {now} now)")), "{e}");
    assert!(!e.contains("iso/base.toml") && !e.contains("iso/spec.lock") && !e.contains("commit:"), "only the spec differs: {e}");
    assert!(took < Duration::from_secs(30), "{took:?}: it went on to rebuild?");
    assert_eq!(listing(d.path()), ["minikube.iso", "minikube.provenance.json"]);
}
