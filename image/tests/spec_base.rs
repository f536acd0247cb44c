//! Spec bases (`base = "..."`): the merge rule (tables key by key, the spec wins elsewhere, arrays
//! replaced whole, `NAME_extra` appends), errors naming the file for a missing base and a cycle,
//! and the merged text as the cache-key input. Then `[container]` checked when read: each bad
//! field is refused with an error naming the spec file and the field. No network.

use image::spec::{Port, Protocol, Select, Spec};
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

const BASE: &str = r#"
[image]
name = "from-base"
hostname = "base-host"

[source]
suite = "bookworm"
updates = ["bookworm-updates"]

[packages]
required = true
include = ["base-files"]

[files]
overlays = ["../overlay", "overlay"]
drop = ["/usr/share/man", "/usr/share/info"]

[[users]]
name = "docker"
uid = 1000

[alternatives]
"/usr/bin/awk" = "/usr/bin/mawk"
"/usr/bin/which" = "/usr/bin/which.debianutils"

[systemd]
default_target = "multi-user.target"
mask = ["a.timer"]
"#;

#[test]
fn the_spec_wins_tables_merge_and_extra_appends() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "common/base.toml", BASE);
    let spec = write(
        d.path(),
        "img/spec.toml",
        r#"base = "../common/base.toml"
[image]
name = "img"

[packages]
include = ["systemd", "sudo"]

[files]
drop_extra = ["/usr/lib/x"]

[alternatives]
"/usr/bin/awk" = "/usr/bin/gawk"
"/usr/bin/pager" = "/usr/bin/less"

[systemd]
mask_extra = ["b.service"]
"#,
    );
    let s = Spec::load(&spec).unwrap();
    // Scalars: the spec's; what it does not say: the base's.
    assert_eq!(s.image.name, "img");
    assert_eq!(s.image.hostname, "base-host");
    assert!(s.packages.required);
    assert_eq!(s.systemd.default_target.as_deref(), Some("multi-user.target"));
    // Arrays: the spec's replaces the base's whole ...
    let include: Vec<&str> = s.packages.include.iter().map(|p| p.as_str()).collect();
    assert_eq!(include, ["systemd", "sudo"]);
    assert_eq!(s.source.updates, ["bookworm-updates"]);
    // ... and NAME_extra appends to it, the base's items first.
    assert_eq!(s.files.drop, ["/usr/share/man", "/usr/share/info", "/usr/lib/x"]);
    assert_eq!(s.systemd.mask, ["a.timer", "b.service"]);
    // Tables merge key by key, the spec's value winning on a key both have.
    let alt: Vec<(&str, &str)> = s.alternatives.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(alt, [("/usr/bin/awk", "/usr/bin/gawk"), ("/usr/bin/pager", "/usr/bin/less"), ("/usr/bin/which", "/usr/bin/which.debianutils")]);
    // Arrays of tables come from the base when the spec has none.
    assert_eq!(s.users.len(), 1);
    // Paths stay relative to the spec, wherever they were written.
    assert_eq!(s.dir, d.path().join("img"));
    assert_eq!(s.resolve_path(&s.files.overlays[1]), d.path().join("img/overlay"));
    assert_eq!(s.bases, [d.path().join("img/../common/base.toml")]);
}

#[test]
fn a_base_may_have_a_base_each_relative_to_its_file() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a/root.toml", "[image]\nhostname = 'root'\nname = 'root'\n[systemd]\nmask = ['r.timer']\n");
    write(d.path(), "b/mid.toml", "base = '../a/root.toml'\n[image]\nname = 'mid'\n[systemd]\nmask_extra = ['m.timer']\n");
    let p = write(d.path(), "c/spec.toml", "base = '../b/mid.toml'\n[packages]\ninclude = ['x']\n[systemd]\nmask_extra = ['s.timer']\n");
    let s = Spec::load(&p).unwrap();
    assert_eq!((s.image.name.as_str(), s.image.hostname.as_str()), ("mid", "root"));
    assert_eq!(s.systemd.mask, ["r.timer", "m.timer", "s.timer"]);
    assert_eq!(s.bases.len(), 2);
}

