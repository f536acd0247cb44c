//! Retrying a step's agent call, and polling until something holds: the one helper of each kind
//! for every driver and step.

use std::time::{Duration, Instant};

use agent_api::client::ClientError;

/// A step's agent call that failed for good (after its retries).
#[derive(Debug, thiserror::Error)]
#[error("step {step}: {source}")]
pub struct StepError {
    pub step: &'static str,
    #[source]
    pub source: ClientError,
}

/// Errors worth another attempt: the connection broke or the agent was busy.
pub fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Io { .. } | ClientError::Http(_) => true,
        ClientError::Status { status, .. } => *status == 503 || *status == 429,
        _ => false,
    }
}

/// Run `f` up to `attempts` times, sleeping 0.5 s, 1 s, 2 s... between transient failures.
pub fn with_retry<T>(step: &'static str, attempts: u32, mut f: impl FnMut() -> Result<T, ClientError>) -> Result<T, StepError> {
    let mut delay = Duration::from_millis(500);
    let mut n = 1;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if n < attempts && transient(&e) => {
                tracing::warn!("step {step}: {e}; retrying in {delay:?} (attempt {n} of {attempts})");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(8));
                n += 1;
            }
            Err(source) => return Err(StepError { step, source }),
        }
    }
}

/// Call `probe` every `interval` until it answers `Ok`, `alive()` turns false, or `timeout`
/// passes; the error is the last probe's and whether the thing polled was still alive.
pub fn poll<T, E>(timeout: Duration, interval: Duration, alive: impl Fn() -> bool, mut probe: impl FnMut() -> Result<T, E>) -> Result<T, (E, bool)> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let alive = alive();
        if !alive || Instant::now() >= deadline {
            return Err((last, alive));
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_transient_errors_only() {
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut n = 0;
        let r = with_retry("t", 3, || {
            n += 1;
            if n < 3 {
                Err(ClientError::Io { addr, source: std::io::Error::from(std::io::ErrorKind::ConnectionReset) })
            } else {
                Ok(n)
            }
        });
        assert_eq!(r.unwrap(), 3);
        let mut m = 0;
        let r: Result<(), _> = with_retry("t", 3, || {
            m += 1;
            Err(ClientError::Status { status: 400, error: agent_api::api::ErrorResponse { error: "bad".into(), field: Some("name".into()) } })
        });
        assert!(matches!(r, Err(StepError { step: "t", .. })));
        assert_eq!(m, 1, "a refusal is not retried");
    }

    #[test]
    fn poll_stops_when_dead_or_late_and_returns_the_last_error() {
        let mut calls = 0;
        let r: Result<(), (u32, bool)> = poll(
            Duration::from_secs(60),
            Duration::ZERO,
            || false,
            || {
                calls += 1;
                Err(calls)
            },
        );
        assert_eq!(r, Err((1, false)), "a dead thing is probed once");
        let r: Result<(), (&str, bool)> = poll(Duration::ZERO, Duration::ZERO, || true, || Err("late"));
        assert_eq!(r, Err(("late", true)));
        let mut k = 0;
        let r: Result<u32, ((), bool)> = poll(
            Duration::from_secs(60),
            Duration::ZERO,
            || true,
            || {
                k += 1;
                if k == 3 {
                    Ok(k)
                } else {
                    Err(())
                }
            },
        );
        assert_eq!(r, Ok(3));
    }
}
