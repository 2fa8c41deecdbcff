//! Every bad input is refused before training, with exit code 2, naming the
//! file, the key and what is allowed, and leaving nothing behind.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Runs `gda train` on a spec with `text`, expects exit 2 and no run
/// directory, and returns stderr.
fn refused(text: &str, extra: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "bad", text);
    let run = tmp.path().join("run");
    let mut cmd = gda();
    cmd.args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).args(extra);
    let (code, err) = bounded(&mut cmd);
    assert_eq!(code, Some(2), "stderr: {err}");
    assert!(!run.exists(), "a refused run must not create its directory");
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// Runs `cmd` to its end within a minute (a refusal takes well under a
/// second; a validation that loops on a huge count would hang the suite) and
/// returns its exit code and stderr.
fn bounded(cmd: &mut std::process::Command) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let status = wait_at_most(&mut child, Duration::from_secs(60), "a refusal");
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.code(), err)
}

fn assert_names(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "expected {p:?} in: {err}");
    }
}

#[test]
fn toml_syntax_error_names_the_file_and_line() {
    let err = refused("[model\nd_model = 32\n", &[]);
    assert_names(&err, &["bad.toml", "not valid TOML", "line 1"]);
}

#[test]
fn unknown_key_names_the_key_and_the_allowed_ones() {
    let err = refused("[model]\nd_modle = 32\n", &[]);
    assert_names(&err, &["bad.toml", "model.d_modle", "unknown field", "d_model", "signal_heads"]);
    let err = refused("[trian]\nsteps = 3\n", &[]);
    assert_names(&err, &["bad.toml", "trian", "unknown field", "train"]);
}

#[test]
fn wrong_type_names_the_key_and_the_expected_type() {
    let err = refused("[train]\nsteps = \"many\"\n", &[]);
    assert_names(&err, &["bad.toml", "train.steps", "invalid type", "string \"many\"", "usize"]);
    let err = refused("[model]\nattention = \"linear\"\n", &[]);
    assert_names(&err, &["model.attention", "unknown variant `linear`", "gda", "standard"]);
}

#[test]
fn impossible_head_allocation_lists_valid_ones() {
    let err = refused("[model]\nsignal_heads = 8\nnoise_heads = 3\n", &[]);
    assert_names(
        &err,
        &[
            "bad.toml",
            "model.noise_heads",
            "8 signal heads",
            "3 noise heads",
            "allowed: a divisor of 8",
            "nearest: 2, 4",
        ],
    );
    let err = refused("[model]\nsignal_heads = 8\nnoise_heads = 4\nkv_heads = 3\n", &[]);
    assert_names(&err, &["model.kv_heads", "4 noise heads", "3 K/V heads", "nearest: 2, 4"]);
}

#[test]
fn override_errors_name_the_key() {
    let err = refused(TINY, &["--set", "train.stpes=5"]);
    assert_names(&err, &["train.stpes", "unknown field"]);
    let err = refused(TINY, &["--set", "noequals"]);
    assert_names(&err, &["noequals", "key=value"]);
    let err = refused(TINY, &["--device", "tpu"]);
    assert_names(&err, &["train.device", "\"tpu\"", "cuda:N"]);
}

#[test]
fn context_longer_than_the_data_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("small.txt");
    std::fs::write(
        &data,
        "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n".repeat(20),
    )
    .unwrap();
    let err = refused(TINY, &["--data", data.to_str().unwrap(), "--set", "train.context=512"]);
    assert_names(
        &err,
        &["bad.toml", "train.context", "512 is longer than the data", "validation split has", "at most"],
    );
}