#[test]
fn extra_keys_are_checked() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "base.toml", BASE);
    let both = write(d.path(), "both.toml", "base = 'base.toml'\n[packages]\ninclude = ['x']\n[files]\ndrop = ['/a']\ndrop_extra = ['/b']\n");
    let e = Spec::load(&both).unwrap_err().to_string();
    assert!(e.contains("both.toml") && e.contains("files.drop and files.drop_extra"), "{e}");
    let not_array = write(d.path(), "na.toml", "base = 'base.toml'\n[packages]\ninclude = ['x']\n[files]\ndrop_extra = '/b'\n");
    let e = Spec::load(&not_array).unwrap_err().to_string();
    assert!(e.contains("na.toml") && e.contains("files.drop_extra") && e.contains("array"), "{e}");
    let onto_table = write(d.path(), "ot.toml", "base = 'base.toml'\nalternatives_extra = ['/b']\n[packages]\ninclude = ['x']\n");
    let e = Spec::load(&onto_table).unwrap_err().to_string();
    assert!(e.contains("ot.toml") && e.contains("alternatives_extra") && e.contains("not an array"), "{e}");
    // Without a base, NAME_extra is the whole array.
    let alone = write(d.path(), "alone.toml", "[image]\nname = 'x'\n[packages]\ninclude_extra = ['x']\n");
    assert_eq!(Spec::load(&alone).unwrap().packages.include[0].as_str(), "x");
}

#[test]
fn a_missing_base_is_named() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "spec.toml", "base = 'nosuch/base.toml'\n[image]\nname = 'x'\n[packages]\ninclude = ['x']\n");
    let e = Spec::load(&p).unwrap_err().to_string();
    assert!(e.contains(&p.display().to_string()) && e.contains("nosuch/base.toml") && e.contains("cannot read its base"), "{e}");
    // A base that is not a path.
    let p = write(d.path(), "num.toml", "base = 3\n[image]\nname = 'x'\n[packages]\ninclude = ['x']\n");
    let e = Spec::load(&p).unwrap_err().to_string();
    assert!(e.contains("num.toml") && e.contains("base: expected the path"), "{e}");
}

#[test]
fn a_cycle_of_bases_is_named() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a.toml", "base = 'b.toml'\n");
    write(d.path(), "b.toml", "base = 'sub/../a.toml'\n");
    std::fs::create_dir_all(d.path().join("sub")).unwrap();
    let p = write(d.path(), "spec.toml", "base = 'a.toml'\n[image]\nname = 'x'\n[packages]\ninclude = ['x']\n");
    let e = Spec::load(&p).unwrap_err().to_string();
    assert!(e.contains("a cycle of bases") && e.contains("a.toml -> ") && e.contains("b.toml"), "{e}");
    // A spec that is its own base.
    let p = write(d.path(), "self.toml", "base = 'self.toml'\n[image]\nname = 'x'\n[packages]\ninclude = ['x']\n");
    let e = Spec::load(&p).unwrap_err().to_string();
    assert!(e.contains("self.toml") && e.contains("a cycle of bases"), "{e}");
}

#[test]
fn the_merged_text_covers_the_base() {
    let d = tempfile::tempdir().unwrap();
    let base = write(d.path(), "base.toml", BASE);
    let p = write(d.path(), "spec.toml", "base = 'base.toml'\n[packages]\ninclude = ['x']\n");
    let before = Spec::load(&p).unwrap().text;
    assert!(before.contains("base-host"), "{before}");
    // A comment changes nothing merged, so nothing cached on it.
    std::fs::write(&base, format!("# a comment\n{BASE}")).unwrap();
    assert_eq!(Spec::load(&p).unwrap().text, before);
    // A value of the base does.
    std::fs::write(&base, BASE.replace("base-host", "other-host")).unwrap();
    assert_ne!(Spec::load(&p).unwrap().text, before);
}

#[test]
fn an_error_in_the_merged_spec_names_the_spec_and_its_base() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "base.toml", &format!("{BASE}\n[boot]\nbogus = 1\n"));
    let p = write(d.path(), "spec.toml", "base = 'base.toml'\n[packages]\ninclude = ['x']\n");
    let e = Spec::load(&p).unwrap_err().to_string();
    assert!(e.contains("spec.toml") && e.contains("bogus") && e.contains("base.toml"), "{e}");
}

/// A container spec whose `[container]` is `container` (TOML lines).
fn container_spec(container: &str) -> String {
    format!("[image]\nname = 'k'\n[packages]\ninclude = ['base-files', 'runc']\n[container]\n{container}\n")
}

const GOOD: &str = r#"entrypoint = ["/usr/bin/agent", "entrypoint", "--", "/sbin/init"]
env = ["container=docker"]
stop_signal = "SIGRTMIN+3"
exposed_ports = ["22/tcp", "53/udp", "8443"]
layers = ["base", "runtimes", "ours"]
[container.labels]
"org.opencontainers.image.title" = "k"
[[container.place]]
layer = "ours"
select = "local"
[[container.place]]
layer = "ours"
paths = ["/version.json"]
[[container.place]]
layer = "runtimes"
brought_by = ["runc"]
[[container.place]]
layer = "base"
select = "packages"
[[container.place]]
layer = "base"
select = "rest"
"#;

