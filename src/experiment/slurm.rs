//! `--launcher slurm`: the grid as one Slurm job array.
//!
//! `<dir>/slurm/sweep.sbatch` is a readable batch script: array task i runs
//! grid point i with the command the local launcher runs
//! (`experiment::point_command`), its output appended to the point's
//! train.log. `sbatch --parsable` submits the points that are neither done nor
//! already queued; only after sbatch accepted them is the job recorded in
//! `<dir>/slurm/jobs.json`. Each task also appends its start and exit to
//! `<dir>/slurm/tasks.log`, so jobs submitted by hand are found too.
//! `gda status` reads the recorded jobs' states from `squeue` (and `sacct`
//! for jobs the controller has forgotten) and works without either.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

mod queue;

pub use self::queue::{Queue, Task};
use super::{point_command, point_dir, status, Grid, RunOptions, SlurmOptions, Status, CRASH_SIGNALS, FAILED_FILE};
use crate::error::{input, io, GdaError};
use crate::util::fs::{absolute, atomic_write};
use crate::util::out::{errln, outln};

pub const SCRIPT: &str = "sweep.sbatch";
const JOBS: &str = "jobs.json";
const TASKS_LOG: &str = "tasks.log";

/// One accepted `sbatch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Submission {
    job_id: String,
    /// The array tasks submitted, as passed to --array.
    array: String,
    /// Array task i trains points[i].
    points: Vec<String>,
    script: PathBuf,
    submitted_unix_s: u64,
}

/// An executable named `cmd` on PATH.
pub fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// A word for the shell: left bare when it cannot be misread, else quoted.
pub fn sh_quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_./:=,@%+-".contains(c)) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `0-3`, `1,3,5-7`: the --array form of task indexes.
fn array_ranges(idx: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && idx[j + 1] == idx[j] + 1 {
            j += 1;
        }
        parts.push(if j > i { format!("{}-{}", idx[i], idx[j]) } else { idx[i].to_string() });
        i = j + 1;
    }
    parts.join(",")
}

/// Compute nodes see only shared filesystems; /tmp is never one.
fn warn_if_node_local(what: &str, p: &Path) {
    if ["/tmp", "/var/tmp", "/dev/shm"].iter().any(|t| p.starts_with(t)) {
        errln!(
            "warning: the {what} {} is under {}, which compute nodes usually do not share with this machine: their tasks could not read or write it. Put it on a shared filesystem (e.g. with --out under your home or project directory) unless the jobs run on this very machine",
            p.display(),
            p.components().take(2).collect::<PathBuf>().display()
        );
    }
}

/// The batch script of a grid: one array task per point.
fn script(
    grid: &Grid,
    dir: &Path,
    exe: &Path,
    cpus: usize,
    launch: &SlurmOptions,
    nproc: usize,
) -> Result<String, GdaError> {
    let cwd = std::env::current_dir().map_err(|e| input(format!("current directory: {e}")))?;
    let mut s = header(grid, dir);
    for d in directives(dir, grid.points.len(), &cwd, cpus, launch, nproc) {
        s += &format!("#SBATCH {d}\n");
    }
    s += &task_cases(grid, dir, exe, cpus, nproc);
    s += &task_body(dir, grid.points.len());
    Ok(s)
}

/// The comment at the top of the script: what it is and how to submit it.
fn header(grid: &Grid, dir: &Path) -> String {
    let script = dir.join("slurm").join(SCRIPT);
    format!(
        "#!/bin/bash\n\
         # gda {kind} in {d}: one grid point per Slurm array task, written by gda.\n\
         # Edit it freely: gda status and gda sweep --collect read only the point directories.\n\
         #   every point:          sbatch {sc}\n\
         #   one point (task i):   sbatch --array=i {sc}\n\
         # A task that is requeued (preemption, node failure, scontrol requeue) or\n\
         # resubmitted resumes its point from the point's newest checkpoint.\n",
        kind = grid.kind.dir_prefix(),
        d = dir.display(),
        sc = sh_quote(script.as_os_str()),
    )
}

