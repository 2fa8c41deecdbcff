//! scripts/gpu/check.sh, the prepared CUDA check, run with --dry: every step
//! on the CPU at toy sizes, so the script cannot rot while no GPU is at hand.

mod common;

use std::process::Command;

use common::*;

fn csv_rows(path: &std::path::Path) -> Vec<std::collections::HashMap<String, String>> {
    let (header, rows) = gda::report::table::read(path).unwrap();
    rows.into_iter().map(|r| header.iter().cloned().zip(r).collect()).collect()
}

#[test]
fn the_gpu_check_runs_dry_on_the_cpu_and_every_step_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = Command::new(repo().join("scripts/gpu/check.sh"))
        .arg(&out)
        .arg("--dry")
        .env("GDA_BIN", env!("CARGO_BIN_EXE_gda"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}\n{}", stdout_of(&o), stderr_of(&o));

    let log = std::fs::read_to_string(out.join("check.log")).unwrap();
    assert!(log.contains("== gda GPU check: device cpu"), "{log}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["dry"], true);
    assert_eq!(results["failed"].as_array().unwrap().len(), 0, "{results}");
    let steps = &results["steps"];
    for name in [
        "device",
        "attention_fused_vs_materialised",
        "cpu_checkpoint_loss_on_device",
        "train",
        "eval_scores_in_training_dtype",
        "distributed_world_one",
        "bench",
        "sweep_two_jobs_one_device",
    ] {
        assert_eq!(steps[name]["ok"], true, "{name}: {}", steps[name]);
    }
    assert_eq!(steps["device"]["compute_dtype"], "Float");
    // A process group of one (Gloo here, NCCL on a GPU) trains as no group.
    assert_eq!(steps["distributed_world_one"]["backend"], "gloo");
    assert!(steps["distributed_world_one"]["max_rel_loss_diff"].as_f64().unwrap() <= 1e-5);

    // fp32 on one device: the two attention paths agree closely.
    let attn = csv_rows(&out.join("attention.csv"));
    assert_eq!(attn.len(), 3);
    for r in &attn {
        let diff: f64 = r["loss_diff"].parse().unwrap();
        assert!(diff <= 1e-4, "{r:?}");
        assert!(r["loss_fused"].parse::<f64>().unwrap() > 1.0, "{r:?}");
    }
    // A CPU checkpoint scored on the CPU twice gives the same loss.
    let loss = csv_rows(&out.join("loss_cpu_vs_device.csv"));
    assert_eq!(loss.len(), 3);
    for r in &loss {
        assert!(r["loss_diff"].parse::<f64>().unwrap() <= 1e-6, "{r:?}");
    }
    // Training learnt, and read nothing from the device on unlogged steps.
    let train = &steps["train"];
    assert!(train["val_loss_last"].as_f64().unwrap() < train["val_loss_first"].as_f64().unwrap(), "{train}");
    assert_eq!(train["unlogged_host_reads"], 0, "{train}");
    assert!(train["tokens_per_s_median"].as_f64().unwrap() > 0.0);
    // gda and PyTorch eager for each of the three configurations.
    let bench = csv_rows(&out.join("bench.csv"));
    assert_eq!(bench.len(), 6, "{bench:?}");
    for r in &bench {
        assert!(r["tokens_per_s"].parse::<f64>().unwrap() > 0.0, "{r:?}");
    }
    assert_eq!(steps["sweep_two_jobs_one_device"]["done"], 2);
}
