//! `--launcher slurm` against a real Slurm: a one-node cluster on this
//! machine (scripts/slurm-cluster.sh, which scripts/test.sh brings up before
//! the tests and shuts down after them). Where no cluster can be started
//! these tests fail and say why; they never skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

/// The cluster answers with its node ready for jobs.
fn node_ready() -> bool {
    let out = Command::new("sinfo").args(["-h", "-N", "-o", "%T"]).output();
    out.is_ok_and(|o| {
        o.status.success()
            && ["idle", "mixed", "allocated"].iter().any(|s| String::from_utf8_lossy(&o.stdout).contains(s))
    })
}

/// Brings the one-node cluster up once per test binary, or fails loudly.
fn cluster() {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    let up = UP.get_or_init(|| {
        if node_ready() {
            return Ok(());
        }
        let out = Command::new("bash")
            .arg(repo().join("scripts/slurm-cluster.sh"))
            .arg("up")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() && node_ready() {
            Ok(())
        } else {
            Err(format!("scripts/slurm-cluster.sh up: {}{}", stderr_of(&out), stdout_of(&out)))
        }
    });
    if let Err(why) = up {
        panic!(
            "\n\n*** THE SLURM TESTS NEED A SLURM CLUSTER AND NONE COULD BE STARTED{}:\n*** {}\n*** Run them as root on Debian through scripts/test.sh (scripts/slurm-cluster.sh up installs slurm-wlm and munge and starts a one-node cluster).\n",
            if std::env::var_os("CI").is_some() { " IN CI" } else { "" },
            why.trim()
        );
    }
}

/// A scratch directory under the target directory (not /tmp, which nodes of
/// a real cluster would not see; here it only avoids the warning).
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("slurm-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// `gda sweep` of the smoke spec with `sets`, into `dir`.
fn sweep(dir: &Path, ratios: &str, num_seeds: &str, sets: &[&str]) -> Command {
    let mut c = gda();
    c.args(["sweep", "--spec"]).arg(repo().join("experiments/smoke.toml"));
    c.args(["--ratios", ratios, "--num-seeds", num_seeds, "--out"]).arg(dir);
    for s in sets {
        c.args(["--set", s]);
    }
    c
}

/// Cancels the job when the test ends, passed or not.
struct Job(String);

impl Drop for Job {
    fn drop(&mut self) {
        let _ = Command::new("scancel").arg(&self.0).output();
    }
}

/// The job id of a successful `--launcher slurm` submission, checked against jobs.json.
fn submitted(out: &Output, dir: &Path) -> Job {
    assert!(out.status.success(), "{}", stderr_of(out));
    let text = stdout_of(out);
    let job = text
        .lines()
        .find_map(|l| l.strip_prefix("submitted Slurm job "))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no job id in: {text}"))
        .to_string();
    let jobs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("slurm/jobs.json")).unwrap()).unwrap();
    assert_eq!(jobs.as_array().unwrap().last().unwrap()["job_id"], job.as_str());
    assert!(text.contains(&format!("squeue -j {job}")) && text.contains("gda status"), "{text}");
    Job(job)
}

fn status(dir: &Path) -> String {
    let out = gda().arg("status").arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    stdout_of(&out)
}

