//! Messages for the machine's console: the serial console is what the launcher watches.

use std::io::Write;
use std::path::Path;

/// Print `line` on stdout and on `console` (usually /dev/console); a missing console is fine.
pub fn announce(console: Option<&Path>, line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
    if let Some(path) = console {
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}
