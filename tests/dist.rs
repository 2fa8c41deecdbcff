//! Data-parallel training on libtorch's c10d (Gloo on CPU): the real binary
//! on 1 and 2 ranks of this machine, real rendezvous, real signals. The
//! trajectory must not depend on the world size, checkpoints must resume on
//! another world size, and faults (a killed rank, an interrupt, mismatched
//! specs) must end every rank cleanly.

mod common;

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tch::Tensor;

/// TINY logging every step, so each step's train loss is compared, at a
/// peak learning rate of 3e-3. At TINY's 1e-2, AdamW turns the float-order
/// noise of a near-zero gradient element into a visible step: measured, one
/// element of blocks.1.attn.q1 ends 2.7e-4 apart after 60 steps (losses
/// still within 2e-6); at 3e-3 the largest weight difference is 1.1e-6.
fn spec_text() -> String {
    TINY.replace("log_every = 10", "log_every = 1").replace("lr = 1e-2", "lr = 3e-3")
}

fn train(spec: &Path, run: &Path) -> Command {
    let mut c = gda();
    c.args(["train", "--spec"]).arg(spec).arg("--out").arg(run);
    c
}

fn ok(out: std::process::Output, what: &str) {
    assert!(out.status.success(), "{what}: {}\n{}", stderr_of(&out), stdout_of(&out));
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill only sends a signal.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "kill({pid}, {sig})");
}

/// A free TCP port for a torchrun-style store (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The largest relative difference of `col` between two runs, row by row;
/// both must have the same steps.
fn max_rel_diff(a: &Path, b: &Path, col: &str) -> f64 {
    let (x, y) = (column(a, col), column(b, col));
    assert_eq!(x.iter().map(|r| r.0).collect::<Vec<_>>(), y.iter().map(|r| r.0).collect::<Vec<_>>(), "{col} steps");
    assert!(!x.is_empty(), "no {col} values");
    x.iter().zip(&y).map(|(p, q)| (p.1 - q.1).abs() / p.1.abs().max(1e-12)).fold(0.0, f64::max)
}

fn final_weights(run: &Path) -> HashMap<String, Tensor> {
    let ckpt = latest_checkpoint(run);
    Tensor::read_safetensors(ckpt.join("model.safetensors")).unwrap().into_iter().collect()
}

fn max_weight_diff(a: &Path, b: &Path) -> f64 {
    let (wa, wb) = (final_weights(a), final_weights(b));
    assert_eq!(wa.len(), wb.len());
    wa.iter().map(|(n, t)| (t - &wb[n]).abs().max().double_value(&[])).fold(0.0, f64::max)
}

/// Asserts `b` follows `a`'s trajectory: every step's train loss and every
/// eval's val loss within 1e-5 relative, final weights within 1e-4; returns
/// the measured maxima for the log.
fn same_trajectory(a: &Path, b: &Path) -> (f64, f64, f64) {
    let train = max_rel_diff(a, b, "train_loss");
    let val = max_rel_diff(a, b, "val_loss");
    let weights = max_weight_diff(a, b);
    assert!(train < 1e-5, "train loss differs by {train:e} relative ({} vs {})", a.display(), b.display());
    assert!(val < 1e-5, "val loss differs by {val:e} relative");
    assert!(weights < 1e-4, "final weights differ by {weights:e}");
    assert_eq!(column(a, "train_loss").len(), 60, "one train loss per step");
    (train, val, weights)
}

/// Starts `cmd` with piped stdout and returns once it printed the metrics
/// line of `step` (rank 0 prints them), with the lines read so far.
fn spawn_until_step(
    mut cmd: Command,
    step: usize,
) -> (Child, std::io::Lines<std::io::BufReader<std::process::ChildStdout>>) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let marker = format!("step {step} |");
    for line in lines.by_ref() {
        if line.unwrap().starts_with(&marker) {
            return (child, lines);
        }
    }
    panic!("the run ended before step {step}: {}", child.wait_with_output().map(|o| stderr_of(&o)).unwrap());
}

/// The pids of `parent`'s children (the ranks of `gda train --nproc`).
fn children(parent: u32) -> Vec<u32> {
    let text = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap();
    text.split_whitespace().map(|p| p.parse().unwrap()).collect()
}

