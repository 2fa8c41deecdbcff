//! The docs and shipped specs are checked against the code: every spec key is
//! documented, the tensor reference matches the model, every spec in
//! experiments/ loads, the commands of the README and docs/ run, the README
//! stays a front page and every link between the pages resolves.

mod common;

use std::collections::BTreeSet;

use common::*;
use gda::config::Spec;

/// Dotted names of every key of a resolved spec.
fn keys(value: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let toml::Value::Table(t) = value {
        for (k, v) in t {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            if v.is_table() {
                keys(v, &key, out);
            } else {
                out.insert(key);
            }
        }
    }
}

#[test]
fn every_spec_key_is_documented_in_the_reference() {
    let doc = std::fs::read_to_string(repo().join("docs/spec.md")).unwrap();
    let value: toml::Value = toml::from_str(&Spec::default().to_toml()).unwrap();
    let mut all = BTreeSet::new();
    keys(&value, "", &mut all);
    assert!(all.len() > 30);
    let missing: Vec<&String> = all.iter().filter(|k| !doc.contains(&format!("`{k}`"))).collect();
    assert!(missing.is_empty(), "docs/spec.md does not document: {missing:?}");
}

#[test]
fn tensor_reference_lists_exactly_the_default_models_tensors() {
    let doc = std::fs::read_to_string(repo().join("docs/tensors.md")).unwrap();
    let spec = Spec::load(None, &[]).unwrap();
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _model = gda::model::Model::new(&spec.model, vs.root());
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .map(|l| {
            let mut cells = l.split('|');
            let name = cells.next().unwrap().trim().trim_end_matches('`').to_string();
            let shape = cells.next().unwrap().trim().to_string();
            format!("{name} {shape}")
        })
        .collect();
    let built: BTreeSet<String> = vs.variables().into_iter().map(|(n, t)| format!("{n} {:?}", t.size())).collect();
    assert_eq!(documented, built);
}

#[test]
fn the_shipped_default_spec_is_the_built_in_default() {
    let builtin = Spec::load(None, &[]).unwrap();
    let shipped = Spec::load(Some(&repo().join("experiments/default.toml")), &[]).unwrap();
    assert_eq!(builtin.to_toml(), shipped.to_toml());
    assert_eq!(builtin.hash(), shipped.hash());
}

#[test]
fn every_shipped_spec_loads() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("experiments")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let spec = Spec::load(Some(&p), &[]).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(spec.name, p.file_stem().unwrap().to_string_lossy());
            n += 1;
        }
    }
    assert!(n >= 2);
}

#[test]
fn the_smoke_spec_trains_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("smoke");
    let out = gda()
        .current_dir(repo())
        .args(["train", "--spec", "experiments/smoke.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let val = column(&run, "val_loss");
    assert_eq!(val.len(), 4);
    assert!(val[3].1 < val[0].1 - 1.5, "{val:?}");
}

/// The README and every page of docs/, in that order (docs/ by name).
fn doc_pages() -> Vec<std::path::PathBuf> {
    let mut pages: Vec<_> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages.insert(0, repo().join("README.md"));
    pages
}

/// Lines of a page's `sh` blocks that invoke gda, in order.
fn sh_commands(page: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(page).unwrap();
    let mut in_block = false;
    let mut cmds = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_block = line.trim() == "```sh";
            continue;
        }
        let l = line.trim();
        if in_block && (l.starts_with("gda ") || l.starts_with("./target/release/gda ")) {
            cmds.push(l.trim_start_matches("./target/release/").to_string());
        }
    }
    cmds
}

