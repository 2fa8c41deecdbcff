//! The points of an experiment's grid, from its base spec: the heads each
//! ratio gets under the budget policy, the ablation twins, the
//! parameter-matched baseline, and point names that depend only on what a
//! point is.

use super::{cell_label, cell_suffix, policy_name, Cell, Kind, Point, Variant};
use crate::config::{AttentionKind, BudgetPolicy, ModelConfig, NoiseScope, Spec};
use crate::error::GdaError;
use crate::model::param_count;

/// (H_s, H_n) for ratio `g` under `policy`, or the nearest valid allocations.
pub fn allocate(base: &ModelConfig, policy: BudgetPolicy, g: usize) -> Result<(usize, usize), Vec<(usize, usize)>> {
    let candidates: Vec<(usize, usize)> = match policy {
        BudgetPolicy::Signal => {
            let hs = base.signal_heads;
            (1..=hs).filter(|n| hs.is_multiple_of(*n)).map(|n| (hs, n)).collect()
        }
        BudgetPolicy::Total => {
            let total = base.signal_heads + base.noise_heads;
            (1..total).filter(|n| total.is_multiple_of(*n)).map(|n| (total - n, n)).collect()
        }
    };
    if let Some(&exact) = candidates.iter().find(|(s, n)| s / n == g && s % n == 0) {
        return Ok(exact);
    }
    let ratio = |&(s, n): &(usize, usize)| s as f64 / n as f64;
    let below = candidates.iter().filter(|c| ratio(c) < g as f64).max_by(|a, b| ratio(a).total_cmp(&ratio(b))).copied();
    let above = candidates.iter().filter(|c| ratio(c) > g as f64).min_by(|a, b| ratio(a).total_cmp(&ratio(b))).copied();
    Err(below.into_iter().chain(above).collect())
}

/// The allocation among `near` whose ratio is closest to `g` (`--nearest`).
fn nearest(near: &[(usize, usize)], g: usize) -> (usize, usize) {
    *near
        .iter()
        .min_by(|a, b| {
            let d = |&(s, n): &(usize, usize)| (s as f64 / n as f64 - g as f64).abs();
            d(a).total_cmp(&d(b))
        })
        .expect("non-empty")
}

fn describe_alloc((s, n): (usize, usize)) -> String {
    let r = s as f64 / n as f64;
    let r = if r.fract() == 0.0 { format!("{r}") } else { format!("{r:.2}") };
    format!("{r}:1 ({s} signal + {n} noise heads)")
}

/// Heads of a parameter-matched plain-Transformer baseline: head_dim 2d, the
/// head count whose parameter total is closest to `target`.
fn baseline_model(base: &ModelConfig, target: usize) -> ModelConfig {
    let mut best: Option<(usize, ModelConfig)> = None;
    for heads in 1..=4 * base.signal_heads.max(8) {
        let mut m = base.clone();
        m.attention = AttentionKind::Standard;
        m.head_dim = 2 * base.head_dim;
        m.heads = heads;
        m.kv_heads = heads;
        let gap = param_count(&m).abs_diff(target);
        if best.as_ref().is_none_or(|(g, _)| gap < *g) {
            best = Some((gap, m));
        }
    }
    best.expect("at least one head count").1
}

/// The grid of an experiment, in training order (cell by cell, so whole
/// cells finish early); every point's spec resolved. Point names depend
/// only on the ratio, variant, seed and cell, never on a position, so a
/// grid that gains a value keeps the names (and the runs) of its points.
pub fn grid(base: &Spec, kind: Kind) -> Result<Vec<Point>, GdaError> {
    let mut points = Vec::new();
    for cell in base.grid_cells() {
        let cell_base = base.cell(&cell)?;
        let text: Cell = cell.iter().map(|(k, v)| (k.clone(), crate::config::grid_value_text(v))).collect();
        points.extend(cell_points(&cell_base, kind, &text)?);
    }
    let mut names: Vec<&str> = points.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(base.error(
            "sweep.grid",
            format!(
                "two grid cells give the point name {}; allowed: values that differ in letters, digits, `.` or `_`",
                w[0]
            ),
        ));
    }
    Ok(points)
}

