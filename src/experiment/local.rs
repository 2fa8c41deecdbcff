//! `--launcher local`: the points of a grid as `gda train` child processes
//! on this machine, `--jobs N` at a time or one per `--devices` entry.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::slurm::Queue;
use super::{point_command, point_dir, status, write_spec, Point, RunOptions, Status, FAILED_FILE};
use crate::error::{io, GdaError};
use crate::train::{self, checkpoint, RunSummary};

/// Trains every point that is not done, `jobs` at a time, each in a `gda
/// train` child process. Returns Err(Interrupted) if Ctrl-C stopped it.
pub fn run_points(points: &[Point], opts: &RunOptions) -> Result<(), GdaError> {
    // Points of this directory queued or running on Slurm are left to it.
    let queue = Queue::read(&opts.dir);
    let mut on_slurm = Vec::new();
    let todo: VecDeque<Point> = points
        .iter()
        .filter(|p| match status(&opts.dir, p) {
            Status::Done(_) => false,
            Status::Failed(_) if !opts.retry_failed => false,
            _ => match queue.task(&p.name) {
                Some(t) if t.is_running() || t.is_waiting() => {
                    on_slurm.push(format!("{} ({} {})", p.name, t.id(), t.state));
                    false
                }
                _ => true,
            },
        })
        .cloned()
        .collect();
    let total = points.len();
    let already = total - todo.len() - on_slurm.len();
    if already > 0 {
        println!("{already} of {total} points already finished or failed; {} to train", todo.len());
    }
    if !on_slurm.is_empty() {
        println!("left to Slurm, which has them queued or running: {}", on_slurm.join(", "));
    }
    // One slot per concurrent point, each with its device (None: the spec's).
    // Slots spread over the GPUs only where the spec leaves the device to gda.
    let mut slots: Vec<Option<String>> = if opts.devices.is_empty() {
        let auto = points.iter().all(|p| p.spec.train.device == "auto");
        let cuda = if auto { tch::Cuda::device_count() as usize } else { 0 };
        (0..opts.jobs.max(1)).map(|slot| (cuda > 0).then(|| format!("cuda:{}", slot % cuda))).collect()
    } else {
        opts.devices.iter().cloned().map(Some).collect()
    };
    slots.truncate(todo.len().max(1));
    let cores = if opts.threads > 0 {
        opts.threads
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    };
    let threads_each = (cores / slots.len()).max(1);
    let queue = Arc::new(Mutex::new(todo));
    let interrupted = Arc::new(Mutex::new(None::<PathBuf>));
    let done = Arc::new(Mutex::new(already));
    let mut workers = Vec::new();
    for device in slots {
        let (queue, interrupted, done) = (queue.clone(), interrupted.clone(), done.clone());
        let dir = opts.dir.clone();
        let retry = opts.retry_failed;
        workers.push(std::thread::spawn(move || -> Result<(), GdaError> {
            loop {
                if interrupted.lock().unwrap().is_some() || train::interrupted() {
                    return Ok(());
                }
                let Some(p) = queue.lock().unwrap().pop_front() else { return Ok(()) };
                let run = point_dir(&dir, &p);
                println!(
                    "training {} ({})",
                    p.name,
                    match status(&dir, &p) {
                        Status::Started(step) => format!("resuming at step {step}"),
                        _ => "new".to_string(),
                    }
                );
                if retry {
                    let _ = std::fs::remove_file(run.join(FAILED_FILE));
                }
                let outcome = train_point(&dir, &p, threads_each, device.as_deref())?;
                let mut n = done.lock().unwrap();
                match outcome {
                    Outcome::Done(s) => {
                        *n += 1;
                        println!(
                            "[{}/{total}] {} done | {} | {:.0} tok/s | {:.1}s",
                            *n,
                            p.name,
                            s.quality(),
                            s.tokens_per_s,
                            s.elapsed_s
                        );
                    }
                    Outcome::Failed(reason) => {
                        *n += 1;
                        let failed = run.join(FAILED_FILE);
                        std::fs::create_dir_all(&run)
                            .and_then(|_| std::fs::write(&failed, format!("{reason}\n")))
                            .map_err(io("cannot record the failure in", &failed))?;
                        println!("[{}/{total}] {} failed: {reason}", *n, p.name);
                    }
                    Outcome::Interrupted => {
                        *interrupted.lock().unwrap() = Some(run);
                        return Ok(());
                    }
                    Outcome::Busy(why) => println!("{} skipped: {why}", p.name),
                }
            }
        }));
    }
    for w in workers {
        w.join().expect("worker thread")?;
    }
    if let Some(run) = interrupted.lock().unwrap().take() {
        let step = checkpoint::latest_step(&run);
        return Err(GdaError::Interrupted { step: step.unwrap_or(0), checkpoint: run, run_dir: opts.dir.clone() });
    }
    if train::interrupted() {
        return Err(GdaError::Interrupted { step: 0, checkpoint: opts.dir.clone(), run_dir: opts.dir.clone() });
    }
    Ok(())
}

enum Outcome {
    Done(RunSummary),
    Failed(String),
    Interrupted,
    /// Another process trains the point (exit 7): neither done nor failed.
    Busy(String),
}
/// Runs `gda train` for one point; its output goes to the point's train.log.
fn train_point(dir: &Path, p: &Point, threads: usize, device: Option<&str>) -> Result<Outcome, GdaError> {
    let run = point_dir(dir, p);
    let io = |e: std::io::Error| GdaError::Io { what: "cannot run the point in", path: run.clone(), source: e };
    write_spec(dir, p).map_err(io)?;
    std::fs::create_dir_all(&run).map_err(io)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(run.join("train.log")).map_err(io)?;
    let exe = std::env::current_exe().map_err(io)?;
    let argv = point_command(&exe, dir, p, threads, device);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd.stdin(Stdio::null()).stdout(log.try_clone().map_err(io)?).stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(io)?;
    let code = wait_forwarding_interrupt(&mut child).map_err(io)?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let _ = (&log).write_all(err.as_bytes());
    let reason = err.lines().rfind(|l| l.starts_with("error: ")).map(|l| l.trim_start_matches("error: ").to_string());
    Ok(match code {
        Some(0) => match status(dir, p) {
            Status::Done(s) => Outcome::Done(s),
            _ => Outcome::Failed("finished without a summary.json".into()),
        },
        Some(130) => Outcome::Interrupted,
        Some(7) => Outcome::Busy(reason.unwrap_or_default()),
        Some(c) => Outcome::Failed(reason.unwrap_or_else(|| format!("gda train exited with code {c}"))),
        None if train::interrupted() => Outcome::Interrupted,
        None => Outcome::Failed("gda train was killed by a signal".into()),
    })
}

/// Waits for a child; on Ctrl-C passes SIGINT on so it checkpoints first.
fn wait_forwarding_interrupt(child: &mut Child) -> std::io::Result<Option<i32>> {
    let mut forwarded = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        if train::interrupted() && !forwarded {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            forwarded = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child dies with the experiment process (kill -9 included), so a rerun
/// never races an orphaned trainer over the same run directory.
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
}
