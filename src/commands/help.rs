//! The text after each subcommand's `--help`: examples that parse (tests/cli.rs
//! parses every one) and the exit codes the subcommand can end with.

use std::fmt::Write as _;

use crate::error::EXIT_CODES;

/// A subcommand (by the name clap gives it), its examples and its exit codes.
type Help = (&'static str, &'static [&'static str], &'static [i32]);

const HELP: &[Help] = &[
    (
        "train",
        &[
            "gda train --spec experiments/smoke.toml",
            "gda train --spec experiments/smoke.toml --set model.noise_heads=4 --set name=smoke-1to1",
            "gda train --data ~/corpora/mytext --device cuda --out results/mytext",
            "gda train --spec experiments/smoke.toml --nproc 2",
            "gda train --resume --out results/smoke",
            "gda train --resume --out results/smoke --set train.steps=600",
        ],
        &[0, 1, 2, 3, 7, 8, 10, 130],
    ),
    (
        "sweep",
        &[
            "gda sweep --spec experiments/smoke.toml --ratios 1,2,4 --num-seeds 2 --baseline",
            "gda sweep --ratios 1,2,3,4,8 --seeds 1,5,9 --devices cuda:0,cuda:1",
            "gda sweep --spec experiments/gpu.toml --dry-run",
            "gda sweep --spec experiments/smoke.toml --grid model.d_model=32,64 --ratios 1,2,4 --num-seeds 2",
            "gda sweep --collect --out results/sweep-smoke",
        ],
        &[0, 1, 2, 4, 6, 8, 9, 130],
    ),
    (
        "ablate",
        &[
            "gda ablate --no-share --spec experiments/smoke.toml --ratios 2,4",
            "gda ablate --no-share --equal-params --ratios 4 --num-seeds 3",
        ],
        &[0, 1, 2, 4, 6, 8, 9, 130],
    ),
    (
        "reproduce",
        &[
            "gda reproduce --preset smoke",
            "gda reproduce --preset cpu --dry-run",
            "gda reproduce --preset cpu --tasks hellaswag=data/hellaswag.jsonl,piqa=data/piqa.jsonl",
            "gda reproduce --preset smoke --grid model.d_model=32,64 --set study.seeds=[1,2,3]",
            "gda reproduce --preset cluster --launcher slurm --gpus-per-run 8 --nproc-per-point 8",
        ],
        &[0, 1, 2, 4, 5, 6, 8, 9, 130],
    ),
    (
        "grow",
        &[
            "gda grow results/smoke --signal-only",
            "gda grow results/smoke --uniform --groups 2 --set train.steps=200",
            "gda grow results/smoke --compare --scratch",
        ],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 130],
    ),
    (
        "eval",
        &[
            "gda eval results/smoke --contexts 32,64",
            "gda eval results/sweep-smoke --contexts 64,128,256",
            "gda eval results/sweep-mqar --suite mqar,attention",
            "gda eval results/sweep-smoke --suite bench --tasks hellaswag=data/hellaswag.jsonl,piqa=data/piqa.jsonl --limit 200",
            "gda eval results/a results/b --out results/a-vs-b",
        ],
        &[0, 1, 2, 8],
    ),
    (
        "sample",
        &[
            "gda sample results/smoke --prompt ROMEO:",
            "gda sample results/smoke --prompt JULIET: --temperature 0 --max-new-tokens 50",
            "gda sample results/smoke --prompt KING --temperature 0.7 --top-k 20 --seed 3",
        ],
        &[0, 1, 2, 8],
    ),
    (
        "export",
        &[
            "gda export results/smoke --format hf --out results/smoke-hf",
            "gda export results/smoke/checkpoints/step-00000200 --out results/smoke-200-hf --force",
        ],
        &[0, 1, 2, 8],
    ),
    ("report", &["gda report results/smoke", "gda report results/sweep-smoke"], &[0, 1, 2, 8]),
    ("bench", &["gda bench --spec experiments/smoke.toml"], &[0, 1, 2]),
    ("status", &["gda status results/sweep-smoke"], &[0, 1, 2, 8]),
    (
        "data",
        &[
            "gda data prepare --data ~/corpora/mytext --tokenizer gpt2 --out data/mytext-gpt2",
            "gda data train-tokenizer --data ~/corpora/mytext --vocab 8192 --out data/mytext-bpe8k.json",
            "gda data inspect data/mytext-gpt2",
            "gda data make-tasks --spec experiments/smoke.toml --out data/made-tasks --items 200",
        ],
        &[0, 1, 2, 8],
    ),
];

/// The `HELP` row of subcommand `name`.
fn entry(name: &str) -> Option<&'static Help> {
    HELP.iter().find(|h| h.0 == name)
}

/// The examples of subcommand `name` (empty for one without any).
pub fn examples(name: &str) -> &'static [&'static str] {
    entry(name).map_or(&[], |h| h.1)
}

/// The exit codes subcommand `name` documents in its `--help`.
pub fn exit_codes(name: &str) -> &'static [i32] {
    entry(name).map_or(&[], |h| h.2)
}

/// The `after_help` text of subcommand `name`.
pub fn after_help(name: &str) -> Option<String> {
    let h = entry(name)?;
    let mut s = String::from("Examples:\n");
    for e in h.1 {
        let _ = writeln!(s, "  {e}");
    }
    s.push_str("\nExit codes (docs/exit-codes.md says more):\n");
    for code in h.2 {
        let meaning = EXIT_CODES.iter().find(|c| c.0 == *code).map(|c| c.1).expect("a documented exit code");
        let _ = writeln!(s, "  {code:>3}  {meaning}");
    }
    if ["sweep", "ablate", "grow", "reproduce"].contains(&name) {
        s.push_str(
            "\nEnvironment:\n  GDA_PROGRESS_SECS  off a terminal, seconds between two progress lines of a\n                     training point (default 30; 0: at every metrics row)\n",
        );
    }
    Some(s)
}
