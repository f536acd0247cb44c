//! The host launcher, `minikube-node`: from a built ISO or kicbase image to a provisioned node in
//! one command, through the in-guest agent (mutual TLS) instead of SSH.
//!
//! Layers, each importing only the ones below it:
//!
//! - [`model`]: the vocabulary (drivers, status, the recorded machine state, shared names and
//!   ports); [`topology`]: node names, subnets and pod ranges as numbers.
//! - [`report`], [`options`], [`retry`]: how steps report, what `start` is asked for, the one
//!   retry and poll helper.
//! - [`resources`]: what a node is made of on the host (state, certificates, SSH, disk,
//!   binaries, bundle, kubelet, kubeconfig, node document, qemu, container engine).
//! - [`driver`]: the `NodeDriver` trait, the preparation both drivers share, and one module per
//!   engine (qemu, kic), each bringing a node up to an answering agent.
//! - [`start`]: the `start` flow: the driver's `up`, then the same agent steps for every driver,
//!   preload and the kubeadm bootstrap or join.
//! - [`cluster`]: several nodes: start, add, delete, and keeping their peers in step.

pub mod cluster;
pub mod driver;
pub mod model;
pub mod options;
pub mod report;
pub mod resources;
pub mod retry;
pub mod start;
pub mod topology;