fn rank_env(cmd: &mut Command, rank: usize, world: usize, port: u16) {
    cmd.env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string());
}

/// One spec on 1 rank, on 2 ranks (`--nproc 2`), on 2 ranks launched from
/// torchrun's environment (a TCP store), and on 1 rank with the global
/// batch in 2 accumulated micro-batches: the same trajectory.
#[test]
fn the_trajectory_does_not_depend_on_the_world_size_or_the_launch() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "s", &spec_text());
    let accum = write_spec(tmp.path(), "a", &spec_text().replace("batch_size = 8", "batch_size = 4\ngrad_accum = 2"));
    let (one, two, env, acc) =
        (tmp.path().join("one"), tmp.path().join("two"), tmp.path().join("env"), tmp.path().join("acc"));
    ok(train(&spec, &one).output().unwrap(), "1 rank");
    let out = train(&spec, &two).args(["--nproc", "2"]).output().unwrap();
    let stdout = stdout_of(&out);
    ok(out, "--nproc 2");
    assert!(stdout.contains("ranks: 2 (gloo)"), "{stdout}");
    let port = free_port();
    let ranks: Vec<Child> = (0..2)
        .map(|r| {
            let mut c = train(&spec, &env);
            rank_env(&mut c, r, 2, port);
            c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for (r, c) in ranks.into_iter().enumerate() {
        ok(c.wait_with_output().unwrap(), &format!("torchrun-style rank {r}"));
    }
    ok(train(&accum, &acc).output().unwrap(), "1 rank, 2 micro-batches");

    for other in [&two, &env, &acc] {
        let (t, v, w) = same_trajectory(&one, other);
        eprintln!("{} vs 1 rank: train loss {t:.2e}, val loss {v:.2e} relative; weights {w:.2e}", other.display());
    }
    // Rank 0 alone wrote the run; the manifest names the ranks.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["world"]["world_size"], 2);
    assert_eq!(manifest["world"]["backend"], "gloo");
    assert_eq!(manifest["world"]["hosts"].as_array().unwrap().len(), 2);
    assert!(
        manifest.get("world").is_some()
            && serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(one.join("manifest.json")).unwrap())
                .unwrap()
                .get("world")
                .is_none()
    );
}

/// The buckets' numbers in the ranks' closing lines: (buckets, how they
/// were started), e.g. (12, "12.0 per step started during backward").
fn bucket_reports(stderr: &str) -> Vec<(usize, String)> {
    stderr
        .lines()
        .filter(|l| l.starts_with("rank ") && l.contains("all-reduce wait"))
        .map(|l| {
            let inner = &l[l.find('(').unwrap() + 1..l.find(';').unwrap()];
            let (n, how) = inner.split_once(" buckets, ").unwrap();
            (n.parse().unwrap(), how.to_string())
        })
        .collect()
}

/// Overlapped all-reduces (hooks start each bucket during the last
/// micro-batch's backward, in bucket order) on 2 ranks with 2 accumulated
/// micro-batches and small buckets, so there are many: the 1-rank
/// trajectory, with every bucket started during backward. A bucket started
/// after the first micro-batch, or before all of its gradients were
/// accumulated, would average partial gradients and leave the trajectory.
/// The same with `train.overlap_allreduce = false`: every bucket issued
/// after backward, the same trajectory.
#[test]
fn overlapped_all_reduces_keep_the_trajectory_with_accumulated_micro_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "s", &spec_text());
    let accum = spec_text().replace("batch_size = 8", "batch_size = 4\ngrad_accum = 2");
    let on = write_spec(tmp.path(), "on", &accum);
    let off = write_spec(tmp.path(), "off", &accum.replace("threads = 1", "threads = 1\noverlap_allreduce = false"));
    let one = tmp.path().join("one");
    ok(train(&spec, &one).output().unwrap(), "1 rank");
    for (s, name) in [(&on, "overlap"), (&off, "no-overlap")] {
        let run = tmp.path().join(name);
        let out = train(s, &run).args(["--nproc", "2"]).env("GDA_BUCKET_BYTES", "4096").output().unwrap();
        let err = stderr_of(&out);
        ok(out, name);
        let reports = bucket_reports(&err);
        assert_eq!(reports.len(), 2, "one closing line per rank: {err}");
        for (n, how) in reports {
            assert!(n >= 4, "{name}: {n} buckets of 4 KiB: {err}");
            let expected = if name == "overlap" {
                format!("{n}.0 per step started during backward")
            } else {
                "issued after backward".into()
            };
            assert_eq!(how, expected, "{name}: {err}");
        }
        let (t, v, w) = same_trajectory(&one, &run);
        eprintln!("{name}, 2 ranks x 2 micro-batches vs 1 rank: train loss {t:.2e}, val loss {v:.2e}; weights {w:.2e}");
    }
}

