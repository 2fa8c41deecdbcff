//! `gda eval --suite bench`: parsing of every task format (the fixtures in
//! tests/fixtures/bench test parsing and scoring, not model quality), bad
//! task files, and the scores checked against an independent computation:
//! one unbatched full forward per choice, log-softmax summed over the
//! continuation, in this file.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{gda, stderr_of, write_spec, CPU, TINY};
use gda::data::bench::{encode_pair, parse_tasks, read_task, Format, Request};
use gda::data::Tokenizer;
use gda::model::Model;
use gda::train::checkpoint;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// The tiny spec at context 128: every fixture's continuation fits (a
/// continuation longer than the context is refused, as lm-eval asserts).
fn spec(steps: usize) -> String {
    TINY.replace("context = 32", "context = 128").replace("steps = 60", &format!("steps = {steps}"))
}

fn fixtures() -> PathBuf {
    common::repo().join("tests/fixtures/bench")
}

/// A tiny byte-level run trained once for every test here (20 steps: the
/// scores need a model, not a good one).
fn run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let spec = write_spec(&dir, "tiny", &spec(20));
        let run = dir.join("run");
        let out = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        run
    })
}

fn eval(args: &[&str]) -> std::process::Output {
    gda().arg("eval").args(args).args(["--threads", "1"]).output().unwrap()
}

fn csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let (header, rows) = gda::report::table::read(path).unwrap();
    rows.into_iter().map(|r| header.iter().cloned().zip(r).collect()).collect()
}

fn items(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn req(c: &str, k: &str) -> Request {
    Request { context: c.into(), continuation: k.into() }
}

#[test]
fn every_format_parses_as_lm_eval_builds_its_requests() {
    let tasks = parse_tasks(&[fixtures().display().to_string()]).unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["arc_challenge", "arc_easy", "custom", "hellaswag", "lambada", "piqa", "winogrande"]);
    let task = |n: &str| tasks.iter().find(|t| t.name == n).unwrap();
    assert_eq!(task("arc_easy").format, Format::Arc);
    assert_eq!(task("custom").format, Format::Generic);

    let hs = read_task(task("hellaswag"), None).unwrap();
    assert_eq!(hs.len(), 3);
    // capitalize() lower-cases the rest of ctx_b.
    assert_eq!(
        hs[0].requests[2],
        req(
            "Making crème brûlée: A chef torches the sugar on top of a custard. The crust",
            " turns golden and hard as it cools."
        )
    );
    assert_eq!(hs[0].gold, 2);
    assert_eq!(hs[0].choice_chars, [41, 32, 34, 35]);
    // WikiHow brackets: " [title]" → ". ", [..] removed, "  " → " " once
    // (the three spaces left by "[substeps]" become two, as in lm-eval).
    assert_eq!(
        hs[1].requests[0].context,
        "Home and Garden: How to water a bonsai. Check the soil every day. water when the top feels dry."
    );
    assert_eq!(hs[1].requests[0].continuation, " Use a can with a fine rose  so the soil is not washed away.");
    assert_eq!(hs[1].requests[1].continuation, " Paint the pot. blue.");
    assert_eq!(hs[1].gold, 0);

    let piqa = read_task(task("piqa"), None).unwrap();
    assert_eq!(
        piqa[0].requests[1],
        req("Question: How do I keep a crêpe from sticking?\nAnswer:", " Pour the batter onto the cold counter.")
    );
    assert_eq!((piqa[1].gold, piqa[2].gold), (1, 0));

    let arc = read_task(task("arc_easy"), None).unwrap();
    assert_eq!(arc[1].requests.len(), 3);
    assert_eq!(arc[1].requests[1], req("Question: Water freezes at what temperature (°C)?\nAnswer:", " 0 °C"));
    // answerKey "2" among the digit labels is index 1.
    assert_eq!(arc[1].gold, 1);
    assert_eq!(arc[1].choice_chars, [6, 4, 5]);
    assert_eq!(read_task(task("arc_challenge"), None).unwrap()[1].gold, 0);

    let wg = read_task(task("winogrande"), None).unwrap();
    assert_eq!(wg[1].requests[0], req("Zoë gave her café to Chloé because Zoë", " was moving to Zürich."));
    assert_eq!(wg[1].requests[1], req("Zoë gave her café to Chloé because Chloé", " was moving to Zürich."));
    assert_eq!((wg[1].gold, wg[2].gold), (0, 1));

    let lb = read_task(task("lambada"), None).unwrap();
    assert_eq!(
        lb[2].requests,
        [req("Le café était fermé, alors nous sommes allés au marché pour acheter du", " pain")]
    );

    let custom = read_task(task("custom"), None).unwrap();
    // "très chaud": 10 characters, 11 bytes.
    assert_eq!(custom[0].choice_chars, [4, 4, 10]);
    assert_eq!(read_task(task("custom"), Some(2)).unwrap().len(), 2);
}

