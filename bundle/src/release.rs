//! Which versions go together: a Kubernetes patch release and the etcd, CoreDNS, crictl and pause
//! that its kubeadm expects (`kubeadm config images list`; cmd/kubeadm/app/constants).

use crate::BundleError;

/// The Kubernetes version `cargo xtask kubernetes` and `minikube-node start` use by default (its
/// module in `bundle/go/kubernetes` is committed with its go.sum).
pub const DEFAULT_VERSION: &str = platform::bundle::DEFAULT_KUBERNETES_VERSION;

/// A Kubernetes release and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `v1.34.4`.
    pub kubernetes: String,
    pub minor: u32,
    pub patch: u32,
    /// The etcd module version (`v3.6.5`) and kubeadm's image tag for it (`3.6.5-0`).
    pub etcd: &'static str,
    pub etcd_tag: &'static str,
    /// `v1.12.1`.
    pub coredns: &'static str,
    /// cri-tools follows Kubernetes' minor versions: `v1.34.0`.
    pub crictl: &'static str,
    /// kubeadm's pause tag: `3.10.1`.
    pub pause: &'static str,
}

/// The minor versions this bundle knows the companions of.
const MINORS: &[(u32, &str, &str, &str, &str, &str)] = &[
    // minor, etcd, etcd image tag, CoreDNS, crictl, pause (kubeadm 1.34's constants)
    (34, "v3.6.5", "3.6.5-0", "v1.12.1", "v1.34.0", "3.10.1"),
];

impl Release {
    /// The release of `version` (`v1.34.N`): refused unless it is a plain `v1.MINOR.PATCH` of a
    /// minor version listed here.
    pub fn of(version: &str) -> Result<Release, BundleError> {
        let bad = |reason: String| BundleError::Version { version: version.to_string(), reason };
        let parts: Vec<&str> = version.strip_prefix('v').unwrap_or("").split('.').collect();
        let nums: Vec<u32> = parts.iter().filter_map(|p| if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) { None } else { p.parse().ok() }).collect();
        if parts.len() != 3 || nums.len() != 3 || nums[0] != 1 {
            return Err(bad("expected a Kubernetes release like v1.34.4 (v1.MINOR.PATCH, no pre-release)".into()));
        }
        let supported = MINORS.iter().map(|m| format!("v1.{}.x", m.0)).collect::<Vec<_>>().join(", ");
        let &(minor, etcd, etcd_tag, coredns, crictl, pause) = MINORS
            .iter()
            .find(|m| m.0 == nums[1])
            .ok_or_else(|| bad(format!("minor version 1.{} is not one this bundle knows the etcd, CoreDNS and pause versions of ({supported})", nums[1])))?;
        Ok(Release { kubernetes: version.to_string(), minor, patch: nums[2], etcd, etcd_tag, coredns, crictl, pause })
    }

    /// The image references `kubeadm config images list` prints for this version.
    pub fn image_references(&self) -> Vec<(crate::Component, String)> {
        use crate::Component::*;
        [KubeApiserver, KubeControllerManager, KubeScheduler, KubeProxy, Etcd, Coredns, Pause]
            .into_iter()
            .map(|c| (c, self.image_reference(c).unwrap_or_default()))
            .collect()
    }

    /// The reference of `c`'s image, if it has one.
    pub fn image_reference(&self, c: crate::Component) -> Option<String> {
        use crate::Component::*;
        const REGISTRY: &str = "registry.k8s.io";
        Some(match c {
            KubeApiserver | KubeControllerManager | KubeScheduler | KubeProxy => format!("{REGISTRY}/{}:{}", c.name(), self.kubernetes),
            Etcd => format!("{REGISTRY}/etcd:{}", self.etcd_tag),
            Coredns => format!("{REGISTRY}/coredns/coredns:{}", self.coredns),
            Pause => format!("{REGISTRY}/pause:{}", self.pause),
            Kubelet | Kubeadm | Kubectl | Crictl => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_release_has_kubeadms_images() {
        let r = Release::of(DEFAULT_VERSION).unwrap();
        let refs: Vec<String> = r.image_references().into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            refs,
            [
                "registry.k8s.io/kube-apiserver:v1.34.4",
                "registry.k8s.io/kube-controller-manager:v1.34.4",
                "registry.k8s.io/kube-scheduler:v1.34.4",
                "registry.k8s.io/kube-proxy:v1.34.4",
                "registry.k8s.io/etcd:3.6.5-0",
                "registry.k8s.io/coredns/coredns:v1.12.1",
                "registry.k8s.io/pause:3.10.1",
            ]
        );
    }

    #[test]
    fn bad_versions_are_refused_with_the_reason() {
        for (v, why) in
            [("1.34.4", "v1.MINOR.PATCH"), ("v1.34", "v1.MINOR.PATCH"), ("v1.34.0-rc.1", "v1.MINOR.PATCH"), ("v2.0.0", "v1.MINOR.PATCH"), ("v1.29.3", "1.29")]
        {
            let e = Release::of(v).unwrap_err().to_string();
            assert!(e.contains(v) && e.contains(why), "{v}: {e}");
        }
    }
}
