//! The module tree is layered (src/lib.rs): a module may use the modules
//! below it, never one above, so no import circle can form. This test reads
//! every source file and fails on any `crate::` path that points up the
//! declared order, on a top-level module that is not in the order, on
//! clap used outside `commands` (and `main.rs`), and on a file circle: files
//! that reach each other through their imports (`crate::` and `super::`
//! paths), within one layer as well as across. A file's own ancestors
//! (`super::` into its folder's mod.rs) and descendants do not count: a
//! folder is one module with its parts below it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
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

/// A file's module path: src/a/b.rs and src/a/b/mod.rs are `a::b`; lib.rs
/// and main.rs the crate root.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") || parts == ["lib"] || parts == ["main"] {
        parts.pop();
    }
    parts
}

/// The identifier at the start of `s`.
fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// Every full path a `crate::`/`super::` path names, groups expanded at
/// any depth (`a::{b, c::{d, e}}` is a::b, a::c::d and a::c::e); `rest` is
/// the text after the path's first `::`.
fn expand(prefix: Vec<String>, rest: &str, out: &mut Vec<Vec<String>>) {
    if let Some(group) = rest.strip_prefix('{') {
        let (mut depth, mut start) = (0, 0);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(prefix, group[start..i].trim(), out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(prefix.clone(), group[start..i].trim(), out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let name = ident(rest);
    if name.is_empty() || name == "self" {
        out.push(prefix);
        return;
    }
    let mut path = prefix;
    path.push(name.to_string());
    match rest[name.len()..].strip_prefix("::") {
        Some(next) => expand(path, next, out),
        None => out.push(path),
    }
}

/// The module paths `code` (a file of module `module`) names through
/// `crate::` and `super::` (repeated `super::` climbs further).
fn module_paths(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::").chain(code.match_indices("super::")) {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut rest = &code[i..];
        let mut base: Vec<String> = if rest.starts_with("crate::") { Vec::new() } else { module.to_vec() };
        if let Some(r) = rest.strip_prefix("crate::") {
            rest = r;
        }
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        expand(base, rest, &mut out);
    }
    out
}

/// The file-level import graph of `files` (module path → code), without
/// the edges between a module and its own ancestors; a path names the
/// deepest module file it passes through.
fn file_edges(files: &BTreeMap<Vec<String>, String>) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut edges = BTreeMap::new();
    for (module, code) in files {
        let mut targets = BTreeSet::new();
        for path in module_paths(module, code) {
            let Some(target) = (0..=path.len()).rev().map(|n| &path[..n]).find(|p| files.contains_key(*p)) else {
                continue;
            };
            let related = target.starts_with(module) || module.starts_with(target);
            if !related {
                targets.insert(target.to_vec());
            }
        }
        edges.insert(module.clone(), targets);
    }
    edges
}

/// One circle of the graph, as the files around it (`a → b → a`), if any.
fn a_circle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit<'a>(
        v: &'a Vec<String>,
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        done: &mut BTreeSet<&'a Vec<String>>,
        stack: &mut Vec<&'a Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| *s == v) {
            return Some(stack[at..].iter().chain([&v]).map(|m| m.join("::")).collect());
        }
        if !done.insert(v) {
            return None;
        }
        stack.push(v);
        for w in edges.get(v).into_iter().flatten() {
            if let Some(c) = visit(w, edges, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|v| visit(v, edges, &mut done, &mut Vec::new()))
}

#[test]
fn no_files_import_each_other() {
    let src = repo().join("src");
    let mut paths = Vec::new();
    sources(&src, &mut paths);
    let files: BTreeMap<Vec<String>, String> =
        paths.iter().map(|f| (module_of(&src, f), code(&std::fs::read_to_string(f).unwrap()))).collect();
    let edges = file_edges(&files);
    assert!(edges.values().map(BTreeSet::len).sum::<usize>() > 100, "the import reader sees too few imports");
    if let Some(circle) = a_circle(&edges) {
        panic!("a file circle (move what both sides need to where it belongs): {}", circle.join(" → "));
    }
}

/// The circle test on a planted tree: siblings through `super::`, a
/// nested group, and a cross-folder path all close circles; a child using
/// its folder's mod.rs does not.
#[test]
fn the_circle_reader_sees_a_planted_circle() {
    let tree = |files: &[(&str, &str)]| -> BTreeMap<Vec<String>, String> {
        files
            .iter()
            .map(|(m, c)| (m.split("::").filter(|p| !p.is_empty()).map(String::from).collect(), c.to_string()))
            .collect()
    };
    let circle = |files: &[(&str, &str)]| a_circle(&file_edges(&tree(files)));
    let siblings = [("a", "mod b; mod c; use self::b::X;"), ("a::b", "use super::c::Y;"), ("a::c", "use super::b::X;")];
    assert_eq!(circle(&siblings), Some(vec!["a::b".into(), "a::c".into(), "a::b".into()]));
    let nested = [("a::b", "use crate::{a::{c::{self, Z}}, d};"), ("a::c", "fn f() { crate::a::b::g() }"), ("d", "")];
    assert!(circle(&nested).is_some());
    let across = [("x::p", "use crate::y::q::T;"), ("y::q", "use crate::z::W;"), ("z", "use crate::x::p::S;")];
    assert_eq!(circle(&across).map(|c| c.len()), Some(4));
    let family = [("a", "use self::b::X;"), ("a::b", "use super::Y; use super::super::a::Z;")];
    assert_eq!(circle(&family), None);
    let one_way = [("a::b", "use super::c::Y;"), ("a::c", "use crate::d::Z;"), ("d", "")];
    assert_eq!(circle(&one_way), None);
}

/// A file is read whole: at most 600 lines, test modules included (a large
/// one moves to a sibling `tests.rs` or to tests/).
#[test]
fn no_source_file_is_over_600_lines() {
    let src = repo().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .map(|f| (f, std::fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, n)| *n > 600)
        .map(|(f, n)| format!("{}: {n} lines", f.display()))
        .collect();
    assert!(long.is_empty(), "files over 600 lines (split them by idea):\n{}", long.join("\n"));
}