/// The `#SBATCH` options of an array of `n` points, each with `cpus` CPUs
/// shared among its `nproc` ranks.
fn directives(dir: &Path, n: usize, cwd: &Path, cpus: usize, launch: &SlurmOptions, nproc: usize) -> Vec<String> {
    let q = |p: &Path| sh_quote(p.as_os_str());
    let name = dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "experiment".into());
    let mut directives = vec![
        format!("--job-name={}", sh_quote(format!("gda-{name}").as_ref())),
        format!("--array=0-{}", n.saturating_sub(1)),
        format!("--output={}", q(&dir.join("slurm").join("%A_%a.out"))),
        "--open-mode=append".into(),
        "--requeue".into(),
        format!("--chdir={}", q(cwd)),
        format!("--cpus-per-task={}", (cpus / nproc).max(1)),
    ];
    if nproc > 1 {
        // The point's ranks: one task each on one node (srun below).
        directives.extend(["--nodes=1".to_string(), format!("--ntasks-per-node={nproc}")]);
    }
    let opt = |flag: &str, v: &Option<String>| v.as_ref().map(|v| format!("--{flag}={}", sh_quote(v.as_ref())));
    directives.extend(opt("partition", &launch.partition));
    directives.extend(opt("account", &launch.account));
    directives.extend(opt("time", &launch.time));
    directives.extend(opt("mem", &launch.mem));
    directives.extend(launch.gpus_per_run.map(|g| match nproc {
        1 => format!("--gres=gpu:{g}"),
        _ => "--gpus-per-task=1".to_string(),
    }));
    directives.extend(launch.sbatch_args.iter().cloned());
    directives
}

/// The `case` that maps an array task to its grid point and the command
/// that trains it.
fn task_cases(grid: &Grid, dir: &Path, exe: &Path, cpus: usize, nproc: usize) -> String {
    let mut s = format!(
        "\nset -u\nSLURM_DIR={}\n\n\
         # Array task -> grid point, and the command that trains it (the one gda runs locally).\n\
         case \"${{SLURM_ARRAY_TASK_ID:-}}\" in\n",
        sh_quote(dir.join("slurm").as_os_str())
    );
    for (i, p) in grid.points.iter().enumerate() {
        // With ranks, srun starts them and they read Slurm's variables
        // (`dist::Launch`); `--threads` is split between them.
        let srun = ["srun".to_string(), format!("--ntasks={nproc}")];
        let argv = point_command(exe, dir, p, cpus, None, 1);
        let cmd: Vec<String> = srun.into_iter().filter(|_| nproc > 1).chain(argv.iter().map(|a| sh_quote(a))).collect();
        s += &format!("  {i}) POINT={}; CMD=({}) ;;\n", sh_quote(p.name.as_ref()), cmd.join(" "));
    }
    s
}

/// What every task does around its command: the rest of the `case`, the
/// log lines in tasks.log, and the point's failure recorded as a local run
/// records it (of `n` points).
fn task_body(dir: &Path, n: usize) -> String {
    let q = |p: &Path| sh_quote(p.as_os_str());
    format!(
        "  *) echo \"array task ${{SLURM_ARRAY_TASK_ID:-(none)}} has no grid point; allowed: 0-{last}\" >&2; exit 2 ;;\n\
         esac\n\
         RUN={points}/$POINT\n\
         TASK=${{SLURM_ARRAY_JOB_ID:-local}}_$SLURM_ARRAY_TASK_ID\n\
         mkdir -p \"$RUN\"\n\
         rm -f \"$RUN/{failed}\"  # a resubmitted failed point trains again\n\
         log() {{ echo \"$(date -Is) $TASK $POINT $*\" | tee -a \"$SLURM_DIR/{tasks}\"; }}\n\
         log \"start on $(hostname) restart=${{SLURM_RESTART_COUNT:-0}}\"\n\
         # scancel, preemption and the time limit send SIGTERM to gda train too: it\n\
         # writes a checkpoint and exits with code 130. This shell waits for it.\n\
         trap 'log \"SIGTERM: gda train writes a checkpoint and stops\"' TERM\n\
         first=$(( $(cat \"$RUN/train.log\" 2>/dev/null | wc -l) + 1 ))\n\
         \"${{CMD[@]}}\" >> \"$RUN/train.log\" 2>&1\n\
         code=$?\n\
         if [ \"$code\" = 7 ]; then\n\
         \x20 # Another gda train holds the point: this task did nothing, and did not fail.\n\
         \x20 log \"exit 7: another gda train holds the point\"; exit 0\n\
         fi\n\
         # 130: interrupted, resumable from its checkpoint. Above 128: killed by\n\
         # signal code - 128 (the OOM killer, a node's watchdog), not a failure of\n\
         # the point either, unless the signal says gda train itself crashed.\n\
         crashed=\n\
         if [ \"$code\" -gt 128 ] && [ \"$code\" != 130 ]; then\n\
         \x20 case $((code - 128)) in\n\
         \x20   {crash}) crashed=\"gda train crashed (signal $((code - 128)))\" ;;\n\
         \x20   *) log \"killed by signal $((code - 128)): not a failure; resubmitted, the point resumes from its checkpoint\" ;;\n\
         \x20 esac\n\
         fi\n\
         if [ \"$code\" != 0 ] && {{ [ \"$code\" -le 128 ] || [ -n \"$crashed\" ]; }}; then\n\
         \x20 # Recorded as a local run records it: the point's last error line.\n\
         \x20 reason=${{crashed:-$(tail -n +\"$first\" \"$RUN/train.log\" | grep '^error: ' | tail -n 1 | sed 's/^error: //')}}\n\
         \x20 echo \"${{reason:-gda train exited with code $code}}\" > \"$RUN/{failed}\"\n\
         fi\n\
         log \"exit $code\"\n\
         exit \"$code\"\n",
        last = n.saturating_sub(1),
        points = q(&dir.join("points")),
        failed = FAILED_FILE,
        tasks = TASKS_LOG,
        crash = CRASH_SIGNALS.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("|"),
    )
}

