//! `start`: create or reuse the machine, boot it, wait for the agent, then provision through the
//! agent — hostname, certificates, container runtime, kubelet — and write the kubeconfig. Only
//! the first part depends on the driver: qemu (state, certificates, data disk; boot from the
//! ISO) or kic (state, certificates; image; container), each ending with a connected agent. Every
//! step reports once with its duration ([`Reporter`]); a second `start` on a running machine
//! repeats the idempotent calls and the agent answers `changed: false`.

pub mod bootstrap;
pub mod preload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent_api::api::Runtime;
use agent_api::client::{Client, ClientError};

use crate::driver::{self, DriverError, Up};
use crate::model::MachineState;
use crate::options::StartOptions;
use crate::report::Reporter;
use crate::resources::certs;
use crate::resources::kubelet::{self, KubeletSource};
use crate::resources::node_doc::Binary;
use crate::resources::state::{Home, MachineDir, StateError};
use crate::retry::{with_retry, StepError};

/// What can stop `start` after the driver's part.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Bootstrap(#[from] bootstrap::BootstrapError),
    #[error("certificates: {0}")]
    Certs(#[from] certs::CertError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("runtime {0} is not supported by `start` (docker or containerd)")]
    Runtime(&'static str),
    #[error("node {node} joins the control plane {control_plane}, which cannot be reached: {reason} (start the cluster's first node)")]
    ControlPlane { node: String, control_plane: String, reason: String },
}

/// The whole `start` flow: the driver's part (machine, boot, where the agent answers), then
/// the same provisioning through the agent for every driver.
pub fn start(home: &Home, opts: &StartOptions, rep: &mut Reporter) -> Result<MachineState, StartError> {
    if !matches!(opts.runtime, Runtime::Docker | Runtime::Containerd) {
        return Err(StartError::Runtime(opts.runtime.name()));
    }
    let total = Instant::now();
    let m = home.machine(&opts.name)?;
    // One `start` per profile at a time; the lock dies with the process.
    let _lock = m.lock(home)?;
    if m.exists() {
        driver::check_same(&opts.name, m.load()?.driver, opts.driver)?;
    }
    let up = driver::node(&m, opts.driver).up(home, opts, rep)?;
    let state = provision(home, &m, up, opts.kubernetes_timeout, rep)?;
    rep.done(total.elapsed(), &m.kubeconfig());
    Ok(state)
}

/// The steps every driver shares, through the agent: hostname, certificates, container runtime,
/// kubelet — each the node document's section, so each answers `changed: false` in
/// milliseconds when the boot step applied the document — then the kubeconfig on the host.
fn provision(home: &Home, m: &MachineDir, up: Up, kubernetes_timeout: Duration, rep: &mut Reporter) -> Result<MachineState, StartError> {
    let Up { state, cas, pc, kubelet, kubernetes, sections, mut client } = up;

    // document: the boot step, which the agent answers beside, and what it did with the node
    // document (a change asked for before its end would wait for it anyway).
    let t = Instant::now();
    let detail = with_retry("document", 5, || driver::agent::wait_boot_step(&mut client, driver::agent::BOOT_STEP_TIMEOUT))?;
    rep.step("document", t, false, detail);

    // network: a VM's cluster NIC (a boot that refused its document left it unconfigured).
    if let Some(req) = &sections.network {
        let t = Instant::now();
        let c = with_retry("network", 5, || client.network(req))?;
        rep.step("network", t, c.changed, req.address.clone());
    }

    // hostname
    let t = Instant::now();
    let c = with_retry("hostname", 5, || client.set_hostname(&sections.hostname))?;
    rep.step("hostname", t, c.changed, state.name.clone());

    // certs, with the small files (sa.pub, the SSH key for docker)
    let t = Instant::now();
    let c = with_retry("certs", 5, || client.certs(&sections.certs))?;
    let mut changed = c.changed;
    for f in &sections.files {
        let up = f.upload();
        changed |= with_retry("certs", 5, || client.upload_file(&up, &mut f.content.as_bytes(), f.content.len() as u64))?.changed;
    }
    rep.step("certs", t, changed, format!("{} files into {}, SSH key for docker", sections.certs.files.len() + 1, certs::GUEST_CERTS_DIR));

    // runtime
    let t = Instant::now();
    let r = with_retry("runtime", 5, || client.runtime(&sections.runtime))?;
    rep.step("runtime", t, r.changed, format!("{} {}", state.runtime.name(), r.version.lines().next().unwrap_or_default()));

    // kubelet: the agent keeps binaries by SHA-256 and answers before the body is sent when it
    // has this one.
    let t = Instant::now();
    match (&kubelet, &sections.kubelet) {
        (Some(k), Some(req)) => {
            let up = upload(&mut client, &state, "kubelet", &k.bin, "kubelet")?;
            let r = with_retry("kubelet", 5, || client.kubelet(req))?;
            let what = match &k.src {
                KubeletSource::TestDouble(_) => format!("{} (test double, as asked)", kubelet::TEST_DOUBLE_NAME),
                other => other.path().display().to_string(),
            };
            let binary = if up { "binary uploaded" } else { "binary present" };
            rep.step("kubelet", t, up || r.changed, format!("{} {what}, {binary}: {}", state.kubernetes_version, r.state));
        }
        _ => rep.step("kubelet", t, false, "none (--no-kubernetes)"),
    }

    // Kubernetes: kubeadm init (once) on the first node, join (once) on the others; CNI; Ready;
    // admin.conf as the kubeconfig.
    if let Some(parts) = &kubernetes {
        let t = Instant::now();
        let mut uploaded = Vec::new();
        for (name, bin) in &parts.binaries {
            if upload(&mut client, &state, "binaries", bin, name)? {
                uploaded.push(*name);
            }
        }
        let detail = if uploaded.is_empty() { "kubeadm, kubectl, crictl present".to_string() } else { format!("uploaded {}", uploaded.join(", ")) };
        rep.step("binaries", t, !uploaded.is_empty(), format!("{} {detail}", state.kubernetes_version));
        if let Some(bundle) = &parts.bundle {
            preload::run(&|| driver::agent::connect(&state, &pc), &state, bundle, rep)?;
        }
        let cluster = crate::topology::cluster_of(&state).to_string();
        let node = bootstrap::Node {
            cluster_name: &cluster,
            node_name: &state.name,
            node_ip: &state.node_ip,
            kubernetes_version: &state.kubernetes_version,
            runtime: state.runtime,
        };
        let pod_range = crate::topology::pod_range(crate::topology::node_index(&cluster, &state.name).unwrap_or(1));
        let api = |port: u16| bootstrap::Api {
            url: format!("https://127.0.0.1:{port}"),
            ca_pem: &pc.cluster_ca.cert_pem,
            cert_pem: &pc.client.cert_pem,
            key_pem: &pc.client.key_pem,
        };
        if state.cluster.is_none() {
            let b = bootstrap::Bootstrap { node, api: api(state.ports.apiserver), pod_range, kubeconfig: &m.kubeconfig(), timeout: kubernetes_timeout };
            bootstrap::run(&mut client, &b, rep)?;
        } else {
            let unreachable = |reason: String| StartError::ControlPlane { node: state.name.clone(), control_plane: cluster.clone(), reason };
            let cp = home.machine(&cluster)?;
            let (mut cp_client, cp_state) = driver::agent::connect_existing_with(home, &cp).map_err(|e| unreachable(e.to_string()))?;
            let der = pki::certs_from_pem(pc.cluster_ca.cert_pem.as_bytes(), "the cluster CA").map_err(certs::CertError::from)?;
            let ca_pin = pki::public_key_pin(&der[0]).map_err(certs::CertError::from)?;
            let j = bootstrap::join::Join { node, control_plane: &cluster, ca_pin, pod_range, api: api(cp_state.ports.apiserver), timeout: kubernetes_timeout };
            bootstrap::join::run(&mut cp_client, &mut client, &j, rep)?;
        }
        return Ok(state);
    }

    // kubeconfig
    let t = Instant::now();
    let text = crate::resources::kubeconfig::render(
        &state.name,
        &format!("https://127.0.0.1:{}", state.ports.apiserver),
        &cas.cluster_ca_path(),
        &m.certs_dir().join("client.crt"),
        &m.certs_dir().join("client.key"),
    );
    let changed = crate::resources::kubeconfig::write(&m.kubeconfig(), &text).map_err(|source| StartError::Io { path: m.kubeconfig(), source })?;
    rep.step("kubeconfig", t, changed, m.kubeconfig().display().to_string());
    Ok(state)
}

/// Upload a binary for the node's Kubernetes version (nothing is sent when the node has it).
fn upload(client: &mut Client, state: &MachineState, step: &'static str, bin: &Binary, name: &str) -> Result<bool, StartError> {
    Ok(with_retry(step, 5, || {
        let mut f = std::fs::File::open(&bin.path).map_err(|source| ClientError::Io { addr: state.agent_addr(), source })?;
        client.upload_binary(&state.kubernetes_version, name, &bin.sha256, &mut f, bin.len)
    })?
    .changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{example_state, Driver};
    use crate::report::Output;

    #[test]
    fn another_driver_is_refused_before_anything_happens() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path());
        let m = home.machine("p1").unwrap();
        let qemu = MachineState { kubernetes_version: "v1.34.1".into(), ..example_state("p1") };
        m.save(&qemu).unwrap();
        let mut rep = Reporter::new(Output::Text, Box::new(std::io::sink()));
        let e = start(&home, &StartOptions::kic("p1", Driver::Docker, "kicbase:v1"), &mut rep).unwrap_err();
        assert!(matches!(e, StartError::Driver(driver::DriverError::Mismatch { recorded: Driver::Qemu, requested: Driver::Docker, .. })), "{e}");
        assert!(rep.events.is_empty(), "no step ran");
        assert!(!home.shared_certs().exists() && !m.trust_dir().exists(), "nothing was issued");
        assert_eq!(m.load().unwrap(), qemu, "the state is untouched");
    }
}
