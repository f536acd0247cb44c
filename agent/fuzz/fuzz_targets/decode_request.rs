//! Request decoding: HTTP head parsing, routing, query and JSON decoding. Nothing is executed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match agent::server::decode_request(data) {
        // A decoded request is of its endpoint's request type by construction.
        Ok(Some(_)) | Ok(None) => {}
        Err(e) => {
            // Every refusal is a client or server error status with a message.
            assert!((400..600).contains(&e.status), "{e:?}");
            assert!(!e.message.is_empty());
        }
    }
});
