//! Provenance (`image::provenance`): the statement's shape read back field by field, its digest
//! against the artifact's file, the same bytes for the same inputs; and the checks of
//! `cargo xtask verify` that stop before any rebuild: a tampered artifact, a spec or lock
//! changed since, another commit, another tool version. A real git repository in a temporary
//! directory stands for the workspace.

use image::provenance::check::{self, Comparison, MemberDiff, Now};
use image::provenance::collect;
use image::provenance::{provenance_path, write, write_files, Inputs, ProvenanceError, Source, Statement, PREDICATE_TYPE, STATEMENT_TYPE};
use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A workspace: a spec on a base, its lock, Cargo.lock, committed; `out/` ignored.
fn workspace() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir_all(p.join("iso")).unwrap();
    std::fs::write(p.join("iso/base.toml"), "[source]\nsuite = \"bookworm\"\n").unwrap();
    std::fs::write(p.join("iso/spec.toml"), "base = \"base.toml\"\n\n[image]\nname = \"t\"\n\n[packages]\ninclude = [\"base-passwd\"]\n").unwrap();
    std::fs::write(p.join("iso/spec.lock"), "format = 1\n").unwrap();
    std::fs::write(p.join("Cargo.lock"), "version = 4\n").unwrap();
    std::fs::write(p.join(".gitignore"), "/out\n").unwrap();
    git(p, &["init", "-q", "-b", "main"]);
    git(p, &["add", "-A"]);
    git(p, &["commit", "-q", "-m", "one"]);
    std::fs::create_dir_all(p.join("out")).unwrap();
    std::fs::write(p.join("out/minikube.iso"), b"an artifact's bytes").unwrap();
    d
}

fn inputs(root: &Path) -> Inputs {
    let spec = image::spec::Spec::load(&root.join("iso/spec.toml")).unwrap();
    let files = collect::spec_files(&spec, root);
    Inputs {
        command: "iso".into(),
        args: vec!["--spec".into(), "iso/spec.toml".into(), "--arch".into(), "amd64".into()],
        source: collect::source(root).unwrap(),
        materials: collect::materials(root, &files).unwrap(),
        epoch: 1_700_000_000,
        builder_id: image::provenance::DEFAULT_BUILDER_ID.into(),
        tools: collect::tools(&["rustc"]).unwrap(),
    }
}

