//! Reaching a node's agent: once with the certificates in hand, from the profile's files on disk
//! (exec, logs, the cluster's later steps), or polled while the node boots.

use std::time::Duration;

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
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Poll the agent until it answers `info`, `alive()` turns false, or `timeout` passes; the
/// client and a line about the agent and its boot step. The error is the last connection error
/// and whether the node was still alive.
pub fn poll_agent(state: &MachineState, certs: &ProfileCerts, timeout: Duration, alive: impl Fn() -> bool) -> Result<(Client, String), (String, bool)> {
    poll(timeout, PROBE_INTERVAL, alive, || {
        // A short limit per attempt: a connection made before the guest's network is up can sit
        // in SYN retransmission for many seconds after the agent listens; a new one will not.
        let mut c = Client::connect_within(state.agent_addr(), "127.0.0.1", &certs.agent_ca_pem, &certs.launcher, PROBE_TIMEOUT).map_err(|e| e.to_string())?;
        let info = c.info().map_err(|e| e.to_string())?;
        let mut detail = format!("agent {} on {} ({})", info.agent_version, info.kernel, info.os.unwrap_or_default());
        if let Some(b) = &info.boot_apply {
            if matches!(b.outcome, BootOutcome::Refused | BootOutcome::Failed) {
                tracing::warn!("the node document was {} at boot ({}): {}; the API steps converge the node", b.outcome.name(), b.source, b.message);
            }
            detail.push_str(&format!("; node document {} at boot", b.outcome.name()));
            if !matches!(b.outcome, BootOutcome::Applied) {
                detail.push_str(&format!(": {}", b.message));
            }
        }
        Ok((c, detail))
    })
}