#[test]
fn a_pair_is_tokenized_as_lm_eval_encodes_it() {
    // The context's trailing space moves to the continuation.
    let bytes = Tokenizer::new(&gda::config::TokenizerKind::Bytes).unwrap();
    assert_eq!(encode_pair(&bytes, &req("Answer: ", "x")), (b"Answer:".map(u32::from).to_vec(), vec![32, 120]));
    // GPT-2: " yes" is one token when the space travels with it; encoding
    // "Answer: " and "yes" apart would give two others.
    let gpt2 = Tokenizer::new(&gda::config::TokenizerKind::Gpt2).unwrap();
    let (ctx, cont) = encode_pair(&gpt2, &req("Answer: ", "yes"));
    assert_eq!(ctx, gpt2.encode(b"Answer:"));
    assert_eq!(cont, gpt2.encode(b" yes"));
    assert_eq!(cont.len(), 1);
    assert_ne!(cont, gpt2.encode(b"yes"));
}

/// Log-likelihood of each request the independent way: bytes of the
/// context without its trailing whitespace, the rest as continuation; the
/// last `max_len + 1` tokens, one full unbatched forward, log-softmax.
fn reference(model: &Model, r: &Request, max_len: usize) -> (f64, bool) {
    let ctx = r.context.trim_end().len();
    let whole: Vec<i64> = format!("{}{}", r.context, r.continuation).bytes().map(i64::from).collect();
    let cont = whole.len() - ctx;
    let kept = &whole[whole.len().saturating_sub(max_len + 1)..];
    let x = Tensor::from_slice(&kept[..kept.len() - 1]).unsqueeze(0);
    let logp = tch::no_grad(|| model.forward(&x)).log_softmax(-1, Kind::Double).squeeze_dim(0);
    let n = kept.len() - 1;
    let ll: f64 = (0..cont).map(|j| logp.double_value(&[(n - cont + j) as i64, kept[n - cont + j + 1]])).sum();
    (ll, whole.len() > max_len + 1)
}

fn first_argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