/// Writes the batch script and submits the points that are neither done nor
/// queued (nor failed, unless --retry-failed); prints the job and how to
/// follow it. With everything done, prints the summary as the local launcher does.
pub fn launch(grid: &Grid, opts: &RunOptions) -> Result<(), GdaError> {
    let dir = absolute(&opts.dir).map_err(io("cannot resolve", &opts.dir))?;
    let script_path = write_script(grid, &dir, opts)?;
    let queue = Queue::read(&dir);
    if let Some(why) = &queue.unreachable {
        // Without the queue, points still queued or running would be submitted twice.
        return Err(input(format!(
            "cannot ask Slurm about the jobs recorded in {} ({}): {why}; nothing was submitted. Retry when squeue answers",
            dir.join("slurm").join(JOBS).display(),
            queue.jobs()
        )));
    }
    let Pending { todo, queued, failed, done } = Pending::of(grid, &dir, &queue, opts.retry_failed);
    let n = grid.points.len();
    let script_q = sh_quote(script_path.as_os_str());
    let dir_q = sh_quote(dir.as_os_str());
    if todo.is_empty() {
        if queued.is_empty() {
            outln!("all {n} points are done or failed; nothing to submit");
            return grid.summarize(&dir)?.report(&dir);
        }
        outln!(
            "nothing to submit: {done} of {n} points done, {} queued or running in Slurm ({}), {} failed",
            queued.len(),
            queue.jobs(),
            failed.len()
        );
        outln!("follow them: gda status {dir_q}");
        return Ok(());
    }
    let array = array_ranges(&todo);
    if !failed.is_empty() {
        outln!(
            "{} failed points are not submitted (add --retry-failed to train them again): {}",
            failed.len(),
            failed.join(", ")
        );
    }
    if opts.slurm.no_submit {
        outln!("wrote {} ({n} array tasks, one per point); nothing was submitted", script_path.display());
        outln!("submit the {} points not done with:\n  sbatch --array={array} {script_q}", todo.len());
        return Ok(());
    }
    let job = submit(&script_path, &array)?;
    // Retried points are queued now, not failed (the task would clear the
    // record only when it starts).
    for &i in &todo {
        let _ = std::fs::remove_file(point_dir(&dir, &grid.points[i]).join(FAILED_FILE));
    }
    record(&dir, grid, &job, &array, &script_path)?;
    outln!(
        "submitted Slurm job {job}: array tasks {array} ({} of {n} points) of {}",
        todo.len(),
        script_path.display()
    );
    outln!("follow it:  gda status {dir_q}   (or squeue -j {job})");
    outln!("when done:  gda sweep --collect {dir_q}   (or rerun this command)");
    Ok(())
}

/// Writes `<dir>/slurm/sweep.sbatch`, executable, after warning about paths
/// the compute nodes may not see; its path.
fn write_script(grid: &Grid, dir: &Path, opts: &RunOptions) -> Result<PathBuf, GdaError> {
    let launch = &opts.slurm;
    let exe = std::env::current_exe().map_err(io("cannot find the gda binary", Path::new("/proc/self/exe")))?;
    warn_if_node_local("experiment directory", dir);
    warn_if_node_local("gda binary", &exe);
    let cpus = launch.cpus_per_run.unwrap_or(if opts.threads > 0 { opts.threads } else { 1 });
    let slurm_dir = dir.join("slurm");
    let script_path = slurm_dir.join(SCRIPT);
    let text = script(grid, dir, &exe, cpus, launch, opts.nproc_per_point)?;
    let write_err = || io("cannot write", &script_path);
    std::fs::create_dir_all(&slurm_dir).map_err(write_err())?;
    atomic_write(&script_path, text.as_bytes()).map_err(write_err())?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755)).map_err(write_err())?;
    }
    Ok(script_path)
}

