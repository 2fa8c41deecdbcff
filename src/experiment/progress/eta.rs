//! The ETA of the view: each point's remaining time from its own measured
//! speed, its architecture's, or the others' seconds per FLOP, and the
//! grid's shared among the slots.

use super::{Planned, Running, State};

impl State {
    pub(super) fn measure(&mut self, key: &str, secs_per_step: f64, flops_per_step: f64) {
        match self.measured.iter_mut().find(|m| m.0 == key) {
            Some(m) => (m.1, m.2) = (secs_per_step, flops_per_step),
            None => self.measured.push((key.to_string(), secs_per_step, flops_per_step)),
        }
    }

    /// Every speed known: the finished points' and the running ones'
    /// (speed key, seconds per step, FLOPs per step).
    fn speeds(&self) -> impl Iterator<Item = (&str, f64, f64)> {
        let running = self.running.iter().filter_map(|r| {
            let sps = r.sample.as_ref()?.secs_per_step?;
            Some((r.plan.key.as_str(), sps, r.plan.flops / r.plan.steps.max(1) as f64))
        });
        running.chain(self.measured.iter().map(|m| (m.0.as_str(), m.1, m.2)))
    }

    /// Seconds the planned point still needs from `step`: its own measured
    /// speed, else that of its architecture, else the measured seconds per
    /// FLOP of the others; None before anything was measured.
    fn remaining(&self, plan: &Planned, step: usize, own: Option<f64>) -> Option<f64> {
        let left = plan.steps.saturating_sub(step) as f64;
        if let Some(sps) = own.or_else(|| self.speeds().find(|s| s.0 == plan.key).map(|s| s.1)) {
            return Some(left * sps);
        }
        let (secs, flops) = self.speeds().fold((0.0, 0.0), |(s, f), m| (s + m.1, f + m.2));
        (flops > 0.0).then(|| left * plan.flops / plan.steps.max(1) as f64 * secs / flops)
    }

    pub(super) fn point_eta(&self, r: &Running) -> Option<f64> {
        let s = r.sample.as_ref();
        self.remaining(&r.plan, s.map_or(0, |s| s.step), s.and_then(|s| s.secs_per_step))
    }

    /// The running points' remaining time and the queued points' whole time,
    /// shared among the slots (never less than the longest running point).
    pub(super) fn grid_eta(&self) -> Option<f64> {
        let mut total = 0.0;
        let mut longest: f64 = 0.0;
        for r in &self.running {
            let t = self.point_eta(r)?;
            total += t;
            longest = longest.max(t);
        }
        for q in &self.queued {
            total += self.remaining(q, 0, None)?;
        }
        Some((total / self.slots.max(1) as f64).max(longest))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Instant;

    use super::*;
    use crate::experiment::progress::{Counts, Sample};

    fn planned(name: &str, key: &str, steps: usize, flops: f64) -> Planned {
        Planned { name: name.into(), run: PathBuf::new(), steps, key: key.into(), flops }
    }

    #[test]
    fn the_grid_eta_uses_each_architectures_speed_or_its_flops() {
        let now = Instant::now();
        let running = |plan, step, sps| Running {
            plan,
            started: now,
            sample: Some(Sample { step, secs_per_step: sps, ..Sample::default() }),
            printed: now,
            printed_step: None,
            bar: None,
        };
        let mut st = State {
            counts: Counts::default(),
            queued: vec![planned("a2", "A", 100, 1000.0), planned("b1", "B", 100, 2000.0)],
            running: vec![running(planned("a1", "A", 100, 1000.0), 40, None)],
            measured: Vec::new(),
            slots: 1,
            cells: Default::default(),
        };
        assert_eq!(st.grid_eta(), None, "nothing measured yet");
        st.running[0].sample.as_mut().unwrap().secs_per_step = Some(0.5);
        // a1's own speed: 60 × 0.5 left; a2 has its architecture: 100 × 0.5;
        // b1 twice its FLOPs a step, so twice its time: 100 × 1.0.
        assert_eq!(st.grid_eta(), Some(30.0 + 50.0 + 100.0));
        // A finished point of B measured 0.25 s a step: B's own speed wins.
        st.measure("B", 0.25, 20.0);
        assert_eq!(st.grid_eta(), Some(30.0 + 50.0 + 25.0));
        st.slots = 2;
        assert_eq!(st.grid_eta(), Some(52.5));
        st.slots = 8;
        assert_eq!(st.grid_eta(), Some(30.0), "never less than the running point's own time");
    }
}