#[test]
fn scores_equal_an_unbatched_forward_per_choice_and_truncation_is_counted() {
    let run = run();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("eval");
    // 300 fits every fixture item; 80 cuts many of them.
    let out = eval(&[
        run.to_str().unwrap(),
        "--suite",
        "bench",
        "--tasks",
        fixtures().to_str().unwrap(),
        "--contexts",
        "300,80",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let (_vs, model) = load_model(run);

    let tasks = parse_tasks(&[fixtures().display().to_string()]).unwrap();
    let scored = items(&out_dir.join("bench_items.jsonl"));
    let rows = csv(&out_dir.join("bench.csv"));
    let mut compared = 0;
    for ctx in [300usize, 80] {
        let mut accs = Vec::new();
        for t in &tasks {
            let its = read_task(t, None).unwrap();
            let mine: Vec<&serde_json::Value> =
                scored.iter().filter(|s| s["task"] == t.name.as_str() && s["context"] == ctx).collect();
            assert_eq!(mine.len(), its.len(), "{} @{ctx}", t.name);
            let (mut hit, mut hit_norm, mut truncated, mut lls_all) = (0.0, 0.0, 0, Vec::new());
            for (it, s) in its.iter().zip(&mine) {
                let refs: Vec<(f64, bool)> = it.requests.iter().map(|r| reference(&model, r, ctx)).collect();
                let lls: Vec<f64> = s["lls"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
                for (a, (b, _)) in lls.iter().zip(&refs) {
                    assert!((a - b).abs() < 1e-4, "{} line {} @{ctx}: gda {a} vs reference {b}", t.name, it.line);
                    compared += 1;
                }
                let cut = refs.iter().any(|r| r.1);
                assert_eq!(s["truncated"].as_bool().unwrap(), cut);
                truncated += usize::from(cut);
                let ll: Vec<f64> = refs.iter().map(|r| r.0).collect();
                let pred = first_argmax(&ll);
                assert_eq!(s["pred"].as_u64().unwrap() as usize, pred, "{} line {}", t.name, it.line);
                let norm: Vec<f64> = ll.iter().zip(&it.choice_chars).map(|(l, &c)| l / c as f64).collect();
                hit += f64::from(pred == it.gold);
                hit_norm += f64::from(first_argmax(&norm) == it.gold);
                lls_all.push(ll[0]);
            }
            let row = rows.iter().find(|r| r["task"] == t.name && r["context"] == ctx.to_string()).unwrap();
            let n = its.len() as f64;
            assert_eq!(row["n"], its.len().to_string());
            assert_eq!(row["truncated"], truncated.to_string(), "{} @{ctx}", t.name);
            let got = |k: &str| row[k].parse::<f64>().unwrap();
            if t.format == Format::Lambada {
                // acc: greedy last word; ppl: exp(-mean loglik).
                let ppl = (-lls_all.iter().sum::<f64>() / n).exp();
                assert!((got("ppl") - ppl).abs() < 1e-3 * ppl, "{} vs {ppl}", row["ppl"]);
                assert!(row["acc_norm"].is_empty());
            } else {
                assert!((got("acc") - hit / n).abs() < 1e-12, "{} @{ctx}", t.name);
                if t.format == Format::Winogrande {
                    assert!(row["acc_norm"].is_empty());
                } else {
                    assert!((got("acc_norm") - hit_norm / n).abs() < 1e-12, "{} @{ctx}", t.name);
                    let p = hit_norm / n;
                    let se = (p * (1.0 - p) * n / (n - 1.0)).sqrt() / n.sqrt();
                    assert!((got("acc_norm_stderr") - se).abs() < 1e-12);
                }
                // Sample std of 0/1 values over √n.
                let p = hit / n;
                let se = (p * (1.0 - p) * n / (n - 1.0)).sqrt() / n.sqrt();
                assert!((got("acc_stderr") - se).abs() < 1e-12, "{} @{ctx}", t.name);
            }
            accs.push(got("acc"));
        }
        let avg = rows.iter().find(|r| r["task"] == "average" && r["context"] == ctx.to_string()).unwrap();
        let mean = accs.iter().sum::<f64>() / accs.len() as f64;
        assert!((avg["acc"].parse::<f64>().unwrap() - mean).abs() < 1e-12);
        let truncated: usize = rows
            .iter()
            .filter(|r| r["task"] != "average" && r["context"] == ctx.to_string())
            .map(|r| r["truncated"].parse::<usize>().unwrap())
            .sum();
        assert_eq!(avg["truncated"], truncated.to_string());
        if ctx == 300 {
            assert_eq!(truncated, 0);
        } else {
            assert!(truncated > 5, "{truncated}");
        }
    }
    assert!(compared > 100, "{compared}");
}

/// The trained run's model (and the store that holds its weights).
fn load_model(run: &Path) -> (VarStore, Model) {
    let spec = gda::config::Spec::load(Some(&run.join("spec.toml")), &[]).unwrap();
    let (vs, model) = Model::build(&spec.model, CPU);
    let ckpt = checkpoint::latest(run).unwrap();
    checkpoint::load_weights(&vs, &ckpt.join(checkpoint::MODEL_FILE)).unwrap();
    (vs, model)
}

#[test]
fn requests_of_different_lengths_batched_together_score_as_each_alone() {
    let (_vs, model) = load_model(run());
    let bytes = |s: &str| s.bytes().map(u32::from).collect::<Vec<u32>>();
    // Contexts of 6 to 240 bytes (past 128 they are cut on the left), with
    // 1 to 4 choices of 1 to 14 bytes, some sharing their first bytes.
    let mut pairs = Vec::new();
    for i in 0..30usize {
        let ctx: String = (0..6 + i * i % 235).map(|k| char::from(b'a' + ((i * 7 + k * 3) % 26) as u8)).collect();
        for c in 0..1 + i % 4 {
            pairs.push((bytes(&ctx), bytes(&" the end of it all"[..1 + (i + 5 * c) % 14])));
        }
    }
    let max_len = 128;
    let lengths = gda::eval::bench::batch_lengths(&pairs, max_len, 4096);
    assert!(lengths.iter().any(|b| b.first() != b.last()), "no batch mixes prefix lengths: {lengths:?}");
    assert!(lengths.len() < 30, "{} batches", lengths.len());
    let together = gda::eval::bench::score(&model, &pairs, max_len, 4096, CPU);
    assert!(together.iter().any(|s| s.truncated) && together.iter().any(|s| !s.truncated));
    for (p, t) in pairs.iter().zip(&together) {
        let alone = gda::eval::bench::score(&model, std::slice::from_ref(p), max_len, 4096, CPU)[0];
        assert!((t.loglik - alone.loglik).abs() < 1e-5, "{} vs alone {}", t.loglik, alone.loglik);
        assert_eq!((t.greedy, t.truncated), (alone.greedy, alone.truncated));
    }
    // Padding that leaked into a context would show: one pad token before
    // the context moves a score far past the 1e-5 above.
    let moved = pairs
        .iter()
        .filter(|(ctx, _)| ctx.len() < max_len)
        .map(|(ctx, cont)| {
            let padded = (std::iter::once(0).chain(ctx.iter().copied()).collect::<Vec<u32>>(), cont.clone());
            let s = gda::eval::bench::score(&model, &[(ctx.clone(), cont.clone()), padded], max_len, 4096, CPU);
            (s[0].loglik - s[1].loglik).abs()
        })
        .fold(0.0, f64::max);
    assert!(moved > 1e-3, "a pad token moves a score by only {moved}");
}

#[test]
fn ties_go_to_the_first_choice_and_limit_caps_items() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("same.jsonl");
    std::fs::write(&file, "{\"context\": \"Pick one:\", \"choices\": [\"même\", \"même\"], \"gold\": 1}\n{\"context\": \"x\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n").unwrap();
    let out_dir = tmp.path().join("eval");
    let tasks = format!("same={},piqa={}", file.display(), fixtures().join("piqa.jsonl").display());
    let out = eval(&[
        run().to_str().unwrap(),
        "--suite",
        "bench",
        "--tasks",
        &tasks,
        "--limit",
        "1",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let scored = items(&out_dir.join("bench_items.jsonl"));
    assert_eq!(scored.len(), 2, "--limit 1: one item per task");
    let same = &scored[0];
    assert_eq!(same["lls"][0], same["lls"][1]);
    assert_eq!((same["pred"].as_u64(), same["pred_norm"].as_u64()), (Some(0), Some(0)));
    let rows = csv(&out_dir.join("bench.csv"));
    assert_eq!(rows[0]["acc"], "0");
    assert_eq!(rows[0]["acc_norm"], "0");
    // One item: no standard error.
    assert_eq!(rows[0]["acc_stderr"], "");
}

#[test]
fn the_tables_have_their_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("eval");
    let tasks = format!("piqa={}", fixtures().join("piqa.jsonl").display());
    let out =
        eval(&[run().to_str().unwrap(), "--suite", "bench", "--tasks", &tasks, "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let (header, rows) = gda::report::table::read(&out_dir.join("bench.csv")).unwrap();
    assert_eq!(
        header.join(","),
        "run,group,variant,seed,policy,requested_ratio,ratio,step,task,context,train_context,n,acc,acc_stderr,acc_norm,acc_norm_stderr,ppl,truncated"
    );
    assert_eq!(rows.iter().map(|r| r[8].as_str()).collect::<Vec<_>>(), ["piqa", "average"]);
    let (header, rows) = gda::report::table::read(&out_dir.join("bench_groups.csv")).unwrap();
    assert_eq!(
        header.join(","),
        "group,variant,policy,requested_ratio,ratio,task,context,train_context,items,n,acc_mean,acc_std,acc_norm_mean,acc_norm_std,ppl_mean,ppl_std"
    );
    assert_eq!(rows.len(), 2);
    let summary = std::fs::read_to_string(out_dir.join("summary.md")).unwrap();
    assert!(summary.contains("## Zero-shot benchmarks") && summary.contains("| piqa |"), "{summary}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("piqa @128: 3 items"));
}

/// A task name is the user's text: in summary.md it renders as text, not as
/// HTML, and a `|` in it does not split the table's cells.
#[test]
fn user_text_in_the_summary_is_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("eval");
    let tasks = format!("<script>x|y</script>={}", fixtures().join("custom.jsonl").display());
    let out =
        eval(&[run().to_str().unwrap(), "--suite", "bench", "--tasks", &tasks, "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let summary = std::fs::read_to_string(out_dir.join("summary.md")).unwrap();
    assert!(summary.contains("| &lt;script&gt;x\\|y&lt;/script&gt; |"), "{summary}");
    assert!(!summary.contains("<script>"), "{summary}");
}

#[test]
fn a_sweep_gets_paired_comparisons_and_an_accuracy_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", &spec(10));
    let dir = tmp.path().join("sweep");
    let out = gda()
        .args(["sweep", "--spec"])
        .arg(&spec)
        .args(["--ratios", "1,2", "--num-seeds", "2", "--baseline", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let tasks = format!("piqa={}", fixtures().join("piqa.jsonl").display());
    let out = eval(&[dir.to_str().unwrap(), "--suite", "bench", "--tasks", &tasks]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let ev = dir.join("eval");
    let rows = csv(&ev.join("bench.csv"));
    let cmp = csv(&ev.join("bench_comparisons.csv"));
    let acc = |group: &str, seed: &str| {
        rows.iter()
            .find(|r| r["group"] == group && r["seed"] == seed && r["task"] == "average")
            .map(|r| r["acc"].parse::<f64>().unwrap())
            .unwrap()
    };
    let seeds: Vec<String> = {
        let mut s: Vec<String> = rows.iter().map(|r| r["seed"].clone()).collect();
        s.sort();
        s.dedup();
        s
    };
    assert_eq!(seeds.len(), 2);
    for b in ["1:1 shared", "baseline"] {
        let c = cmp.iter().find(|c| c["a"] == "2:1 shared" && c["b"] == b && c["task"] == "average").unwrap();
        assert_eq!(c["n"], "2");
        let want = seeds.iter().map(|s| acc("2:1 shared", s) - acc(b, s)).sum::<f64>() / 2.0;
        assert!((c["mean_diff"].parse::<f64>().unwrap() - want).abs() < 1e-12);
    }
    // As in an experiment's summary: 1:1 against the baseline only, the
    // baseline against nothing.
    assert!(!cmp.iter().any(|c| c["a"] == "baseline" || (c["a"] == "1:1 shared" && c["b"] != "baseline")));
    assert!(cmp.iter().any(|c| c["a"] == "1:1 shared" && c["b"] == "baseline"));
    let svg = std::fs::read_to_string(ev.join("bench_vs_ratio.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("baseline"));
    assert!(std::fs::read_to_string(ev.join("summary.md")).unwrap().contains("Paired comparisons"));
}

#[test]
fn bad_task_files_are_refused_naming_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let good_piqa = r#"{"goal": "g", "sol1": "a", "sol2": "b", "label": 0}"#;
    let cases: &[(&str, String, &str)] = &[
        (
            "hellaswag",
            r#"{"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["x", "y"], "label": 7}"#.into(),
            "field `label`",
        ),
        ("piqa", format!("{good_piqa}\n{{\"goal\": \"g\", \"sol1\": \"a\", \"label\": 0}}"), "field `sol2`: missing"),
        (
            "arc_easy",
            r#"{"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E"}"#.into(),
            "field `answerKey`",
        ),
        (
            "winogrande",
            r#"{"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"}"#.into(),
            "field `sentence`",
        ),
        (
            "winogrande",
            r#"{"sentence": "a _ b", "option1": "a", "option2": "b", "answer": "3"}"#.into(),
            "field `answer`",
        ),
        ("lambada", r#"{"text": "oneword"}"#.into(), "field `text`"),
        ("custom", r#"{"context": "c", "choices": ["a", ""], "gold": 0}"#.into(), "field `choices`: choice 1 is empty"),
        ("custom", r#"{"context": "c", "choices": ["a", "b"], "gold": "0"}"#.into(), "field `gold`"),
        ("piqa", format!("{good_piqa}\n{good_piqa}\nnot json"), "not a JSON object"),
    ];
    for (name, text, want) in cases {
        let file = tmp.path().join(format!("{name}.jsonl"));
        std::fs::write(&file, text).unwrap();
        let out =
            eval(&[run().to_str().unwrap(), "--suite", "bench", "--tasks", &format!("{name}={}", file.display())]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        let line = text.lines().count();
        assert!(err.contains(&format!("{}:{line}:", file.display())), "{name}: {err}");
        assert!(err.contains(want), "{name}: want {want:?} in {err}");
    }
    // Bytes that are not UTF-8 are bad input too (exit 2, line and field),
    // not an I/O failure.
    let file = tmp.path().join("latin1.jsonl");
    let mut bytes = format!("{good_piqa}\n").into_bytes();
    bytes.extend(b"{\"goal\": \"caf\xe9\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n");
    std::fs::write(&file, bytes).unwrap();
    let out = eval(&[run().to_str().unwrap(), "--suite", "bench", "--tasks", &format!("piqa={}", file.display())]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let place = format!("{}:2: field `goal`:", file.display());
    for want in [place.as_str(), "byte 14 of the line is not UTF-8"] {
        assert!(err.contains(want), "want {want:?} in {err}");
    }
    // Options that cannot apply.
    let run = run().to_str().unwrap();
    for (args, want) in [
        (vec![run, "--suite", "bench"], "needs --tasks"),
        (vec![run, "--tasks", "piqa=x.jsonl"], "add --suite bench"),
        (vec![run, "--suite", "bench", "--tasks", "piqa=/nonexistent.jsonl"], "is not a file"),
        (vec![run, "--suite", "bench", "--tasks", "piqa=Cargo.toml,piqa=Cargo.toml"], "twice"),
        (vec![run, "--suite", "bench", "--tasks", "piqa=Cargo.toml", "--limit", "0"], "--limit 0"),
    ] {
        let out = gda().arg("eval").args(&args).current_dir(common::repo()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains(want), "{args:?}: {}", stderr_of(&out));
    }
    // Nothing was written by a refused evaluation.
    assert!(!Path::new(run).join("eval/bench.csv").exists());
}
