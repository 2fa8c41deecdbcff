//! `--launcher local`: the points of a grid as `gda train` child processes
//! on this machine, `--jobs N` at a time or one per `--devices` entry.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::progress::{self, Ended, Progress};
use super::slurm::Queue;
use super::{point_command, point_dir, status, write_spec, Point, RunOptions, Status, CRASH_SIGNALS, FAILED_FILE};
use crate::error::{io, GdaError};
use crate::train::{self, checkpoint, RunSummary};
use crate::util::out::{self, errln, outln};

/// Trains every point that is not done, `jobs` at a time, each in a `gda
/// train` child process. Returns the points whose trainer was killed by a
/// signal (unfinished, to resume: see [`GdaError::PointsKilled`]), or
/// Err(ExperimentInterrupted) if Ctrl-C stopped it.
pub fn run_points(points: &[Point], opts: &RunOptions) -> Result<Vec<String>, GdaError> {
    let every = progress::interval_from_env()?;
    let (mut todo, already) = to_train(points, opts);
    let slots = slots(points, opts, todo.len());
    let cores = if opts.threads > 0 { opts.threads } else { crate::device::cores() };
    let workers = Arc::new(Workers {
        dir: opts.dir.clone(),
        retry_failed: opts.retry_failed,
        nproc: opts.nproc_per_point,
        threads_each: (cores / slots.len()).max(1),
        total: points.len(),
        view: Progress::start(&opts.dir, points, todo.make_contiguous(), slots.len(), every),
        queue: Mutex::new(todo),
        interrupted: Mutex::new(Vec::new()),
        killed: Mutex::new(Vec::new()),
        done: Mutex::new(already),
    });
    let threads: Vec<_> = slots
        .into_iter()
        .map(|device| {
            let workers = workers.clone();
            std::thread::spawn(move || workers.work(device.as_deref()))
        })
        .collect();
    for t in threads {
        t.join().expect("worker thread")?;
    }
    workers.view.finish();
    if train::interrupted() {
        if out::closed() {
            errln!("standard output was closed (its reader went away): stopping as for Ctrl-C");
        }
        let mut stopped = std::mem::take(&mut *workers.interrupted.lock().unwrap());
        if stopped.is_empty() {
            stopped.push("no point was training".into());
        }
        return Err(GdaError::ExperimentInterrupted { dir: opts.dir.clone(), stopped });
    }
    let killed = std::mem::take(&mut *workers.killed.lock().unwrap());
    Ok(killed)
}

/// The points to train, in order, and how many are finished or failed
/// already; says so, and which points are left to Slurm.
fn to_train(points: &[Point], opts: &RunOptions) -> (VecDeque<Point>, usize) {
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
        outln!("{already} of {total} points already finished or failed; {} to train", todo.len());
    }
    if !on_slurm.is_empty() {
        outln!("left to Slurm, which has them queued or running: {}", on_slurm.join(", "));
    }
    (todo, already)
}

/// One slot per concurrent point, each with its device (None: the spec's),
/// never more than the `todo` points to train (one at least).
fn slots(points: &[Point], opts: &RunOptions, todo: usize) -> Vec<Option<String>> {
    // Slots spread over the GPUs only where the spec leaves the device to gda.
    let mut slots: Vec<Option<String>> = if opts.devices.is_empty() {
        let auto = points.iter().all(|p| p.spec.train.device == "auto");
        let cuda = if auto { tch::Cuda::device_count() as usize } else { 0 };
        (0..opts.jobs.max(1)).map(|slot| (cuda > 0).then(|| format!("cuda:{}", slot % cuda))).collect()
    } else {
        opts.devices.iter().cloned().map(Some).collect()
    };
    slots.truncate(todo.max(1));
    slots
}

