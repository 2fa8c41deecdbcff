//! The retrieval generators (MQAR, NIAH) and the attention metrics, checked
//! on hand-built inputs whose answers are known.

mod common;

use common::*;
use gda::config::check_task as check;
use gda::config::{Spec, TaskConfig, TaskKind};
use gda::data::tasks::{self, eval_set, example, Example, IGNORE, NEEDLE, QUERY};
use gda::eval::analysis::{analyse, row_stats};

fn cfg() -> TaskConfig {
    TaskConfig { pairs: 6, needles: 3, value_len: 2, ..TaskConfig::default() }
}

/// Token classes of the layout in src/tasks.rs for vocab 256: n = 84.
fn is_key(t: i64) -> bool {
    (4..88).contains(&t)
}
fn is_value(t: i64) -> bool {
    (88..172).contains(&t)
}
fn is_filler(t: i64) -> bool {
    (172..256).contains(&t)
}

#[test]
fn generators_are_deterministic_and_seeds_differ() {
    for kind in [TaskKind::Mqar, TaskKind::Niah] {
        let a = example(&cfg(), kind, 64, 11, None);
        assert_eq!(a, example(&cfg(), kind, 64, 11, None));
        assert_ne!(a.tokens, example(&cfg(), kind, 64, 12, None).tokens);
        assert_eq!(a.tokens.len(), 65);
        assert_eq!(a.labels.len(), 64);
        // Training batches are a function of (seed, step, row) only.
        let b = tasks::train_batch(&cfg(), kind, 64, 5, 3, 0..4);
        assert_eq!(b, tasks::train_batch(&cfg(), kind, 64, 5, 3, 0..4));
        assert_ne!(b, tasks::train_batch(&cfg(), kind, 64, 5, 4, 0..4));
        assert_ne!(b, tasks::train_batch(&cfg(), kind, 64, 6, 3, 0..4));
        assert_eq!(b[2..], tasks::train_batch(&cfg(), kind, 64, 5, 3, 2..4)[..]);
        // The evaluation stream does not depend on the run's seed.
        assert_eq!(eval_set(&cfg(), kind, 64, 3, None), eval_set(&cfg(), kind, 64, 3, None));
    }
}

/// Labels are the next token at exactly the questions' label positions and
/// IGNORE everywhere else.
fn assert_labels_masked(e: &Example) {
    let mut expected = vec![IGNORE; e.labels.len()];
    for q in &e.queries {
        for &p in &q.labels {
            expected[p] = e.tokens[p + 1];
        }
    }
    assert_eq!(e.labels, expected);
    let n_labels: usize = e.queries.iter().map(|q| q.labels.len()).sum();
    assert_eq!(e.labels.iter().filter(|&&l| l != IGNORE).count(), n_labels, "label positions overlap");
}

#[test]
fn mqar_pairs_queries_and_labels() {
    let mut repeats = 0;
    for seed in 0..200 {
        let mut asked = Vec::new();
        let e = example(&cfg(), TaskKind::Mqar, 64, seed, None);
        assert_labels_masked(&e);
        assert_eq!(e.queries.len(), 6);
        asked.extend(e.queries.iter().map(|q| e.tokens[q.focus]));
        let pairs: Vec<(i64, i64)> = (0..6).map(|i| (e.tokens[2 * i], e.tokens[2 * i + 1])).collect();
        let keys: std::collections::BTreeSet<i64> = pairs.iter().map(|p| p.0).collect();
        assert_eq!(keys.len(), 6, "keys of one example are distinct");
        assert!(pairs.iter().all(|&(k, v)| is_key(k) && is_value(v)));
        for q in &e.queries {
            let p = q.focus;
            assert_eq!(q.labels, vec![p]);
            assert!(p >= 12, "questions come after the pairs");
            let key = e.tokens[p];
            let i = pairs.iter().position(|pr| pr.0 == key).expect("a question asks a key of the prompt");
            assert_eq!(e.labels[p], pairs[i].1, "the label is that key's value");
            // The answer span: the pair, then every earlier question of it.
            let earlier: Vec<usize> = e
                .queries
                .iter()
                .filter(|o| o.focus < p && e.tokens[o.focus] == key)
                .flat_map(|o| [o.focus, o.focus + 1])
                .collect();
            assert_eq!(q.answer_span, [vec![2 * i, 2 * i + 1], earlier].concat());
            // No leakage: between the pairs and this question, keys and values
            // occur only as earlier questions and their answers.
            for j in 12..p {
                let t = e.tokens[j];
                if is_key(t) {
                    assert!(e.queries.iter().any(|o| o.focus == j && o.focus < p));
                }
                if is_value(t) {
                    assert!(e.queries.iter().any(|o| o.focus + 1 == j && o.focus < p));
                }
            }
        }
        // Everything outside pairs and questions is filler.
        let used: std::collections::BTreeSet<usize> =
            (0..12).chain(e.queries.iter().flat_map(|q| [q.focus, q.focus + 1])).collect();
        assert!((0..65).filter(|i| !used.contains(i)).all(|i| is_filler(e.tokens[i])));
        asked.sort();
        asked.dedup();
        repeats += usize::from(asked.len() < 6);
    }
    // Questions draw pairs with replacement, so elimination cannot answer
    // them: most examples ask some pair twice (1 − 6!/6⁶ ≈ 98%).
    assert!(repeats > 180, "{repeats} of 200 examples repeat a question");
}