/// Polls `gda status` until `ready` holds, panicking after `limit`.
fn wait_status(dir: &Path, limit: Duration, ready: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let s = status(dir);
        if ready(&s) {
            return s;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?}; gda status says:\n{s}\nsqueue:\n{}", squeue());
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn squeue() -> String {
    Command::new("squeue").args(["-t", "all", "-r"]).output().map(|o| stdout_of(&o)).unwrap_or_default()
}

fn val_loss(dir: &Path, point: &str) -> f64 {
    point_json(dir, point, "summary.json")["val_loss"].as_f64().unwrap()
}

fn scontrol(args: &[&str]) {
    let out = Command::new("scontrol").args(args).output().unwrap();
    assert!(out.status.success(), "scontrol {args:?}: {}", stderr_of(&out));
}

const POINTS: [&str; 4] = ["g1-s1", "g1-s2", "g2-s1", "g2-s2"];

#[test]
fn a_sweep_runs_as_a_job_array_and_matches_a_local_run() {
    cluster();
    let tmp = scratch();
    let sets = ["train.steps=40", "train.eval_every=20", "train.threads=1"];
    let dir = tmp.path().join("cluster");
    let out = sweep(&dir, "1,2", "2", &sets).args(["--launcher", "slurm"]).output().unwrap();
    let _job = submitted(&out, &dir);
    // The /tmp warning appears exactly when the checkout (and so the scratch
    // directory and the binary) lives under /tmp, as a CI clone may.
    let node_local = ["/tmp", "/var/tmp", "/dev/shm"].iter().any(|t| dir.starts_with(t));
    assert_eq!(stderr_of(&out).contains("warning: the experiment directory"), node_local, "{}", stderr_of(&out));
    let script = std::fs::read_to_string(dir.join("slurm/sweep.sbatch")).unwrap();
    for line in ["#SBATCH --array=0-3", "#SBATCH --requeue", "#SBATCH --open-mode=append", "#SBATCH --cpus-per-task=1"]
    {
        assert!(script.contains(line), "{line} missing:\n{script}");
    }
    assert!(script.contains(&format!("#SBATCH --output={}/slurm/%A_%a.out", dir.display())), "{script}");
    assert!(script.contains(&format!(
        "  3) POINT=g2-s2; CMD=({} train --resume --spec {}",
        env!("CARGO_BIN_EXE_gda"),
        dir.join("specs/g2-s2.toml").display()
    )));

    // The same grid trained here, meanwhile.
    let local = tmp.path().join("local");
    let out = sweep(&local, "1,2", "2", &sets).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));

    let s = wait_status(&dir, Duration::from_secs(300), |s| s.contains("4 done"));
    for p in POINTS {
        assert!(s.lines().any(|l| l.starts_with(p) && l.contains("done") && l.contains("val loss")), "{p}: {s}");
    }
    let out = gda().args(["sweep", "--collect", "--out"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains("| 2:1 shared |") && !stdout_of(&out).contains("no result yet"),
        "{}",
        stdout_of(&out)
    );
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let local_csv = std::fs::read_to_string(local.join("summary.csv")).unwrap();
    // summary.csv has one row per run; read with gda's own CSV reader.
    let (header, cluster_rows) = gda::report::table::read(&dir.join("summary.csv")).unwrap();
    let (local_header, local_rows) = gda::report::table::read(&local.join("summary.csv")).unwrap();
    assert_eq!(header, local_header, "{local_csv}");
    let col = |name: &str| header.iter().position(|c| c == name).unwrap();
    let (point, val) = (col("point"), col("val_loss"));
    assert_eq!(cluster_rows.iter().map(|r| r[point].as_str()).collect::<Vec<_>>(), POINTS, "one row per point:\n{csv}");
    assert_eq!(local_rows.len(), cluster_rows.len(), "{local_csv}");
    for (c, l) in cluster_rows.iter().zip(&local_rows) {
        assert_eq!(c[point], l[point]);
        assert_eq!(c[val], l[val], "{}: the cluster's result differs from the local run's", c[point]);
        assert_eq!(val_loss(&dir, &c[point]), val_loss(&local, &c[point]));
    }
    // Rerunning the sweep command collects too, and submits nothing.
    let out = sweep(&dir, "1,2", "2", &sets).args(["--launcher", "slurm"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains("nothing to submit") && stdout_of(&out).contains("summary: "),
        "{}",
        stdout_of(&out)
    );
    assert_eq!(std::fs::read_to_string(dir.join("summary.csv")).unwrap(), csv);
}

#[test]
fn a_cancelled_task_requeued_resumes_to_the_uninterrupted_result() {
    cluster();
    let tmp = scratch();
    let sets = ["train.steps=800", "train.checkpoint_every=25", "train.eval_every=400", "train.threads=1"];
    let dir = tmp.path().join("cluster");
    let out = sweep(&dir, "2", "1", &sets).args(["--launcher", "slurm"]).output().unwrap();
    let job = submitted(&out, &dir);
    let task = format!("{}_0", job.0);
    let run = dir.join("points/g2-s1");
    wait_for(Duration::from_secs(300), || run.join("checkpoints/LATEST").exists());
    // The local launcher on the same directory leaves the point to Slurm.
    let out = sweep(&dir, "2", "1", &sets).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains(&format!("left to Slurm, which has them queued or running: g2-s1 ({task} RUNNING)")),
        "{}",
        stdout_of(&out)
    );
    assert!(!stdout_of(&out).contains("training g2-s1"), "{}", stdout_of(&out));
    // So does the batch script run by hand for that point: its gda train
    // finds the point locked, and the task ends without a failure.
    let out =
        Command::new("bash").arg(dir.join("slurm/sweep.sbatch")).env("SLURM_ARRAY_TASK_ID", "0").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("exit 7: another gda train holds the point"), "{}", stdout_of(&out));
    assert!(!run.join("failed.txt").exists());
    let out = Command::new("scancel").arg(&task).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));

    // Cancelled: gda train got SIGTERM, wrote a checkpoint and stopped.
    let s = wait_status(&dir, Duration::from_secs(120), |s| s.contains("CANCELLED"));
    assert!(s.contains("g2-s1  failed   Slurm task") && s.contains("a resubmit resumes from it"), "{s}");
    assert!(s.contains(&format!("resubmit: sbatch --array=0 {}", dir.join("slurm/sweep.sbatch").display())), "{s}");
    assert!(!run.join("summary.json").exists(), "the point finished before the cancel");
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(log.contains("error: interrupted at step"), "{log}");

    // The uninterrupted reference, trained here.
    let local = tmp.path().join("local");
    let out = sweep(&local, "2", "1", &sets).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));

    // Requeued, the same task reruns the same command and resumes.
    scontrol(&["requeue", &task]);
    scontrol(&["update", &format!("jobid={task}"), "StartTime=now"]);
    wait_status(&dir, Duration::from_secs(300), |s| s.contains("1 done"));
    assert_eq!(val_loss(&dir, "g2-s1"), val_loss(&local, "g2-s1"));
    assert_eq!(deterministic_rows(&run), deterministic_rows(&local.join("points/g2-s1")));
    // The point is done once gda writes its summary; the task's own "exit"
    // line follows when the batch script regains control, a moment later.
    let log = dir.join(format!("slurm/{task}.out"));
    let start = Instant::now();
    let out = loop {
        let out = std::fs::read_to_string(&log).unwrap();
        if out.contains("exit 0") || start.elapsed() > Duration::from_secs(60) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        out.contains("SIGTERM") && out.contains("restart=0") && out.contains("restart=1") && out.contains("exit 0"),
        "{out}"
    );
}