fn head(root: &Path) -> String {
    let o = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(root).output().unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn the_statement_reads_back_with_every_field_and_the_artifacts_digest() {
    let ws = workspace();
    let root = ws.path();
    let artifact = root.join("out/minikube.iso");
    let path = write(&artifact, &inputs(root)).unwrap();
    assert_eq!(path, root.join("out/minikube.provenance.json"));
    assert_eq!(provenance_path(&root.join("out/kicbase.tar")), root.join("out/kicbase.provenance.json"));

    // Read back as plain JSON: the field names are the in-toto and SLSA ones.
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v["_type"], STATEMENT_TYPE);
    assert_eq!(v["predicateType"], PREDICATE_TYPE);
    assert_eq!(v["subject"].as_array().unwrap().len(), 1);
    assert_eq!(v["subject"][0]["name"], "minikube.iso");
    let (digest, _) = pki::digest::sha256_file(&artifact).unwrap();
    assert_eq!(v["subject"][0]["digest"]["sha256"], digest.as_str());
    let def = &v["predicate"]["buildDefinition"];
    assert_eq!(def["buildType"], image::provenance::BUILD_TYPE);
    assert_eq!(def["externalParameters"]["command"], "iso");
    assert_eq!(def["externalParameters"]["args"], serde_json::json!(["--spec", "iso/spec.toml", "--arch", "amd64"]));
    assert_eq!(def["internalParameters"]["SOURCE_DATE_EPOCH"], 1_700_000_000);
    let deps = def["resolvedDependencies"].as_array().unwrap();
    assert_eq!(deps[0]["name"], "source");
    assert_eq!(deps[0]["digest"]["gitCommit"], head(root).as_str());
    assert_eq!(deps[0]["annotations"]["dirty"], false, "out/ is ignored, so the tree is clean");
    let names: Vec<&str> = deps[1..].iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Cargo.lock", "iso/base.toml", "iso/spec.lock", "iso/spec.toml"]);
    for d in &deps[1..] {
        let file = root.join(d["name"].as_str().unwrap());
        assert_eq!(d["digest"]["sha256"], pki::digest::sha256_file(&file).unwrap().0.as_str(), "{}", file.display());
    }
    let builder = &v["predicate"]["runDetails"]["builder"];
    assert_eq!(builder["id"], image::provenance::DEFAULT_BUILDER_ID);
    assert!(builder["version"]["rustc"].as_str().unwrap().starts_with("rustc 1."), "{builder}");
    assert!(v["predicate"]["runDetails"].get("metadata").is_none(), "no clock: no startedOn");

    // The typed reader agrees, and the same inputs give the same bytes.
    let s = Statement::read(&path).unwrap();
    assert_eq!(s.subject_sha256("minikube.iso"), Some(digest.as_str()));
    assert_eq!(s.source(), Source::Git { commit: head(root), dirty: false });
    assert_eq!(s.epoch(), 1_700_000_000);
    let first = std::fs::read(&path).unwrap();
    write(&artifact, &inputs(root)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), first);
    assert_eq!(s.to_bytes(), first);

    // A file that is not a statement is refused naming the file and the field.
    let bad = root.join("out/bad.provenance.json");
    std::fs::write(&bad, br#"{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"x"}"#).unwrap();
    let e = Statement::read(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.provenance.json") && e.contains("predicate"), "{e}");
}

#[test]
fn a_dirty_tree_is_recorded() {
    let ws = workspace();
    std::fs::write(ws.path().join("iso/spec.toml"), "# edited\n").unwrap();
    assert_eq!(collect::source(ws.path()).unwrap(), Source::Git { commit: head(ws.path()), dirty: true });
    let outside = tempfile::tempdir().unwrap();
    let o = Command::new("git").args(["rev-parse", "--is-inside-work-tree"]).current_dir(outside.path()).output().unwrap();
    if !o.status.success() {
        assert_eq!(collect::source(outside.path()).unwrap(), Source::Unknown);
    }
}

/// The failure paths of `cargo xtask verify` before it rebuilds: each error names what differs.
#[test]
fn a_tampered_artifact_or_a_changed_input_is_named() {
    let ws = workspace();
    let root = ws.path();
    let artifact = root.join("out/minikube.iso");
    let path = write(&artifact, &inputs(root)).unwrap();
    let s = Statement::read(&path).unwrap();
    let now = || Now::read(root, &s).unwrap();
    check::artifact(&artifact, &s, &path).unwrap();
    assert_eq!(check::inputs(&s, &path, &now()).unwrap(), Vec::<String>::new());

    // One byte of the artifact changed.
    let (recorded, _) = pki::digest::sha256_file(&artifact).unwrap();
    std::fs::write(&artifact, b"an artifact's bytez").unwrap();
    let e = check::artifact(&artifact, &s, &path).unwrap_err();
    assert!(matches!(e, ProvenanceError::DigestMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    let (actual, _) = pki::digest::sha256_file(&artifact).unwrap();
    assert!(msg.contains("SHA-256") && msg.contains(&recorded) && msg.contains(&actual) && msg.contains("minikube.iso"), "{msg}");

    // The lock and the base edited since (not committed): both named, and the dirty tree said.
    std::fs::write(root.join("iso/spec.lock"), "format = 1\n# moved\n").unwrap();
    std::fs::write(root.join("iso/base.toml"), "[source]\nsuite = \"trixie\"\n").unwrap();
    let msg = check::inputs(&s, &path, &now()).unwrap_err().to_string();
    assert!(msg.contains("iso/spec.lock: changed since the build") && msg.contains("iso/base.toml: changed since the build"), "{msg}");
    assert!(!msg.contains("iso/spec.toml") && !msg.contains("commit:"), "{msg}");

    // Committed: the commit differs too.
    let Source::Git { commit: built, .. } = s.source() else { panic!("no commit recorded") };
    git(root, &["commit", "-q", "-am", "two"]);
    let msg = check::inputs(&s, &path, &now()).unwrap_err().to_string();
    assert!(msg.contains(&format!("commit: built from {built}, the tree is at {}", head(root))), "{msg}");

    // A spec file gone, and another compiler.
    std::fs::remove_file(root.join("iso/spec.toml")).unwrap();
    let mut other = now();
    other.tools.insert("rustc".into(), "rustc 0.1.0".into());
    let msg = check::inputs(&s, &path, &other).unwrap_err().to_string();
    assert!(msg.contains("iso/spec.toml: recorded with sha256") && msg.contains("rustc: built with") && msg.contains("rustc 0.1.0"), "{msg}");
}

/// An artifact of several files (the Kubernetes bundle): one subject per file, named relative to
/// the statement's directory; a change to any of them is named, and so is an artifact the
/// statement does not name.
#[test]
fn every_file_of_a_many_file_artifact_is_a_subject() {
    let ws = workspace();
    let root = ws.path();
    let dir = root.join("out/v1");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(root.join("out/tools")).unwrap();
    std::fs::write(dir.join("bundle.json"), b"{}").unwrap();
    std::fs::write(dir.join("images/a.tar"), b"image a").unwrap();
    std::fs::write(root.join("out/tools/crictl"), b"crictl").unwrap();
    let manifest = dir.join("bundle.json");
    let names: Vec<String> = ["bundle.json", "images/a.tar", "../tools/crictl"].map(String::from).to_vec();
    let path = write_files(&manifest, &names, &inputs(root)).unwrap();
    assert_eq!(path, dir.join("bundle.provenance.json"));
    let s = Statement::read(&path).unwrap();
    let got: Vec<String> = s.subjects().into_iter().map(|x| x.name).collect();
    assert_eq!(got, names);
    assert_eq!(s.subject_sha256("images/a.tar"), Some(pki::digest::sha256_hex(b"image a").as_str()));
    assert_eq!(check::artifact(&manifest, &s, &path).unwrap(), pki::digest::sha256_hex(b"{}"));

    // Another file of the artifact changed: named, though the manifest itself is unchanged.
    std::fs::write(root.join("out/tools/crictl"), b"crictl!").unwrap();
    let e = check::artifact(&manifest, &s, &path).unwrap_err().to_string();
    assert!(e.contains("crictl") && e.contains("not the one that was built"), "{e}");

    // A file next to it that the statement does not name.
    std::fs::write(dir.join("other.json"), b"{}").unwrap();
    let e = check::artifact(&dir.join("other.json"), &s, &path).unwrap_err().to_string();
    assert!(e.contains("other.json") && e.contains("not a subject") && e.contains("images/a.tar"), "{e}");

    // An absolute subject name is refused when read.
    let text = std::fs::read_to_string(&path).unwrap().replace("\"images/a.tar\"", "\"/etc/passwd\"");
    std::fs::write(&path, text).unwrap();
    let e = Statement::read(&path).unwrap_err().to_string();
    assert!(e.contains("subject[1]") && e.contains("/etc/passwd"), "{e}");
}

#[test]
fn bytes_are_compared_to_the_first_difference_and_tar_members_named() {
    let d = tempfile::tempdir().unwrap();
    let f = |name: &str, bytes: &[u8]| -> PathBuf {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let mut big = vec![7u8; 3 << 20];
    let a = f("a", &big);
    assert_eq!(check::bytes(&a, &f("b", &big)).unwrap(), Comparison::Equal { size: 3 << 20 });
    big[(2 << 20) + 5] = 8;
    let c = check::bytes(&a, &f("c", &big)).unwrap();
    assert_eq!(c, Comparison::Differ { offset: (2 << 20) + 5, original: 3 << 20, rebuilt: 3 << 20, members: vec![] });
    let c = check::bytes(&a, &f("d", &big[..1000])).unwrap();
    assert!(matches!(c, Comparison::Differ { offset: 1000, rebuilt: 1000, .. }), "{c:?}");

    let tar = |name: &str, members: &[(&str, &[u8])]| -> PathBuf {
        let mut b = tar::Builder::new(Vec::new());
        for (n, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, n, *data).unwrap();
        }
        f(name, &b.into_inner().unwrap())
    };
    let x = tar("x.tar", &[("blobs/sha256/aa", b"layer one"), ("index.json", b"{1}"), ("blobs/sha256/bb", b"layer two")]);
    let y = tar("y.tar", &[("blobs/sha256/aa", b"layer one"), ("index.json", b"{2}"), ("blobs/sha256/cc", b"layer 2")]);
    let Comparison::Differ { members, .. } = check::bytes(&x, &y).unwrap() else { panic!("equal") };
    assert_eq!(
        members,
        [MemberDiff::OnlyInOriginal("blobs/sha256/bb".into()), MemberDiff::Changed("index.json".into()), MemberDiff::OnlyInRebuild("blobs/sha256/cc".into())]
    );
}
