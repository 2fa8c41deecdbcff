//! `--devices` input, and `gda status` and `gda sweep --collect` on a local
//! experiment directory alone. (Concurrent points: tests/sweep.rs; the Slurm
//! launcher: tests/slurm.rs.)

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

#[test]
fn bad_devices_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", TINY);
    let dir = tmp.path().join("sweep");
    for (devices, msg) in [("cpu,cuda:7", "is not available"), ("cpu,tpu", "is not a device")] {
        let out = gda()
            .args(["sweep", "--spec"])
            .arg(&spec)
            .args(["--ratios", "1,2", "--devices", devices, "--out"])
            .arg(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains("--devices") && stderr_of(&out).contains(msg), "{}", stderr_of(&out));
    }
    let out = gda()
        .args(["sweep", "--spec"])
        .arg(&spec)
        .args(["--ratios", "1,2", "--devices", "cpu", "--jobs", "2", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(!dir.exists());
    let out = gda().arg("status").arg(tmp.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("is not a gda experiment directory"), "{}", stderr_of(&out));
}

#[test]
fn status_tells_running_from_stopped_and_collect_lists_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let text = TINY.replace("steps = 60", "steps = 2000").replace("[train]", "[train]\ncheckpoint_every = 20");
    let spec = write_spec(tmp.path(), "tiny", &text);
    let dir = tmp.path().join("sweep");
    let child = gda()
        .args(["sweep", "--spec"])
        .arg(&spec)
        .args(["--ratios", "1,2", "--out"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(120), || dir.join("points/g1-s7/checkpoints/LATEST").exists());
    let status = || {
        let out = gda().arg("status").arg(&dir).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        stdout_of(&out)
    };
    let s = status();
    assert!(s.contains("g1-s7  running  step ") && s.contains("/2000 (pid "), "{s}");
    assert!(s.contains("g2-s7  pending") && s.contains("0 done, 1 running, 1 pending, 0 failed"), "{s}");

    // A second trainer on the same point (a Slurm task, a sweep rerun) is
    // turned away: exit 7, the holder named, no failure recorded.
    let run = dir.join("points/g1-s7");
    let out = gda()
        .args(["train", "--resume", "--spec"])
        .arg(dir.join("specs/g1-s7.toml"))
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr_of(&out));
    let pid = s.split("(pid ").nth(1).unwrap().split(')').next().unwrap();
    assert!(
        stderr_of(&out).contains("is in use") && stderr_of(&out).contains(&format!("pid {pid} on ")),
        "{}",
        stderr_of(&out)
    );
    assert!(!run.join("failed.txt").exists());

    let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    let s = status();
    assert!(s.contains("g1-s7  pending  stopped at step ") && s.contains("the next run resumes"), "{s}");

    let out = gda().args(["sweep", "--collect", "--out"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    assert!(
        text.contains("2 of 2 points have no result yet: g1-s7 (checkpoint at step ")
            && text.contains("g2-s7 (not started)"),
        "{text}"
    );
    assert!(dir.join("summary.csv").exists() && dir.join("summary.md").exists());
}
