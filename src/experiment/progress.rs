//! The live view of a grid trained by the local launcher: how far each
//! running point is, read from the metrics.csv its trainer appends to (never
//! from the trainer's output, which goes to its train.log untouched), and
//! how far the grid is.
//!
//! On a terminal (stderr) it is an indicatif MultiProgress: one line per
//! running point and a grid line, each at most [`WIDTH`] columns. Elsewhere
//! (CI, Slurm logs, pipes) it prints a plain line per running point every
//! [`DEFAULT_EVERY`] (or `GDA_PROGRESS_SECS`), then the grid line.
//!
//! Every line the launcher prints while points train goes through
//! [`Progress::println`], under the lock that guards the counts, so a grid
//! line never contradicts the `[k/N] ... done` lines printed before it.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

mod eta;
mod lines;

pub use self::lines::{cells_line, grid_line, live_line, plain_line, CellCounts, Counts};
use super::{cost, Point, Status};
use crate::error::{input, GdaError};
use crate::report::table;
use crate::util::out::outln;

/// Off a terminal, seconds between two progress lines of a point, unless
/// `GDA_PROGRESS_SECS` says otherwise: a line a minute is two in a 1-minute
/// point and a few hundred in a day-long one, readable in any log.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(30);

/// The environment variable that sets the interval of the plain lines.
pub const EVERY_VAR: &str = "GDA_PROGRESS_SECS";

/// Columns every line of the terminal view fits in (one less than 80: some
/// terminals wrap a line that fills the last column).
pub const WIDTH: usize = 79;

/// How often the terminal view rereads the metrics files.
const LIVE_POLL: Duration = Duration::from_secs(1);

/// The plain lines' interval: `GDA_PROGRESS_SECS` (seconds, 0 = at every
/// new metrics row) or [`DEFAULT_EVERY`].
pub fn interval_from_env() -> Result<Duration, GdaError> {
    match std::env::var(EVERY_VAR) {
        Err(_) => Ok(DEFAULT_EVERY),
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Ok(Duration::from_secs_f64(s)),
            _ => Err(input(format!(
                "{EVERY_VAR}={v:?} is not allowed; allowed: seconds between two progress lines of a point, a number >= 0 (0: at every metrics row)"
            ))),
        },
    }
}

/// What a running point's metrics.csv says so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub step: usize,
    /// Of the last row that has one.
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub tokens_per_s: Option<f64>,
    /// Wall seconds per step between the first and the last row (evaluation
    /// included, as the rest of the run will have it).
    pub secs_per_step: Option<f64>,
}

/// Reads a run's metrics.csv; None before it has a row. A torn last line
/// (the trainer writing it right now) is left out by the CSV reader.
pub fn sample(run: &Path) -> Option<Sample> {
    let (header, rows) = table::read(&run.join("metrics.csv")).ok()?;
    let col = |name: &str| header.iter().position(|h| h == name);
    let (step_i, train_i, val_i, tps_i, el_i) =
        (col("step")?, col("train_loss"), col("val_loss"), col("tokens_per_s"), col("elapsed_s"));
    let num = |row: &Vec<String>, i: Option<usize>| -> Option<f64> { row.get(i?)?.parse().ok() };
    let last_of = |i: Option<usize>| rows.iter().rev().find_map(|r| num(r, i));
    let last = rows.last()?;
    let step: usize = last.get(step_i)?.parse().ok()?;
    let first = rows.first()?;
    let secs_per_step = (|| {
        let (s0, e0): (usize, f64) = (first.get(step_i)?.parse().ok()?, num(first, el_i)?);
        let e1 = num(last, el_i)?;
        (step > s0 && e1 > e0).then(|| (e1 - e0) / (step - s0) as f64)
    })();
    Some(Sample {
        step,
        train_loss: last_of(train_i),
        val_loss: last_of(val_i),
        tokens_per_s: last_of(tps_i),
        secs_per_step,
    })
}

/// Where each point of the grid stands, for the cell counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PointState {
    Finished,
    Running,
    Pending,
}

/// Points with the same architecture and batch shape train at the same
/// speed; their measured step time stands for each other's.
fn speed_key(p: &Point) -> String {
    let t = &p.spec.train;
    let model = serde_json::to_string(&p.spec.model).expect("config serialises");
    format!("{model} {} {} {} {}", t.batch_size, t.context, t.grad_accum, t.device)
}