/// A run interrupted on 2 ranks (Ctrl-C to the launcher) resumes on 1, and
/// one interrupted on 1 resumes on 2; both end where an uninterrupted run
/// ends.
#[test]
fn a_checkpoint_resumes_on_another_world_size() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "s", &spec_text());
    let whole = tmp.path().join("whole");
    ok(train(&spec, &whole).output().unwrap(), "uninterrupted");
    for (first, then) in [(2usize, 1usize), (1, 2)] {
        let run = tmp.path().join(format!("from{first}"));
        let mut cmd = train(&spec, &run);
        cmd.args(["--nproc", &first.to_string()]);
        let (mut child, _lines) = spawn_until_step(cmd, 20);
        signal(child.id(), libc::SIGINT);
        let status = wait_at_most(&mut child, Duration::from_secs(60), "the ranks");
        assert_eq!(status.code(), Some(130), "interrupted on {first}");
        let stopped = gda::train::checkpoint::latest_step(&run).unwrap();
        assert!((20..60).contains(&stopped), "stopped at {stopped}");
        ok(train(&spec, &run).args(["--resume", "--nproc", &then.to_string()]).output().unwrap(), "resume");
        let (t, v, w) = same_trajectory(&whole, &run);
        eprintln!("stopped at {stopped} on {first}, resumed on {then}: {t:.2e} / {v:.2e} / {w:.2e}");
    }
}

/// SIGINT to one rank alone stops every rank after the same step, and that
/// step is checkpointed.
#[test]
fn an_interrupt_of_one_rank_stops_all_at_the_same_step() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "s", &TINY.replace("steps = 60", "steps = 5000"));
    let run = tmp.path().join("run");
    let mut cmd = train(&spec, &run);
    cmd.args(["--nproc", "2"]);
    let (mut child, _lines) = spawn_until_step(cmd, 20);
    let ranks = children(child.id());
    assert_eq!(ranks.len(), 2, "{ranks:?}");
    // A second trainer is told at once that a live one (rank 0) holds it:
    // exit 7, the code of a directory in use (docs/exit-codes.md).
    let second = train(&spec, &run).output().unwrap();
    assert_eq!(second.status.code(), Some(7), "{}", stderr_of(&second));
    let said = format!("another gda train (pid {}) is training it", ranks[0]);
    assert!(stderr_of(&second).contains(&said), "{}", stderr_of(&second));
    signal(ranks[1], libc::SIGINT);
    let status = wait_at_most(&mut child, Duration::from_secs(60), "the ranks");
    let err = child.wait_with_output().map(|o| stderr_of(&o)).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    let step = gda::train::checkpoint::latest_step(&run).unwrap();
    let said = format!("interrupted at step {step};");
    assert_eq!(err.matches(&said).count(), 2, "both ranks stop at step {step}: {err}");
    assert!(step < 5000);
}