#[test]
fn mqar_inputs_never_hold_their_own_answer() {
    // The input at a label position is never its own answer (keys and values
    // come from disjoint ranges).
    for seed in 0..200 {
        let e = example(&cfg(), TaskKind::Mqar, 64, seed, None);
        for q in &e.queries {
            assert_ne!(e.tokens[q.focus], e.labels[q.focus], "the input at a label position is not the answer");
        }
    }
}

#[test]
fn niah_needles_distractors_and_depth() {
    let c = cfg();
    for seed in 0..200 {
        let depth = [0.0, 0.5, 1.0][seed as usize % 3];
        let e = example(&c, TaskKind::Niah, 96, seed, Some(depth));
        assert_labels_masked(&e);
        assert_eq!(e.queries.len(), 1);
        let q = &e.queries[0];
        let hay = 97 - 4;
        assert_eq!(e.tokens[hay], QUERY);
        assert_eq!(q.focus, hay + 1);
        assert_eq!(q.labels, vec![hay + 1, hay + 2]);
        let key = e.tokens[hay + 1];
        let answer = &e.tokens[hay + 2..hay + 4];
        // Needles: markers in the haystack, each followed by key and value.
        let starts: Vec<usize> = (0..hay).filter(|&i| e.tokens[i] == NEEDLE).collect();
        assert_eq!(starts.len(), 3);
        let real: Vec<usize> = starts.iter().copied().filter(|&s| e.tokens[s + 1] == key).collect();
        assert_eq!(real.len(), 1, "exactly one needle holds the asked key");
        let s = real[0];
        assert_eq!(&e.tokens[s + 2..s + 4], answer, "the real needle holds the answer");
        assert_eq!(q.answer_span, (s..s + 4).collect::<Vec<_>>());
        assert_eq!(s, (depth * (hay - 4) as f64).round() as usize, "the needle sits at its depth");
        for &d in starts.iter().filter(|&&d| d != s) {
            assert!(is_key(e.tokens[d + 1]) && e.tokens[d + 1] != key);
            assert_ne!(&e.tokens[d + 2..d + 4], answer, "a distractor never carries the answer");
        }
        // Everything else in the haystack is filler: the answer appears in
        // the prompt only inside the real needle.
        let needle_cells: std::collections::BTreeSet<usize> = starts.iter().flat_map(|&d| d..d + 4).collect();
        assert!((0..hay).filter(|i| !needle_cells.contains(i)).all(|i| is_filler(e.tokens[i])));
    }
}

#[test]
fn niah_random_depths_cover_the_haystack() {
    let c = cfg();
    let starts: Vec<usize> = (0..300)
        .map(|seed| {
            let e = example(&c, TaskKind::Niah, 96, seed, None);
            e.queries[0].answer_span[0]
        })
        .collect();
    let (lo, hi) = (*starts.iter().min().unwrap(), *starts.iter().max().unwrap());
    assert!(lo < 10 && hi > 80, "depths drawn uniformly: {lo}..{hi}");
}

#[test]
fn tasks_that_cannot_fit_are_refused_with_the_key_and_the_limit() {
    let mut c = cfg();
    c.pairs = 20;
    let e = check(&c, TaskKind::Mqar, 64, 256).unwrap_err();
    assert_eq!(e.key, "task.pairs");
    assert!(e.msg.contains("at most 16 pairs"), "{}", e.msg);
    assert!(check(&c, TaskKind::Mqar, 80, 256).is_ok());
    let mut c = cfg();
    c.needles = 30;
    let e = check(&c, TaskKind::Niah, 64, 256).unwrap_err();
    assert_eq!(e.key, "task.needles");
    assert!(e.msg.contains("at most 8 needles"), "{}", e.msg);
    let mut c = cfg();
    c.vocab = 512;
    assert_eq!(check(&c, TaskKind::Mqar, 64, 256).unwrap_err().key, "task.vocab");
    let mut c = cfg();
    c.depths = vec![1.5];
    assert_eq!(check(&c, TaskKind::Niah, 64, 256).unwrap_err().key, "task.depths");
    // Through a spec: the file and key are named.
    let err = Spec::load(None, &["data.task=mqar".into(), "task.pairs=100".into()]).unwrap_err().to_string();
    assert!(err.contains("task.pairs") && err.contains("allowed"), "{err}");
}

