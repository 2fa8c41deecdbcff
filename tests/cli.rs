//! The command-line conventions: every subcommand's `--help` ends with
//! examples that parse and the exit codes it can end with; directory
//! arguments follow one convention, and the older spellings mean the same.

mod common;

use common::{gda, stderr_of, stdout_of};
use gda::commands::{command, help};
use gda::error::EXIT_CODES;

#[test]
fn every_subcommand_help_has_examples_that_parse_and_its_exit_codes() {
    let cmd = command();
    let mut seen = 0;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        let examples = help::examples(name);
        assert!(!examples.is_empty(), "gda {name} --help has no examples");
        for e in examples {
            let argv: Vec<&str> = e.split_whitespace().collect();
            assert_eq!(argv[..2], ["gda", name], "an example of {name} runs another command: {e}");
            if let Err(err) = command().try_get_matches_from(&argv) {
                panic!("the example `{e}` of gda {name} does not parse:\n{err}");
            }
        }
        let codes = help::exit_codes(name);
        assert!(codes.contains(&0) && codes.contains(&2), "gda {name}: {codes:?}");
        for c in codes {
            assert!(
                EXIT_CODES.iter().any(|e| e.0 == *c),
                "gda {name} lists exit code {c}, which gda does not document"
            );
        }
        // What a user sees: the real binary's --help.
        let out = gda().args([name, "--help"]).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let text = stdout_of(&out);
        let tail = text.split("\nExamples:\n").nth(1).unwrap_or_else(|| panic!("gda {name} --help: {text}"));
        for e in examples {
            assert!(tail.contains(e), "gda {name} --help lacks {e}");
        }
        for (code, meaning) in EXIT_CODES {
            let line = format!("{code:>3}  {meaning}");
            assert_eq!(tail.contains(&line), codes.contains(code), "gda {name} --help and exit code {code}");
        }
        seen += 1;
    }
    assert!(seen >= 9, "{seen} subcommands");
}

/// Runs `gda` with `args` where `dir` does not exist; returns stderr after
/// checking it refused the input (exit 2) naming the directory.
fn refused(args: &[&str], dir: &str) -> String {
    let out = gda().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains(dir), "{args:?}: {err}");
    err
}

#[test]
fn the_older_directory_spellings_mean_the_same_as_the_convention() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-run");
    let d = missing.to_str().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = empty.to_str().unwrap();
    let pairs: [(&[&str], &[&str], &str); 4] = [
        (&["grow", d, "--signal-only"], &["grow", "--from", d, "--signal-only"], d),
        (&["eval", d], &["eval", "--run", d], d),
        (&["train", "--resume", "--out", e], &["train", "--resume", "--run-dir", e], e),
        (&["sweep", "--collect", "--out", d], &["sweep", "--collect", d], d),
    ];
    for (new, old, dir) in pairs {
        assert_eq!(refused(new, dir), refused(old, dir), "{new:?} against {old:?}");
    }
    // The read directory is given once: positionally or by its old flag.
    let out = gda().args(["grow", d, "--from", d, "--signal-only"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("cannot be used with"), "{}", stderr_of(&out));
    let out = gda().args(["grow", "--signal-only"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("<DIR>"), "{}", stderr_of(&out));
    assert!(!missing.exists(), "nothing may be written for refused input");
}