/// What the slots' worker threads share: the queue of points to train, the
/// view, and the counts and lists for the closing message.
struct Workers {
    dir: PathBuf,
    retry_failed: bool,
    nproc: usize,
    threads_each: usize,
    total: usize,
    view: Progress,
    queue: Mutex<VecDeque<Point>>,
    /// Points stopped by the sweep's own interrupt, and points whose trainer
    /// something else killed, each described for the closing message.
    interrupted: Mutex<Vec<String>>,
    killed: Mutex<Vec<String>>,
    /// Points finished or failed, for the `[k/N]` of each line.
    done: Mutex<usize>,
}

impl Workers {
    /// One slot's worker: trains queued points on `device` until the queue
    /// is empty or an interrupt stops it.
    fn work(&self, device: Option<&str>) -> Result<(), GdaError> {
        loop {
            if train::interrupted() {
                return Ok(());
            }
            let Some(p) = self.queue.lock().unwrap().pop_front() else { return Ok(()) };
            let run = point_dir(&self.dir, &p);
            let how = match status(&self.dir, &p) {
                Status::Started(step) => format!("resuming at step {step}"),
                _ => "new".to_string(),
            };
            self.view
                .started(&p.name, &format!("training {} ({how}) | log {}", p.name, run.join("train.log").display()));
            if self.retry_failed {
                // Absent unless the point failed before: nothing to lose.
                let _ = std::fs::remove_file(run.join(FAILED_FILE));
            }
            let outcome = train_point(&self.dir, &p, self.threads_each, device, self.nproc)?;
            if !self.ended(&p, &run, outcome)? {
                return Ok(());
            }
        }
    }

    /// Counts, records and reports how a point's training ended; false when
    /// the interrupt stopped it, which stops the worker too.
    fn ended(&self, p: &Point, run: &Path, outcome: Outcome) -> Result<bool, GdaError> {
        let total = self.total;
        let saved = || match checkpoint::latest_step(run) {
            Some(step) => format!("its checkpoint at step {step}"),
            None => "no checkpoint yet".to_string(),
        };
        match outcome {
            Outcome::Done(s) => {
                let mut n = self.done.lock().unwrap();
                *n += 1;
                let line = format!(
                    "[{}/{total}] {} done | {} | {:.0} tok/s | {:.1}s",
                    *n,
                    p.name,
                    s.quality(),
                    s.tokens_per_s,
                    s.elapsed_s
                );
                self.view.ended(&p.name, Ended::Done, Some(&line));
            }
            Outcome::Failed(reason) => {
                let mut n = self.done.lock().unwrap();
                *n += 1;
                let failed = run.join(FAILED_FILE);
                std::fs::create_dir_all(run)
                    .and_then(|_| std::fs::write(&failed, format!("{reason}\n")))
                    .map_err(io("cannot record the failure in", &failed))?;
                self.view.ended(&p.name, Ended::Failed, Some(&format!("[{}/{total}] {} failed: {reason}", *n, p.name)));
            }
            Outcome::Interrupted => {
                let stopped = match checkpoint::latest_step(run) {
                    Some(step) => format!("{} stopped at step {step} (its checkpoint)", p.name),
                    None => format!("{} stopped before its first checkpoint", p.name),
                };
                self.interrupted.lock().unwrap().push(stopped);
                self.view.ended(&p.name, Ended::Unfinished, None);
                return Ok(false);
            }
            Outcome::Stopped(how) => {
                let what = format!("{} {how}, {}", p.name, saved());
                let line = format!("{what}: not a failure; rerunning this command resumes it");
                self.view.ended(&p.name, Ended::Unfinished, Some(&line));
                self.killed.lock().unwrap().push(what);
            }
            Outcome::Busy(why) => {
                self.view.ended(&p.name, Ended::Unfinished, Some(&format!("{} skipped: {why}", p.name)));
            }
        }
        Ok(true)
    }
}

enum Outcome {
    Done(RunSummary),
    Failed(String),
    /// Stopped by the interrupt this process passed on.
    Interrupted,
    /// Stopped from outside by a signal (killed, or interrupted directly):
    /// unfinished, not failed; how, in words.
    Stopped(String),
    /// Another process trains the point (exit 7): neither done nor failed.
    Busy(String),
}

