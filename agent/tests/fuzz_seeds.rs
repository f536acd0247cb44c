//! The fuzz seeds decode as expected without cargo-fuzz (so CI keeps them meaningful).

use agent::endpoints as ep;
use agent::server::decode_request;

fn seed(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/decode_request").join(name)).unwrap()
}

#[test]
fn seeds_decode() {
    let info = decode_request(&seed("info")).unwrap().unwrap();
    assert_eq!(info.route().name, "info");
    assert!(info.request::<ep::Info>().is_some());
    let hostname = decode_request(&seed("hostname")).unwrap().unwrap();
    assert_eq!(hostname.route().path, "/v1/hostname");
    assert!(hostname.request::<ep::Info>().is_none());
    assert_eq!(hostname.request::<ep::Hostname>().unwrap().name, "minikube");
    let upload = decode_request(&seed("upload")).unwrap().unwrap();
    let u = upload.request::<ep::UploadFile>().unwrap_or_else(|| panic!("{upload:?}"));
    assert_eq!((u.path.as_str(), u.mode, u.owner.as_deref()), ("/etc/x", 0o644, Some("docker")));
    assert_eq!(decode_request(&seed("exec")).unwrap().unwrap().request::<ep::Exec>().unwrap().argv.len(), 3);
    // The runtime seed carries an unknown field: refused, naming it.
    let err = decode_request(&seed("runtime")).unwrap_err();
    assert_eq!((err.status, err.field.as_deref()), (400, Some("x")));
}
