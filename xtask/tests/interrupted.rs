//! `cargo xtask iso` and `cargo xtask kicbase` interrupted as a user would (SIGINT to the
//! process group, as Ctrl-C does) or killed (SIGKILL), during compression and while the artifact
//! is written: the previous artifact is intact, and the next build leaves no temporary file.
//! The build is stopped at the exact point by the `MINIKUBE_BUILD_PAUSE_AT` hook.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use image::test_hook::{ENV, PAUSED};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn xtask(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    // A fixed epoch: a commit made meanwhile must not change the bytes compared below.
    c.args(args).current_dir(workspace()).env_remove(ENV).env("CI", "true").env("SOURCE_DATE_EPOCH", "1700000000");
    c
}

fn build(args: &[&str]) {
    let out = xtask(args).output().unwrap();
    assert!(out.status.success(), "{args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn digest(p: &Path) -> String {
    pki::digest::sha256_file(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).0
}

/// Our temporary files in `dir`.
fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| pki::atomic::is_temp_name(n)).collect()
}

/// Run `args` until the hook pauses it at `point`, then send `signal` to its process group.
fn interrupt(args: &[&str], point: &str, signal: nix::sys::signal::Signal) {
    let mut child = xtask(args).env(ENV, point).stderr(Stdio::piped()).stdout(Stdio::null()).process_group(0).spawn().unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let start = Instant::now();
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains(&format!("{PAUSED} {point}")) {
            break;
        }
        seen.push(line);
        assert!(start.elapsed() < Duration::from_secs(600), "never paused at {point}");
    }
    assert!(child.try_wait().unwrap().is_none(), "{args:?} ended before pausing at {point}:\n{}", seen.join("\n"));
    nix::sys::signal::killpg(pid, signal).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{args:?} survived {signal}");
}

#[test]
fn interrupted_builds_keep_the_previous_artifact_and_the_next_build_cleans_up() {
    use nix::sys::signal::Signal::{SIGINT, SIGKILL};
    let out = tempfile::tempdir().unwrap();

    let iso = out.path().join("minikube.iso");
    let iso_args = ["iso", "--out", iso.to_str().unwrap()];
    build(&iso_args);
    let before = digest(&iso);
    for (point, signal) in [("squashfs", SIGINT), ("squashfs", SIGKILL), ("iso-write", SIGINT), ("iso-write", SIGKILL)] {
        interrupt(&iso_args, point, signal);
        assert_eq!(digest(&iso), before, "the ISO changed after {signal} at {point}");
    }
    build(&iso_args);
    assert_eq!(temps(out.path()), Vec::<String>::new(), "temporary files left after the next ISO build");
    assert_eq!(digest(&iso), before, "same inputs, same bytes");

    let tar = out.path().join("kicbase.tar");
    let kic_args = ["kicbase", "--out", tar.to_str().unwrap()];
    build(&kic_args);
    let before = digest(&tar);
    for signal in [SIGINT, SIGKILL] {
        interrupt(&kic_args, "archive-write", signal);
        assert_eq!(digest(&tar), before, "the archive changed after {signal}");
    }
    build(&kic_args);
    assert_eq!(temps(out.path()), Vec::<String>::new(), "temporary files left after the next kicbase build");
}
