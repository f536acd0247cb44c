//! `minikube-agent`: `serve` (the mTLS provisioning server), `boot` (first-boot disk work) and
//! `entrypoint` (node-container preparation before /sbin/init).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agent::console::announce;
use agent::host::{Host, SystemHost};
use agent::paths::GuestRoot;
use clap::{Parser, Subcommand};

/// Exit status when there is no usable trust material (EX_CONFIG): the unit does not restart on
/// it, since trust only arrives at boot (fw_cfg, data disk) or through --trust-dir.
const NO_TRUST: u8 = 78;

#[derive(Parser)]
#[command(name = "minikube-agent", version, about = "Provisions a minikube node over mutual TLS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Treat DIR as the guest's root directory (tests, image builds).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Where messages for the operator go.
    #[arg(long, default_value = "/dev/console")]
    console: PathBuf,
    /// Do not run system tools (systemctl, modprobe, mount...): answer the agent's own commands
    /// from a recording test double (`RecordingHost::node`) and fail any other. For tests
    /// against --root only: present only in a build with the `test-hooks` feature, never in
    /// the production binary.
    #[cfg(feature = "test-hooks")]
    #[arg(long)]
    no_host_commands: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the provisioning API over HTTPS with client certificates.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to listen on.
        #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], agent::DEFAULT_PORT)))]
        listen: SocketAddr,
        /// A directory holding ca.crt, agent.crt and agent.key (takes precedence over fw_cfg).
        #[arg(long)]
        trust_dir: Option<PathBuf>,
        /// Started beside `minikube-agent boot`: listen once it says the node is reachable, and
        /// make each change only after it has finished (`agent::boot_lock`).
        #[arg(long)]
        after_boot: bool,
    },
    /// First-boot work: data disk, bind mounts, userdata, kernel modules, SSH host keys.
    Boot {
        #[command(flatten)]
        common: Common,
        /// Skip the data disk (implied in containers, when $container is set).
        #[arg(long)]
        no_disk: bool,
        /// A directory that may hold the node document (node.json) and the binaries it names
        /// (blobs/SHA256): a container's trust directory.
        #[arg(long)]
        trust_dir: Option<PathBuf>,
    },
    /// In a node container: prepare mounts, cgroups, machine-id, DMI, iptables and DNS, then
    /// exec the given command (normally /sbin/init).
    Entrypoint {
        #[command(flatten)]
        common: Common,
        /// The command to exec afterwards.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn host_for(common: &Common) -> Arc<dyn Host> {
    #[cfg(feature = "test-hooks")]
    if common.no_host_commands {
        return Arc::new(agent::host::RecordingHost::node("minikube"));
    }
    let _ = common;
    Arc::new(SystemHost)
}

fn in_container() -> bool {
    std::env::var_os("container").is_some_and(|v| !v.is_empty())
}

/// The exit without trust material: systemd hears the start is over first (`Type=notify`: a
/// service that exits before READY=1 has failed its start, whatever its status), then the status
/// it does not restart on.
fn not_serving() -> ExitCode {
    agent::console::notify_ready();
    ExitCode::from(NO_TRUST)
}

fn serve(common: Common, listen: SocketAddr, trust_dir: Option<PathBuf>, after_boot: bool) -> anyhow::Result<ExitCode> {
    let console = Some(common.console.as_path());
    let root = GuestRoot::new(&common.root);
    let host = host_for(&common);
    if after_boot && !agent::boot_lock::wait_reachable(&root, agent::boot_lock::REACHABLE_TIMEOUT) {
        tracing::warn!("the boot step did not say the node is reachable within {:?}: serving anyway", agent::boot_lock::REACHABLE_TIMEOUT);
    }
    let (trust, source) = match agent::trust::locate(&root, trust_dir.as_deref(), host.as_ref(), !in_container()) {
        Ok(found) => found,
        Err(e) => {
            announce(console, &format!("{}: {e}", agent::NOT_SERVING_MARKER));
            return Ok(not_serving());
        }
    };
    tracing::info!("trust material from {source}");
    let tls = match agent::tls::server_config(&trust.ca_pem, &trust.identity) {
        Ok(t) => t,
        Err(e) => {
            announce(console, &format!("{}: trust material from {source}: {e}", agent::NOT_SERVING_MARKER));
            return Ok(not_serving());
        }
    };
    let audit = agent::audit::AuditLog::open(&root.host(agent::AUDIT_LOG))?;
    let mut node = agent::ops::Node::new(root, host);
    if after_boot {
        node = node.after_boot();
    }
    let server = agent::server::Server::bind(listen, tls, Arc::new(agent::server::Agent::new(node, Some(audit))))?;
    announce(console, &format!("{} {}", agent::READY_MARKER, server.local_addr()?));
    agent::console::notify_ready();
    agent::hooks::arm();
    server.run()?;
    Ok(ExitCode::SUCCESS)
}