#[test]
fn row_metrics_on_hand_built_rows() {
    // All weight on the answer: no noise, zero entropy, fully sparse.
    let s = row_stats(&[0.0, 1.0, 0.0, 0.0], &[1]);
    assert_eq!((s.answer, s.noise, s.entropy, s.sparsity), (1.0, 0.0, 0.0, 1.0));
    // Uniform: answer 1/n, noise the rest, entropy ln n, sparsity 0.
    let s = row_stats(&[0.25; 4], &[0]);
    assert!((s.answer - 0.25).abs() < 1e-12 && (s.noise - 0.75).abs() < 1e-12);
    assert!((s.entropy - 4f64.ln()).abs() < 1e-9);
    assert!(s.sparsity.abs() < 1e-9);
    // A differential row: negative weights count as noise by magnitude.
    let s = row_stats(&[-0.1, 0.6, 0.1], &[1]);
    assert!((s.answer - 0.6).abs() < 1e-7 && (s.noise - 0.2).abs() < 1e-7);
    let p = [0.125f64, 0.75, 0.125];
    let h: f64 = -p.iter().map(|x| x * x.ln()).sum::<f64>();
    assert!((s.entropy - h).abs() < 1e-6);
    // Hoyer on a known row: (√3 − ‖a‖₁/‖a‖₂)/(√3 − 1).
    let hoyer = (3f64.sqrt() - 0.8 / (0.38f64).sqrt()) / (3f64.sqrt() - 1.0);
    assert!((s.sparsity - hoyer).abs() < 1e-6);
}

#[test]
fn the_analysis_reads_the_maps_the_model_applies() {
    // Layer-level numbers are the means of row_stats over the effective maps
    // at the focus positions, recomputed here from the materialised maps.
    let _g = seeded(3);
    let spec = Spec::load(
        None,
        &[
            "model.d_model=32".into(),
            "model.n_layers=2".into(),
            "model.signal_heads=4".into(),
            "model.noise_heads=2".into(),
            "data.task=mqar".into(),
            "train.context=32".into(),
            "task.pairs=4".into(),
        ],
    )
    .unwrap();
    let vs = tch::nn::VarStore::new(CPU);
    let model = gda::model::Model::new(&spec.model, vs.root());
    randomize_model(&model, false);
    let examples = eval_set(&spec.task, TaskKind::Mqar, 32, 5, None);
    let stats = analyse(&model, &examples, CPU);
    assert_eq!(stats.len(), 2 * (2 + 1));
    let (x, _) = tasks::batch(&examples, CPU);
    let (_, maps) = tch::no_grad(|| model.forward_path(&x, gda::model::attention::Path::Materialised));
    for (l, m) in maps.iter().enumerate() {
        let mut sum = [0.0f64; 4];
        // Answer mass of the signal and noise maps, per group.
        let mut parts = [[0.0f64; 2]; 2];
        let mut n = 0.0;
        let row = |map: &tch::Tensor, b: usize, h: i64, focus: usize| -> Vec<f32> {
            Vec::try_from(map.get(b as i64).get(h).get(focus as i64).narrow(0, 0, focus as i64 + 1)).unwrap()
        };
        let mass = |r: &[f32], span: &[usize]| span.iter().map(|&j| r[j] as f64).sum::<f64>();
        for (b, e) in examples.iter().enumerate() {
            for q in &e.queries {
                for h in 0..4 {
                    let s = row_stats(&row(&m.effective, b, h, q.focus), &q.answer_span);
                    for (acc, v) in sum.iter_mut().zip([s.answer, s.noise, s.entropy, s.sparsity]) {
                        *acc += v;
                    }
                    // Signal heads 0,1 share noise head 0; 2,3 share noise head 1.
                    parts[h as usize / 2][0] += mass(&row(&m.signal, b, h, q.focus), &q.answer_span);
                    parts[h as usize / 2][1] +=
                        mass(&row(m.noise.as_ref().unwrap(), b, h / 2, q.focus), &q.answer_span);
                    n += 1.0;
                }
            }
        }
        for (g, part) in parts.iter().enumerate() {
            let group = stats.iter().find(|s| s.layer == l && s.group == Some(g)).unwrap();
            let (signal, noise) = (group.signal_answer.unwrap(), group.noise_answer.unwrap());
            assert!((signal - part[0] / (n / 2.0)).abs() < 1e-9, "layer {l} group {g}: signal {signal}");
            assert!((noise - part[1] / (n / 2.0)).abs() < 1e-9, "layer {l} group {g}: noise {noise}");
            // What the model applies on the answer span is signal − λ·noise.
            let lambda = group.lambda.unwrap();
            assert!((group.stats.answer - (signal - lambda * noise)).abs() < 1e-5, "layer {l} group {g}");
        }
        let all = stats.iter().find(|s| s.layer == l && s.group.is_none()).unwrap();
        let got = [all.stats.answer, all.stats.noise, all.stats.entropy, all.stats.sparsity];
        for (g, s) in got.iter().zip(sum) {
            assert!((g - s / n).abs() < 1e-9, "layer {l}: {g} vs {}", s / n);
        }
        assert_eq!(all.lambda, m.lambda);
        // Effective rows of gda sum to 1 − λ: answer mass minus negative noise.
        assert!(all.stats.answer.abs() <= 1.0 + all.stats.noise);
    }
}
