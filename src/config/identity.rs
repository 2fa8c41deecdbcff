//! What a run computes, as a hash and as a diff: runs with equal hashes are
//! the same experiment, and a resume is refused on a difference outside
//! [`RESUMABLE_KEYS`](super::RESUMABLE_KEYS).

use sha2::{Digest, Sha256};

use super::{Spec, SweepConfig, TrainConfig};

impl Spec {
    /// TOML with every default filled in (the form saved in a run directory).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a spec always serialises")
    }

    /// The keys whose values differ from `new`'s, as `key: old → new`, over
    /// what [`Spec::hash`] covers: empty exactly when the hashes are equal.
    pub fn diff(&self, new: &Spec) -> Vec<String> {
        let mut out = Vec::new();
        diff_tables("", &self.identity_table(), &new.identity_table(), &mut out);
        out
    }

    /// What [`Spec::diff`] lists except the [`RESUMABLE_KEYS`]: the changes a
    /// resume refuses, because they would change steps already computed.
    pub fn fixed_diff(&self, new: &Spec) -> Vec<String> {
        let strip = |s: &Spec| {
            let mut s = s.clone();
            let d = TrainConfig::default();
            s.train.steps = d.steps;
            s.train.eval_every = d.eval_every;
            s.train.log_every = d.log_every;
            s.train.checkpoint_every = d.checkpoint_every;
            s
        };
        strip(self).diff(&strip(new))
    }

    /// The spec as a table without what only changes speed (device,
    /// threads, the fused kernels, overlap_allreduce) or disk use
    /// (keep_checkpoints), or belongs to sweeps, not to a single run.
    fn identity_table(&self) -> toml::Table {
        let mut s = self.clone();
        s.train.device = String::new();
        s.train.threads = 0;
        s.train.overlap_allreduce = TrainConfig::default().overlap_allreduce;
        s.train.keep_checkpoints = TrainConfig::default().keep_checkpoints;
        s.model.fused = true;
        s.sweep = SweepConfig::default();
        toml::Table::try_from(&s).expect("a spec always serialises")
    }

    /// Identifies what a run computes; runs with equal hashes are the same experiment.
    /// Device and thread count only change speed, and the sweep section does
    /// not change a single run, so they are left out. Only keys whose values
    /// differ from the built-in defaults are hashed: a key added to the schema
    /// later (with a default that keeps the old behaviour) leaves the hashes
    /// of existing runs, and so their resumption, unchanged.
    pub fn hash(&self) -> String {
        let mut table = self.identity_table();
        let defaults = toml::Table::try_from(Spec::default()).expect("a spec always serialises");
        drop_defaults(&mut table, &defaults);
        let digest = Sha256::digest(toml::to_string(&table).expect("a table serialises").as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// Appends `key: old → new` for every leaf that differs between `a` and `b`.
fn diff_tables(prefix: &str, a: &toml::Table, b: &toml::Table, out: &mut Vec<String>) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match (a.get(k), b.get(k)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => diff_tables(&key, x, y, out),
            (x, y) if x != y => {
                let show = |v: Option<&toml::Value>| v.map(|v| v.to_string()).unwrap_or_else(|| "(none)".into());
                out.push(format!("{key}: {} → {}", show(x), show(y)));
            }
            _ => {}
        }
    }
}

/// Removes from `table` every value equal to the one in `defaults`, and
/// tables left empty.
fn drop_defaults(table: &mut toml::Table, defaults: &toml::Table) {
    table.retain(|k, v| match (v, defaults.get(k)) {
        (toml::Value::Table(t), Some(toml::Value::Table(d))) => {
            drop_defaults(t, d);
            !t.is_empty()
        }
        (v, Some(d)) => v != d,
        (_, None) => true,
    });
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::RESUMABLE_KEYS;

    /// `fixed_diff` leaves out exactly the keys RESUMABLE_KEYS names.
    #[test]
    fn a_resume_may_change_the_resumable_keys_and_nothing_else() {
        let base = Spec::load(Some(Path::new("experiments/smoke.toml")), &[]).unwrap();
        for key in RESUMABLE_KEYS {
            let changed = base.with_overrides(&[format!("{key}=977")]).unwrap();
            assert_eq!(base.diff(&changed).len(), 1, "{key}");
            assert!(base.fixed_diff(&changed).is_empty(), "{key}");
        }
        for key in ["train.warmup_steps", "train.lr", "train.context", "seed", "model.d_model"] {
            let changed = base.with_overrides(&[format!("{key}=64")]).unwrap();
            assert_eq!(base.fixed_diff(&changed), base.diff(&changed), "{key}");
            assert_eq!(base.fixed_diff(&changed).len(), 1, "{key}");
        }
    }

    /// Manifests, checkpoint states and experiment.json record a spec's
    /// hash, so runs of one spec match across gda versions (experiment.json
    /// is matched by it alone when base-spec.toml is missing): a toml or
    /// sha2 upgrade must not change it. Values computed with toml 0.8 and
    /// sha2 0.10.
    #[test]
    fn the_hash_of_a_spec_never_changes() {
        let hash = |path: Option<&str>, overrides: &[&str]| {
            let overrides: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
            Spec::load(path.map(Path::new), &overrides).unwrap().hash()
        };
        assert_eq!(hash(None, &[]), "e370903d6d1432c9");
        assert_eq!(hash(Some("experiments/smoke.toml"), &[]), "e4ccb04368b452d7");
        assert_eq!(hash(Some("experiments/mqar.toml"), &[]), "6eb877c7edb865ba");
        let odd = [
            "train.lr=1.5e-7",
            "train.min_lr=1e-8",
            "train.steps=30",
            "model.lambda_init=[0.2,0.35]",
            r#"name="a,b \"c\"""#,
        ];
        assert_eq!(hash(Some("experiments/smoke.toml"), &odd), "25152f25c2405179");
        assert_eq!(
            hash(Some("experiments/mqar.toml"), &[r#"data.tokenizer="gpt2""#, "train.weight_decay=1e22"]),
            "f510ec40b5c35bec"
        );
    }
}
