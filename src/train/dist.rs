//! The training loop's distributed pieces: which rows, device and threads a
//! rank takes, the handshake, and the step's all-reduces (gradients, started
//! during backward; then the loss and the stop flag). The engine is
//! `crate::dist`.
//!
//! `train.batch_size` is the global micro-batch: rank r of W reads rows
//! `r·B/W .. (r+1)·B/W` of every micro-batch of the step's global batch
//! (`Dataset::batch`, a function of seed, step and row only), and gradients
//! are averaged, so a run follows the same trajectory on any world size up
//! to the order of float sums, and its checkpoints resume on any other.

use std::ops::Range;

use tch::{Device, Kind, Tensor};

use super::optim::AdamW;
use super::run_dir::World;
use crate::config::Spec;
use crate::device;
use crate::dist::{build_id, Buckets, Group, Hello, Launch, Reducer, DEFAULT_TIMEOUT};
use crate::error::GdaError;
use crate::util::host::hostname;

/// This process's place among the ranks (rank 0 of 1 without a launch).
pub struct Ranks {
    pub rank: usize,
    pub world: usize,
    pub local_rank: usize,
    pub local_world: usize,
}

impl Ranks {
    pub fn of(launch: Option<&Launch>) -> Ranks {
        match launch {
            Some(l) => Ranks { rank: l.rank, world: l.world, local_rank: l.local_rank, local_world: l.local_world },
            None => Ranks { rank: 0, world: 1, local_rank: 0, local_world: 1 },
        }
    }

    /// This rank's rows of each global micro-batch of `batch` rows.
    pub fn rows(&self, batch: usize) -> Range<usize> {
        let each = batch / self.world;
        self.rank * each..(self.rank + 1) * each
    }

    /// A GPU per rank on its machine: `cuda:LOCAL_RANK` among the GPUs this
    /// process sees (srun's `--gpus-per-task=1` shows each rank only its
    /// own, as cuda:0).
    pub fn device(&self, selected: Device) -> Device {
        if self.world > 1 && selected.is_cuda() {
            Device::Cuda(gpu_of(self.local_rank, tch::Cuda::device_count()))
        } else {
            selected
        }
    }

    /// The spec's CPU threads (0: all cores) split between the ranks on
    /// this machine, at least one each.
    pub fn threads(&self, threads: usize) -> usize {
        if self.local_world <= 1 {
            return threads;
        }
        let total = if threads == 0 { device::cores() } else { threads };
        (total / self.local_world).max(1)
    }
}

/// A joined process group with the gradient buckets of the model.
pub struct Collective {
    /// With `train.overlap_allreduce`: the hooks that start buckets during
    /// backward. Declared before `group`, so it is dropped first (it points
    /// into the group).
    reducer: Option<Reducer>,
    /// Without: the buckets issued after backward.
    buckets: Option<Buckets>,
    group: Group,
    overlap: bool,
    /// The stop flags summed over the ranks and the steps, still on the
    /// device: read only every few steps (`stop_agreed`).
    stops: Option<Tensor>,
    /// Seconds the step waited for the all-reduces after backward (what
    /// overlap did not hide), the steps they served, and the buckets that
    /// backward started.
    reduce_secs: f64,
    steps: usize,
    in_backward: usize,
}

impl Collective {
    /// Meets the other ranks (see `dist::Group::join`). `set_up` is this
    /// rank's start step, or why it cannot train: the others are told, and
    /// stop too.
    pub fn join(
        launch: &Launch,
        spec: &Spec,
        set_up: Result<usize, String>,
        nccl: bool,
        timeout: Option<std::time::Duration>,
    ) -> Result<Collective, GdaError> {
        let (step, error) = match set_up {
            Ok(step) => (step, None),
            Err(e) => (0, Some(e)),
        };
        let hello = Hello { spec_hash: spec.hash(), build: build_id(), step, host: hostname(), error };
        let group = Group::join(launch, &hello, nccl, timeout.unwrap_or(DEFAULT_TIMEOUT))?;
        Ok(Collective {
            reducer: None,
            buckets: None,
            group,
            overlap: spec.train.overlap_allreduce,
            stops: None,
            reduce_secs: 0.0,
            steps: 0,
            in_backward: 0,
        })
    }