/// kill -9 of rank 1 mid-run: rank 0 notices at its next all-reduce and
/// exits with code 10 well within the timeout; the last checkpoint is
/// intact and resumes.
#[test]
fn a_killed_rank_ends_the_others_with_code_10_and_the_checkpoint_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "s", &TINY.replace("steps = 60", "steps = 5000"));
    let run = tmp.path().join("run");
    let mut cmd = train(&spec, &run);
    cmd.args(["--nproc", "2", "--dist-timeout", "30"]);
    let (mut child, _lines) = spawn_until_step(cmd, 30);
    let ranks = children(child.id());
    let killed = Instant::now();
    signal(ranks[1], libc::SIGKILL);
    let status = wait_at_most(&mut child, Duration::from_secs(60), "the ranks");
    let took = killed.elapsed();
    let err = child.wait_with_output().map(|o| stderr_of(&o)).unwrap();
    eprintln!("rank 0 ended {took:?} after rank 1 was killed");
    assert_eq!(status.code(), Some(10), "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(err.contains("rank 0: an all-reduce failed") && err.contains("rank 1 was killed by signal 9"), "{err}");
    let step = gda::train::checkpoint::latest_step(&run).expect("LATEST names a complete checkpoint");
    assert!(step >= 20 && step.is_multiple_of(20), "checkpoint at {step}");
    // Resumed on 2 ranks, it continues from that checkpoint.
    let mut resume = train(&spec, &run);
    resume.args(["--resume", "--nproc", "2"]);
    let (mut child, _lines) = spawn_until_step(resume, step + 10);
    signal(child.id(), libc::SIGINT);
    assert_eq!(wait_at_most(&mut child, Duration::from_secs(60), "the ranks").code(), Some(130));
    assert!(gda::train::checkpoint::latest_step(&run).unwrap() >= step + 10);
}

/// Ranks that run different specs are refused at the handshake (exit 2),
/// before any collective; nothing is trained.
#[test]
fn ranks_with_different_specs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write_spec(tmp.path(), "a", TINY);
    let b = write_spec(tmp.path(), "b", &TINY.replace("seed = 7", "seed = 8"));
    let run = tmp.path().join("run");
    let port = free_port();
    let ranks: Vec<Child> = [&a, &b]
        .iter()
        .enumerate()
        .map(|(r, spec)| {
            let mut c = train(spec, &run);
            rank_env(&mut c, r, 2, port);
            c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for (r, c) in ranks.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "rank {r}: {err}");
        assert!(err.contains("rank 1 (") && err.contains("runs the spec with hash"), "{err}");
    }
    assert!(!run.join("metrics.csv").exists() && gda::train::checkpoint::latest(&run).is_none());
}

/// `--nproc 0` is refused for what it is (it was once reported as a
/// batch size that is no multiple of 0), and nothing is written.
#[test]
fn nproc_zero_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", TINY);
    let run = tmp.path().join("run");
    let out = train(&spec, &run).args(["--nproc", "0"]).output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--nproc must be at least 1") && !err.contains("batch_size"), "{err}");
    assert!(!run.exists());
}

/// Two 2-rank runs at once on one machine each meet their own ranks (fresh
/// store paths): both finish, each with its own spec's trajectory.
#[test]
fn two_concurrent_runs_do_not_meet() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write_spec(tmp.path(), "a", &spec_text());
    let b = write_spec(tmp.path(), "b", &spec_text().replace("seed = 7", "seed = 8"));
    let runs: Vec<(PathBuf, Child)> = [&a, &b]
        .iter()
        .map(|spec| {
            let run = tmp.path().join(spec.file_stem().unwrap());
            let child =
                train(spec, &run).args(["--nproc", "2"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
            (run, child)
        })
        .collect();
    let dirs: Vec<PathBuf> = runs
        .into_iter()
        .map(|(run, c)| {
            ok(c.wait_with_output().unwrap(), "concurrent run");
            run
        })
        .collect();
    let alone = tmp.path().join("alone");
    ok(train(&a, &alone).output().unwrap(), "1 rank");
    same_trajectory(&alone, &dirs[0]);
    assert!(max_rel_diff(&alone, &dirs[1], "train_loss") > 1e-3, "seed 8 trains differently");
}

/// Two ranks from torchrun's variables on `port`, with no launcher watching
/// them: rank 0 once it printed `step`, and rank 1.
fn torchrun_pair(spec: &Path, run: &Path, port: u16, step: usize) -> (Child, Child) {
    let mut one = train(spec, run);
    rank_env(&mut one, 1, 2, port);
    let one = one.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut zero = train(spec, run);
    rank_env(&mut zero, 0, 2, port);
    let (zero, lines) = spawn_until_step(zero, step);
    // Drained, not dropped: a closed stdout stops rank 0 as Ctrl-C does.
    std::thread::spawn(move || lines.for_each(drop));
    (zero, one)
}

/// SIGSTOP of either rank (a frozen node: no socket closes) mid-run, with
/// `--dist-timeout` left at 300 s: the other rank's heartbeat finds it
/// silent and exits with code 10 naming it and its host within 30 s of the
/// stop; the last checkpoint is intact.
#[test]
fn a_stopped_rank_ends_its_peer_with_code_10_within_30_s() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "s", &TINY.replace("steps = 60", "steps = 5000"));
    let host = gda::util::host::hostname();
    for stopped in [0usize, 1] {
        let run = tmp.path().join(format!("stop{stopped}"));
        let (zero, one) = torchrun_pair(&spec, &run, free_port(), 30);
        let (mut frozen, mut peer) = if stopped == 0 { (zero, one) } else { (one, zero) };
        signal(frozen.id(), libc::SIGSTOP);
        let since = Instant::now();
        let status = wait_at_most(&mut peer, Duration::from_secs(90), "the peer of a stopped rank");
        let took = since.elapsed();
        signal(frozen.id(), libc::SIGKILL);
        let _ = frozen.wait();
        let err = peer.wait_with_output().map(|o| stderr_of(&o)).unwrap();
        eprintln!("rank {stopped} stopped: its peer exited {took:?} later");
        assert_eq!(status.code(), Some(10), "{err}");
        let said = format!("rank {stopped} on {host} stopped answering (no heartbeat for ");
        assert!(err.contains(&said), "{err}");
        assert!(took < Duration::from_secs(30), "took {took:?}: {err}");
        let step = gda::train::checkpoint::latest_step(&run).expect("LATEST names a complete checkpoint");
        assert!(step >= 20 && step.is_multiple_of(20), "checkpoint at {step}");
    }
}

