//! Attention analysis on retrieval examples (the DIFF paper's Table 3): how
//! much of a query's attention lands on the answer span and how much is
//! spread over everything else, per layer and per head group, read from the
//! materialised maps.
//!
//! The maps analysed are the effective ones: signal − λ·noise under gda
//! (whose rows sum to 1 − λ and may hold negative weights), the softmax map
//! for standard attention. For one query row `a` over the causal positions:
//! - answer mass = Σ_{j ∈ answer} a_j;
//! - noise mass = Σ_{j ∉ answer} |a_j| (negative weights are noise too);
//! - entropy = −Σ p_j ln p_j with p = |a| / Σ|a| (nats);
//! - sparsity = Hoyer's (√n − ‖a‖₁/‖a‖₂) / (√n − 1): 1 for one position,
//!   0 for uniform weights.
//!
//! Under gda the answer mass of the signal map and of the head's noise map
//! are kept as well: what the subtraction removed from the answer and what
//! it removed elsewhere (answer = signal − λ·noise on the answer span).

use tch::{Device, Kind, Tensor};

use crate::config::{AttentionKind, ModelConfig};
use crate::data::tasks::{self, Example};
use crate::model::attention::{AttnMaps, Path};
use crate::model::Model;

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RowStats {
    pub answer: f64,
    pub noise: f64,
    pub entropy: f64,
    pub sparsity: f64,
}

/// Statistics of one attention row (`row[j]` = weight on position j, for the
/// causal positions only) against the positions of the answer span.
pub fn row_stats(row: &[f32], answer: &[usize]) -> RowStats {
    let mut s = RowStats::default();
    let (mut l1, mut l2) = (0.0f64, 0.0f64);
    for (j, &w) in row.iter().enumerate() {
        let w = w as f64;
        if answer.contains(&j) {
            s.answer += w;
        } else {
            s.noise += w.abs();
        }
        l1 += w.abs();
        l2 += w * w;
    }
    if l1 > 0.0 {
        s.entropy = -row.iter().map(|&w| (w as f64).abs() / l1).filter(|&p| p > 0.0).map(|p| p * p.ln()).sum::<f64>();
    }
    let n = row.len() as f64;
    s.sparsity = if n <= 1.0 || l2 == 0.0 { 1.0 } else { (n.sqrt() - l1 / l2.sqrt()) / (n.sqrt() - 1.0) };
    s
}

/// Mean statistics of one layer over a set of heads (a group, or all).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStats {
    pub layer: usize,
    /// Head group (GDA: the signal heads sharing noise head g; standard: the
    /// query heads sharing K/V head g); `None` for all heads of the layer.
    pub group: Option<usize>,
    pub heads: usize,
    pub lambda: Option<f64>,
    pub stats: RowStats,
    /// Answer mass of the signal and of the noise maps (gda only).
    pub signal_answer: Option<f64>,
    pub noise_answer: Option<f64>,
    /// Query rows averaged (examples × questions × heads).
    pub rows: usize,
}

/// Head groups of a model: (groups, heads per group).
fn head_groups(model: &Model) -> (usize, usize) {
    let m = &model.cfg;
    match m.attention {
        AttentionKind::Gda => (m.noise_heads, m.ratio()),
        AttentionKind::Standard => (m.kv_heads, m.heads / m.kv_heads),
    }
}

/// Bytes of the materialised maps of one example at context `t` (signal,
/// noise and effective maps of every layer, fp32).
pub fn map_bytes(cfg: &ModelConfig, t: usize) -> usize {
    4 * 3 * cfg.n_layers * cfg.query_heads() * t * t
}

/// The most a single example's maps may take: beyond it the analysis would
/// exhaust memory rather than run slowly.
pub const MAX_MAP_BYTES: usize = 8 << 30;

/// Analyses the effective attention maps of `model` at every question's
/// focus position of `examples` (all of one context length). Returns, per
/// layer, one row per head group followed by the row over all heads.
pub fn analyse(model: &Model, examples: &[Example], device: Device) -> Vec<GroupStats> {
    let cfg = &model.cfg;
    let (groups, per_group) = head_groups(model);
    let t = examples[0].labels.len();
    // Materialised maps of every layer are held at once: keep a batch near
    // 2^26 floats (signal, noise and effective maps included).
    let per_example = map_bytes(cfg, t) / 4;
    let batch = ((1usize << 26) / per_example.max(1)).clamp(1, 64);
    let differential = cfg.attention == AttentionKind::Gda;
    let mut sums = Sums::new(cfg.n_layers, groups, per_group, differential);
    tch::no_grad(|| {
        for chunk in examples.chunks(batch) {
            let (x, _) = tasks::batch(chunk, device);
            let (_, maps) = model.forward_path(&x, Path::Materialised);
            for (l, m) in maps.iter().enumerate() {
                sums.lambdas[l] = m.lambda;
                for (b, e) in chunk.iter().enumerate() {
                    sums.add(l, m, b, e, t);
                }
            }
            sums.rows += chunk.iter().map(|e| e.queries.len()).sum::<usize>();
        }
    });
    sums.means()
}

