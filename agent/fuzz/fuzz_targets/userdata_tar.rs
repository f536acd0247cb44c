//! The userdata tar read from the first bytes of a data disk.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(len) = agent::userdata::archive_len(data) {
        assert!(len <= data.len());
    }
    let _ = agent::userdata::parse(data);
});