/// "SIGKILL" for 9: a signal's name, for messages.
fn signal_name(sig: i32) -> String {
    let names = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGSYS, "SIGSYS"),
    ];
    names.iter().find(|n| n.0 == sig).map(|n| n.1.to_string()).unwrap_or_else(|| format!("signal {sig}"))
}

/// Runs `gda train` for one point; its output, stdout and stderr, goes to
/// the point's train.log. Nothing of it passes through this process: a child
/// that writes a lot (libtorch warnings on a GPU) can never block on a full
/// pipe.
fn train_point(dir: &Path, p: &Point, threads: usize, device: Option<&str>, nproc: usize) -> Result<Outcome, GdaError> {
    let run = point_dir(dir, p);
    let io = |e: std::io::Error| GdaError::Io { what: "cannot run the point in", path: run.clone(), source: e };
    write_spec(dir, p).map_err(io)?;
    std::fs::create_dir_all(&run).map_err(io)?;
    let log_path = run.join("train.log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io)?;
    let start = log.metadata().map_err(io)?.len();
    let exe = std::env::current_exe().map_err(io)?;
    let argv = point_command(&exe, dir, p, threads, device, nproc);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd.stdin(Stdio::null()).stdout(log.try_clone().map_err(io)?).stderr(log);
    own_process_group(&mut cmd);
    let mut child = cmd.spawn().map_err(io)?;
    let exit = wait_forwarding_interrupt(&mut child).map_err(io)?;
    let reason = last_error_line(&log_path, start);
    Ok(match (exit.code(), exit.signal()) {
        (Some(0), _) => match status(dir, p) {
            Status::Done(s) => Outcome::Done(s),
            _ => Outcome::Failed("finished without a summary.json".into()),
        },
        (Some(130), _) if train::interrupted() => Outcome::Interrupted,
        (Some(130), _) => Outcome::Stopped("was stopped by a signal sent to it (exit 130)".into()),
        (Some(7), _) => Outcome::Busy(reason.unwrap_or_default()),
        (Some(c), _) => Outcome::Failed(reason.unwrap_or_else(|| format!("gda train exited with code {c}"))),
        (None, _) if train::interrupted() => Outcome::Interrupted,
        (None, Some(sig)) if CRASH_SIGNALS.contains(&sig) => {
            Outcome::Failed(format!("gda train crashed (signal {sig}, {})", signal_name(sig)))
        }
        (None, sig) => {
            let sig = sig.unwrap_or(0);
            Outcome::Stopped(format!("was killed by signal {sig} ({})", signal_name(sig)))
        }
    })
}

/// The last `error: ` line the child wrote to its log since `from` (main
/// prints every error that way), without the prefix. Only the log's last
/// MiB is read: the error is the child's last output.
fn last_error_line(log: &Path, from: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(from.max(len.saturating_sub(1 << 20)))).ok()?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines().rfind(|l| l.starts_with("error: ")).map(|l| l.trim_start_matches("error: ").to_string())
}

/// Waits for a child; on Ctrl-C passes SIGINT on, once, so it checkpoints
/// first.
fn wait_forwarding_interrupt(child: &mut Child) -> std::io::Result<std::process::ExitStatus> {
    let mut forwarded = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if train::interrupted() && !forwarded {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            forwarded = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The child gets its own process group, so a terminal's Ctrl-C (sent to the
/// whole foreground group) reaches only this process, which passes exactly
/// one SIGINT on: two would make the child exit without a checkpoint. It
/// dies with the experiment process (kill -9 included), so a rerun never
/// races an orphaned trainer over the same run directory. And it starts with
/// the interrupt signals blocked, unblocked once its handler is installed
/// (`train::install_interrupt_handler`), so an interrupt that arrives while
/// libtorch loads waits for the handler instead of killing it.
fn own_process_group(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // SAFETY: prctl and pthread_sigmask are async-signal-safe and touch only
    // the child; the signal set lives on the child's stack.
    unsafe {
        cmd.pre_exec(|| {
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in train::INTERRUPT_SIGNALS {
                libc::sigaddset(&mut set, sig);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}
