//! Each constraint on a spec's keys, with the message that names the key
//! and what is allowed.

use super::{key_err, KeyError, MAX_GRAD_ACCUM, MAX_HEADS, MAX_LAYERS};
use super::{DataConfig, ModelConfig, Spec, TaskConfig, TaskKind, TrainConfig};

/// Spec keys a scaling grid may not vary, by prefix, with the reason.
/// The data keys would change the train/validation split (cells could not
/// be compared on the same held-out tokens); the head layout is what the
/// ratio, the budget policy and the ablation variants set; the rest are
/// axes of their own or change no result.
pub const GRID_REFUSED: &[(&str, &str)] = &[
    ("data.", "it changes the data or its train/validation split, so cells would not share their held-out tokens"),
    ("model.attention", "it is set by the sweep (gda for the ratios, standard for the baseline)"),
    ("model.signal_heads", "it is reserved to the ratio (the budget policy sets H_s and H_n from sweep.ratios)"),
    ("model.noise_heads", "it is reserved to the ratio (the budget policy sets H_s and H_n from sweep.ratios)"),
    ("model.heads", "it is set by the sweep (the baseline's heads are matched on parameters)"),
    ("model.kv_heads", "it is reserved to the ratio and the ablation variants"),
    ("model.noise_kv_heads", "it is reserved to the ratio and the ablation variants"),
    ("model.noise_scope", "it is reserved to the ablation variants"),
    ("sweep.", "the sweep section is the experiment itself (use --ratios, --seeds)"),
    ("seed", "seeds are their own axis (--seeds, --num-seeds)"),
    ("name", "it names the points, which the grid does itself"),
    ("output.", "it is where results go, not what a point computes"),
    ("train.device", "it changes speed, not results (use --devices)"),
    ("train.threads", "it changes speed, not results"),
];

/// A grid axis is a known leaf key gridding allows, with at least one
/// value, none twice; `leaves` is a resolved spec as a table. Whether each
/// value passes the key's own validation is checked when each cell is
/// resolved ([`Spec::cell`]).
fn check_grid_axis(leaves: &toml::Table, key: &str, values: &[toml::Value]) -> Result<(), KeyError> {
    let at = format!("sweep.grid.{key}");
    if let Some((_, why)) = GRID_REFUSED.iter().find(|(p, _)| key == *p || (p.ends_with('.') && key.starts_with(p))) {
        return Err(key_err(&at, format!("cannot be a grid axis: {why}")));
    }
    let mut cur = leaves;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        match cur.get(*part) {
            Some(toml::Value::Table(t)) if i + 1 < parts.len() => cur = t,
            Some(v) if i + 1 == parts.len() && !v.is_table() => {}
            _ => {
                return Err(key_err(
                    &at,
                    "is not a spec key; allowed: a key of docs/spec.md such as model.d_model or train.lr",
                ))
            }
        }
    }
    if values.is_empty() {
        return Err(key_err(&at, "has no values; allowed: a list of at least one value"));
    }
    if let Some(v) = values.iter().enumerate().find(|(i, v)| values[..*i].contains(v)).map(|(_, v)| v) {
        return Err(key_err(&at, format!("value {v} is listed twice; allowed: each value once")));
    }
    Ok(())
}

/// Each of `part` heads serves the same number of `whole` heads, or the
/// error names the nearest counts that would.
pub(super) fn require_divisor(
    key: &str,
    part: usize,
    part_name: &str,
    whole: usize,
    whole_name: &str,
) -> Result<(), KeyError> {
    if whole.is_multiple_of(part) {
        return Ok(());
    }
    Err(key_err(key, format!(
        "{whole} {whole_name} cannot be shared evenly by {part} {part_name} (each of them must serve the same number); allowed: a divisor of {whole}, nearest: {}",
        join(&nearest_divisors(whole, part))
    )))
}

