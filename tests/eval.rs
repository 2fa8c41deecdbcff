//! `gda eval` and `gda report` end to end: real runs trained by the binary,
//! evaluated by the binary, with the numbers checked against what training
//! reported on the same fixed evaluation sets.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

/// TINY trained on MQAR with 4 pairs in windows of 32 tokens.
fn tiny_mqar() -> String {
    format!("{TINY}\n[data]\ntask = \"mqar\"\n[task]\npairs = 4\neval_examples = 64\n")
}

fn train(dir: &Path, name: &str, spec: &str) -> std::path::PathBuf {
    let spec = write_spec(dir, name, spec);
    let run = dir.join(name);
    let out = gda().args(["train", "--spec"]).arg(&spec).arg("--run-dir").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    run
}

fn eval(args: &[&str]) -> std::process::Output {
    gda().arg("eval").args(args).output().unwrap()
}

/// A CSV file as rows of column → cell.
fn csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let (header, rows) = gda::report::table::read(path).unwrap();
    rows.into_iter().map(|r| header.iter().cloned().zip(r).collect()).collect()
}

fn f(row: &BTreeMap<String, String>, key: &str) -> f64 {
    row[key].parse().unwrap_or_else(|_| panic!("{key} = {:?}", row[key]))
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap()
}

fn assert_svg(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        text.len() > 1000 && text.contains("<svg") && text.contains("<polyline"),
        "{} is not a drawn plot",
        path.display()
    );
}

#[test]
fn lm_suite_reports_bpb_at_several_contexts_and_matches_training() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(tmp.path(), "text", TINY);
    let out = eval(&["--run", run.to_str().unwrap(), "--contexts", "32,64", "--threads", "1"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("context 64 is longer than the training context 32"), "{}", stderr_of(&out));
    let rows = csv(&run.join("eval/lm.csv"));
    assert_eq!(rows.iter().map(|r| r["context"].as_str()).collect::<Vec<_>>(), ["32", "64"]);
    // At the training context, eval scores the very windows training scored last.
    let s = summary(&run);
    let (loss, bpb) = (s["val_loss"].as_f64().unwrap(), s["val_bpb"].as_f64().unwrap());
    assert!((f(&rows[0], "loss") - loss).abs() < 1e-6 * loss, "{} vs {loss}", f(&rows[0], "loss"));
    assert!((f(&rows[0], "bpb") - bpb).abs() < 1e-6 * bpb);
    for r in &rows {
        // Bytes tokenizer: bpb = loss / ln 2, perplexity = e^loss; 2048 tokens each.
        assert!((f(r, "bpb") - f(r, "loss") / std::f64::consts::LN_2).abs() < 1e-9);
        assert!((f(r, "ppl") - f(r, "loss").exp()).abs() < 1e-9 * f(r, "ppl"));
        assert_eq!(r["tokens"], "2048");
        assert_eq!(r["step"], s["steps"].to_string(), "the checkpoint scored");
    }
    assert_ne!(rows[0]["loss"], rows[1]["loss"]);
    assert_svg(&run.join("eval/bpb_vs_context.svg"));
    let md = std::fs::read_to_string(run.join("eval/summary.md")).unwrap();
    assert!(md.contains("| text | 64 | 32 | 2048 |"), "{md}");
    assert!(stdout_of(&out).contains("Held-out language modelling"));
}