/// A point to train, as the ETA sees it.
struct Planned {
    name: String,
    run: PathBuf,
    steps: usize,
    key: String,
    /// Training FLOPs of the whole run: the ETA of an architecture not
    /// measured yet scales the others' seconds per FLOP by it.
    flops: f64,
}

impl Planned {
    fn of(run: PathBuf, p: &Point) -> Planned {
        Planned { name: p.name.clone(), run, steps: p.spec.train.steps, key: speed_key(p), flops: cost(p).2 }
    }
}

struct Running {
    plan: Planned,
    started: Instant,
    sample: Option<Sample>,
    /// Off a terminal: when its last plain line was printed (its start at first).
    printed: Instant,
    printed_step: Option<usize>,
    bar: Option<ProgressBar>,
}

struct State {
    counts: Counts,
    /// Not started yet, in training order.
    queued: Vec<Planned>,
    running: Vec<Running>,
    /// Seconds per step measured for each speed key, with the point's steps.
    measured: Vec<(String, f64, f64)>,
    slots: usize,
    /// Each point's grid cell (an index) and state; one cell without a grid.
    cells: std::collections::BTreeMap<String, (usize, PointState)>,
}

impl State {
    fn set(&mut self, name: &str, to: PointState) {
        if let Some(c) = self.cells.get_mut(name) {
            c.1 = to;
        }
    }

    /// The cell counts of a scaling grid; None with a single cell.
    fn cell_counts(&self) -> Option<CellCounts> {
        let n = self.cells.values().map(|c| c.0 + 1).max().unwrap_or(0);
        if n < 2 {
            return None;
        }
        let mut c = CellCounts::default();
        for i in 0..n {
            let states: Vec<PointState> = self.cells.values().filter(|c| c.0 == i).map(|c| c.1).collect();
            if states.iter().all(|s| *s == PointState::Finished) {
                c.done += 1;
            } else if states.contains(&PointState::Running) {
                c.running += 1;
            } else {
                c.pending += 1;
            }
        }
        Some(c)
    }
}

enum Mode {
    Live { multi: MultiProgress, grid: ProgressBar, cells: Option<ProgressBar> },
    Plain { every: Duration },
}

struct Shared {
    mode: Mode,
    state: Mutex<State>,
}

/// How a point the launcher ran ended, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Done,
    Failed,
    /// Neither: killed from outside, or trained by another process.
    Unfinished,
}

/// The view of one run of the local launcher. Dropping it stops the view.
pub struct Progress {
    shared: Arc<Shared>,
    stop: Mutex<Option<Sender<()>>>,
    poller: Mutex<Option<JoinHandle<()>>>,
}

