//! `gda eval`: score trained runs on several suites (experiment::evaluate),
//! then print the tables `report::eval` renders from the CSV files.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::experiment::evaluate::{run_eval, EvalOptions, Suite};
use crate::report::eval::eval_report;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directories, or sweep/ablation/growth directories (all their
    /// points with a checkpoint).
    #[arg(value_name = "DIR", required_unless_present = "run_flags")]
    pub runs: Vec<PathBuf>,
    /// The older spelling of the DIR arguments (repeatable).
    #[arg(long = "run", value_name = "DIR", hide = true)]
    pub run_flags: Vec<PathBuf>,
    /// Suites: lm, mqar, niah, attention, bench (default: lm for text runs;
    /// the run's task and attention for task runs).
    #[arg(long = "suite", value_enum, value_delimiter = ',', value_name = "SUITE,...")]
    pub suites: Vec<SuiteArg>,
    /// Context lengths to evaluate at (default: the training context).
    #[arg(long, value_delimiter = ',', value_name = "T,...")]
    pub contexts: Vec<usize>,
    /// Data the lm suite scores: all of a text file or directory, or the validation shards of a prepared, nanoGPT or llm.c directory (default: the run's validation split).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// lm suite: target tokens scored per context (default: train.eval_tokens).
    #[arg(long)]
    pub tokens: Option<usize>,
    /// Retrieval examples per context and depth (default: task.eval_examples).
    #[arg(long)]
    pub examples: Option<usize>,
    /// NIAH needle depths, fractions of the haystack (default: 0,0.25,0.5,0.75,1).
    #[arg(long, value_delimiter = ',', value_name = "D,...")]
    pub depths: Vec<f64>,
    /// Override a task.* key of the retrieval generators, e.g. --set task.pairs=16 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// bench suite: the tasks, NAME=PATH (hellaswag, piqa, arc_easy, arc_challenge, winogrande, lambada; any other name: generic JSONL) or a directory of NAME.jsonl files.
    #[arg(long, value_delimiter = ',', value_name = "NAME=PATH|DIR,...")]
    pub tasks: Vec<String>,
    /// bench suite: score only the first N items of each task.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Where the tables and plots go (default: <DIR>/eval for a single --run).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Device: auto, cpu, cuda, cuda:N (default: the run's train.device).
    #[arg(long)]
    pub device: Option<String>,
    /// CPU threads, 0 = all cores (default: the run's train.threads).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// What `gda eval` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SuiteArg {
    /// Held-out language modelling: loss, perplexity, bits per byte.
    Lm,
    /// Multi-query associative recall accuracy.
    Mqar,
    /// Needle-in-a-haystack accuracy with distractor needles, per depth.
    Niah,
    /// Attention mass on the answer vs. elsewhere, per layer and head group,
    /// on each retrieval suite evaluated.
    Attention,
    /// Zero-shot benchmarks from local task files (--tasks): acc, acc_norm
    /// and lambada perplexity as lm-evaluation-harness scores them.
    Bench,
}

impl From<SuiteArg> for Suite {
    fn from(s: SuiteArg) -> Suite {
        match s {
            SuiteArg::Lm => Suite::Lm,
            SuiteArg::Mqar => Suite::Mqar,
            SuiteArg::Niah => Suite::Niah,
            SuiteArg::Attention => Suite::Attention,
            SuiteArg::Bench => Suite::Bench,
        }
    }
}

impl EvalArgs {
    /// The plain options the evaluation takes (DIR arguments and the older
    /// `--run` spelling together).
    pub fn options(self) -> EvalOptions {
        let mut runs = self.runs;
        runs.extend(self.run_flags);
        EvalOptions {
            runs,
            suites: self.suites.into_iter().map(Suite::from).collect(),
            contexts: self.contexts,
            data: self.data,
            tokens: self.tokens,
            examples: self.examples,
            depths: self.depths,
            set: self.set,
            tasks: self.tasks,
            limit: self.limit,
            out: self.out,
            device: self.device,
            threads: self.threads,
        }
    }
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let out = run_eval(&args.options())?;
    println!("\n{}", eval_report(&out)?.brief);
    println!("tables and plots: {}", out.display());
    Ok(())
}
