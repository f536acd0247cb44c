//! The fuzz seeds decode as expected without cargo-fuzz (so CI keeps them meaningful).

use agent::server::{decode_request, JsonRequest, Route};

fn seed(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/decode_request").join(name)).unwrap()
}

#[test]
fn seeds_decode() {
    assert_eq!(decode_request(&seed("info")).unwrap().unwrap().0, Route::Info);
    let (route, json) = decode_request(&seed("hostname")).unwrap().unwrap();
    assert_eq!(route, Route::Hostname);
    assert!(matches!(json, Some(JsonRequest::Hostname(h)) if h.name == "minikube"));
    match decode_request(&seed("upload")).unwrap().unwrap().0 {
        Route::UploadFile(u) => assert_eq!((u.path.as_str(), u.mode, u.owner.as_deref()), ("/etc/x", 0o644, Some("docker"))),
        other => panic!("{other:?}"),
    }
    assert!(matches!(decode_request(&seed("exec")).unwrap().unwrap().1, Some(JsonRequest::Exec(e)) if e.argv.len() == 3));
    // The runtime seed carries an unknown field: refused, naming it.
    let err = decode_request(&seed("runtime")).unwrap_err();
    assert_eq!((err.status, err.field.as_deref()), (400, Some("x")));
}