/// `v` is finite and `ok`; the error names the key and what is allowed.
fn float_in(key: &str, v: f64, ok: impl Fn(f64) -> bool, allowed: &str) -> Result<(), KeyError> {
    if v.is_finite() && ok(v) {
        return Ok(());
    }
    Err(key_err(key, format!("{v} is not allowed; allowed: {allowed}")))
}

fn first_duplicate<T: PartialEq + Copy>(v: &[T]) -> Option<T> {
    v.iter().enumerate().find(|(i, x)| v[..*i].contains(x)).map(|(_, x)| *x)
}

fn join(v: &[usize]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

/// Tokens 0..4 of a task vocabulary are markers (the layout is in
/// src/data/tasks.rs); keys, values and filler share the rest.
pub const TASK_MARKERS: usize = 4;

/// Distinct keys (and values) a vocabulary of `vocab` tokens offers.
pub fn task_symbols(vocab: usize) -> usize {
    vocab.saturating_sub(TASK_MARKERS) / 3
}

/// Checks that `cfg`'s task fits windows of `context` tokens; the error names
/// the key to change and the largest value that would fit.
pub fn check_task(cfg: &TaskConfig, kind: TaskKind, context: usize, model_vocab: usize) -> Result<(), KeyError> {
    let err = |key: &str, msg: String| Err(KeyError { key: key.into(), msg });
    if kind == TaskKind::Text {
        return Ok(());
    }
    if cfg.vocab > model_vocab {
        return err(
            "task.vocab",
            format!("{} is larger than model.vocab_size {model_vocab}; allowed: at most {model_vocab}", cfg.vocab),
        );
    }
    if cfg.vocab < 16 {
        return err(
            "task.vocab",
            format!("{} leaves too few key/value/filler tokens; allowed: at least 16", cfg.vocab),
        );
    }
    let n = task_symbols(cfg.vocab);
    let window = context + 1;
    match kind {
        TaskKind::Text => Ok(()),
        TaskKind::Mqar => {
            keys_in_range("task.pairs", cfg.pairs, n, cfg.vocab)?;
            let q = cfg.mqar_queries();
            // Saturating: a count near usize::MAX must be refused, not wrap to a fit.
            let need = cfg.pairs.saturating_mul(2).saturating_add(q.saturating_mul(2));
            if need > window {
                let most = window / 4;
                return err("task.pairs", format!(
                    "{} pairs and {q} queries need {need} positions, a window of context {context} has {window}; allowed: at most {most} pairs (with as many questions) at this context, fewer task.queries, or a longer context",
                    cfg.pairs
                ));
            }
            Ok(())
        }
        TaskKind::Niah => {
            keys_in_range("task.needles", cfg.needles, n, cfg.vocab)?;
            if cfg.value_len == 0 {
                return err("task.value_len", "must be a positive integer".into());
            }
            // Needles go to random places, so each may leave up to span − 1
            // unusable cells beside it: 2·span − 1 per needle always fits.
            if cfg.value_len >= window {
                return err(
                    "task.value_len",
                    format!(
                        "{} does not fit a window of context {context}; allowed: less than {window}",
                        cfg.value_len
                    ),
                );
            }
            let span = cfg.value_len + 2;
            let need = span.saturating_add(cfg.needles.saturating_mul(2 * span - 1));
            if need > window {
                let most = window.saturating_sub(span) / (2 * span - 1);
                return err("task.needles", format!(
                    "{} needles of {span} tokens and the question need {need} positions (2·{span} − 1 per needle, so random placements always fit), a window of context {context} has {window}; allowed: at most {most} needles at this context, or a longer context",
                    cfg.needles
                ));
            }
            if let Some(d) = cfg.depths.iter().find(|d| !(0.0..=1.0).contains(*d)) {
                return err(
                    "task.depths",
                    format!("{d} is out of range; allowed: fractions in [0, 1], or [] for a uniform random depth"),
                );
            }
            Ok(())
        }
    }
}

/// `n` retrieval examples of `context` tokens fit in half the memory
/// available now (tokens and labels are i64, so 16 bytes a position), so a
/// mistyped count is refused with the estimate instead of growing until the
/// kernel kills the process.
pub fn check_eval_memory(key: &str, n: usize, context: usize) -> Result<(), KeyError> {
    let bytes = (n as u128) * (16 * (context as u128 + 1) + 128);
    let Some((avail, source)) = crate::util::host::available_memory() else { return Ok(()) };
    if bytes > u128::from(avail / 2) {
        let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
        return Err(key_err(key, format!(
            "{n} examples at context {context} need about {:.1} GiB, more than half the {:.1} GiB available ({source}); allowed: at most {} at this context",
            gib(bytes),
            gib(u128::from(avail)),
            u128::from(avail / 2) / (16 * (context as u128 + 1) + 128)
        )));
    }
    Ok(())
}

/// 1 ≤ `count` ≤ `n`, the distinct keys a task vocabulary of `vocab` offers.
fn keys_in_range(key: &str, count: usize, n: usize, vocab: usize) -> Result<(), KeyError> {
    if (1..=n).contains(&count) {
        return Ok(());
    }
    Err(key_err(key, format!("{count} is out of range; allowed: 1 to {n} (distinct keys in a vocabulary of {vocab})")))
}

/// Divisors of `n` closest to `near` (one below and one above when they exist).
pub fn nearest_divisors(n: usize, near: usize) -> Vec<usize> {
    let divs: Vec<usize> = (1..=n).filter(|d| n.is_multiple_of(*d)).collect();
    let below = divs.iter().copied().filter(|&d| d < near).max();
    let above = divs.iter().copied().filter(|&d| d > near).min();
    below.into_iter().chain(above).collect()
}

/// The sizes a model is built from: positive, and within what can be
/// stored. One λ_init per layer is stored in the spec, so a layer count
/// beyond any real model must not allocate gigabytes before a memory check
/// can refuse it; head counts are capped before the divisor search.
pub(super) fn model_sizes(m: &ModelConfig) -> Result<(), KeyError> {
    for (key, v) in [("model.d_model", m.d_model), ("model.n_layers", m.n_layers), ("model.head_dim", m.head_dim)] {
        if v == 0 {
            return Err(key_err(key, "must be a positive integer"));
        }
    }
    if m.n_layers > MAX_LAYERS {
        return Err(key_err("model.n_layers", format!("{} is not allowed; allowed: 1 to {MAX_LAYERS}", m.n_layers)));
    }
    if !m.head_dim.is_multiple_of(2) {
        return Err(key_err("model.head_dim", format!("{} is odd; RoPE needs an even head_dim", m.head_dim)));
    }
    for (key, v) in [
        ("model.signal_heads", m.signal_heads),
        ("model.noise_heads", m.noise_heads),
        ("model.heads", m.heads),
        ("model.kv_heads", m.kv_heads),
        ("model.noise_kv_heads", m.noise_kv_heads),
    ] {
        if v > MAX_HEADS {
            return Err(key_err(key, format!("{v} is not allowed; allowed: at most {MAX_HEADS}")));
        }
    }
    Ok(())
}

/// Every float must be a finite number in its documented range
/// (docs/spec.md): inf and NaN would only surface as a diverged or silently
/// dead run.
pub(super) fn model_floats(m: &ModelConfig) -> Result<(), KeyError> {
    float_in("model.norm_eps", m.norm_eps, |v| v > 0.0 && v < 1.0, "0 < norm_eps < 1")?;
    float_in("model.rope_theta", m.rope_theta, |v| v > 0.0, "a finite number > 0")?;
    float_in("model.init_std", m.init_std, |v| v > 0.0 && v <= 1.0, "0 < init_std <= 1")?;
    for (l, &v) in m.lambda_init.iter().enumerate() {
        float_in(&format!("model.lambda_init[{l}]"), v, |v| (0.0..1.0).contains(&v), "0 <= lambda_init < 1")?;
    }
    Ok(())
}

pub(super) fn data(d: &DataConfig) -> Result<(), KeyError> {
    float_in("data.val_fraction", d.val_fraction, |v| v > 0.0 && v < 1.0, "0 < val_fraction < 1")?;
    if d.corpus.is_empty() {
        return Err(key_err("data.corpus", "is empty; allowed: \"shakespeare\" or a path to a text file or directory"));
    }
    Ok(())
}

pub(super) fn train(t: &TrainConfig) -> Result<(), KeyError> {
    for (key, v) in [
        ("train.context", t.context),
        ("train.batch_size", t.batch_size),
        ("train.grad_accum", t.grad_accum),
        ("train.steps", t.steps),
        ("train.eval_every", t.eval_every),
        ("train.eval_tokens", t.eval_tokens),
        ("train.log_every", t.log_every),
        ("train.keep_checkpoints", t.keep_checkpoints),
    ] {
        if v == 0 {
            return Err(key_err(key, "must be a positive integer"));
        }
    }
    if t.grad_accum > MAX_GRAD_ACCUM {
        return Err(key_err(
            "train.grad_accum",
            format!("{} is not allowed; allowed: 1 to {MAX_GRAD_ACCUM}", t.grad_accum),
        ));
    }
    float_in("train.lr", t.lr, |v| v > 0.0, "a finite number > 0")?;
    float_in("train.min_lr", t.min_lr, |v| (0.0..=t.lr).contains(&v), &format!("0 <= min_lr <= lr = {}", t.lr))?;
    for (key, v) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
        float_in(key, v, |v| (0.0..1.0).contains(&v), "0 <= beta < 1")?;
    }
    float_in("train.adam_eps", t.adam_eps, |v| (0.0..1.0).contains(&v), "0 <= adam_eps < 1")?;
    for (key, v) in [("train.weight_decay", t.weight_decay), ("train.grad_clip", t.grad_clip)] {
        float_in(key, v, |v| v >= 0.0, "a finite number >= 0")?;
    }
    Ok(())
}