/// kill -9 of rank 0, which serves the TCP store: rank 1 notices at its
/// next all-reduce and exits with code 10 within 15 s.
#[test]
fn a_killed_rank_0_ends_rank_1_with_code_10_within_15_s() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "s", &TINY.replace("steps = 60", "steps = 5000"));
    let (mut zero, mut one) = torchrun_pair(&spec, &tmp.path().join("run"), free_port(), 30);
    signal(zero.id(), libc::SIGKILL);
    let since = Instant::now();
    let status = wait_at_most(&mut one, Duration::from_secs(60), "rank 1");
    let took = since.elapsed();
    let _ = zero.wait();
    let err = one.wait_with_output().map(|o| stderr_of(&o)).unwrap();
    eprintln!("rank 0 killed: rank 1 exited {took:?} later");
    assert_eq!(status.code(), Some(10), "{err}");
    assert!(err.contains("rank 1: "), "{err}");
    assert!(took < Duration::from_secs(15), "took {took:?}: {err}");
}

/// A store nobody serves is named with its address within the rendezvous
/// timeout; a port in use (another program's, or another run's store) is
/// refused naming the port, and the run that holds it trains on.
#[test]
fn an_unreachable_store_and_a_port_in_use_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "s", &TINY.replace("steps = 60", "steps = 5000"));
    let refused = |rank: usize, port: u16, run: &str, said: &[String]| {
        let mut c = train(&spec, &tmp.path().join(run));
        rank_env(&mut c, rank, 2, port);
        let since = Instant::now();
        let out = c.args(["--dist-timeout", "5"]).output().unwrap();
        let (took, err) = (since.elapsed(), stderr_of(&out));
        eprintln!("rank {rank} on port {port} refused after {took:?}");
        assert_eq!(out.status.code(), Some(10), "{err}");
        assert!(said.iter().all(|s| err.contains(s.as_str())), "{said:?} in {err}");
        assert!(took < Duration::from_secs(25), "took {took:?}: {err}");
    };
    let nobody = free_port();
    refused(1, nobody, "a", &[format!("cannot reach the TCP store at 127.0.0.1:{nobody} within 5 s")]);
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    refused(0, port, "b", &[format!("port {port} is in use")]);
    drop(held);

    let port = free_port();
    let (mut zero, mut one) = torchrun_pair(&spec, &tmp.path().join("first"), port, 10);
    refused(0, port, "second", &[format!("port {port} is in use")]);
    refused(1, port, "second", &["already has a rank 1".into(), format!("port {port} (MASTER_PORT)")]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(zero.try_wait().unwrap().is_none() && one.try_wait().unwrap().is_none(), "the first run trains on");
    for c in [&mut zero, &mut one] {
        let _ = c.kill();
        let _ = c.wait();
    }
}
