//! The host launcher, `minikube-node`: from a built ISO to a provisioned node in one command,
//! through the in-guest agent (mutual TLS) instead of SSH.
//!
//! - [`state`]: the home directory, per-profile machine directories, `state.json`.
//! - [`certs`]: shared CAs and per-profile certificates (reused while valid).
//! - [`disk`]: the data disk (qcow2 starting with minikube's magic + userdata tar).
//! - [`qemu`]: accelerator, command line, console, QMP; [`machine`]: the lifecycle on top.
//! - [`kic`]: the container driver (podman/docker); [`driver`]: which one a profile uses, and
//!   `status`/`stop`/`delete` dispatched on it.
//! - [`ssh`]: the machine's SSH key and an OpenSSH client; [`ssh::baseline`] provisions the
//!   minikube way over SSH, for the agent-versus-SSH benchmark.
//! - [`provision`]: the `start` flow; [`kubelet`], [`kubeconfig`]: its inputs and output.

pub mod binaries;
pub mod bootstrap;
pub mod certs;
pub mod cluster;
pub mod disk;
pub mod driver;
pub mod kic;
pub mod kic_node;
pub mod kubeconfig;
pub mod kubelet;
pub mod machine;
pub mod node_doc;
pub mod preload;
pub mod provision;
pub mod qemu;
pub mod qemu_node;
pub mod ssh;
pub mod state;