/// One grid cell on its way to points: the cell's spec and what point names
/// and messages say of the cell.
struct CellPoints<'a> {
    base: &'a Spec,
    cell: &'a Cell,
    /// ` in the grid cell d_model=512` in messages (empty outside a grid).
    at: String,
    /// `-d512` at the end of point names (empty outside a grid).
    suffix: String,
    seeds: Vec<u64>,
}

/// The points of one grid cell (the whole experiment without a grid):
/// ratios × variants × seeds, then the baseline's seeds; the budget policy
/// applies to the cell's own heads.
fn cell_points(base: &Spec, kind: Kind, cell: &Cell) -> Result<Vec<Point>, GdaError> {
    let sw = &base.sweep;
    let c = CellPoints {
        base,
        cell,
        at: if cell.is_empty() { String::new() } else { format!(" in the grid cell {}", cell_label(cell)) },
        suffix: cell_suffix(cell),
        seeds: if sw.seeds.is_empty() { vec![base.seed] } else { sw.seeds.clone() },
    };
    // Every ratio is checked before any point's spec is resolved.
    let allocations = sw.ratios.iter().map(|&g| Ok((g, c.allocation(g)?))).collect::<Result<Vec<_>, GdaError>>()?;
    let mut points = Vec::new();
    for &(g, alloc) in &allocations {
        for (variant, model) in c.variants(kind, alloc) {
            for &seed in &c.seeds {
                let label = if variant == Variant::Gda { String::new() } else { format!("-{}", variant.label()) };
                points.push(c.point(format!("g{g}{label}-s{seed}"), variant, Some(g), model.clone(), seed)?);
            }
        }
    }
    if sw.baseline {
        let first = points.first().map(|p| param_count(&p.spec.model)).unwrap_or_else(|| param_count(&base.model));
        let model = baseline_model(&points[0].spec.model, first);
        for &seed in &c.seeds {
            points.push(c.point(format!("baseline-s{seed}"), Variant::Baseline, None, model.clone(), seed)?);
        }
    }
    Ok(points)
}

