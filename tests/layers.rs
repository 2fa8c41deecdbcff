//! The module tree is layered (src/lib.rs): a module may use the modules
//! below it, never one above, so no import circle can form. This test reads
//! every source file and fails on any `crate::` path that points up the
//! declared order, on a top-level module that is not in the order, and on
//! clap used outside `commands` (and `main.rs`).

mod common;

use std::path::{Path, PathBuf};

use common::repo;
use gda::LAYERS;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layer a file belongs to: its first path component under src/.
fn layer_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// Code without comments: `//` to the end of the line (doc comments
/// included), so paths named in prose do not count.
fn code(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Every module named right after `crate::`, including inside `use crate::{a, b::c}`.
fn crate_edges(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            out.push(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
    }
    out
}

#[test]
fn every_top_level_module_is_a_layer() {
    let lib = std::fs::read_to_string(repo().join("src/lib.rs")).unwrap();
    let mut declared: Vec<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').trim().to_string())
        .collect();
    declared.sort();
    let mut layers: Vec<String> = LAYERS.iter().map(|l| l.to_string()).collect();
    layers.sort();
    assert_eq!(declared, layers, "src/lib.rs must declare exactly the modules of gda::LAYERS");
}

#[test]
fn no_module_uses_a_layer_above_it() {
    let src = repo().join("src");
    let rank = |name: &str| LAYERS.iter().position(|l| *l == name);
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 30, "found only {} source files", files.len());
    let mut violations = Vec::new();
    for file in &files {
        let layer = layer_of(&src, file);
        if layer == "main" || layer == "lib" {
            continue;
        }
        let own = rank(&layer).unwrap_or_else(|| panic!("{} is in no layer of gda::LAYERS", file.display()));
        let text = code(&std::fs::read_to_string(file).unwrap());
        for target in crate_edges(&text) {
            match rank(&target) {
                Some(r) if r > own => violations.push(format!("{}: {layer} uses {target}", file.display())),
                Some(_) => {}
                None => violations.push(format!("{}: crate::{target} is not a layer", file.display())),
            }
        }
        if layer != "commands" && text.contains("clap") {
            violations.push(format!("{}: clap outside src/commands", file.display()));
        }
    }
    assert!(violations.is_empty(), "layering violations:\n{}", violations.join("\n"));
}

#[test]
fn the_edge_reader_sees_grouped_and_plain_paths() {
    let edges =
        crate_edges("use crate::{config::Spec, data};\nlet x = crate::model::param_count(c); // crate::commands");
    assert_eq!(edges, ["config", "data", "model", "commands"]);
    assert_eq!(crate_edges(&code("let x = 1; // crate::commands is above")), Vec::<String>::new());
}