/// Where the points of a grid stand before a submission.
struct Pending<'a> {
    /// Indexes of the points to submit.
    todo: Vec<usize>,
    /// Queued or running in Slurm.
    queued: Vec<&'a str>,
    /// Failed, and not to be retried.
    failed: Vec<&'a str>,
    done: usize,
}

impl<'a> Pending<'a> {
    fn of(grid: &'a Grid, dir: &Path, queue: &Queue, retry_failed: bool) -> Pending<'a> {
        let mut p = Pending { todo: Vec::new(), queued: Vec::new(), failed: Vec::new(), done: 0 };
        for (i, point) in grid.points.iter().enumerate() {
            match status(dir, point) {
                Status::Done(_) => p.done += 1,
                Status::Failed(_) if !retry_failed => p.failed.push(point.name.as_str()),
                _ if queue.task(&point.name).is_some_and(|t| t.is_running() || t.is_waiting()) => {
                    p.queued.push(point.name.as_str())
                }
                _ => p.todo.push(i),
            }
        }
        p
    }
}

/// Adds the job sbatch accepted to `<dir>/slurm/jobs.json`.
fn record(dir: &Path, grid: &Grid, job: &str, array: &str, script: &Path) -> Result<(), GdaError> {
    let sub = Submission {
        job_id: job.to_string(),
        array: array.to_string(),
        points: grid.points.iter().map(|p| p.name.clone()).collect(),
        script: script.to_path_buf(),
        submitted_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let mut subs = submissions(dir);
    subs.push(sub);
    let jobs = dir.join("slurm").join(JOBS);
    atomic_write(&jobs, &serde_json::to_vec_pretty(&subs).expect("jobs serialise"))
        .map_err(|e| input(format!("Slurm job {job} was submitted, but {} could not be written: {e}", jobs.display())))
}

/// `sbatch --parsable --array=A script`: the job id, or sbatch's own error.
fn submit(script: &Path, array: &str) -> Result<String, GdaError> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(format!("--array={array}"))
        .arg(script)
        .output()
        .map_err(|e| input(format!("cannot run sbatch: {e}; nothing was submitted")))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let job = stdout.lines().next().unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
    if !out.status.success() || job.is_empty() || !job.chars().all(|c| c.is_ascii_digit()) {
        let said = if stderr.is_empty() {
            format!("(exit status {}, output {:?})", out.status, stdout.trim())
        } else {
            stderr
        };
        return Err(GdaError::Rejected { stderr: said, script: script.to_path_buf() });
    }
    if !stderr.is_empty() {
        errln!("{stderr}");
    }
    Ok(job)
}

fn submissions(dir: &Path) -> Vec<Submission> {
    std::fs::read(dir.join("slurm").join(JOBS)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// How to train `points` of a `kind` experiment again: the sbatch line when
/// the batch script maps them, and the rerun of the gda command.
pub fn resubmit_hint(dir: &Path, kind: &str, points: &[&str], marked_failed: bool) -> String {
    let script = dir.join("slurm").join(SCRIPT);
    let text = std::fs::read_to_string(&script).unwrap_or_default();
    let index = |point: &str| {
        text.lines().find_map(|l| {
            let (i, rest) = l.trim_start().split_once(") POINT=")?;
            (rest.split(';').next()? == sh_quote(point.as_ref())).then(|| i.parse::<usize>().ok()).flatten()
        })
    };
    let retry = if marked_failed { " --retry-failed" } else { "" };
    match points.iter().map(|p| index(p)).collect::<Option<Vec<usize>>>() {
        Some(mut idx) if !text.is_empty() => {
            idx.sort_unstable();
            let array = array_ranges(&idx);
            format!(
                "resubmit: sbatch --array={array} {}   (or rerun the gda {kind} command with --launcher slurm{retry})",
                sh_quote(script.as_os_str())
            )
        }
        _ => format!("to train them again: rerun the gda {kind} command{retry}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_ranges_compress_runs() {
        assert_eq!(array_ranges(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_ranges(&[1, 3, 5, 6, 7]), "1,3,5-7");
        assert_eq!(array_ranges(&[4]), "4");
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(sh_quote("/a/b-c_d.toml".as_ref()), "/a/b-c_d.toml");
        assert_eq!(sh_quote("a b".as_ref()), "'a b'");
        assert_eq!(sh_quote("it's".as_ref()), r"'it'\''s'");
        assert_eq!(sh_quote("".as_ref()), "''");
    }
}
