//! What a node is made of on the host, one module per resource, each with its own error and no
//! knowledge of the drivers or the start flow above it: the profile's files ([`state`]),
//! certificates, the SSH key and client, the data disk, the Kubernetes binaries and bundle, the
//! kubelet, the kubeconfig, the node document, the qemu process and the container engine.

pub mod binaries;
pub mod bundle;
pub mod certs;
pub mod disk;
pub mod kernel;
pub mod kic;
pub mod kubeconfig;
pub mod kubelet;
pub mod node_doc;
pub mod qemu;
pub mod ssh;
pub mod state;