/// Sums over the query rows analysed so far, per layer and head.
struct Sums {
    groups: usize,
    per_group: usize,
    differential: bool,
    stats: Vec<Vec<RowStats>>,
    /// Answer mass of the signal and noise maps per head: (signal, noise).
    parts: Vec<Vec<(f64, f64)>>,
    lambdas: Vec<Option<f64>>,
    /// Query rows per head.
    rows: usize,
}

impl Sums {
    fn new(layers: usize, groups: usize, per_group: usize, differential: bool) -> Sums {
        let heads = groups * per_group;
        Sums {
            groups,
            per_group,
            differential,
            stats: vec![vec![RowStats::default(); heads]; layers],
            parts: vec![vec![(0.0f64, 0.0f64); heads]; layers],
            lambdas: vec![None; layers],
            rows: 0,
        }
    }

    /// Adds the rows of layer `l`'s maps `m` at the focus of each question
    /// of example `e`, row `b` of its batch (context `t`).
    fn add(&mut self, l: usize, m: &AttnMaps, b: usize, e: &Example, t: usize) {
        let focus = Tensor::from_slice(&e.queries.iter().map(|q| q.focus as i64).collect::<Vec<_>>());
        // (H, Q, T) flattened: the focus rows of every head.
        let rows_of = |map: &Tensor| -> Vec<f32> {
            let sel = map.get(b as i64).index_select(1, &focus.to_device(map.device()));
            Vec::try_from(sel.to_kind(Kind::Float).to_device(Device::Cpu).contiguous().reshape([-1])).expect("f32 map")
        };
        // Where head h's causal row for question qi lies in those.
        let row = |h: usize, qi: usize| {
            let start = (h * e.queries.len() + qi) * t;
            start..start + e.queries[qi].focus + 1
        };
        let mass = |r: &[f32], span: &[usize]| span.iter().filter(|&&j| j < r.len()).map(|&j| r[j] as f64).sum::<f64>();
        let eff = rows_of(&m.effective);
        let split = match (&m.noise, self.differential) {
            (Some(noise), true) => Some((rows_of(&m.signal), rows_of(noise))),
            _ => None,
        };
        for h in 0..self.groups * self.per_group {
            for (qi, q) in e.queries.iter().enumerate() {
                let st = row_stats(&eff[row(h, qi)], &q.answer_span);
                let acc = &mut self.stats[l][h];
                acc.answer += st.answer;
                acc.noise += st.noise;
                acc.entropy += st.entropy;
                acc.sparsity += st.sparsity;
                if let Some((signal, noise)) = &split {
                    self.parts[l][h].0 += mass(&signal[row(h, qi)], &q.answer_span);
                    // Signal head h subtracts noise head h / G.
                    self.parts[l][h].1 += mass(&noise[row(h / self.per_group, qi)], &q.answer_span);
                }
            }
        }
    }

    /// The means: per layer, one row per head group, then the row over all
    /// heads.
    fn means(&self) -> Vec<GroupStats> {
        let mut out = Vec::new();
        for l in 0..self.stats.len() {
            out.extend((0..self.groups).map(|g| self.group(l, Some(g))));
            out.push(self.group(l, None));
        }
        out
    }

    /// The means of layer `l` over head group `g` (None: all heads).
    fn group(&self, l: usize, g: Option<usize>) -> GroupStats {
        let hs = match g {
            Some(g) => g * self.per_group..(g + 1) * self.per_group,
            None => 0..self.groups * self.per_group,
        };
        let n = (hs.len() * self.rows).max(1) as f64;
        let stats = &self.stats[l][hs.clone()];
        let (s, z) = self.parts[l][hs.clone()].iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
        let (signal_answer, noise_answer) = if self.differential { (Some(s / n), Some(z / n)) } else { (None, None) };
        GroupStats {
            layer: l,
            group: g,
            heads: hs.len(),
            lambda: self.lambdas[l],
            stats: RowStats {
                answer: stats.iter().map(|s| s.answer).sum::<f64>() / n,
                noise: stats.iter().map(|s| s.noise).sum::<f64>() / n,
                entropy: stats.iter().map(|s| s.entropy).sum::<f64>() / n,
                sparsity: stats.iter().map(|s| s.sparsity).sum::<f64>() / n,
            },
            signal_answer,
            noise_answer,
            rows: self.rows * hs.len(),
        }
    }
}