/// The sweep's ratios and seeds, and every grid axis against the resolved
/// spec's keys.
pub(super) fn sweep(spec: &Spec) -> Result<(), KeyError> {
    let sw = &spec.sweep;
    if sw.ratios.is_empty() || sw.ratios.contains(&0) {
        return Err(key_err(
            "sweep.ratios",
            format!("{:?} is not allowed; allowed: a non-empty list of positive integers such as [1, 2, 4]", sw.ratios),
        ));
    }
    if let Some(r) = first_duplicate(&sw.ratios) {
        return Err(key_err("sweep.ratios", format!("ratio {r} is listed twice; allowed: each ratio once")));
    }
    if let Some(s) = first_duplicate(&sw.seeds) {
        return Err(key_err("sweep.seeds", format!("seed {s} is listed twice; allowed: each seed once")));
    }
    if !sw.grid.is_empty() {
        let leaves = toml::Table::try_from(spec).expect("a spec always serialises");
        for (key, values) in &sw.grid {
            check_grid_axis(&leaves, key, values)?;
        }
    }
    Ok(())
}

/// A retrieval task fits the window and its evaluation set fits in memory.
pub(super) fn task(spec: &Spec) -> Result<(), KeyError> {
    let context = spec.train.context;
    check_task(&spec.task, spec.data.task, context, spec.model.vocab_size)?;
    if spec.data.task != TaskKind::Text {
        if spec.task.eval_examples == 0 {
            return Err(key_err("task.eval_examples", "must be a positive integer"));
        }
        check_eval_memory("task.eval_examples", spec.task.eval_examples, context)?;
    }
    Ok(())
}

/// The name becomes a directory: one plain path component.
pub(super) fn name(name: &str) -> Result<(), KeyError> {
    if name.is_empty() || name.contains(['/', '\\']) || name.contains(char::is_control) || name.starts_with('.') {
        return Err(key_err(
            "name",
            format!("{name:?} cannot name a directory; allowed: a plain name such as \"default\""),
        ));
    }
    Ok(())
}