/// Runs one page's commands in order, in a scratch directory of its own
/// holding a copy of experiments/ (so results/ lands there): each page's
/// `sh` blocks stand alone.
fn run_page_commands(page: &str, cmds: &[String]) {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("experiments");
    std::fs::create_dir(&exp).unwrap();
    for entry in std::fs::read_dir(repo().join("experiments")).unwrap() {
        let p = entry.unwrap().path();
        // experiments/study/ holds the presets, which are built into gda.
        if p.is_file() {
            std::fs::copy(&p, exp.join(p.file_name().unwrap())).unwrap();
        }
    }
    for cmd in cmds {
        let args: Vec<String> = cmd.split_whitespace().skip(1).map(|a| a.trim_matches('\'').to_string()).collect();
        let mut c = gda();
        c.current_dir(tmp.path()).args(&args);
        // Shrink training commands to a few steps; a resume continues the
        // shrunk run with its own saved spec.
        let trains = ["train", "sweep", "ablate", "grow"].contains(&args[0].as_str());
        if trains && !args.iter().any(|a| a == "--resume" || a == "--dry-run") {
            c.args(["--set", "train.steps=4", "--set", "train.eval_every=2", "--set", "train.eval_tokens=512"]);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{page}: command failed: {cmd}\n{}", stderr_of(&out));
        match args[0].as_str() {
            "train" => assert!(stdout_of(&out).contains("done: "), "{cmd}: {}", stdout_of(&out)),
            "sweep" | "ablate" if !args.iter().any(|a| a == "--dry-run") => {
                assert!(stdout_of(&out).contains("summary: "), "{cmd}: {}", stdout_of(&out))
            }
            "grow" if args.iter().any(|a| a == "--compare") => {
                assert!(stdout_of(&out).contains("summary: "), "{cmd}: {}", stdout_of(&out))
            }
            "grow" => assert!(stdout_of(&out).contains("done: "), "{cmd}: {}", stdout_of(&out)),
            "bench" => assert!(stdout_of(&out).contains("median_tokens_per_s"), "{cmd}: {}", stdout_of(&out)),
            "reproduce" => assert!(stdout_of(&out).contains("\nstudy total: "), "{cmd}: {}", stdout_of(&out)),
            "data" if args[1] == "make-tasks" => {
                assert!(stdout_of(&out).contains("corpus_choice.jsonl ("), "{cmd}: {}", stdout_of(&out))
            }
            _ => {}
        }
    }
}

/// Every command in an `sh` block of the README or of a page in docs/ runs
/// (page by page, each in its own scratch directory), and the README shows
/// one example of every subcommand.
#[test]
fn the_documented_commands_run() {
    let readme = sh_commands(&repo().join("README.md"));
    let shown: BTreeSet<&str> = readme.iter().filter_map(|c| c.split_whitespace().nth(1)).collect();
    for sub in ["train", "sweep", "ablate", "grow", "eval", "report", "status", "sample", "export", "data", "bench"] {
        assert!(shown.contains(sub), "README shows no `gda {sub}` in an sh block: {readme:?}");
    }
    let mut n = 0;
    for page in doc_pages() {
        let cmds = sh_commands(&page);
        let name = page.strip_prefix(repo()).unwrap().display().to_string();
        run_page_commands(&name, &cmds);
        n += cmds.len();
    }
    assert!(n > readme.len(), "only the README has commands");
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// turned into hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// The targets of a page's Markdown links `[text](target)` outside code
/// blocks and code spans.
fn links(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Drop code spans, which may hold `](` of their own.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        for (i, _) in prose.match_indices("](") {
            let rest = &prose[i + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_string());
            }
        }
    }
    out
}

/// The README is a front page (at most 250 lines), docs/README.md indexes
/// every page of docs/, and every relative link of the README and of every
/// page of docs/ names a file that exists and, with `#anchor`, a heading
/// of that file.
#[test]
fn the_readme_is_a_front_page_and_every_link_resolves() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines; at most 250 (the rest belongs in docs/)");
    let index = std::fs::read_to_string(repo().join("docs/README.md")).unwrap();
    let indexed: BTreeSet<String> =
        links(&index).into_iter().map(|l| l.split('#').next().unwrap().to_string()).collect();
    for page in doc_pages().iter().skip(1) {
        let name = page.file_name().unwrap().to_string_lossy().to_string();
        assert!(name == "README.md" || indexed.contains(&name), "docs/README.md does not list docs/{name}");
    }
    let mut checked = 0;
    for page in doc_pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page.strip_prefix(repo()).unwrap().display().to_string();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, frag) = link.split_once('#').map_or((link.as_str(), None), |(f, a)| (f, Some(a)));
            let target = if file.is_empty() { page.clone() } else { page.parent().unwrap().join(file) };
            assert!(target.exists(), "{name}: link `{link}`: {} does not exist", target.display());
            if let Some(frag) = frag {
                let doc = std::fs::read_to_string(&target).unwrap();
                assert!(
                    anchors(&doc).contains(frag),
                    "{name}: link `{link}`: no heading with anchor #{frag} in {file}"
                );
            }
            checked += 1;
        }
    }
    // The README links into docs/ at least for every page of its "Where to
    // read next".
    let into_docs = links(&readme).iter().filter(|l| l.starts_with("docs/") && l.ends_with(".md")).count();
    assert!(into_docs >= 10, "README.md links {into_docs} pages of docs/");
    assert!(checked > 50, "{checked} links checked");
}