#[test]
fn container_fields_are_typed_when_read() {
    let s = Spec::parse(&container_spec(GOOD), Path::new("k.toml")).unwrap();
    let c = s.container.unwrap();
    assert_eq!(c.layers, ["base", "runtimes", "ours"]);
    assert_eq!(
        c.exposed_ports,
        [Port { number: 22, protocol: Protocol::Tcp }, Port { number: 53, protocol: Protocol::Udp }, Port { number: 8443, protocol: Protocol::Tcp }]
    );
    assert_eq!(c.exposed_ports[2].to_string(), "8443/tcp");
    let rules: Vec<(usize, &Select)> = c.place.iter().map(|p| (p.layer, &p.select)).collect();
    assert_eq!(rules[0], (2, &Select::Local));
    assert_eq!(rules[2], (1, &Select::BroughtBy(vec!["runc".into()])));
    assert_eq!(rules[4], (0, &Select::Rest));
    assert!(c.cmd.is_empty());
}

#[test]
fn a_bad_container_field_is_named() {
    let cases: &[(&str, &str, &str)] = &[
        (r#"layer = "ours""#, r#"layer = "top""#, r#"container.place[0].layer: unknown layer "top""#),
        (r#""53/udp""#, r#""53/udp", "70000/tcp""#, "container.exposed_ports: \"70000/tcp\""),
        (r#""53/udp""#, r#""53/icmp""#, "container.exposed_ports: \"53/icmp\""),
        (r#""53/udp""#, r#""22/tcp""#, "container.exposed_ports: 22/tcp is listed twice"),
        (r#"["/usr/bin/agent", "entrypoint", "--", "/sbin/init"]"#, "[]", "container.entrypoint: empty"),
        (r#"["/usr/bin/agent", "entrypoint", "--", "/sbin/init"]"#, r#"["agent"]"#, "container.entrypoint: \"agent\" is not an absolute path"),
        (r#""SIGRTMIN+3""#, r#""RTMIN+3""#, "container.stop_signal"),
        (r#"["container=docker"]"#, r#"["container"]"#, "container.env: \"container\" is not KEY=value"),
        (r#"select = "local""#, r#"select = "mine""#, "unknown variant `mine`"),
        (r#"select = "local""#, "select = \"local\"\npaths = [\"/x\"]", "container.place[0]: give exactly one of"),
        (r#"paths = ["/version.json"]"#, r#"paths = ["version.json"]"#, "container.place[1].paths: \"version.json\""),
        (r#"brought_by = ["runc"]"#, r#"brought_by = ["crun"]"#, "container.place[2].brought_by: crun is not in packages.include"),
        (r#"brought_by = ["runc"]"#, r#"brought_by = []"#, "container.place[2].brought_by: empty"),
        (
            r#"layer = "base"
select = "packages""#,
            r#"layer = "base"
select = "rest""#,
            "container.place[3]: select = \"rest\" matches every path",
        ),
        (
            r#"layer = "base"
select = "rest""#,
            r#"layer = "base"
select = "top-level""#,
            "container.place: the last rule is select = \"rest\"",
        ),
        (
            r#"["base", "runtimes", "ours"]"#,
            r#"["base", "runtimes", "ours", "spare"]"#,
            "container.layers: no rule of container.place puts anything in layer spare",
        ),
        (r#"["base", "runtimes", "ours"]"#, r#"["base", "runtimes", "ours", "base"]"#, "container.layers: base is listed twice"),
        (
            r#""org.opencontainers.image.title""#,
            r#""org.opencontainers.image.version""#,
            "container.labels: org.opencontainers.image.version is written by the build",
        ),
        ("stop_signal", "stop_sign", "unknown field `stop_sign`"),
    ];
    for (from, to, want) in cases {
        assert!(GOOD.contains(from), "{from}");
        let text = container_spec(&GOOD.replacen(from, to, 1));
        let e = Spec::parse(&text, Path::new("kicbase/spec.toml")).unwrap_err().to_string();
        assert!(e.contains("kicbase/spec.toml") && e.contains(want), "{to}: {e}");
    }
    // A container has no kernel and no boot section.
    let text = format!("{}\n[kernel]\npackage = 'linux-image-amd64'\nmodules = []\n", container_spec(GOOD));
    let e = Spec::parse(&text, Path::new("kicbase/spec.toml")).unwrap_err().to_string();
    assert!(e.contains("kicbase/spec.toml") && e.contains("[container]") && e.contains("[kernel]"), "{e}");
}
