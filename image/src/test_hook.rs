//! A test hook: with `MINIKUBE_BUILD_PAUSE_AT=POINT` in the environment, the build stops at
//! POINT, says so on stderr and waits, so that a test can interrupt it exactly there (SIGINT,
//! SIGKILL) and check that the previous artifact is intact and the next build cleans up.
//! Points: `squashfs` (mksquashfs running, its output a temporary file), `iso-write` (the ISO
//! written to its temporary file, not yet renamed), `archive-write` (the same for kicbase).

/// The environment variable naming the point.
pub const ENV: &str = "MINIKUBE_BUILD_PAUSE_AT";
/// What is printed on stderr when paused (followed by the point).
pub const PAUSED: &str = "minikube-build: paused at";

/// Wait here (up to ten minutes) if the hook names `point`.
pub fn pause(point: &str) {
    if std::env::var(ENV).is_ok_and(|v| v == point) {
        eprintln!("{PAUSED} {point}");
        std::thread::sleep(std::time::Duration::from_secs(600));
    }
}
