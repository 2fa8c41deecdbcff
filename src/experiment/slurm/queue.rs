//! What Slurm says of an experiment's jobs: the array tasks recorded in
//! `<dir>/slurm/jobs.json` and `tasks.log`, and their states from `squeue`
//! (or `sacct`, for jobs the controller has forgotten).

use std::path::Path;
use std::process::Command;

use super::{submissions, which, TASKS_LOG};

/// What Slurm says about one array task.
#[derive(Debug, Clone)]
pub struct Task {
    pub job: String,
    pub task: usize,
    pub state: String,
    pub reason: String,
    pub node: String,
}

impl Task {
    pub fn id(&self) -> String {
        format!("{}_{}", self.job, self.task)
    }

    pub fn is_running(&self) -> bool {
        ["RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "RESIZING"].contains(&self.state.as_str())
    }

    pub fn is_waiting(&self) -> bool {
        ["PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "RESV_DEL_HOLD"]
            .contains(&self.state.as_str())
    }

    fn rank(&self) -> (u8, u64, usize) {
        let live = if self.is_running() { 2 } else { u8::from(self.is_waiting()) };
        (live, self.job.parse().unwrap_or(0), self.task)
    }
}

/// The Slurm side of an experiment: its jobs and their tasks' states.
pub struct Queue {
    jobs: Vec<String>,
    /// (job, task) -> point.
    map: Vec<(String, usize, String)>,
    tasks: Vec<Task>,
    /// Why Slurm could not be asked, if it could not.
    pub(super) unreachable: Option<String>,
}

impl Queue {
    /// The jobs recorded in jobs.json and tasks.log, and what squeue (or,
    /// for jobs it no longer knows, sacct) says of their tasks.
    pub fn read(dir: &Path) -> Queue {
        let map = recorded_tasks(dir);
        let mut jobs: Vec<String> = Vec::new();
        for (j, _, _) in &map {
            if !jobs.contains(j) {
                jobs.push(j.clone());
            }
        }
        let mut q = Queue { jobs, map, tasks: Vec::new(), unreachable: None };
        if q.jobs.is_empty() {
            return q;
        }
        if which("squeue").is_none() {
            q.unreachable = Some("squeue is not on PATH".into());
            return q;
        }
        match squeue(&q.jobs.join(",")) {
            Ok(tasks) => q.tasks = tasks,
            Err(why) => q.unreachable = Some(why),
        }
        // Jobs the controller has forgotten: the accounting database, if any.
        let forgotten: Vec<&str> =
            q.jobs.iter().filter(|j| !q.tasks.iter().any(|t| &t.job == *j)).map(String::as_str).collect();
        if !forgotten.is_empty() && which("sacct").is_some() {
            let ended = sacct(&forgotten.join(","));
            q.tasks.extend(ended);
        }
        q
    }

    /// The task that speaks for a point: a running one, else a waiting
    /// one, else the newest that ended.
    pub fn task(&self, point: &str) -> Option<&Task> {
        self.tasks
            .iter()
            .filter(|t| self.map.iter().any(|(j, i, p)| *j == t.job && *i == t.task && p == point))
            .max_by_key(|t| t.rank())
    }

    pub fn jobs(&self) -> String {
        self.jobs.join(", ")
    }

    /// A note for the status header.
    pub fn describe(&self) -> String {
        match (&self.unreachable, self.jobs.is_empty()) {
            (_, true) => String::new(),
            (None, false) => format!(" (Slurm jobs {})", self.jobs()),
            (Some(why), false) => format!(" (Slurm jobs {}; {why}: states from the run directories only)", self.jobs()),
        }
    }
}

/// (job, task, point) of every array task recorded in jobs.json, then of
/// those only tasks.log names (jobs submitted by hand).
fn recorded_tasks(dir: &Path) -> Vec<(String, usize, String)> {
    let mut map: Vec<(String, usize, String)> = Vec::new();
    for s in submissions(dir) {
        map.extend(s.points.iter().enumerate().map(|(i, p)| (s.job_id.clone(), i, p.clone())));
    }
    let log = std::fs::read_to_string(dir.join("slurm").join(TASKS_LOG)).unwrap_or_default();
    for line in log.lines() {
        let mut w = line.split_whitespace().skip(1);
        if let (Some(id), Some(point)) = (w.next(), w.next()) {
            // Tasks of the script run by hand log `local_N`: no Slurm job to ask about.
            if let Some((job, Ok(task))) = id.split_once('_').map(|(j, t)| (j, t.parse::<usize>())) {
                let slurm_job = !job.is_empty() && job.chars().all(|c| c.is_ascii_digit());
                if slurm_job && !map.iter().any(|(j, t, _)| j == job && *t == task) {
                    map.push((job.to_string(), task, point.to_string()));
                }
            }
        }
    }
    map
}

/// What squeue says of the tasks of jobs `ids` (comma-separated); Err(why)
/// when the controller cannot be asked.
fn squeue(ids: &str) -> Result<Vec<Task>, String> {
    // -t all: finished tasks too, while the controller remembers them.
    let out = Command::new("squeue")
        .args(["-h", "-r", "-t", "all", "-j", ids, "-o", "%F|%K|%T|%r|%N"])
        .output()
        .map_err(|e| format!("squeue failed: {e}"))?;
    // squeue fails on a lone job id it has forgotten (not an outage: the
    // sacct fallback covers it) and on a controller it cannot reach (an
    // outage: the queue is then unknown).
    if !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("Invalid job id specified") {
        return Err(format!("squeue failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let mut tasks = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('|').collect();
        if let [job, task, state, reason, node] = f[..] {
            if let Ok(task) = task.parse() {
                tasks.push(Task {
                    job: job.into(),
                    task,
                    state: state.into(),
                    reason: reason.into(),
                    node: node.into(),
                });
            }
        }
    }
    Ok(tasks)
}

/// What the accounting database says of the tasks of jobs `ids`
/// (comma-separated); nothing when sacct fails.
fn sacct(ids: &str) -> Vec<Task> {
    let mut tasks = Vec::new();
    let Ok(out) = Command::new("sacct").args(["-n", "-P", "-X", "-j", ids, "-o", "JobID,State,NodeList"]).output()
    else {
        return tasks;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('|').collect();
        if let [id, state, node] = f[..] {
            if let Some((job, Ok(task))) = id.split_once('_').map(|(j, t)| (j, t.parse::<usize>())) {
                let state = state.split_whitespace().next().unwrap_or("").to_string();
                tasks.push(Task { job: job.into(), task, state, reason: String::new(), node: node.into() });
            }
        }
    }
    tasks
}
