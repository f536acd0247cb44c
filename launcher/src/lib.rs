//! placeholder

pub mod qemu;
