//! A full disk during an upload: 507 naming the path, the old file intact, no temporary file
//! left, and the agent keeps serving. A real 1 MiB tmpfs stands in for the full data disk
//! (mounting it needs root, which CI has).

mod common;

use std::process::Command;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn an_upload_to_a_full_disk_is_507_and_loses_nothing() {
    assert!(nix::unistd::Uid::effective().is_root(), "this test mounts a tmpfs: run it as root (CI does)");
    let a = common::start();
    let dir = a.path("/var/lib/minikube/full");
    std::fs::create_dir_all(&dir).unwrap();
    let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&dir).status().unwrap();
    assert!(st.success(), "mount tmpfs on {}", dir.display());
    let _m = Mount(dir.clone());

    let mut c = a.client();
    let old = vec![b'o'; 200 * 1024];
    assert!(c.upload_bytes("/var/lib/minikube/full/data", &old, 0o644, None).unwrap().changed);
    let big = vec![b'n'; 2 * 1024 * 1024];
    let (status, field) = common::refusal(c.upload_bytes("/var/lib/minikube/full/data", &big, 0o644, None));
    assert_eq!(status, 507);
    assert_eq!(field.as_deref(), Some("path"));
    assert_eq!(std::fs::read(dir.join("data")).unwrap(), old, "the old file is intact");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["data"], "no temporary file is left");
    // The agent still serves, on a new connection.
    assert_eq!(a.client().info().unwrap().hostname, "localhost");
}
