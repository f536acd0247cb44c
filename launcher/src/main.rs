//! `minikube-node`: start, inspect, stop and delete minikube nodes (qemu VMs from the ISO, or
//! kicbase containers under podman or docker), provisioned through the agent.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use launcher::model::{Driver, Status, DEFAULT_PROFILE};
use launcher::options::StartOptions;
use launcher::report::{Output, Reporter};
use launcher::resources::state::Home;
use launcher::{driver, options};

#[derive(Parser)]
#[command(name = "minikube-node", version, about = "Start a minikube node (a VM from the ISO, or a kicbase container) and provision it through its agent")]
struct Cli {
    /// Profile (machine) name.
    #[arg(short = 'p', long = "name", alias = "profile", global = true, default_value = DEFAULT_PROFILE)]
    name: String,
    /// Output format of `start`, `status` and `list`.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputArg::Text)]
    output: OutputArg,
    /// The node of a multi-node profile to act on (`PROFILE-m02`...; default: the first node).
    #[arg(long, global = true)]
    node: Option<String>,
    /// More logging (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputArg {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum RuntimeArg {
    Docker,
    Containerd,
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Add the next node (PROFILE-mNN) with the profile's settings.
    Add,
    /// Delete a node (not the first: delete the profile for that).
    Delete {
        name: String,
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// The nodes with their status and address.
    List,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create (or reuse) the machine, boot it and provision it.
    Start {
        /// qemu (a VM from --iso), podman or docker (a container from --image). Default: the
        /// profile's recorded driver, else qemu; another driver than the recorded one is refused.
        #[arg(long)]
        driver: Option<Driver>,
        /// The ISO built by `cargo xtask iso` (qemu) [default: the profile's recorded ISO, else
        /// out/minikube.iso]
        #[arg(long)]
        iso: Option<PathBuf>,
        /// The kicbase image (podman, docker): an archive (`cargo xtask kicbase`), loaded into the
        /// engine unless it already holds it, or an image reference.
        #[arg(long, default_value = options::DEFAULT_KIC_IMAGE)]
        image: String,
        /// The container engine's OCI runtime (podman, docker); default: runc under podman on
        /// hosts without the unified cgroup hierarchy, else the engine's own.
        #[arg(long)]
        oci_runtime: Option<String>,
        /// Run the node on a rootless engine (podman, docker as an unprivileged user; minikube's
        /// --rootless): the host is checked first (subordinate ids, cgroup v2 delegation).
        #[arg(long)]
        rootless: bool,
        /// CPUs [default: the profile's, else 2].
        #[arg(long)]
        cpus: Option<u32>,
        /// Memory in MiB [default: the profile's, else 4096].
        #[arg(long)]
        memory: Option<u64>,
        /// Data disk size in MiB (qemu; fixed when the disk is made) [default: 20000].
        #[arg(long)]
        disk_size: Option<u64>,
        /// Container runtime [default: the profile's, else containerd].
        #[arg(long, value_enum)]
        container_runtime: Option<RuntimeArg>,
        /// Kubernetes version [default: the profile's, else the newest this launcher knows].
        #[arg(long)]
        kubernetes_version: Option<String>,
        /// A kubelet binary to install instead of the release's.
        #[arg(long)]
        kubelet: Option<PathBuf>,
        /// minikube's cache directory: linux/ARCH/VERSION/{kubelet,kubeadm,kubectl} are used from
        /// it, and downloaded into it [default: the home's cache/].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Download Kubernetes binaries from this mirror (the upstream layout:
        /// URL/VERSION/bin/linux/ARCH/NAME) instead of https://dl.k8s.io/release.
        #[arg(long)]
        binary_mirror: Option<String>,
        /// Install a test double instead of a real kubelet (for machines with no route to the
        /// release host); Kubernetes is not bootstrapped then.
        #[arg(long)]
        kubelet_test_double: bool,
        /// Only the node and its container runtime: no kubelet, no kubeadm.
        #[arg(long)]
        no_kubernetes: bool,
        /// Seconds to wait for the agent after qemu (or the container) started.
        #[arg(long, default_value_t = 600)]
        wait_timeout: u64,
        /// Nodes in the cluster (podman, docker): PROFILE, PROFILE-m02, PROFILE-m03...
        #[arg(long, default_value_t = 1)]
        nodes: u32,
    },
    /// Add, delete or list the nodes of a profile.
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// Whether the machine runs and its agent answers.
    Status,
    /// Power the machine off (qemu: ACPI, hard stop after the timeout; kic: the engine's stop).
    Stop {
        #[arg(long, default_value_t = 90)]
        timeout: u64,
    },
    /// Stop the machine and remove it with its state.
    Delete {
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Run a command on the node: `exec -- CMD ARGS...`.
    Exec {
        /// Seconds before the command is killed.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// The journal of UNIT on the node; without a unit, the serial console (qemu) or the
    /// container's logs (kic).
    Logs {
        unit: Option<String>,
        #[arg(short = 'n', long, default_value_t = 200)]
        lines: u32,
    },
    /// Log in to the node as `docker` with the profile's key (OpenSSH), or run `-- CMD...`.
    Ssh {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// The node's IP address.
    Ip,
    /// Run the cached kubectl of the profile's Kubernetes version with its kubeconfig:
    /// `kubectl -- get nodes`.
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
        /// minikube's cache directory [default: the home's cache/].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Every machine with its status.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).with_target(false).init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Our errors already quote their sources: print each cause only when it adds text.
            let mut text = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !text.contains(&c) {
                    text.push_str(": ");
                    text.push_str(&c);
                }
            }
            eprintln!("minikube-node: {text}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    let output = match cli.output {
        OutputArg::Text => Output::Text,
        OutputArg::Json => Output::Json,
    };
    // The machine a per-node command acts on: `--node`, which must be one of the profile's.
    let m = match &cli.node {
        None => home.machine(&cli.name)?,
        Some(n) => {
            if launcher::topology::node_index(&cli.name, n).is_none() {
                bail!("{n} is not a node of {} ({}, {}-m02, ...)", cli.name, cli.name, cli.name);
            }
            home.machine(n)?
        }
    };
    match cli.command {
        Cmd::Start {
            driver,
            iso,
            image,
            oci_runtime,
            rootless,
            cpus,
            memory,
            disk_size,
            container_runtime,
            kubernetes_version,
            kubelet,
            cache_dir,
            binary_mirror,
            kubelet_test_double,
            no_kubernetes,
            wait_timeout,
            nodes,
        } => {
            // What the command line leaves out keeps the profile's value (as minikube does).
            let recorded = if m.exists() { Some(m.load()?) } else { None };
            let recorded_iso = recorded.as_ref().map(|s| s.iso.clone()).filter(|p| !p.as_os_str().is_empty());
            let iso = match (iso, recorded_iso) {
                (Some(p), _) => p,
                (None, Some(p)) => {
                    eprintln!("{}: the ISO recorded in the profile, {}", cli.name, p.display());
                    p
                }
                (None, None) => PathBuf::from(options::DEFAULT_ISO),
            };
            let mut opts = StartOptions::new(&cli.name, iso);
            opts.driver = driver.or_else(|| driver::recorded(&m)).unwrap_or(Driver::Qemu);
            opts.image = image;
            opts.oci_runtime = oci_runtime;
            if rootless && !opts.driver.is_kic() {
                bail!("--rootless is for the podman and docker drivers (a qemu VM runs as the user who starts it)");
            }
            opts.rootless = rootless;
            opts.cpus = cpus.or(recorded.as_ref().map(|s| s.cpus)).unwrap_or(opts.cpus);
            opts.memory_mb = memory.or(recorded.as_ref().map(|s| s.memory_mb)).unwrap_or(opts.memory_mb);
            opts.disk_mb = disk_size.or(recorded.as_ref().map(|s| s.disk_mb)).unwrap_or(opts.disk_mb);
            opts.runtime = match container_runtime {
                Some(RuntimeArg::Docker) => agent_api::api::Runtime::Docker,
                Some(RuntimeArg::Containerd) => agent_api::api::Runtime::Containerd,
                None => recorded.as_ref().map_or(opts.runtime, |s| s.runtime),
            };
            opts.kubernetes_version = kubernetes_version.or(recorded.as_ref().map(|s| s.kubernetes_version.clone())).unwrap_or(opts.kubernetes_version);
            opts.kubelet = kubelet;
            opts.cache_dir = cache_dir;
            opts.binary_mirror = binary_mirror;
            opts.kubelet_test_double = kubelet_test_double;
            opts.no_kubernetes = no_kubernetes;
            opts.agent_timeout = Duration::from_secs(wait_timeout);
            let mut rep = Reporter::new(output, Box::new(std::io::stdout()));
            launcher::cluster::start(&home, &opts, nodes, &mut rep).with_context(|| format!("starting {}", cli.name))?;
        }
        Cmd::Status => {
            let st = driver::status(&m);
            let agent = if st == Status::Running {
                match driver::agent::connect_existing(&home, &m).map_err(anyhow::Error::from).and_then(|mut c| Ok(c.info()?)) {
                    Ok(i) => format!("Running ({})", i.hostname),
                    Err(e) => format!("Not answering: {e:#}"),
                }
            } else {
                st.name().to_string()
            };
            let nodes: Vec<serde_json::Value> = home.nodes(&cli.name)
                .unwrap_or_default()
                .iter()
                .map(|s| serde_json::json!({ "name": s.name, "host": home.machine(&s.name).map(|nm| driver::status(&nm).name()).unwrap_or("Unknown"), "ip": s.node_ip, "arch": s.arch }))
                .collect();
            match output {
                Output::Json => println!("{}", serde_json::json!({ "name": m.name, "host": st.name(), "agent": agent, "nodes": nodes })),
                Output::Text => {
                    println!("{}\nhost: {}\nagent: {agent}", m.name, st.name());
                    if nodes.len() > 1 {
                        for n in &nodes {
                            println!("node {}: {} {}", n["name"].as_str().unwrap_or(""), n["host"].as_str().unwrap_or(""), n["ip"].as_str().unwrap_or(""));
                        }
                    }
                }
            }
            if st != Status::Running {
                return Ok(ExitCode::from(if st == Status::Nonexistent { 85 } else { 7 }));
            }
        }
        Cmd::Stop { timeout } => {
            if !m.exists() {
                bail!("no machine named {:?}", cli.name);
            }
            match driver::stop(&m, Duration::from_secs(timeout))? {
                None => println!("{}: already stopped", cli.name),
                Some(true) => println!("{}: stopped", cli.name),
                Some(false) => println!("{}: stopped (hard stop after {timeout}s)", cli.name),
            }
        }
        Cmd::Delete { timeout } => {
            if cli.node.is_some() {
                bail!("`delete` removes the whole profile; `minikube-node node delete NAME -p {}` removes one node", cli.name);
            }
            if launcher::cluster::delete_all(&home, &cli.name, Duration::from_secs(timeout))? {
                println!("{}: deleted", cli.name);
            } else {
                println!("{}: nothing to delete", cli.name);
            }
        }
        Cmd::Exec { timeout, command } => {
            let mut c = driver::agent::connect_existing(&home, &m)?;
            let r = c.exec(&agent_api::api::ExecRequest { argv: command, timeout_secs: Some(timeout), ..Default::default() })?;
            print!("{}", r.stdout);
            eprint!("{}", r.stderr);
            let _ = std::io::stdout().flush();
            if r.timed_out {
                bail!("command timed out after {timeout}s");
            }
            return Ok(match r.exit_code {
                Some(0) => ExitCode::SUCCESS,
                Some(n) => ExitCode::from(n.clamp(1, 255) as u8),
                None => ExitCode::from(128u8.saturating_add(r.signal.unwrap_or(0).clamp(0, 127) as u8)),
            });
        }
        Cmd::Logs { unit, lines } => match unit {
            Some(u) => print!("{}", driver::agent::connect_existing(&home, &m)?.logs(&u, Some(lines))?.text),
            None => println!("{}", driver::console_tail(&m, lines as usize)?),
        },
        Cmd::Ssh { command } => {
            let state = m.load()?;
            if driver::status(&m) != Status::Running {
                bail!("{}: not running (minikube-node start -p {})", cli.name, cli.name);
            }
            let port = driver::node(&m, state.driver).host_ports(&state)?.ssh;
            let ssh = launcher::resources::ssh::Ssh::for_machine(&m, port);
            let mut cmd = std::process::Command::new("ssh");
            if command.is_empty() {
                cmd.arg("-t");
            }
            cmd.args(ssh.args());
            if !command.is_empty() {
                cmd.arg("--").args(command.iter().map(|a| launcher::resources::ssh::quote(a)));
            }
            let err = std::os::unix::process::CommandExt::exec(&mut cmd);
            bail!("ssh: {err} (apt-get install openssh-client)");
        }
        Cmd::Ip => println!("{}", m.load()?.node_ip),
        Cmd::Node { cmd } => {
            let first = home.machine(&cli.name)?;
            let state = first.load()?;
            match cmd {
                NodeCmd::Add => {
                    let mut opts = StartOptions::new(&cli.name, state.iso.clone());
                    opts.driver = state.driver;
                    opts.image = state.image.clone();
                    opts.oci_runtime = state.oci_runtime.clone();
                    opts.cpus = state.cpus;
                    opts.memory_mb = state.memory_mb;
                    opts.disk_mb = state.disk_mb;
                    opts.runtime = state.runtime;
                    opts.kubernetes_version = state.kubernetes_version.clone();
                    // The same kubelet as the first node: the test double, or that binary.
                    if state.kubelet.file_name().is_some_and(|n| n == launcher::resources::kubelet::TEST_DOUBLE_NAME) {
                        opts.kubelet_test_double = true;
                    } else if state.kubelet.as_os_str().is_empty() {
                        opts.no_kubernetes = true;
                    } else {
                        opts.kubelet = Some(state.kubelet.clone());
                    }
                    let mut rep = Reporter::new(output, Box::new(std::io::stdout()));
                    let name = launcher::cluster::add(&home, &opts, &mut rep)?;
                    println!("{name}: added to {}", cli.name);
                }
                NodeCmd::Delete { name, timeout } => {
                    launcher::cluster::delete_node(&home, &cli.name, &name, Duration::from_secs(timeout))?;
                    println!("{name}: deleted from {}", cli.name);
                }
                NodeCmd::List => {
                    let nodes = home.nodes(&cli.name)?;
                    let rows: Vec<(String, &'static str, String)> = nodes
                        .iter()
                        .map(|s| (s.name.clone(), home.machine(&s.name).map(|nm| driver::status(&nm).name()).unwrap_or("Unknown"), s.node_ip.clone()))
                        .collect();
                    match output {
                        Output::Json => println!(
                            "{}",
                            serde_json::Value::Array(rows.iter().map(|(n, st, ip)| serde_json::json!({ "name": n, "status": st, "ip": ip })).collect())
                        ),
                        Output::Text => {
                            for (n, st, ip) in rows {
                                println!("{n:<24} {st:<12} {ip}");
                            }
                        }
                    }
                }
            }
        }
        Cmd::Kubectl { args, cache_dir } => {
            let state = m.load()?;
            let cache = cache_dir.unwrap_or_else(|| home.cache());
            let kubectl = launcher::resources::binaries::Downloader::new(None, &cache, launcher::resources::binaries::go_arch())
                .cached(&state.kubernetes_version, "kubectl");
            if !kubectl.is_file() {
                bail!("{}: no kubectl {} in the cache (it is downloaded by `minikube-node start`)", kubectl.display(), state.kubernetes_version);
            }
            let err = std::os::unix::process::CommandExt::exec(std::process::Command::new(&kubectl).args(&args).env("KUBECONFIG", m.kubeconfig()));
            bail!("{}: {err}", kubectl.display());
        }
        Cmd::List => {
            let mut rows = Vec::new();
            for name in home.list()? {
                let md = home.machine(&name)?;
                let s = md.load()?;
                rows.push((name, driver::status(&md), s));
            }
            match output {
                Output::Json => {
                    let v: Vec<_> = rows
                        .iter()
                        .map(|(n, st, s)| {
                            serde_json::json!({ "name": n, "status": st.name(), "driver": s.driver, "arch": s.arch, "runtime": s.runtime, "kubernetes_version": s.kubernetes_version, "ports": s.ports })
                        })
                        .collect();
                    println!("{}", serde_json::Value::Array(v));
                }
                Output::Text => {
                    println!("{:<20} {:<12} {:<7} {:<6} {:<11} {:<10} AGENT", "NAME", "STATUS", "DRIVER", "ARCH", "RUNTIME", "VERSION");
                    for (n, st, s) in &rows {
                        println!(
                            "{n:<20} {:<12} {:<7} {:<6} {:<11} {:<10} 127.0.0.1:{}",
                            st.name(),
                            s.driver.name(),
                            s.arch.debian(),
                            s.runtime.name(),
                            s.kubernetes_version,
                            s.ports.agent
                        );
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
