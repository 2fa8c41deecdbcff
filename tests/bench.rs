//! `gda bench` and its PyTorch counterpart build the same model: the
//! benchmark's comparison is only fair if their parameter counts agree.
//! (Speed itself is measured by scripts/bench.sh, never asserted here.)

mod common;

use std::process::Command;

use common::*;

#[test]
fn gda_bench_and_the_pytorch_model_have_the_same_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, sets) in [
        ("gda", vec![]),
        ("gqa-on-gda", vec!["--set", "model.noise_heads=4", "--set", "model.kv_heads=2"]),
        ("standard", vec!["--set", "model.attention=standard", "--set", "model.heads=4", "--set", "model.kv_heads=2"]),
    ] {
        let spec = tmp.path().join(format!("{name}.toml"));
        let out = gda()
            .current_dir(repo())
            .args([
                "bench",
                "--spec",
                "experiments/smoke.toml",
                "--warmup",
                "0",
                "--steps",
                "1",
                "--repeats",
                "2",
                "--write-spec",
            ])
            .arg(&spec)
            .args(&sets)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", stderr_of(&out));
        let g: serde_json::Value = serde_json::from_str(stdout_of(&out).trim()).unwrap();
        let resolved = gda::config::Spec::load(Some(&spec), &[]).unwrap();
        assert_eq!(g["parameters"].as_u64().unwrap() as usize, gda::model::param_count(&resolved.model));
        assert_eq!(g["tokens_per_s"].as_array().unwrap().len(), 2);
        assert!(g["median_tokens_per_s"].as_f64().unwrap() > 0.0);
        assert_eq!(
            g["train_flops_per_token"].as_f64().unwrap(),
            gda::model::flops::train_flops_per_token(&resolved.model, 32)
        );

        // The venv that scripts/setup.sh made holds the same torch build.
        let python =
            std::env::var("VIRTUAL_ENV").map(|v| format!("{v}/bin/python")).unwrap_or_else(|_| "python3".into());
        let out = Command::new(&python)
            .arg(repo().join("scripts/bench_torch.py"))
            .arg("--spec")
            .arg(&spec)
            .args(["--warmup", "0", "--steps", "1", "--repeats", "1", "--threads", "1"])
            .output()
            .unwrap_or_else(|e| panic!("{python}: {e}"));
        assert!(out.status.success(), "{name}: {}", stderr_of(&out));
        let t: serde_json::Value = serde_json::from_str(stdout_of(&out).lines().last().unwrap()).unwrap();
        assert_eq!(t["parameters"], g["parameters"], "{name}: the PyTorch model is not the same size");
    }
}