fn boot(common: Common, no_disk: bool, trust_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let console = Some(common.console.as_path());
    let root = GuestRoot::new(&common.root);
    let host = host_for(&common);
    let container = in_container();
    // Held to the end: the server, started beside this step, listens once it is marked reachable
    // and makes no change before the lock is released (`agent::boot_lock`).
    let lock = agent::boot_lock::BootLock::acquire(&root).map_err(|e| tracing::warn!("{e}: the server will not wait for the boot step")).ok();
    let reachable = || {
        if let Some(l) = &lock {
            l.mark_reachable();
        }
    };
    let opts = agent::boot::BootOptions { skip_disk: no_disk || container, skip_modules: container, keys_later: true };
    let mut booted = agent::boot::run(&root, host.as_ref(), opts);
    // The node document: configure the node before its runtime and kubelet start.
    let mut delivered = Vec::new();
    if let Some(dir) = &trust_dir {
        let source = format!("trust directory {}", dir.display());
        delivered.extend(agent::ops::apply::read_delivered(&dir.join(agent::document::FILE_NAME), &source));
    }
    if !container {
        if let Err(e) = agent::trust::load_fw_cfg_module(&root, host.as_ref()) {
            tracing::warn!("{e}");
        }
        let fw = root.host(agent::trust::FW_CFG_DIR).join(agent::document::FILE_NAME).join("raw");
        delivered.extend(agent::ops::apply::read_delivered(&fw, "qemu fw_cfg"));
    }
    delivered.extend(agent::boot::userdata_document(&root));
    let blob_dirs: Vec<PathBuf> = trust_dir.iter().map(|d| d.join("blobs")).collect();
    let node = agent::ops::Node::new(root, host);
    // The SSH host keys beside the rest of the node document, once the node is reachable: only
    // sshd needs them, and it starts after this whole step.
    let (reached_tx, reached_rx) = std::sync::mpsc::channel::<()>();
    let (report, keys) = std::thread::scope(|s| {
        let keys = booted.is_ok().then(|| {
            let node = &node;
            s.spawn(move || {
                let _ = reached_rx.recv();
                let t = std::time::Instant::now();
                (agent::boot::ssh_host_keys(&node.root, node.host.as_ref()), t.elapsed())
            })
        });
        let reached = || {
            reachable();
            let _ = reached_tx.send(());
        };
        let report = agent::ops::apply::at_boot_reachable(&node, delivered, &blob_dirs, &reached);
        reached();
        (report, keys.map(|k| k.join().expect("ssh key thread")))
    });
    let from = if report.source.is_empty() { String::new() } else { format!(" from {}", report.source) };
    announce(console, &format!("{} {}{from}: {}", agent::DOCUMENT_MARKER, report.outcome.name(), report.message));
    if let (Ok(report), Some((keys, took))) = (&mut booted, keys) {
        match keys {
            Ok(generated) => {
                report.ssh_keys_generated = generated;
                report.took.push(("ssh keys (alongside)", took));
            }
            Err(e) => booted = Err(e),
        }
    }
    let status = match booted {
        Ok(report) => {
            if !report.modules_failed.is_empty() {
                tracing::warn!("modules not loaded (built in or missing): {}", report.modules_failed.join(" "));
            }
            announce(
                console,
                &format!(
                    "minikube-agent: boot done ({}; userdata files changed: {}; ssh host keys generated: {}; took {})",
                    report.plan,
                    report.userdata_files_changed,
                    report.ssh_keys_generated,
                    report.took_text()
                ),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            announce(console, &format!("minikube-agent: boot failed: {e}"));
            ExitCode::FAILURE
        }
    };
    drop(lock);
    Ok(status)
}

fn entrypoint(common: Common, command: Vec<String>) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let root = GuestRoot::new(&common.root);
    let host = host_for(&common);
    for problem in agent::entrypoint::prepare(&root, host.as_ref()) {
        eprintln!("minikube-agent entrypoint: {problem}");
    }
    let err = std::process::Command::new(&command[0]).args(&command[1..]).exec();
    anyhow::bail!("exec {}: {err}", command[0])
}

fn main() -> anyhow::Result<ExitCode> {
    // MINIKUBE_AGENT_LOG=debug|info|warn|error (default info).
    let level = std::env::var("MINIKUBE_AGENT_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::level_filters::LevelFilter>().ok())
        .unwrap_or(tracing::level_filters::LevelFilter::INFO);
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).init();
    match Cli::parse().command {
        Command::Serve { common, listen, trust_dir, after_boot } => serve(common, listen, trust_dir, after_boot),
        Command::Boot { common, no_disk, trust_dir } => boot(common, no_disk, trust_dir),
        Command::Entrypoint { common, command } => entrypoint(common, command),
    }
}
