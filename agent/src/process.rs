//! Running a child process with a timeout and bounded captured output.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::sync::mpsc;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Output captured from each stream is cut at this many bytes.
pub const MAX_CAPTURE: usize = 4 * 1024 * 1024;

/// The environment every child starts from (the agent's own environment is not passed on).
pub const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessOutput {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
}

impl ProcessOutput {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Read a pipe to its end in a thread; the result arrives on the returned channel.
fn capture(mut r: impl Read + Send + 'static) -> mpsc::Receiver<(Vec<u8>, bool)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let mut truncated = false;
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_CAPTURE.saturating_sub(kept.len());
                    if n > room {
                        truncated = true;
                    }
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        let _ = tx.send((kept, truncated));
    });
    rx
}

/// Wait for a captured stream until `deadline`: a background process left behind by the
/// command may keep the pipe open, and must not hold the answer hostage.
fn collect(rx: &mpsc::Receiver<(Vec<u8>, bool)>, deadline: Instant) -> (Vec<u8>, bool) {
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or((Vec::new(), true))
}

/// Run `spec` to completion (or until its timeout, then SIGKILL).
pub fn run(spec: &Spec) -> io::Result<ProcessOutput> {
    let (program, args) = spec.argv.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", BASE_PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .envs(&spec.env)
        .stdin(if spec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    // Its own process group, so that a timeout kills the command's children too.
    cmd.process_group(0);
    let mut child = cmd.spawn()?;
    if let (Some(input), Some(mut pipe)) = (spec.stdin.clone(), child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out = capture(child.stdout.take().expect("piped"));
    let err = capture(child.stderr.take().expect("piped"));
    let deadline = spec.timeout.map(|t| Instant::now() + t);
    let mut pause = Duration::from_micros(200);
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            timed_out = true;
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            break child.wait()?;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let grace = Instant::now() + Duration::from_secs(2);
    let (stdout, t1) = collect(&out, grace);
    let (stderr, t2) = collect(&err, grace);
    Ok(ProcessOutput { exit_code: status.code(), signal: status.signal(), timed_out, stdout, stderr, truncated: t1 || t2 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Spec {
        Spec { argv: vec!["/bin/sh".into(), "-c".into(), script.into()], ..Default::default() }
    }

    #[test]
    fn captures_exit_code_and_streams() {
        let o = run(&sh("echo out; echo err >&2; exit 3")).unwrap();
        assert_eq!(o.exit_code, Some(3));
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"err\n");
    }

    #[test]
    fn kills_on_timeout() {
        let mut s = sh("sleep 30");
        s.timeout = Some(Duration::from_millis(200));
        let t = Instant::now();
        let o = run(&s).unwrap();
        assert!(o.timed_out);
        assert_eq!(o.signal, Some(9));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn background_children_do_not_hold_the_answer() {
        let t = Instant::now();
        let o = run(&sh("echo started; sleep 30 > /dev/null 2>&1 & echo done")).unwrap();
        assert_eq!(o.exit_code, Some(0));
        assert_eq!(o.stdout, b"started\ndone\n");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn passes_stdin_env_and_cwd() {
        let mut s = sh("cat; printf ' %s ' \"$GREETING\"; pwd");
        s.stdin = Some(b"in".to_vec());
        s.env.insert("GREETING".into(), "hi".into());
        s.cwd = Some("/tmp".into());
        let o = run(&s).unwrap();
        assert_eq!(String::from_utf8(o.stdout).unwrap(), "in hi /tmp\n");
    }
}