impl CellPoints<'_> {
    /// The heads of ratio `g`: exact, or with `--nearest` the closest valid
    /// allocation; otherwise an error that names the valid ones nearby.
    fn allocation(&self, g: usize) -> Result<(usize, usize), GdaError> {
        let (base, sw) = (self.base, &self.base.sweep);
        let near = match allocate(&base.model, sw.policy, g) {
            Ok(a) => return Ok(a),
            Err(near) if sw.nearest && !near.is_empty() => return Ok(nearest(&near, g)),
            Err(near) => near,
        };
        let fixed = match sw.policy {
            BudgetPolicy::Signal => format!("signal_heads = {} fixed", base.model.signal_heads),
            BudgetPolicy::Total => {
                format!("signal_heads + noise_heads = {} fixed", base.model.signal_heads + base.model.noise_heads)
            }
        };
        let near: Vec<String> = near.into_iter().map(describe_alloc).collect();
        Err(base.error(
            "sweep.ratios",
            format!(
                "ratio {g}:1 cannot be met exactly under the `{}` policy ({fixed}){}; nearest valid allocations: {}; pass --nearest to train those, or change the ratios or the heads",
                policy_name(sw.policy),
                self.at,
                near.join(", ")
            ),
        ))
    }

    /// The cell's model with GDA heads `(hs, hn)`, noise shared per group.
    fn gda_model(&self, (hs, hn): (usize, usize)) -> ModelConfig {
        let mut m = self.base.model.clone();
        m.attention = AttentionKind::Gda;
        m.signal_heads = hs;
        m.noise_heads = hn;
        m.kv_heads = 0;
        m.noise_kv_heads = 0;
        m.noise_scope = NoiseScope::Group;
        m
    }

    /// The models trained at one allocation: shared GDA, and in an
    /// ablation the twins it asks for.
    fn variants(&self, kind: Kind, alloc: (usize, usize)) -> Vec<(Variant, ModelConfig)> {
        let mut variants = vec![(Variant::Gda, self.gda_model(alloc))];
        if let Kind::Ablate { no_share, equal_params } = kind {
            if no_share {
                let mut m = self.gda_model(alloc);
                m.noise_heads = alloc.0;
                m.kv_heads = alloc.1;
                m.noise_kv_heads = alloc.0;
                variants.push((Variant::NoShare, m));
            }
            if equal_params {
                let mut m = self.gda_model(alloc);
                m.noise_scope = NoiseScope::One;
                variants.push((Variant::EqualParams, m));
            }
        }
        variants
    }

    /// The point `<stem><cell suffix>`: the cell's spec with `model` and
    /// `seed`, resolved as a single run.
    fn point(
        &self,
        stem: String,
        variant: Variant,
        requested: Option<usize>,
        model: ModelConfig,
        seed: u64,
    ) -> Result<Point, GdaError> {
        let name = stem + &self.suffix;
        let mut s = self.base.clone();
        s.model = model;
        s.name = name.clone();
        s.seed = seed;
        s.sweep = Default::default();
        s.source = None;
        s.resolve().map_err(|e| self.base.error(&e.key, format!("point {name}{}: {}", self.at, e.msg)))?;
        Ok(Point { name, variant, requested, seed, spec: s, grid: self.cell.clone() })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn names(overrides: &[&str], grid: &[(&str, &str)]) -> Vec<String> {
        let overrides: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
        let mut spec = Spec::load(Some(Path::new("experiments/smoke.toml")), &overrides).unwrap();
        for (k, v) in grid {
            spec.sweep.grid.insert(k.to_string(), crate::config::parse_grid_arg(&format!("{k}={v}")).unwrap().1);
        }
        grid_points(&spec).into_iter().map(|p| p.name).collect()
    }

    fn grid_points(spec: &Spec) -> Vec<Point> {
        grid(spec, Kind::Sweep).unwrap()
    }

    /// Sweeps without a grid keep the names they always had; a grid adds
    /// its cell in short form, and a value added to an axis leaves every
    /// other point's name as it was.
    #[test]
    fn point_names_are_stable_and_carry_the_cell_in_short_form() {
        assert_eq!(names(&["sweep.seeds=[1]", "sweep.baseline=true"], &[]), ["g1-s1", "g2-s1", "g4-s1", "baseline-s1"]);
        let two = names(&["sweep.ratios=[4]"], &[("model.d_model", "512,32"), ("train.lr", "1e-3")]);
        assert_eq!(two, ["g4-s1-d512-lr0.001", "g4-s1-d32-lr0.001"]);
        let three = names(&["sweep.ratios=[4]"], &[("model.d_model", "512,32,64"), ("train.lr", "1e-3")]);
        assert_eq!(three[..2], two[..]);
        // Two keys with one last segment: each goes by its whole name.
        let both = names(&["sweep.ratios=[2]"], &[("model.init_std", "0.02"), ("train.init", "a b.safetensors")]);
        assert_eq!(both, ["g2-s1-model_init_std0.02-train_inita_b.safetensors"]);
    }

    /// A cell's derived defaults follow its gridded key, and its label
    /// names the keys by their last segment.
    #[test]
    fn a_cell_resolves_from_the_spec_as_read() {
        let mut spec = Spec::load(Some(Path::new("experiments/smoke.toml")), &[]).unwrap();
        spec.sweep.grid.insert("model.n_layers".into(), vec![toml::Value::Integer(3)]);
        let p = &grid_points(&spec)[0];
        assert_eq!(p.spec.model.lambda_init.len(), 3);
        assert_eq!(p.group(), "1:1 shared, n_layers=3");
        assert_eq!(p.spec.sweep, crate::config::SweepConfig::default(), "a point's spec is a single run's");
        // The built-in default spec (nothing read, nothing overridden) too.
        let mut spec = Spec::load(None, &["sweep.ratios=[3]".into()]).unwrap();
        spec.sweep.grid.insert("model.d_model".into(), vec![toml::Value::Integer(64)]);
        let p = &grid_points(&spec)[0];
        assert_eq!((p.spec.model.d_model, p.spec.model.mlp_hidden), (64, 192));
    }
}
