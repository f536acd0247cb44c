//! Request decoding: HTTP head parsing, routing, query and JSON decoding. Nothing is executed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match agent::server::decode_request(data) {
        Ok(Some((route, json))) => {
            // A decoded JSON route always carries its body, and raw routes never do.
            assert_eq!(route.has_json_body(), json.is_some());
        }
        Ok(None) => {}
        Err(e) => {
            // Every refusal is a client or server error status with a message.
            assert!((400..600).contains(&e.status), "{e:?}");
            assert!(!e.message.is_empty());
        }
    }
});
