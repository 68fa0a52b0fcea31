//! The shared library exports exactly the symbols of include/libxenstore.map, each with the
//! version the map gives it, and depends on no other Xen library.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// Symbols the map declares for other parts of the library that may not be built yet; when
/// they are exported they must still carry their map version. (None at present.)
const OPTIONAL: &[&str] = &[];

/// name -> version, from the map.
fn map_symbols() -> BTreeMap<String, String> {
    let map = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/include/libxenstore.map"
    ))
    .unwrap();
    let mut out = BTreeMap::new();
    let mut version = String::new();
    for line in map.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_suffix('{').map(str::trim) {
            version = v.to_string();
        } else if let Some(sym) = l.strip_suffix(';') {
            if !sym.contains(':') && !sym.starts_with('}') && sym != "*" {
                out.insert(sym.to_string(), version.clone());
            }
        }
    }
    out
}

/// The cdylib next to this test's deps directory (target/<profile>/libxenstore.so), brought up
/// to date first: `cargo test` itself only builds the rlib, so a stale .so would be checked.
fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.args([
        "build",
        "--lib",
        "--quiet",
        "--manifest-path",
        concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
    ]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("running cargo build --lib");
    assert!(status.success(), "cargo build --lib failed");
    let lib = profile_dir.join("libxenstore.so");
    assert!(lib.exists(), "{} not built", lib.display());
    lib
}

/// objdump's output on the library. A missing objdump fails the test (install binutils): a
/// check that cannot run must not pass.
fn objdump(args: &[&str]) -> String {
    let out = Command::new("objdump")
        .args(args)
        .arg(library())
        .output()
        .expect("objdump (binutils) is needed to check the exported symbols");
    assert!(
        out.status.success(),
        "objdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn exports_exactly_the_map_with_versions() {
    let table = objdump(&["-T"]);
    let mut exported = BTreeMap::new();
    for line in table.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // "addr g DF .text size VERSION name" for defined symbols.
        if f.len() >= 7 && f[1] == "g" && f[3] != "*UND*" && f[3] != "*ABS*" {
            exported.insert(f[6].to_string(), f[5].to_string());
        }
    }
    let map = map_symbols();
    assert!(map.len() >= 47, "map parsed: {map:?}");
    for (name, version) in &map {
        match exported.get(name) {
            Some(v) => assert_eq!(v, version, "{name} exported with the wrong version"),
            None => assert!(
                OPTIONAL.contains(&name.as_str()),
                "{name} ({version}) is not exported"
            ),
        }
    }
    for name in exported.keys() {
        assert!(
            map.contains_key(name),
            "{name} is exported but not in the map"
        );
    }
}

#[test]
fn needs_no_other_xen_library_and_has_the_soname() {
    let dynamic = objdump(&["-p"]);
    let needed: Vec<&str> = dynamic
        .lines()
        .filter(|l| l.trim_start().starts_with("NEEDED"))
        .collect();
    assert!(!needed.is_empty());
    for n in &needed {
        assert!(!n.contains("libxen"), "depends on another Xen library: {n}");
    }
    assert!(dynamic
        .lines()
        .any(|l| l.contains("SONAME") && l.contains("libxenstore.so.4")));
}