#[test]
fn a_point_failing_on_the_cluster_is_recorded_with_its_reason() {
    cluster();
    let tmp = scratch();
    // lr·weight_decay far above 1: every model diverges within a few steps.
    let sets = ["train.weight_decay=1e4", "train.threads=1"];
    let dir = tmp.path().join("cluster");
    let out = sweep(&dir, "1,2", "1", &sets).args(["--launcher", "slurm"]).output().unwrap();
    let _job = submitted(&out, &dir);
    let s = wait_status(&dir, Duration::from_secs(300), |s| s.contains("2 failed"));
    assert!(s.contains("g1-s1  failed   training diverged at step"), "{s}");
    assert!(s.contains("--retry-failed") && s.contains("sbatch --array=0-1 "), "{s}");
    let out = gda().args(["sweep", "--collect", "--out"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("failed: training diverged"), "{}", stdout_of(&out));
}

#[test]
fn a_submit_slurm_rejects_shows_its_error_and_records_nothing() {
    cluster();
    let tmp = scratch();
    let dir = tmp.path().join("cluster");
    let out = sweep(&dir, "1,2", "1", &["train.steps=5"])
        .args(["--launcher", "slurm", "--partition", "no-such-partition"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("Slurm refused the submission")
            && err.contains("sbatch: error: invalid partition specified: no-such-partition"),
        "{err}"
    );
    assert!(dir.join("slurm/sweep.sbatch").exists());
    assert!(!dir.join("slurm/jobs.json").exists());
    assert!(status(&dir).contains("0 done, 0 running, 2 pending, 0 failed"));
}

/// What needs no cluster: sbatch missing, --no-submit, the /tmp warning,
/// options of the wrong launcher.
#[test]
fn slurm_input_is_checked_before_anything_is_submitted() {
    let tmp = scratch();
    let dir = tmp.path().join("nosbatch");
    let out = sweep(&dir, "1,2", "1", &[]).args(["--launcher", "slurm"]).env("PATH", "/nonexistent").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("sbatch is not on PATH") && stderr_of(&out).contains("--no-submit"),
        "{}",
        stderr_of(&out)
    );
    assert!(!dir.exists(), "nothing may be written");

    // --no-submit writes the script and prints the command; under /tmp it warns.
    let under_tmp = tempfile::Builder::new().prefix("gda-slurm-").tempdir_in("/tmp").unwrap();
    let dir: PathBuf = under_tmp.path().join("sweep");
    let out = sweep(&dir, "1,2", "1", &[])
        .args(["--launcher", "slurm", "--no-submit", "--time", "00:10:00", "--sbatch-arg=--qos=test"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("warning: the experiment directory") && stderr_of(&out).contains("under /tmp"),
        "{}",
        stderr_of(&out)
    );
    let script = dir.join("slurm/sweep.sbatch");
    assert!(stdout_of(&out).contains(&format!("sbatch --array=0-1 {}", script.display())), "{}", stdout_of(&out));
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("#SBATCH --time=00:10:00\n") && text.contains("#SBATCH --qos=test\n"), "{text}");
    assert!(!dir.join("slurm/jobs.json").exists());

    // The script runs a point by hand as well: it is the array task's command.
    let out = Command::new("bash").arg(&script).env("SLURM_ARRAY_TASK_ID", "1").output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let s = status(&dir);
    assert!(s.contains("g1-s1  pending") && s.contains("g2-s1  done"), "{s}");
    let out = gda().args(["sweep", "--collect", "--out"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("1 of 2 points have no result yet: g1-s1 (not started)"), "{}", stdout_of(&out));
    // The task run by hand logged itself as `local_1`: no Slurm job to ask
    // squeue about, so a rerun offers just the point that is left.
    let out = sweep(&dir, "1,2", "1", &[]).args(["--launcher", "slurm", "--no-submit"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains(&format!("sbatch --array=0 {}", script.display())), "{}", stdout_of(&out));

    for (args, msg) in [
        (&["--partition", "p"][..], "--partition is an option of --launcher slurm"),
        (&["--launcher", "slurm", "--no-submit", "--devices", "cpu,cpu"][..], "--devices is for --launcher local"),
    ] {
        let out = sweep(&tmp.path().join("refused"), "1", "1", &[]).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains(msg), "{}", stderr_of(&out));
    }
    assert!(!tmp.path().join("refused").exists());
}

/// Issue 12.1 on Slurm: a task whose gda train is killed by a signal (the
/// OOM killer, a node's watchdog; bash reports 128 + the signal) leaves its
/// point to resume, not a failed one. Needs no cluster: the batch script
/// runs by hand.
#[test]
fn a_task_killed_by_a_signal_leaves_its_point_resumable_not_failed() {
    let tmp = scratch();
    let dir = tmp.path().join("killed");
    let sets = ["train.steps=5000", "train.checkpoint_every=20", "train.threads=1"];
    let out = sweep(&dir, "1", "1", &sets).args(["--launcher", "slurm", "--no-submit"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let script = dir.join("slurm/sweep.sbatch");
    let task = Command::new("bash")
        .arg(&script)
        .env("SLURM_ARRAY_TASK_ID", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let run = dir.join("points/g1-s1");
    wait_for(Duration::from_secs(120), || gda::train::checkpoint::latest_step(&run).is_some());
    let (pid, _) = gda::train::run_dir::lock_holder(&run).unwrap();
    // SAFETY: kill only sends a signal.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let out = task.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("killed by signal 9"), "{}", stdout_of(&out));
    assert!(!run.join("failed.txt").exists(), "{:?}", std::fs::read_to_string(run.join("failed.txt")));
    let s = status(&dir);
    assert!(s.contains("g1-s1  pending  stopped at step "), "{s}");
    // Rerunning the command offers the point again, no --retry-failed needed.
    let out = sweep(&dir, "1", "1", &sets).args(["--launcher", "slurm", "--no-submit"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains(&format!("sbatch --array=0 {}", script.display())), "{}", stdout_of(&out));
}

/// Issue 20: `--nproc-per-point 2` on Slurm: each array task runs its point
/// on 2 ranks through `srun` (rendezvous from Slurm's variables). One task
/// is cancelled after a checkpoint and requeued; both points end exactly as
/// the same sweep trained locally on 2 ranks per point (`gda train --nproc
/// 2`), and `gda status` names the ranks.
#[test]
fn points_on_two_ranks_each_run_through_srun_and_resume_when_requeued() {
    cluster();
    let tmp = scratch();
    let sets = ["train.steps=400", "train.checkpoint_every=25", "train.eval_every=200", "train.threads=1"];
    let dir = tmp.path().join("cluster");
    let out = sweep(&dir, "1,2", "1", &sets).args(["--launcher", "slurm", "--nproc-per-point", "2"]).output().unwrap();
    let job = submitted(&out, &dir);
    let script = std::fs::read_to_string(dir.join("slurm/sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --ntasks-per-node=2") && script.contains("CMD=(srun --ntasks=2 "), "{script}");
    let task = format!("{}_0", job.0);
    let run = dir.join("points/g1-s1");
    wait_for(Duration::from_secs(300), || run.join("checkpoints/LATEST").exists());
    let s = status(&dir);
    assert!(s.contains("g1-s1  running") && s.contains("2 ranks (gloo on "), "{s}");
    let out = Command::new("scancel").arg(&task).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    wait_status(&dir, Duration::from_secs(120), |s| s.contains("CANCELLED"));
    assert!(!run.join("summary.json").exists(), "the point finished before the cancel");

    let local = tmp.path().join("local");
    let out = sweep(&local, "1,2", "1", &sets).args(["--nproc-per-point", "2"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));

    scontrol(&["requeue", &task]);
    scontrol(&["update", &format!("jobid={task}"), "StartTime=now"]);
    let s = wait_status(&dir, Duration::from_secs(300), |s| s.contains("2 done"));
    assert_eq!(s.matches("2 ranks (gloo on ").count(), 2, "{s}");
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    let steps: Vec<&str> =
        log.lines().filter_map(|l| l.strip_prefix("error: interrupted at step ")?.split(';').next()).collect();
    assert!(steps.len() == 2 && steps[0] == steps[1], "both ranks stop after the same step: {log}");
    for p in ["g1-s1", "g2-s1"] {
        assert_eq!(val_loss(&dir, p), val_loss(&local, p), "{p}");
        assert_eq!(deterministic_rows(&dir.join("points").join(p)), deterministic_rows(&local.join("points").join(p)));
    }
}

/// `gda reproduce --launcher slurm`: each rerun submits the next stage's
/// points as a job array (or finds them queued); once they are done the
/// study evaluates and reports as a local one does.
#[test]
fn the_smoke_study_runs_through_slurm_stage_by_stage() {
    cluster();
    let tmp = scratch();
    let dir = tmp.path().join("study");
    let run = || {
        let mut c = gda();
        c.args(["reproduce", "--preset", "smoke", "--launcher", "slurm", "--out"]).arg(&dir);
        for s in ["train.steps=20", "train.eval_every=10", "study.growth_steps=10"] {
            c.args(["--set", s]);
        }
        c.output().unwrap()
    };
    let start = Instant::now();
    let mut submitted = Vec::new();
    while !dir.join("REPORT.md").is_file() {
        assert!(start.elapsed() < Duration::from_secs(900), "not done after 15 minutes:\n{}", squeue());
        let out = run();
        assert!(out.status.success(), "{}\n{}", stdout_of(&out), stderr_of(&out));
        let text = stdout_of(&out);
        for l in text.lines().filter_map(|l| l.strip_prefix("submitted Slurm job ")) {
            submitted.push(l.split(':').next().unwrap().to_string());
        }
        if !dir.join("REPORT.md").is_file() {
            assert!(text.contains("the study waits for those jobs; when they are done, rerun: "), "{text}");
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    let _jobs: Vec<Job> = submitted.iter().cloned().map(Job).collect();
    // One job array per training stage: scan, ablation, two growth comparisons, retrieval.
    assert_eq!(submitted.len(), 5, "{submitted:?}");
    for stage in ["scan", "ablation", "growth/s1", "growth/s2", "retrieval"] {
        assert!(dir.join(stage).join("slurm").is_dir(), "{stage} did not train on Slurm");
    }
    let report = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert_eq!(report.matches("\n## Claim ").count(), 5, "{report}");
    assert!(dir.join("ablation/points/g4-s1").is_symlink(), "the scan's run is the ablation's shared arm");
}
