//! Checks against the real `openssl` command line tool (Debian package `openssl`).

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use pki::{subject_hash, subject_hash_hex, subject_string, Ca, Identity, Validity};

fn openssl(args: &[&str], cert: &Path) -> (bool, String) {
    let out =
        Command::new("openssl").args(["x509", "-noout", "-in"]).arg(cert).args(args).output().expect("the openssl tool is installed (apt-get install openssl)");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn openssl_hash(cert: &Path) -> String {
    let (ok, out) = openssl(&["-subject_hash"], cert);
    assert!(ok, "openssl failed on {}", cert.display());
    out
}

#[test]
fn generated_certificates_hash_like_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["minikubeCA", "  Mixed   Case\tName  ", "ÄÖÜ unicode Ünïcødé", "a", "proxyClientCA"];
    let mut checked = 0;
    for (i, cn) in names.iter().enumerate() {
        let ca = Ca::generate(cn, Validity::days_from_now(10)).unwrap();
        let client = ca.issue_client("minikube-user", &["system:masters", "Second  ORG "], Validity::days_from_now(1)).unwrap();
        let server = ca.issue_server(cn.trim(), &["localhost", "minikube"], &["127.0.0.1".parse::<IpAddr>().unwrap()], Validity::days_from_now(1)).unwrap();
        for (j, id) in [ca.identity(), &client, &server].into_iter().enumerate() {
            let path = dir.path().join(format!("{i}-{j}.crt"));
            std::fs::write(&path, &id.cert_pem).unwrap();
            let ours = subject_hash_hex(&id.cert_der().unwrap()).unwrap();
            assert_eq!(ours, openssl_hash(&path), "subject {cn:?} #{j}");
            checked += 1;
        }
    }
    assert_eq!(checked, 15);
}

#[test]
fn debian_ca_bundle_hashes_like_openssl() {
    let root = Path::new("/usr/share/ca-certificates");
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e} (apt-get install ca-certificates)", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "crt") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() > 100, "expected Debian's CA bundle, found {} files", files.len());
    // openssl hashes a whole batch per run to keep the test quick.
    for chunk in files.chunks(200) {
        let script: String = chunk.iter().map(|f| format!("openssl x509 -noout -subject_hash -in '{}'\n", f.display())).collect();
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert!(out.status.success());
        let theirs: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
        assert_eq!(theirs.len(), chunk.len());
        for (f, want) in chunk.iter().zip(theirs) {
            let pem = std::fs::read(f).unwrap();
            let der = pki::certs_from_pem(&pem, &f.display().to_string()).unwrap().remove(0);
            assert_eq!(format!("{:08x}", subject_hash(&der).unwrap()), want, "{}", f.display());
        }
    }
}

#[test]
fn client_subject_and_validity_as_openssl_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("minikubeCA", Validity::days_from_now(3650)).unwrap();
    let client = ca.issue_client("minikube-user", &["system:masters"], Validity::days_from_now(1)).unwrap();
    let expired = ca.issue_client("old", &[], Validity::expired()).unwrap();
    let (c, e) = (dir.path().join("client.crt"), dir.path().join("expired.crt"));
    std::fs::write(&c, &client.cert_pem).unwrap();
    std::fs::write(&e, &expired.cert_pem).unwrap();
    let (_, subject) = openssl(&["-subject", "-nameopt", "RFC2253"], &c);
    assert_eq!(subject, "subject=CN=minikube-user,O=system:masters");
    assert_eq!(subject_string(&client.cert_der().unwrap()).unwrap(), "O=system:masters, CN=minikube-user");
    assert!(openssl(&["-checkend", "0"], &c).0, "fresh certificate valid now");
    assert!(!openssl(&["-checkend", "0"], &e).0, "expired certificate refused by openssl");
    // The CA signature verifies with openssl.
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    let v = Command::new("openssl").args(["verify", "-CAfile"]).arg(&ca_path).arg(&c).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

#[test]
fn server_sans_as_openssl_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("minikubeCA", Validity::days_from_now(10)).unwrap();
    let ips: Vec<IpAddr> = ["10.96.0.1", "127.0.0.1", "::1"].iter().map(|s| s.parse().unwrap()).collect();
    let server = ca.issue_server("minikube", &["control-plane.minikube.internal", "localhost"], &ips, Validity::days_from_now(1)).unwrap();
    let p = dir.path().join("apiserver.crt");
    std::fs::write(&p, &server.cert_pem).unwrap();
    let (_, text) = openssl(&["-ext", "subjectAltName"], &p);
    for want in ["DNS:control-plane.minikube.internal", "DNS:localhost", "IP Address:10.96.0.1", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"] {
        assert!(text.contains(want), "{want} missing from {text}");
    }
}

#[test]
fn save_writes_key_0600_and_load_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("minikubeCA", Validity::days_from_now(10)).unwrap();
    let (c, k) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
    ca.identity().save(&c, &k).unwrap();
    assert_eq!(std::fs::metadata(&k).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&c).unwrap().permissions().mode() & 0o777, 0o644);
    let loaded = Identity::load(&c, &k).unwrap();
    assert_eq!(&loaded, ca.identity());
    // A reloaded CA issues certificates that chain to the original.
    let again = Ca::from_identity(loaded).unwrap();
    let leaf = again.issue_client("x", &[], Validity::days_from_now(1)).unwrap();
    let (cp, lp) = (dir.path().join("ca.pem"), dir.path().join("leaf.pem"));
    std::fs::write(&cp, ca.cert_pem()).unwrap();
    std::fs::write(&lp, &leaf.cert_pem).unwrap();
    let v = Command::new("openssl").args(["verify", "-CAfile"]).arg(&cp).arg(&lp).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    // Broken files are reported with their path.
    std::fs::write(&k, "not a key").unwrap();
    let err = Identity::load(&c, &k).unwrap_err().to_string();
    assert!(err.contains("ca.key"), "{err}");
}

/// The join pin is what kubeadm's documentation computes with openssl: the SHA-256 of the CA's
/// public key in DER.
#[test]
fn public_key_pin_matches_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("minikubeCA", Validity::days_from_now(10)).unwrap();
    let path = dir.path().join("ca.crt");
    std::fs::write(&path, &ca.identity().cert_pem).unwrap();
    let (ok, pubkey) = openssl(&["-pubkey"], &path);
    assert!(ok);
    let out = Command::new("sh")
        .arg("-c")
        .arg("openssl pkey -pubin -outform der | sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(pubkey.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let expected = format!("sha256:{}", String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap());
    assert_eq!(pki::public_key_pin(&ca.identity().cert_der().unwrap()).unwrap(), expected);
}
