//! Go programs as data: a module as a binary's build info records it, and a Go program of ours
//! with the bytes an image installs. Plain types with no dependency, shared by the assembler
//! (which installs the bytes) and the SBOM writer (which lists the modules).

/// A Go module as a binary's build info records it (after `replace`: the module that was
/// compiled in).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoModule {
    /// `k8s.io/api`; `stdlib` for the Go standard library.
    pub path: String,
    /// `v0.34.4`; `go1.26.8` for the standard library; `(devel)` for a main module of ours.
    pub version: String,
    /// The `h1:` hash of go.sum, when the build info has one.
    pub sum: Option<String>,
    /// What it replaced (`k8s.io/api v0.0.0`), if it came in through a `replace`.
    pub replaces: Option<String>,
}

/// A Go program of ours put into an image (the nodes' crictl), with what its SBOM entry needs:
/// the bytes go in through `assemble::Options::go_binaries` like any extra file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBinary {
    /// Where it lies in the image (`/usr/bin/crictl`).
    pub path: String,
    pub bytes: Vec<u8>,
    pub name: String,
    /// Its module's version (`v1.34.0`).
    pub version: String,
    pub sha256: String,
    /// The modules its build info records.
    pub modules: Vec<GoModule>,
}
