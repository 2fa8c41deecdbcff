//! scripts/build.sh picks the tch release from the libtorch it is pointed at
//! and refuses, before cargo starts, a version gda has no tch release for.

mod common;

use std::process::Command;

use common::*;

fn build_sh(args: &[&str], libtorch: Option<&std::path::Path>) -> std::process::Output {
    let mut c = Command::new(repo().join("scripts/build.sh"));
    c.args(args);
    if let Some(l) = libtorch {
        c.env("LIBTORCH", l);
    }
    c.output().unwrap()
}

#[test]
fn an_unsupported_libtorch_is_refused_with_the_supported_versions() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("build-version"), "2.9.1+cu126\n").unwrap();
    let out = build_sh(&["build", "--release"], Some(tmp.path()));
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("libtorch 2.9.1") && err.contains("is not supported"), "{err}");
    assert!(err.contains("2.11 (tch 0.24), 2.12 (tch 0.25), 2.13 (tch 0.26)"), "{err}");

    let out = build_sh(&["--torch", "2.10"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("libtorch 2.10 is not supported"), "{}", stderr_of(&out));
}

#[test]
fn a_libtorch_of_another_version_than_asked_for_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("build-version"), "2.13.0\n").unwrap();
    let out = build_sh(&["--torch", "2.11", "build"], Some(tmp.path()));
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("--torch 2.11 asked for, but LIBTORCH="), "{}", stderr_of(&out));
}

/// The Rust side names the libtorch it was built against; the tch version
/// table in scripts/build.sh must agree with the tch this build uses.
#[test]
fn the_build_table_names_this_builds_tch_for_its_libtorch() {
    let v = gda::device::torch::LIBTORCH_VERSION;
    let minor: String = v.split('.').take(2).collect::<Vec<_>>().join(".");
    let script = std::fs::read_to_string(repo().join("scripts/build.sh")).unwrap();
    let line = script.lines().find(|l| l.trim_start().starts_with(&format!("{minor})"))).unwrap_or_else(|| {
        panic!("scripts/build.sh has no tch release for libtorch {v}");
    });
    let tch = line.split("echo").nth(1).unwrap().split(';').next().unwrap().trim();
    let lock = std::fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    let locked = lock.split("[[package]]").find(|p| p.contains("name = \"tch\"")).unwrap();
    assert!(locked.contains(&format!("version = \"{tch}.")), "libtorch {v} -> tch {tch}, but Cargo.lock has {locked}");
}