/// The exit-code table of docs/exit-codes.md lists exactly the codes gda
/// exits with: one per kind of error (src/error.rs `exit_code`), 0 and 1 (any
/// other error, and a panic, which main turns into 1).
#[test]
fn the_exit_code_table_matches_the_code() {
    use gda::error::GdaError;
    use std::path::PathBuf;
    let page = std::fs::read_to_string(repo().join("docs/exit-codes.md")).unwrap();
    let section = page.split("\n| code | meaning |\n|---|---|\n").nth(1).expect("docs/exit-codes.md has the table");
    let section = section.split("\n\n").next().unwrap();
    let documented: BTreeSet<i32> =
        section.lines().filter_map(|l| l.strip_prefix("| ")?.split(" |").next()?.trim().parse().ok()).collect();
    let (p, s) = (PathBuf::new, String::new);
    let errors = [
        GdaError::Spec { file: s(), key: None, msg: s() },
        GdaError::Input(s()),
        GdaError::Io { what: "cannot write", path: p(), source: std::io::Error::other("disk full") },
        GdaError::Diverged { step: 1, reason: s(), checkpoint: None },
        GdaError::NotPreserved { max_logit_diff: 1.0, tolerance: 0.0, source_loss: 1.0, grown_loss: 1.0 },
        GdaError::PointsFailed { failed: 1, total: 1, dir: p() },
        GdaError::Rejected { stderr: s(), script: p() },
        GdaError::Busy { run_dir: p(), holder: s() },
        GdaError::Interrupted { step: 1, checkpoint: p(), run_dir: p() },
        GdaError::ExperimentInterrupted { dir: p(), stopped: vec![] },
        GdaError::PointsKilled { dir: p(), killed: vec![], total: 1 },
        GdaError::PeerLost { rank: 0, msg: s() },
        // `--nproc`'s launcher passes on a rank's own code, one of the above.
        GdaError::RanksFailed { code: 10, summary: s() },
    ];
    // Exhaustive: a new variant stops this compiling until it is listed above.
    let variant = |e: &GdaError| match e {
        GdaError::Spec { .. } => 0,
        GdaError::Input(_) => 1,
        GdaError::Io { .. } => 2,
        GdaError::Diverged { .. } => 3,
        GdaError::NotPreserved { .. } => 4,
        GdaError::PointsFailed { .. } => 5,
        GdaError::Rejected { .. } => 6,
        GdaError::Busy { .. } => 7,
        GdaError::Interrupted { .. } => 8,
        GdaError::ExperimentInterrupted { .. } => 9,
        GdaError::PointsKilled { .. } => 10,
        GdaError::PeerLost { .. } => 11,
        GdaError::RanksFailed { .. } => 12,
    };
    assert_eq!(errors.iter().map(variant).collect::<Vec<_>>(), (0..errors.len()).collect::<Vec<_>>());
    let mut codes: BTreeSet<i32> = errors.iter().map(GdaError::exit_code).collect();
    codes.extend([0, 1]);
    assert_eq!(documented, codes, "docs/exit-codes.md (left) against the code's (right)");
    // The short table every `--help` prints from lists the same codes.
    let short: BTreeSet<i32> = gda::error::EXIT_CODES.iter().map(|c| c.0).collect();
    assert_eq!(short, codes, "error::EXIT_CODES (left) against the code's (right)");
}
