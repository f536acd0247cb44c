//! The control plane's images, built with [`image::oci`] from the bundle's binaries: each is its
//! binary in `/usr/local/bin` (PATH set, the binary the entrypoint) over the smallest base that
//! works: nothing for the static binaries but `/etc/passwd`, `/etc/group` and `/tmp`;
//! kube-proxy's has iptables, nft and conntrack from Debian's packages, resolved and unpacked by
//! our own code from `bundle/images/kube-proxy.toml`. CoreDNS binds port 53 as the non-root user
//! through a file capability (`cap_net_bind_service+ep`), as upstream's image does. Each carries
//! kubeadm's name for it and labels saying where it was built from, so that nobody takes it for
//! upstream's bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::caps::FileCaps;
use image::oci::{self, BlobStore, Compression, ImageConfig, ImageMeta};
use image::rootfs::{Entry, Tree};
use platform::bundle::{BundleImage, IMAGES_DIR};

use crate::{BundleError, Component, Options};

/// kube-proxy's package spec, in the bundle's source directory.
pub fn proxy_spec(source_dir: &Path) -> PathBuf {
    source_dir.join("images").join("kube-proxy.toml")
}

/// The non-root user the CoreDNS image runs as (distroless' `nonroot`).
pub const NONROOT: u32 = 65532;

/// The minimal base: `/etc/passwd` and `/etc/group` with root and nonroot, `/tmp`.
fn base_tree(epoch: u64) -> Tree {
    let mut t = Tree::new();
    let at = |e: Entry| Entry { mtime: epoch, ..e };
    t.insert("/", at(Entry::dir(0o755)));
    t.insert(
        "/etc/passwd",
        at(Entry::file(format!("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"), 0o644)),
    );
    t.insert("/etc/group", at(Entry::file(format!("root:x:0:\nnonroot:x:{NONROOT}:\n"), 0o644)));
    t.insert("/tmp", at(Entry::dir(0o1777)));
    t.insert("/root", at(Entry::dir(0o700)));
    t.insert("/home/nonroot", at(Entry::dir(0o700).with_owner(NONROOT, NONROOT)));
    t
}

/// The images built, and the Debian packages in kube-proxy's (for the SBOM).
pub struct Images {
    pub images: Vec<BundleImage>,
    pub proxy_packages: Vec<image::assemble::Installed>,
    /// The packages' Debian suite.
    pub suite: String,
}

/// Build every image from the binaries in `staging` into `staging/images/` (`go_version` goes in
/// a label).
pub fn build(o: &Options, go_version: &str, staging: &Path) -> Result<Images, BundleError> {
    let store_dir = o.work_dir.join("blobs");
    let store = BlobStore::open(&store_dir).map_err(|e| BundleError::Image { reference: store_dir.display().to_string(), source: Box::new(e) })?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    // zstd: containerd imports it faster than gzip, which matters in a VM under emulation (the
    // `images` step of a qemu node under TCG: 69 s with zstd-12 against 90 s with gzip-6, one
    // start each, 2026-12-02).
    let compression = Compression::Zstd { level: 12, threads };
    let (proxy_base, proxy_packages, suite) = proxy_packages(o)?;
    let mut out = Vec::new();
    for (c, reference) in o.release.image_references() {
        let err = |e: oci::OciError| BundleError::Image { reference: reference.clone(), source: Box::new(e) };
        let bin_path = staging.join(c.name());
        let bin = std::fs::read(&bin_path).map_err(BundleError::io(&bin_path))?;
        let target = format!("/usr/local/bin/{}", c.name());
        let mut top = if c == Component::KubeProxy { Tree::new() } else { base_tree(o.epoch) };
        top.insert(&target, Entry { mtime: o.epoch, ..Entry::file(bin, 0o755) });
        let mut user = None;
        if c == Component::Coredns {
            let caps: FileCaps = "cap_net_bind_service+ep".parse().expect("a valid capability");
            top.set_xattr(&target, image::caps::XATTR, caps.xattr_value());
            user = Some(format!("{NONROOT}:{NONROOT}"));
        }
        let mut layers = Vec::new();
        if c == Component::KubeProxy {
            layers.push(oci::write_layer(&store, &proxy_base, compression, "kube-proxy's Debian packages (iptables, nftables, conntrack)").map_err(err)?);
        }
        layers.push(
            oci::write_layer(&store, &top, compression, &format!("{} built from {}", c.name(), crate::gobuild::module_version(o, c.module()))).map_err(err)?,
        );

        let (name, tag) = reference.rsplit_once(':').expect("references have a tag");
        let module = crate::gobuild::module_version(o, c.module());
        let labels = BTreeMap::from([
            ("org.opencontainers.image.title".to_string(), c.name().to_string()),
            (
                "org.opencontainers.image.description".to_string(),
                format!("{} built from source by minikube-node's bundle (cargo xtask kubernetes); not the upstream image's bytes", c.name()),
            ),
            ("io.minikube-node.bundle.module".to_string(), module.clone()),
            ("io.minikube-node.bundle.go".to_string(), go_version.to_string()),
        ]);
        let config = ImageConfig {
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            entrypoint: vec![target.clone()],
            labels,
            user,
            ..ImageConfig::linux(o.arch.debian())
        };
        let meta = ImageMeta {
            name: name.to_string(),
            tag: tag.to_string(),
            version: tag.to_string(),
            revision: o.commit.clone(),
            source: format!("https://proxy.golang.org/{}", module.split('@').next().unwrap_or_default()),
            epoch: o.epoch,
        };
        let img = oci::build_image(&store, layers, &config, &meta).map_err(err)?;
        let file = format!("{IMAGES_DIR}/{}.tar", c.name());
        let path = staging.join(&file);
        let summary = oci::write_archive(&img, &path).map_err(err)?;
        out.push(BundleImage {
            reference,
            file,
            sha256: summary.sha256.trim_start_matches("sha256:").to_string(),
            size: summary.size,
            manifest_digest: img.manifest_digest.clone(),
        });
    }
    Ok(Images { images: out, proxy_packages, suite })
}

/// kube-proxy's base: the packages of `bundle/images/kube-proxy.toml` for the bundle's
/// architecture, assembled as every image of ours is; its packages and their suite.
fn proxy_packages(o: &Options) -> Result<(Tree, Vec<image::assemble::Installed>, String), BundleError> {
    let path = proxy_spec(&o.source_dir);
    let wrap = |e: Box<dyn std::error::Error + Send + Sync>| BundleError::Packages { spec: path.clone(), source: e };
    let mut spec = image::spec::Spec::load(&path).map_err(|e| wrap(Box::new(e)))?;
    spec.source.arch = o.arch;
    let a = image::assemble::assemble(&spec, &o.packages).map_err(|e| wrap(Box::new(e)))?;
    let mut tree = a.tree;
    tree.clamp_mtime(o.epoch);
    Ok((tree, a.packages, spec.source.suite))
}