#[test]
fn lm_suite_scores_other_text_given_with_data() {
    let tmp = tempfile::tempdir().unwrap();
    // One real work of the default corpus; a single file is split by bytes.
    let corpus = gda::data::corpus_path("shakespeare").unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("_gut.txt"))
        .collect();
    files.sort();
    let text = files[0].to_str().unwrap().to_string();
    // A run trained on that file records it in its spec, so evaluating the
    // run scores exactly its own held-out windows again.
    let spec = write_spec(tmp.path(), "one", TINY);
    let run = tmp.path().join("one");
    let out =
        gda().args(["train", "--spec"]).arg(&spec).arg("--run-dir").arg(&run).args(["--data", &text]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let saved = std::fs::read_to_string(run.join("spec.toml")).unwrap();
    assert!(saved.contains(&format!("corpus = \"{text}\"")), "{saved}");
    let out = eval(&["--run", run.to_str().unwrap(), "--threads", "1"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let own = csv(&run.join("eval/lm.csv"));
    let s = summary(&run);
    let loss = s["val_loss"].as_f64().unwrap();
    assert!((f(&own[0], "loss") - loss).abs() < 1e-6 * loss, "{} vs {loss}", f(&own[0], "loss"));
    // --data scores other text, all of it: another play, with a budget
    // larger than the play, is scored in every whole window that fits.
    let other = files[1].to_str().unwrap();
    let len = std::fs::read(other).unwrap().len();
    let out = eval(&["--run", run.to_str().unwrap(), "--data", other, "--tokens", "100000000", "--threads", "1"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let whole = csv(&run.join("eval/lm.csv"));
    assert_ne!(whole[0]["loss"], own[0]["loss"]);
    assert_eq!(
        whole[0]["tokens"],
        ((len - 1) / 32 * 32).to_string(),
        "bytes tokenizer, context 32: every window of the {len} bytes"
    );
    // The text is prepared into the cache once (as training prepares its
    // own); a second evaluation reuses the entry and scores the same.
    let cache = tmp.path().join("cache");
    let entries = || -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(cache.join("prepared")) else { return vec![] };
        let mut metas: Vec<String> =
            dir.filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("meta.json")).ok()).collect();
        metas.sort();
        metas
    };
    let mut scores = Vec::new();
    for _ in 0..2 {
        let out = gda()
            .env("GDA_CACHE", &cache)
            .args(["eval", run.to_str().unwrap(), "--data", other, "--tokens", "100000000", "--threads", "1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        scores.push(csv(&run.join("eval/lm.csv")));
    }
    let metas = entries();
    assert_eq!(metas.len(), 1, "{metas:?}");
    assert!(metas[0].contains(&format!("{other:?}")), "the entry is not the --data text: {}", metas[0]);
    assert_eq!(scores[0], scores[1]);
    assert_eq!(scores[0], whole);
    let out = eval(&["--run", run.to_str().unwrap(), "--data", "/no/such/text"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("does not exist"));
}

#[test]
fn a_model_trains_on_niah_and_reports_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = format!("{TINY}\n[data]\ntask = \"niah\"\n[task]\nneedles = 2\neval_examples = 32\n");
    let run = train(tmp.path(), "niah", &spec);
    let acc = column(&run, "val_acc");
    assert_eq!(acc.len(), 4, "an evaluation at steps 0, 20, 40, 60");
    assert!(acc.iter().all(|(_, a)| (0.0..=1.0).contains(a)));
    // 32 examples, one question each: accuracy is a multiple of 1/32.
    assert!(acc.iter().all(|(_, a)| (a * 32.0 - (a * 32.0).round()).abs() < 1e-9));
    let out = eval(&["--run", run.to_str().unwrap(), "--depths", "0.5", "--threads", "1"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let ret = csv(&run.join("eval/retrieval.csv"));
    assert_eq!((ret[0]["task"].as_str(), ret[0]["depth"].as_str(), ret[0]["queries"].as_str()), ("niah", "0.5", "32"));
}

#[test]
fn a_retrieval_run_is_scored_and_its_attention_analysed() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(tmp.path(), "mqar", &tiny_mqar());
    // Training on a task reports accuracy, not bits per byte.
    let cols = metrics(&run).0;
    assert!(cols.contains(&"val_acc".to_string()) && !cols.contains(&"val_bpb".to_string()));
    let out = eval(&["--run", run.to_str().unwrap(), "--threads", "1"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let ret = csv(&run.join("eval/retrieval.csv"));
    assert_eq!(ret.len(), 1);
    assert_eq!(
        (ret[0]["task"].as_str(), ret[0]["context"].as_str(), ret[0]["queries"].as_str()),
        ("mqar", "32", "256")
    );
    // The same 64 evaluation examples training scored: the same accuracy.
    let s = summary(&run);
    assert_eq!(f(&ret[0], "acc"), s["val_acc"].as_f64().unwrap());
    assert!((f(&ret[0], "loss") - s["val_loss"].as_f64().unwrap()).abs() < 1e-5);
    let acc = f(&ret[0], "acc");
    assert!((0.0..=1.0).contains(&acc) && f(&ret[0], "token_acc") >= acc);

    let att = csv(&run.join("eval/attention.csv"));
    // 2 layers × (2 groups + all).
    assert_eq!(att.len(), 6);
    let lambda_last = column(&run, "lambda_1").last().unwrap().1;
    let l1 = att.iter().find(|r| r["layer"] == "1" && r["head_group"] == "all").unwrap();
    assert!((f(l1, "lambda") - lambda_last).abs() < 1e-6);
    for r in &att {
        assert!(f(r, "noise_mass") >= 0.0 && (0.0..=1.0 + 1e-9).contains(&f(r, "sparsity")));
        // The map applied on the answer span is signal − λ·noise.
        let split = f(r, "signal_answer") - f(r, "lambda") * f(r, "noise_answer");
        assert!((f(r, "answer_mass") - split).abs() < 1e-5, "{r:?}");
    }
    // The layer row is the mean of its two equal-sized groups.
    for layer in ["0", "1"] {
        let of = |g: &str| att.iter().find(|r| r["layer"] == layer && r["head_group"] == g).unwrap();
        for k in ["answer_mass", "noise_mass", "entropy", "sparsity", "signal_answer", "noise_answer"] {
            let mean = (f(of("0"), k) + f(of("1"), k)) / 2.0;
            assert!((f(of("all"), k) - mean).abs() < 1e-9, "{k}");
        }
    }
    assert_svg(&run.join("eval/accuracy_vs_context.svg"));
    assert_svg(&run.join("eval/attention_noise.svg"));

    // NIAH on the same model at two depths, into another directory.
    let out_dir = tmp.path().join("niah");
    let out = eval(&[
        "--run",
        run.to_str().unwrap(),
        "--suite",
        "niah,attention",
        "--set",
        "task.needles=2",
        "--depths",
        "0,1",
        "--examples",
        "16",
        "--threads",
        "1",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let ret = csv(&out_dir.join("retrieval.csv"));
    assert_eq!(
        ret.iter().map(|r| (r["task"].as_str(), r["depth"].as_str(), r["queries"].as_str())).collect::<Vec<_>>(),
        [("niah", "0", "16"), ("niah", "1", "16")]
    );
    assert!(out_dir.join("attention.csv").is_file() && !out_dir.join("lm.csv").exists());
}

#[test]
fn a_retrieval_sweep_reports_accuracy_per_ratio_and_evaluates_every_point() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "mq", &tiny_mqar().replace("steps = 60", "steps = 30"));
    let dir = tmp.path().join("sweep");
    let out = gda()
        .args(["sweep", "--spec"])
        .arg(&spec)
        .args(["--ratios", "1,2", "--baseline", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows = csv(&dir.join("summary.csv"));
    assert!(rows[0].contains_key("val_acc") && !rows[0].contains_key("val_bpb"));
    let runs: Vec<&BTreeMap<String, String>> = rows.iter().collect();
    assert_eq!(runs.len(), 3);
    for r in &runs {
        let s = summary(&dir.join("points").join(&r["point"]));
        assert_eq!(f(r, "val_acc"), s["val_acc"].as_f64().unwrap());
    }
    assert_svg(&dir.join("final_acc_vs_ratio.svg"));
    assert!(std::fs::read_to_string(dir.join("summary.md")).unwrap().contains("val acc"));

    let out = eval(&["--run", dir.to_str().unwrap(), "--threads", "1"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let ret = csv(&dir.join("eval/retrieval.csv"));
    let att = csv(&dir.join("eval/attention.csv"));
    let mut evaluated: Vec<&str> = ret.iter().map(|r| r["run"].as_str()).collect();
    let mut points: Vec<&str> = runs.iter().map(|r| r["point"].as_str()).collect();
    evaluated.sort();
    points.sort();
    assert_eq!(evaluated, points);
    // The baseline has no λ and no noise map; every gda layer has both.
    for r in att.iter().filter(|r| r["head_group"] == "all") {
        let baseline = r["run"].starts_with("baseline");
        for k in ["lambda", "signal_answer", "noise_answer"] {
            assert_eq!(r[k].is_empty(), baseline, "{k}: {r:?}");
        }
    }
    // gda report redraws the eval tables from the CSV files alone.
    // And the experiment's own summary from its run directories.
    let table = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    for f in ["eval/summary.md", "eval/attention_noise.svg", "summary.md", "final_acc_vs_ratio.svg"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    let out = gda().arg("report").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(std::fs::read_to_string(dir.join("summary.md")).unwrap(), table);
    assert_svg(&dir.join("final_acc_vs_ratio.svg"));
    assert!(std::fs::read_to_string(dir.join("eval/summary.md")).unwrap().contains("Attention on retrieval questions"));
    assert_svg(&dir.join("eval/attention_noise.svg"));
}

#[test]
fn report_draws_a_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(tmp.path(), "r", TINY);
    let out = gda().arg("report").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_svg(&run.join("loss_curve.svg"));
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    let last = column(&run, "val_loss").last().unwrap().1;
    assert!(md.contains("Finished: 60 steps") && md.contains(&format!("{last:.4}")), "{md}");
}

#[test]
fn bad_eval_input_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(tmp.path(), "mq", &tiny_mqar());
    let code = |o: &std::process::Output| o.status.code().unwrap();

    // A task that cannot fit the context: the key and the limit are named.
    let out = eval(&["--run", run.to_str().unwrap(), "--set", "task.pairs=40", "--threads", "1"]);
    assert_eq!(code(&out), 2);
    let err = stderr_of(&out);
    assert!(err.contains("task.pairs") && err.contains("at most 8 pairs"), "{err}");
    assert!(!run.join("eval").exists(), "nothing may be written");

    // Attention maps too large to materialise are refused up front.
    let out = eval(&["--run", run.to_str().unwrap(), "--contexts", "32,20000", "--set", "task.pairs=2"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr_of(&out).contains("materialises") && stderr_of(&out).contains("context 20000"),
        "{}",
        stderr_of(&out)
    );
    assert!(!run.join("eval").exists());

    // Options that would score nothing, or that no suite of the run reads.
    for (args, msg) in [
        (&["--tokens", "0"][..], "--tokens 0 would score nothing"),
        (&["--examples", "0"][..], "--examples 0 would score nothing"),
        (&["--set", "task.eval_examples=0"][..], "task.eval_examples = 0 would score nothing"),
        (&["--depths", "0.5"][..], "--depths applies to the niah suite"),
        (&["--data", "Cargo.toml"][..], "--data applies to the lm suite"),
    ] {
        let out = eval(&[&["--run", run.to_str().unwrap()][..], args].concat());
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(stderr_of(&out).contains(msg), "{args:?}: {}", stderr_of(&out));
    }
    assert!(!run.join("eval").exists());

    // Every run is checked before any is scored: the text run would take
    // --data, the retrieval run would not.
    let text = train(tmp.path(), "text", TINY);
    let both = tmp.path().join("both");
    let out = eval(&[
        "--run",
        text.to_str().unwrap(),
        "--run",
        run.to_str().unwrap(),
        "--data",
        "Cargo.toml",
        "--out",
        both.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr_of(&out).contains("--data applies to the lm suite, which run mq does not run"),
        "{}",
        stderr_of(&out)
    );
    assert!(!stdout_of(&out).contains("evaluating"), "{}", stdout_of(&out));
    assert!(!both.exists());

    // Keys other than task.* cannot change what a run is.
    let out = eval(&["--run", run.to_str().unwrap(), "--set", "model.d_model=64"]);
    assert_eq!(code(&out), 2);
    assert!(stderr_of(&out).contains("only changes task.* keys"));

    // Attention analysis needs retrieval examples; a text run has none of its own.
    let out = eval(&["--run", text.to_str().unwrap(), "--suite", "attention"]);
    assert_eq!(code(&out), 2);
    assert!(stderr_of(&out).contains("add --suite mqar or --suite niah"));

    // A run directory without a checkpoint.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::copy(run.join("spec.toml"), empty.join("spec.toml")).unwrap();
    let out = eval(&["--run", empty.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(stderr_of(&out).contains("has no checkpoint yet"), "{}", stderr_of(&out));

    // A checkpoint that does not fit its spec (an incompatible version or a
    // hand-edited spec).
    let spec = std::fs::read_to_string(run.join("spec.toml")).unwrap().replace("d_model = 32", "d_model = 48");
    std::fs::write(run.join("spec.toml"), spec).unwrap();
    let out = eval(&["--run", run.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(stderr_of(&out).contains("does not match the model's config"), "{}", stderr_of(&out));

    // Not a gda directory at all; several runs without --out.
    let out = eval(&["--run", tmp.path().to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(stderr_of(&out).contains("is not a gda run or experiment directory"));
    let out = eval(&["--run", run.to_str().unwrap(), "--run", text.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(stderr_of(&out).contains("need --out"));
    assert!(!run.join("eval").exists() && !text.join("eval").exists());
}

#[test]
fn runs_evaluated_together_keep_apart_even_with_equal_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let ra = train(&a, "run", TINY);
    let rb = train(&b, "run", &TINY.replace("seed = 7", "seed = 8"));
    let out_dir = tmp.path().join("both");
    let out = eval(&[
        "--run",
        ra.to_str().unwrap(),
        "--run",
        rb.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows = csv(&out_dir.join("lm.csv"));
    assert_eq!(rows.iter().map(|r| r["run"].as_str()).collect::<Vec<_>>(), ["run", "run#2"]);
    assert_eq!(f(&rows[0], "loss"), summary(&ra)["val_loss"].as_f64().unwrap());
    assert_eq!(f(&rows[1], "loss"), summary(&rb)["val_loss"].as_f64().unwrap());
    // A later evaluation without the lm suite drops lm.csv and its plot, so
    // the directory never mixes two evaluations.
    let mq = train(tmp.path(), "mq", &tiny_mqar());
    let out = eval(&["--run", mq.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--threads", "1"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!out_dir.join("lm.csv").exists() && !out_dir.join("bpb_vs_context.svg").exists());
    assert!(out_dir.join("retrieval.csv").is_file() && out_dir.join("accuracy_vs_context.svg").is_file());
}

#[test]
fn a_run_named_with_commas_and_quotes_keeps_its_name_in_every_table() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", &TINY.replace("steps = 60", "steps = 20"));
    let name = "a,b \"c\"";
    let run = tmp.path().join(name);
    let out = gda().args(["train", "--spec"]).arg(&spec).arg("--run-dir").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = eval(&["--run", run.to_str().unwrap(), "--threads", "1"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    // Quoted in the file, one cell when read back, never rewritten.
    let text = std::fs::read_to_string(run.join("eval/lm.csv")).unwrap();
    // A run outside an experiment is its own point: group = its name, its
    // spec's seed and H_s / H_n, no variant, policy or requested ratio.
    let quoted = "\"a,b \"\"c\"\"\"";
    assert!(text.lines().nth(1).unwrap().starts_with(&format!("{quoted},{quoted},,7,,,2,20,32,32,2048,")), "{text}");
    let rows = csv(&run.join("eval/lm.csv"));
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0]["run"].as_str(), rows[0]["step"].as_str(), rows[0]["tokens"].as_str()), (name, "20", "2048"));
    assert_eq!(f(&rows[0], "loss"), summary(&run)["val_loss"].as_f64().unwrap());
    // summary.md is rendered from lm.csv read back.
    let md = std::fs::read_to_string(run.join("eval/summary.md")).unwrap();
    assert!(md.contains(&format!("| {name} | 32 | 32 | 2048 | {:.4} |", f(&rows[0], "loss"))), "{md}");
}

/// Every x coordinate of the SVG's polylines (data lines, axes, legend strokes).
fn polyline_xs(svg: &str) -> Vec<f64> {
    svg.split("<polyline")
        .skip(1)
        .flat_map(|t| {
            let pts = t.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
            pts.split_whitespace().map(|p| p.split(',').next().unwrap().parse::<f64>().unwrap()).collect::<Vec<_>>()
        })
        .collect()
}

/// Tick labels: (position along the axis in pixels, text).
type Ticks = Vec<(f64, String)>;

/// The x-axis tick labels (numbers centred on one baseline) and the y-axis
/// ones (numbers right-aligned on one x), each in drawing order.
fn ticks(svg: &str) -> (Ticks, Ticks) {
    let texts = svg_texts(svg);
    let numeric: Vec<&(f64, f64, String, String)> = texts.iter().filter(|t| t.3.parse::<f64>().is_ok()).collect();
    let most = |anchor: &str, key: fn(&(f64, f64, String, String)) -> f64| {
        let mut by: BTreeMap<i64, Vec<&(f64, f64, String, String)>> = BTreeMap::new();
        for t in numeric.iter().filter(|t| t.2 == anchor) {
            by.entry(key(t) as i64).or_default().push(t);
        }
        by.into_values().max_by_key(|v| v.len()).unwrap_or_default()
    };
    let x = most("middle", |t| t.1).into_iter().map(|t| (t.0, t.3.clone())).collect();
    let y = most("end", |t| t.0).into_iter().map(|t| (t.1, t.3.clone())).collect();
    (x, y)
}

/// A sweep evaluated as a whole: every run row names its point (ratio,
/// requested ratio, variant, seed, policy, as summary.csv does); the
/// per-point tables are the mean and sample std of those rows over seeds;
/// the terminal shows one line per point; the plot has one line per point,
/// its legend outside the data, and a single context gives whole, distinct
/// ticks.
#[test]
fn sweep_eval_tables_are_per_point_with_seed_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", TINY);
    let dir = tmp.path().join("sweep");
    let out = gda()
        .args(["sweep", "--spec"])
        .arg(&spec)
        .args(["--ratios", "1,2", "--num-seeds", "2", "--baseline", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = eval(&["--run", dir.to_str().unwrap(), "--contexts", "32,64", "--threads", "1"]);
    assert!(out.status.success(), "{}", stderr_of(&out));

    // Run rows: the point columns agree with summary.csv's row for the run.
    let runs = csv(&dir.join("eval/lm.csv"));
    let summary = csv(&dir.join("summary.csv"));
    assert_eq!(runs.len(), 6 * 2, "6 runs × 2 contexts");
    for r in &runs {
        let s = summary.iter().find(|s| s["point"] == r["run"]).unwrap_or_else(|| panic!("{r:?}"));
        for k in ["group", "variant", "seed", "policy", "requested_ratio"] {
            assert_eq!(r[k], s[k], "{k}: {r:?}");
        }
        let (name, seed) = r["run"].rsplit_once("-s").unwrap();
        assert_eq!(r["seed"], seed);
        if name == "baseline" {
            assert_eq!((r["variant"].as_str(), r["policy"].as_str(), r["ratio"].as_str()), ("baseline", "", ""));
            assert_eq!(r["requested_ratio"], "");
        } else {
            let g = name.trim_start_matches('g');
            assert_eq!((r["variant"].as_str(), r["policy"].as_str()), ("shared", "signal"));
            assert_eq!((r["requested_ratio"].as_str(), r["ratio"].as_str()), (g, g));
            assert_eq!(r["group"], format!("{g}:1 shared"));
        }
    }
    let seeds: std::collections::BTreeSet<&str> = runs.iter().map(|r| r["seed"].as_str()).collect();
    assert_eq!(seeds.into_iter().collect::<Vec<_>>(), ["7", "8"]);

    // Aggregates: mean and sample std of the run rows, recomputed here.
    let groups = csv(&dir.join("eval/lm_groups.csv"));
    assert_eq!(groups.len(), 3 * 2, "3 points × 2 contexts");
    for g in &groups {
        let members: Vec<_> =
            runs.iter().filter(|r| r["group"] == g["group"] && r["context"] == g["context"]).collect();
        assert_eq!(members.len(), 2);
        assert_eq!(g["n"], "2");
        assert!(!g.contains_key("seed"), "a point aggregates its seeds");
        for k in ["variant", "policy", "requested_ratio", "ratio", "train_context", "tokens"] {
            assert_eq!(g[k], members[0][k], "{k}");
        }
        for v in ["loss", "ppl", "bpb"] {
            let xs: Vec<f64> = members.iter().map(|r| f(r, v)).collect();
            let mean = (xs[0] + xs[1]) / 2.0;
            let std = ((xs[0] - mean).powi(2) + (xs[1] - mean).powi(2)).sqrt(); // n − 1 = 1
            assert!((f(g, &format!("{v}_mean")) - mean).abs() <= 1e-12 * mean.abs(), "{v}: {g:?}");
            assert!((f(g, &format!("{v}_std")) - std).abs() <= 1e-9 * std.max(1e-12), "{v}: {g:?}");
            assert!(std > 0.0, "two seeds differ");
        }
    }

    // The terminal: one line per point and context, not one per seed; the
    // Markdown keeps both.
    let stdout = stdout_of(&out);
    let md = std::fs::read_to_string(dir.join("eval/summary.md")).unwrap();
    let g1 = &groups.iter().find(|g| g["group"] == "1:1 shared" && g["context"] == "32").unwrap();
    let line = format!("| 1:1 shared | 1:1 | 32 | 32 | 2 | {:.4} ± {:.4} |", f(g1, "loss_mean"), f(g1, "loss_std"));
    assert!(stdout.contains(&line) && md.contains(&line), "{line}\n{stdout}");
    assert!(!stdout.contains("| g1-s7 |") && md.contains("| g1-s7 | 32 | 32 |"), "{stdout}");

    // The plot: one legend entry per point, right of the data.
    let svg = std::fs::read_to_string(dir.join("eval/bpb_vs_context.svg")).unwrap();
    let texts = svg_texts(&svg);
    let legend: Vec<_> = texts.iter().filter(|t| t.2 == "start").collect();
    assert_eq!(legend.iter().map(|t| t.3.as_str()).collect::<Vec<_>>(), ["1:1 shared", "2:1 shared", "baseline"]);
    let (xt, _) = ticks(&svg);
    let right_of_data = xt.iter().map(|t| t.0).fold(f64::MIN, f64::max);
    let legend_x = legend.iter().map(|t| t.0).fold(f64::MAX, f64::min);
    assert!(legend_x > right_of_data + 20.0, "legend at x = {legend_x}, data up to {right_of_data}");
    assert!(polyline_xs(&svg).iter().all(|&x| x < legend_x), "a line runs under the legend");

    // The experiment's own plots: the same legend column; loss curves one
    // line per point (mean over its seeds), not one per run.
    for (plot, labels) in [
        ("final_loss_vs_ratio.svg", vec!["shared", "baseline (standard attention)"]),
        ("loss_curves.svg", vec!["1:1 shared (2 seeds)", "2:1 shared (2 seeds)", "baseline (2 seeds)"]),
        ("loss_curves_end.svg", vec!["1:1 shared (2 seeds)", "2:1 shared (2 seeds)", "baseline (2 seeds)"]),
    ] {
        let svg = std::fs::read_to_string(dir.join(plot)).unwrap();
        let texts = svg_texts(&svg);
        let legend: Vec<_> = texts.iter().filter(|t| t.2 == "start").collect();
        assert_eq!(legend.iter().map(|t| t.3.as_str()).collect::<Vec<_>>(), labels, "{plot}");
        let (xt, _) = ticks(&svg);
        let right_of_data = xt.iter().map(|t| t.0).fold(f64::MIN, f64::max);
        let legend_x = legend.iter().map(|t| t.0).fold(f64::MAX, f64::min);
        assert!(legend_x > right_of_data + 20.0, "{plot}: legend at x = {legend_x}, data up to {right_of_data}");
        assert!(polyline_xs(&svg).iter().all(|&x| x < legend_x), "{plot}: a line runs under the legend");
    }

    // The second half of training on its own scale: the first evaluations
    // (near ln(vocab)) no longer set the y range.
    let y_span = |plot: &str| {
        let (_, yt) = ticks(&std::fs::read_to_string(dir.join(plot)).unwrap());
        let v: Vec<f64> = yt.iter().map(|t| t.1.parse().unwrap()).collect();
        v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
    };
    let (whole, end) = (y_span("loss_curves.svg"), y_span("loss_curves_end.svg"));
    assert!(end < whole / 2.0, "y tick span: second half {end}, whole run {whole}");

    // A single context: whole, distinct, increasing ticks on both axes.
    let one = tmp.path().join("one");
    let out =
        eval(&["--run", dir.to_str().unwrap(), "--contexts", "32", "--threads", "1", "--out", one.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let svg = std::fs::read_to_string(one.join("bpb_vs_context.svg")).unwrap();
    let (xt, yt) = ticks(&svg);
    for (axis, t) in [("x", &xt), ("y", &yt)] {
        let mut t = t.clone();
        t.sort_by(|a, b| a.0.total_cmp(&b.0));
        let labels: Vec<&str> = t.iter().map(|t| t.1.as_str()).collect();
        let distinct: std::collections::BTreeSet<&str> = labels.iter().copied().collect();
        assert!(labels.len() >= 3 && distinct.len() == labels.len(), "{axis} ticks {labels:?}");
        let vals: Vec<f64> = labels.iter().map(|l| l.parse().unwrap()).collect();
        let ordered =
            if axis == "x" { vals.windows(2).all(|w| w[0] < w[1]) } else { vals.windows(2).all(|w| w[0] > w[1]) };
        assert!(ordered, "{axis} ticks out of order (by position; SVG y grows downwards): {labels:?}");
    }
    assert!(xt.iter().all(|t| t.1.parse::<f64>().unwrap().fract() == 0.0), "contexts are whole: {xt:?}");
    assert!(xt.iter().any(|t| t.1 == "32"), "{xt:?}");
}
