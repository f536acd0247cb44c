//! How `start` reports: one line (or one JSON object) per finished step, with its duration and
//! whether it changed anything.

use std::io::Write;
use std::time::{Duration, Instant};

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    /// One JSON object per line.
    Json,
}

/// One finished step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepEvent {
    pub step: &'static str,
    pub seconds: f64,
    pub changed: bool,
    pub detail: String,
}

/// Prints step events and keeps them for the caller.
pub struct Reporter {
    pub output: Output,
    pub events: Vec<StepEvent>,
    out: Box<dyn Write>,
}

impl Reporter {
    pub fn new(output: Output, out: Box<dyn Write>) -> Reporter {
        Reporter { output, events: Vec::new(), out }
    }

    pub fn step(&mut self, step: &'static str, started: Instant, changed: bool, detail: impl Into<String>) {
        let e = StepEvent { step, seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0, changed, detail: detail.into() };
        let line = match self.output {
            Output::Text => format!("{:<10} {:>8.2}s  {}{}", e.step, e.seconds, if e.changed { "" } else { "(unchanged) " }, e.detail),
            Output::Json => serde_json::json!({ "event": "step", "step": e.step, "seconds": e.seconds, "changed": e.changed, "detail": e.detail }).to_string(),
        };
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
        self.events.push(e);
    }

    pub fn done(&mut self, total: Duration, kubeconfig: &std::path::Path) {
        let line = match self.output {
            Output::Text => format!("done       {:>8.2}s  kubeconfig {}", total.as_secs_f64(), kubeconfig.display()),
            Output::Json => {
                serde_json::json!({ "event": "done", "seconds": (total.as_secs_f64() * 1000.0).round() / 1000.0, "kubeconfig": kubeconfig }).to_string()
            }
        };
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_events_are_one_object_per_line() {
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let shared = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut r = Reporter::new(Output::Json, Box::new(Buf(shared.clone())));
        r.step("boot", Instant::now(), true, "x");
        r.done(Duration::from_millis(1500), std::path::Path::new("/k"));
        let text = String::from_utf8(shared.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["step"], "boot");
        assert_eq!(lines[1]["event"], "done");
        assert_eq!(lines[1]["seconds"], 1.5);
    }
}
