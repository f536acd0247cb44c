//! The profile's kubeconfig: cluster at https://127.0.0.1:APISERVER_PORT (the host forward),
//! user minikube-user with the client certificate, all by file path, as minikube writes them.

use std::path::Path;

/// Quote a string for YAML (double-quoted scalar).
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// The kubeconfig text for profile `name`.
pub fn render(name: &str, server: &str, ca: &Path, client_crt: &Path, client_key: &Path) -> String {
    let n = q(name);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: {ca}\n    server: {server}\n  name: {n}\n\
         contexts:\n- context:\n    cluster: {n}\n    namespace: default\n    user: {n}\n  name: {n}\n\
         current-context: {n}\npreferences: {{}}\n\
         users:\n- name: {n}\n  user:\n    client-certificate: {crt}\n    client-key: {key}\n",
        ca = q(&ca.display().to_string()),
        server = q(server),
        crt = q(&client_crt.display().to_string()),
        key = q(&client_key.display().to_string()),
    )
}

/// Write it atomically (0600: it names a key); returns whether the file changed.
pub fn write(target: &Path, text: &str) -> std::io::Result<bool> {
    if std::fs::read_to_string(target).ok().as_deref() == Some(text) {
        return Ok(false);
    }
    pki::atomic::write_atomic(target, text.as_bytes(), 0o600)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_paths_and_server() {
        let t = render("minikube", "https://127.0.0.1:41234", Path::new("/h/certs/ca.crt"), Path::new("/h/c.crt"), Path::new("/h/c.key"));
        assert!(t.contains("server: \"https://127.0.0.1:41234\""));
        assert!(t.contains("current-context: \"minikube\""));
        assert!(t.contains("client-key: \"/h/c.key\""));
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("kubeconfig");
        assert!(write(&p, &t).unwrap());
        assert!(!write(&p, &t).unwrap());
    }
}