    /// The closing line of each rank (stderr, so rank 0's stdout stays the
    /// run's): the time a step waited for the all-reduces after backward and
    /// its share of the training time, and the rank's peak RSS.
    pub fn report(&self, train_secs: f64) -> String {
        let per_step = self.reduce_secs / self.steps.max(1) as f64;
        let (buckets, how) = match (&self.reducer, &self.buckets) {
            (Some(r), _) => (
                r.count(),
                format!("{:.1} per step started during backward", self.in_backward as f64 / self.steps.max(1) as f64),
            ),
            (None, b) => (b.as_ref().map_or(0, Buckets::count), "issued after backward".to_string()),
        };
        format!(
            "rank {}/{}: all-reduce wait {:.2} ms per step ({} buckets, {how}; {:.1}% of the step time) | peak RSS {:.0} MB",
            self.group.rank,
            self.group.world,
            1e3 * per_step,
            buckets,
            100.0 * self.reduce_secs / train_secs.max(1e-9),
            crate::util::host::peak_rss_mb()
        )
    }

    /// Ends the heartbeat after the last step (see `dist::Group::finish`).
    pub fn finish(&mut self) {
        self.group.finish();
    }

    /// What manifest.json records.
    pub fn describe(&self) -> World {
        World { world_size: self.group.world, backend: self.group.backend.into(), hosts: self.group.hosts.clone() }
    }

    /// Before the step's micro-batches: with overlap, the hooks on the
    /// gradients (made at the first step).
    pub fn prepare(&mut self, opt: &AdamW) -> Result<(), GdaError> {
        if self.overlap && self.reducer.is_none() {
            self.reducer = Some(Reducer::new(&self.group, &opt.params)?);
        }
        Ok(())
    }

    /// Called just before the last micro-batch's backward: only its hooks
    /// start all-reduces, when the gradients hold the whole step's sum.
    pub fn arm(&mut self) {
        if let Some(r) = self.reducer.as_mut() {
            r.arm();
        }
    }

    /// Averages the gradients over the ranks (waiting for the buckets that
    /// backward started, issuing the others), then sums this rank's loss
    /// and whether it was interrupted. Returns the mean loss over the ranks;
    /// the stop flag stays on the device for [`Collective::stop_agreed`].
    pub fn average_gradients(&mut self, opt: &AdamW, loss: &Tensor, interrupted: bool) -> Result<Tensor, GdaError> {
        let flag = Tensor::from(if interrupted { 1.0f64 } else { 0.0 }).to_device(loss.device());
        let extra = Tensor::stack(&[loss.to_kind(Kind::Double), flag], 0);
        let start = std::time::Instant::now();
        let summed = match self.reducer.as_mut() {
            Some(r) => {
                let (summed, started) = r.wait(&self.group, extra)?;
                self.in_backward += started;
                summed
            }
            None => {
                let params: Vec<Tensor> = opt.params.iter().map(|(_, p)| p.shallow_clone()).collect();
                let buckets = self.buckets.get_or_insert_with(|| Buckets::new(&opt.params));
                buckets.average(&self.group, &params, extra)?
            }
        };
        self.reduce_secs += start.elapsed().as_secs_f64();
        self.steps += 1;
        // Summed on the device: an interrupt between two reads is not lost.
        let flag = summed.get(1);
        self.stops = Some(match self.stops.take() {
            Some(s) => s + flag,
            None => flag,
        });
        Ok((summed.get(0) / self.group.world as f64).to_kind(Kind::Float))
    }

    /// Whether any rank asked to stop in any step so far: one host read,
    /// which every rank must make at the same steps (the trainer's
    /// `STOP_CHECK_EVERY` and its log and checkpoint steps), so all stop
    /// after the same step.
    pub fn stop_agreed(&self) -> bool {
        self.stops.as_ref().is_some_and(|s| device::host_f64(s) > 0.0)
    }
}

/// The GPU index of a rank among `visible` GPUs: its local rank where each
/// rank sees them all, 0 where each sees only its own.
fn gpu_of(local_rank: usize, visible: i64) -> usize {
    local_rank % visible.max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::gpu_of;

    #[test]
    fn a_rank_takes_its_local_gpu_or_the_only_one_it_sees() {
        assert_eq!(gpu_of(3, 8), 3);
        assert_eq!(gpu_of(3, 1), 0);
        assert_eq!(gpu_of(1, 0), 0);
    }
}