impl Progress {
    /// Starts the view of the points in `todo` (to train, in order) among
    /// `points` (the whole grid, with each point's status), trained `slots`
    /// at a time; plain lines every `every` off a terminal.
    pub fn start(dir: &Path, points: &[Point], todo: &[Point], slots: usize, every: Duration) -> Progress {
        let mut counts = Counts { total: points.len(), ..Counts::default() };
        let mut state = State {
            counts,
            queued: Vec::new(),
            running: Vec::new(),
            measured: Vec::new(),
            slots: slots.max(1),
            cells: Default::default(),
        };
        let mut cells: Vec<&super::Cell> = Vec::new();
        for p in points {
            let cell = cells.iter().position(|c| **c == p.grid).unwrap_or_else(|| {
                cells.push(&p.grid);
                cells.len() - 1
            });
            let finished = !todo.iter().any(|t| t.name == p.name)
                && matches!(super::status(dir, p), Status::Done(_) | Status::Failed(_));
            let st = if finished { PointState::Finished } else { PointState::Pending };
            state.cells.insert(p.name.clone(), (cell, st));
            match super::status(dir, p) {
                // Finished points, even on another machine, are the best guess
                // of their architecture's speed.
                Status::Done(s) if !todo.iter().any(|t| t.name == p.name) => {
                    counts.done += 1;
                    if s.steps > 0 && s.elapsed_s > 0.0 {
                        let flops = cost(p).2 / p.spec.train.steps.max(1) as f64;
                        state.measure(&speed_key(p), s.elapsed_s / s.steps as f64, flops);
                    }
                }
                Status::Failed(_) if !todo.iter().any(|t| t.name == p.name) => counts.failed += 1,
                _ => counts.pending += 1,
            }
        }
        state.counts = counts;
        state.queued = todo.iter().map(|p| Planned::of(super::point_dir(dir, p), p)).collect();
        let mode = if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let grid = multi.add(ProgressBar::new(1).with_style(msg_style()));
            grid.set_message(grid_line(state.counts, state.grid_eta()));
            let cells = state.cell_counts().map(|c| {
                let bar = multi.add(ProgressBar::new(1).with_style(msg_style()));
                bar.set_message(cells_line(c));
                bar
            });
            Mode::Live { multi, grid, cells }
        } else {
            Mode::Plain { every }
        };
        let shared = Arc::new(Shared { mode, state: Mutex::new(state) });
        let (stop, stopped) = mpsc::channel::<()>();
        let poll = match &shared.mode {
            Mode::Live { .. } => LIVE_POLL,
            Mode::Plain { every } => (*every).clamp(Duration::from_millis(200), LIVE_POLL),
        };
        let poller = {
            let shared = shared.clone();
            std::thread::spawn(move || loop {
                match stopped.recv_timeout(poll) {
                    Err(RecvTimeoutError::Timeout) => shared.tick(),
                    _ => return,
                }
            })
        };
        Progress { shared, stop: Mutex::new(Some(stop)), poller: Mutex::new(Some(poller)) }
    }

    /// Prints a line to stdout without tearing the terminal view (outln's
    /// result: false once stdout is gone).
    pub fn println(&self, line: &str) -> bool {
        let _state = self.shared.state.lock().unwrap();
        self.shared.print(line)
    }

    /// A point starts training: `line` says so (and where its log is).
    pub fn started(&self, name: &str, line: &str) -> bool {
        let mut st = self.shared.state.lock().unwrap();
        let ok = self.shared.print(line);
        if let Some(i) = st.queued.iter().position(|q| q.name == name) {
            let plan = st.queued.remove(i);
            let bar = match &self.shared.mode {
                Mode::Live { multi, grid, .. } => {
                    let bar = multi.insert_before(grid, ProgressBar::new(1).with_style(msg_style()));
                    bar.set_message(live_line(&plan.name, plan.steps, None, None));
                    Some(bar)
                }
                Mode::Plain { .. } => None,
            };
            let now = Instant::now();
            st.running.push(Running { plan, started: now, sample: None, printed: now, printed_step: None, bar });
            st.counts.running += 1;
            st.counts.pending = st.counts.pending.saturating_sub(1);
            st.set(name, PointState::Running);
        }
        self.shared.refresh_grid(&st);
        ok
    }

    /// A point stopped training; `line` (the `[k/N] ... done` line) is
    /// printed under the same lock as the counts change.
    pub fn ended(&self, name: &str, how: Ended, line: Option<&str>) -> bool {
        let mut st = self.shared.state.lock().unwrap();
        if let Some(i) = st.running.iter().position(|r| r.plan.name == name) {
            let r = st.running.remove(i);
            if let Some(bar) = &r.bar {
                bar.finish_and_clear();
                if let Mode::Live { multi, .. } = &self.shared.mode {
                    multi.remove(bar);
                }
            }
            st.counts.running -= 1;
            match how {
                Ended::Done => {
                    st.counts.done += 1;
                    // The whole run's speed, startup and evaluations included.
                    let secs = r.started.elapsed().as_secs_f64();
                    if let Some(sps) = r.sample.as_ref().and_then(|s| s.secs_per_step) {
                        st.measure(&r.plan.key, sps, r.plan.flops / r.plan.steps.max(1) as f64);
                    } else if r.plan.steps > 0 {
                        st.measure(&r.plan.key, secs / r.plan.steps as f64, r.plan.flops / r.plan.steps as f64);
                    }
                }
                Ended::Failed => st.counts.failed += 1,
                // Left for a rerun: pending again.
                Ended::Unfinished => st.counts.pending += 1,
            }
            st.set(name, if how == Ended::Unfinished { PointState::Pending } else { PointState::Finished });
        }
        let ok = line.is_none_or(|l| self.shared.print(l));
        self.shared.refresh_grid(&st);
        ok
    }

    /// Stops the view and clears its terminal lines (again: nothing).
    pub fn finish(&self) {
        drop(self.stop.lock().unwrap().take());
        if let Some(p) = self.poller.lock().unwrap().take() {
            p.join().expect("progress thread");
        }
        if let Mode::Live { multi, grid, cells } = &self.shared.mode {
            grid.finish_and_clear();
            if let Some(c) = cells {
                c.finish_and_clear();
            }
            // Clearing a terminal that went away is not worth an error.
            let _ = multi.clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn msg_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg}").expect("valid template")
}