#[test]
fn missing_data_path_is_refused() {
    let err = refused(TINY, &["--data", "/nonexistent/corpus.txt"]);
    assert_names(&err, &["/nonexistent/corpus.txt", "does not exist", "shakespeare"]);
    let err = refused(&format!("{TINY}\n[data]\ncorpus = \"/nonexistent/dir\"\n"), &[]);
    assert_names(&err, &["/nonexistent/dir", "does not exist"]);
    // A retrieval task generates its examples: a text would be ignored.
    let mqar = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/mqar.toml")).unwrap();
    let err = refused(&mqar, &["--data", concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")]);
    assert_names(
        &err,
        &["--data", "README.md", "does not apply", "data.task = \"mqar\"", "allowed: --data with data.task = \"text\""],
    );
}

#[test]
fn unwritable_results_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "bad", TINY);
    // A path below a regular file cannot be created, even by root.
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let run = blocker.join("run");
    let out = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_names(&stderr_of(&out), &["results directory", "a-file/run", "not writable"]);
    let out = gda()
        .args(["train", "--spec"])
        .arg(&spec)
        .args(["--set", &format!("output.dir=\"{}\"", blocker.display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_names(&stderr_of(&out), &["results directory", "not writable"]);
}

#[test]
fn missing_spec_file_is_refused() {
    let out = gda().args(["train", "--spec", "/nonexistent/spec.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_names(&stderr_of(&out), &["/nonexistent/spec.toml", "cannot read the spec"]);
}

#[test]
fn resume_of_an_empty_directory_says_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = gda().args(["train", "--resume", "--out"]).arg(tmp.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_names(&stderr_of(&out), &["holds no run to resume", "--spec"]);
    assert!(!Path::new(&tmp.path().join("spec.toml")).exists());
}

#[test]
fn non_finite_numbers_are_refused_naming_the_key() {
    for (key, value) in [
        ("train.lr", "inf"),
        ("train.lr", "nan"),
        ("model.init_std", "inf"),
        ("model.rope_theta", "inf"),
        ("train.weight_decay", "inf"),
        ("model.norm_eps", "inf"),
        ("model.norm_eps", "nan"),
        ("train.adam_eps", "inf"),
        ("train.grad_clip", "-inf"),
    ] {
        let err = refused(TINY, &["--set", &format!("{key}={value}")]);
        let shown = if value == "nan" { "NaN" } else { value };
        assert_names(&err, &["bad.toml", &format!("key `{key}`"), &format!("{shown} is not allowed"), "allowed: "]);
    }
    let err = refused(TINY, &["--set", "model.lambda_init=[0.5, nan]"]);
    assert_names(&err, &["key `model.lambda_init[1]`", "NaN is not allowed", "0 <= lambda_init < 1"]);
    let err = refused(TINY, &["--set", "model.lambda_init=[inf, 0.5]"]);
    assert_names(&err, &["key `model.lambda_init[0]`", "inf is not allowed"]);
}

/// A model, batch or thread count this machine cannot hold is refused
/// before anything is allocated or written, naming the numbers and the key.
#[test]
fn oversized_models_and_thread_counts_are_refused_before_allocating() {
    let err = refused(TINY, &["--set", "model.d_model=1000000000"]);
    assert_names(&err, &["key `model.d_model`", "parameters", "available", "model.n_layers", "MemAvailable"]);
    assert!(!err.contains("panicked"), "{err}");
    let err = refused(TINY, &["--set", "model.n_layers=100000000"]);
    assert_names(&err, &["key `model.n_layers`", "100000000", "allowed: 1 to 10000"]);
    // Activations, not weights: the batch is what to change.
    let err = refused(TINY, &["--set", "train.batch_size=100000000"]);
    assert_names(&err, &["key `train.batch_size`", "activations", "train.grad_accum", "available"]);
    let cores = std::thread::available_parallelism().unwrap().get();
    let err = refused(TINY, &["--threads", "100000"]);
    assert_names(
        &err,
        &[
            "key `train.threads`",
            "100000",
            &format!("{cores} cores"),
            &format!("allowed: 0 (all cores) to {}", 4 * cores),
        ],
    );
}

/// Counts at the limit of their type are refused by name, without wrapping
/// into a small value that passes, looping over the count or allocating it.
#[test]
fn counts_at_the_limits_of_their_type_are_refused_without_wrapping_hanging_or_allocating() {
    // TOML integers are i64: i64::MAX is the largest a spec can hold.
    let imax = i64::MAX.to_string();
    let set = |kv: &str| vec!["--set".to_string(), kv.to_string()];
    let cases: [(Vec<String>, &[&str]); 7] = [
        (set(&format!("model.signal_heads={imax}")), &["key `model.signal_heads`", "allowed: at most 65536"]),
        (set(&format!("model.kv_heads={imax}")), &["key `model.kv_heads`", "allowed: at most 65536"]),
        (set(&format!("train.grad_accum={imax}")), &["key `train.grad_accum`", "allowed: 1 to 65536"]),
        (
            [set("data.task=\"mqar\""), set(&format!("task.queries={imax}"))].concat(),
            &["key `task.pairs`", &format!("{imax} queries"), "allowed: at most 8 pairs"],
        ),
        (
            [set("data.task=\"niah\""), set(&format!("task.value_len={imax}"))].concat(),
            &["key `task.value_len`", "allowed: less than 33"],
        ),
        // 5e9 examples of 33 positions: terabytes, on any machine CI runs on.
        (
            [set("data.task=\"mqar\""), set("task.eval_examples=5000000000")].concat(),
            &["key `task.eval_examples`", "5000000000 examples at context 32", "GiB", "available", "allowed: at most"],
        ),
        (set("name=\"two\\nlines\""), &["key `name`", "cannot name a directory"]),
    ];
    for (args, parts) in cases {
        let err = refused(TINY, &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_names(&err, parts);
    }
}

/// Grid and seed arguments are read strictly: an empty grid value, a seed
/// count that wraps and zero parallel jobs are refused before anything runs.
#[test]
fn grid_seed_and_job_arguments_are_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", TINY);
    let out = tmp.path().join("out");
    let max = u64::MAX.to_string();
    let cases: [(&[&str], &[&str]); 5] = [
        (&["sweep", "--grid", "model.n_layers=1,,2"], &["model.n_layers", "value 2 of \"1,,2\" is empty"]),
        (&["sweep", "--grid", "model.n_layers=1,2,"], &["value 3 of \"1,2,\" is empty"]),
        (&["sweep", "--num-seeds", &max], &[&format!("--num-seeds {max} is not allowed"), "1 to 10000"]),
        (&["sweep", "--jobs", "0"], &["--jobs", "0 is not in 1.."]),
        (&["reproduce", "--preset", "smoke", "--jobs", "0"], &["--jobs", "0 is not in 1.."]),
    ];
    for (args, parts) in cases {
        let mut cmd = gda();
        cmd.args(args).arg("--spec").arg(&spec).arg("--out").arg(&out);
        if args[0] == "reproduce" {
            cmd.args(["--dry-run"]);
        }
        let (code, err) = bounded(&mut cmd);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_names(&err, parts);
        assert!(!out.exists(), "{args:?} created {}", out.display());
    }
}
