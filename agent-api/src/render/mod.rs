//! The files the agent's operations write, as pure functions of their requests: the agent
//! writes them on the node, the launcher's SSH baseline writes the same ones over SSH.

pub mod certs;
pub mod kubelet;
pub mod network;
pub mod runtime;