impl Shared {
    fn print(&self, line: &str) -> bool {
        match &self.mode {
            Mode::Live { multi, .. } => multi.suspend(|| outln!("{line}")),
            Mode::Plain { .. } => outln!("{line}"),
        }
    }

    fn refresh_grid(&self, st: &State) {
        if let Mode::Live { grid, cells, .. } = &self.mode {
            grid.set_message(grid_line(st.counts, st.grid_eta()));
            if let (Some(bar), Some(c)) = (cells, st.cell_counts()) {
                bar.set_message(cells_line(c));
            }
        }
    }

    /// Rereads the running points' metrics and updates the view.
    fn tick(&self) {
        let mut st = self.state.lock().unwrap();
        for i in 0..st.running.len() {
            let s = sample(&st.running[i].plan.run);
            if s.is_some() {
                st.running[i].sample = s;
            }
        }
        match &self.mode {
            Mode::Live { .. } => {
                for r in &st.running {
                    if let Some(bar) = &r.bar {
                        bar.set_message(live_line(&r.plan.name, r.plan.steps, r.sample.as_ref(), st.point_eta(r)));
                    }
                }
                self.refresh_grid(&st);
            }
            Mode::Plain { every } => {
                let now = Instant::now();
                let mut lines = Vec::new();
                for i in 0..st.running.len() {
                    let r = &st.running[i];
                    let Some(s) = &r.sample else { continue };
                    if r.printed_step == Some(s.step) || now.duration_since(r.printed) < *every {
                        continue;
                    }
                    lines.push(plain_line(&r.plan.name, r.plan.steps, s, st.point_eta(r)));
                    let step = s.step;
                    let r = &mut st.running[i];
                    (r.printed, r.printed_step) = (now, Some(step));
                }
                if !lines.is_empty() {
                    lines.push(grid_line(st.counts, st.grid_eta()));
                    lines.extend(st.cell_counts().map(cells_line));
                    for l in lines {
                        outln!("{l}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_read_from_the_complete_rows_of_a_metrics_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("metrics.csv");
        assert_eq!(sample(dir.path()), None, "no file yet");
        std::fs::write(&f, "step,tokens,train_loss,val_loss,val_bpb,tokens_per_s,elapsed_s\n").unwrap();
        assert_eq!(sample(dir.path()), None, "no row yet");
        std::fs::write(
            &f,
            "step,tokens,train_loss,val_loss,val_bpb,tokens_per_s,elapsed_s\n\
             0,0,,5.5,7.9,,1.000\n10,2560,4.25,,,9000,3.000\n20,5120,3.5,3.75,5.4,11000,6.000\n30,76",
        )
        .unwrap();
        let s = sample(dir.path()).unwrap();
        assert_eq!(
            s,
            Sample {
                step: 20,
                train_loss: Some(3.5),
                val_loss: Some(3.75),
                tokens_per_s: Some(11000.0),
                secs_per_step: Some(0.25)
            }
        );
    }

    #[test]
    fn the_cells_line_counts_cells_done_running_and_pending() {
        let mut st = State {
            counts: Counts::default(),
            queued: Vec::new(),
            running: Vec::new(),
            measured: Vec::new(),
            slots: 1,
            cells: Default::default(),
        };
        for (name, cell, state) in [
            ("a1", 0, PointState::Finished),
            ("a2", 0, PointState::Finished),
            ("b1", 1, PointState::Finished),
            ("b2", 1, PointState::Running),
            ("c1", 2, PointState::Pending),
            ("c2", 2, PointState::Finished),
        ] {
            st.cells.insert(name.into(), (cell, state));
        }
        assert_eq!(cells_line(st.cell_counts().unwrap()), "cells: 1 done, 1 running, 1 pending of 3");
        st.set("b2", PointState::Finished);
        st.set("c1", PointState::Running);
        assert_eq!(cells_line(st.cell_counts().unwrap()), "cells: 2 done, 1 running, 0 pending of 3");
        // No grid: one cell, no cells line.
        st.cells.retain(|_, c| c.0 == 0);
        assert_eq!(st.cell_counts(), None);
    }
}
