//! Reaching a node's agent: once with the certificates in hand, from the profile's files on disk
//! (exec, logs, the cluster's later steps), or polled while the node boots.

use std::time::Duration;

use agent_api::api::InfoResponse;
use agent_api::client::{Client, ClientError};
use agent_api::document::BootOutcome;

use crate::driver::DriverError;
use crate::model::MachineState;
use crate::resources::certs::ProfileCerts;
use crate::resources::state::{Home, MachineDir};
use crate::retry::poll;

/// Connect to the machine's agent (one attempt).
pub fn connect(state: &MachineState, certs: &ProfileCerts) -> Result<Client, ClientError> {
    Client::connect(state.agent_addr(), "127.0.0.1", &certs.agent_ca_pem, &certs.launcher)
}

/// Connect using the certificates on disk (for exec, logs...), to the agent port the driver
/// says (a kic node's is read from the engine).
pub fn connect_existing(home: &Home, m: &MachineDir) -> Result<Client, DriverError> {
    Ok(connect_existing_with(home, m)?.0)
}

/// [`connect_existing`], with the machine's state, its host ports as the driver reports them.
pub fn connect_existing_with(home: &Home, m: &MachineDir) -> Result<(Client, MachineState), DriverError> {
    let mut state = m.load()?;
    state.ports = crate::driver::node(m, state.driver).host_ports(&state)?;
    let ca_path = home.shared_certs().join("agent-ca.crt");
    let ca = std::fs::read_to_string(&ca_path).map_err(|source| DriverError::Io { path: ca_path, source })?;
    let (crt, key) = (m.certs_dir().join("launcher.crt"), m.certs_dir().join("launcher.key"));
    let id = pki::Identity::load(&crt, &key).map_err(|e| DriverError::Credentials { path: crt.clone(), reason: e.to_string() })?;
    let client = Client::connect(state.agent_addr(), "127.0.0.1", &ca, &id).map_err(|source| DriverError::Connect { node: m.name.clone(), source })?;
    Ok((client, state))
}

/// How long one attempt to reach a booting agent may wait.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause between two attempts.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// Poll the agent until it answers `info`, `alive()` turns false, or `timeout` passes; the
/// client and a line about the agent and its boot step. The error is the last connection error
/// and whether the node was still alive.
pub fn poll_agent(state: &MachineState, certs: &ProfileCerts, timeout: Duration, alive: impl Fn() -> bool) -> Result<(Client, String), (String, bool)> {
    poll(timeout, PROBE_INTERVAL, alive, || {
        // A short limit per attempt: a connection made before the guest's network is up can sit
        // in SYN retransmission for many seconds after the agent listens; a new one will not.
        let mut c = Client::connect_within(state.agent_addr(), "127.0.0.1", &certs.agent_ca_pem, &certs.launcher, PROBE_TIMEOUT).map_err(|e| e.to_string())?;
        let info = c.info().map_err(|e| e.to_string())?;
        let mut detail = format!("agent {} on {} ({})", info.agent_version, info.kernel, info.os.clone().unwrap_or_default());
        if info.boot_running {
            detail.push_str("; boot step still running");
        } else if let Some(d) = boot_apply_text(&info) {
            detail.push_str(&format!("; {d}"));
        }
        Ok((c, detail))
    })
}

/// What the boot step said of the node document (warned about when it was not applied).
fn boot_apply_text(info: &InfoResponse) -> Option<String> {
    let b = info.boot_apply.as_ref()?;
    if matches!(b.outcome, BootOutcome::Refused | BootOutcome::Failed) {
        tracing::warn!("the node document was {} at boot ({}): {}; the API steps converge the node", b.outcome.name(), b.source, b.message);
    }
    let mut text = format!("node document {} at boot", b.outcome.name());
    if !matches!(b.outcome, BootOutcome::Applied) {
        text.push_str(&format!(": {}", b.message));
    }
    Some(text)
}

/// How long [`wait_boot_step`] waits (a boot step that formats a disk in the guest under
/// emulation takes tens of seconds; a hung one should not hang `start`).
pub const BOOT_STEP_TIMEOUT: Duration = Duration::from_secs(600);
/// The pause between two `info` calls while the boot step runs.
const BOOT_STEP_INTERVAL: Duration = Duration::from_millis(100);

/// Wait for the node's boot step, which the agent answers beside (each change it is asked for
/// waits for the boot step anyway: this says what the boot step did, as a step of its own).
/// The line is what the boot step said of the node document.
pub fn wait_boot_step(client: &mut Client, timeout: Duration) -> Result<String, ClientError> {
    let start = std::time::Instant::now();
    loop {
        let info = client.info()?;
        if !info.boot_running {
            return Ok(boot_apply_text(&info).unwrap_or_else(|| "no report from the boot step (it did not run, or an older agent)".to_string()));
        }
        if start.elapsed() >= timeout {
            return Ok(format!("the boot step still runs after {} s; the API steps wait for it", timeout.as_secs()));
        }
        std::thread::sleep(BOOT_STEP_INTERVAL);
    }
}
