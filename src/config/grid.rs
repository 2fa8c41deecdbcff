//! A grid's axes from `--grid` arguments, and its cells as specs.

use super::overrides::parse_grid_arg;
use super::Spec;
use crate::error::GdaError;

impl Spec {
    /// Sets each `--grid KEY=V1,V2` axis in the spec's `[sweep.grid]`; returns
    /// the keys given that way. A key given twice is refused.
    pub fn set_grid_args(&mut self, args: &[String]) -> Result<Vec<String>, GdaError> {
        let mut keys: Vec<String> = Vec::new();
        for a in args {
            let (key, values) = parse_grid_arg(a).map_err(|e| GdaError::Spec {
                file: "--grid".into(),
                key: Some(e.key),
                msg: e.msg,
            })?;
            if keys.contains(&key) {
                return Err(GdaError::Spec {
                    file: "--grid".into(),
                    key: Some(key),
                    msg: "is given twice; allowed: each key once, with all its values (--grid KEY=V1,V2,...)".into(),
                });
            }
            self.sweep.grid.insert(key.clone(), values);
            keys.push(key);
        }
        Ok(keys)
    }

    /// The grid's cells, in order: every combination of one value per axis
    /// (axes by key, the last varying fastest); one empty cell without a grid.
    pub fn grid_cells(&self) -> Vec<Vec<(String, toml::Value)>> {
        let mut cells: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
        for (key, values) in &self.sweep.grid {
            cells = cells
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((key.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        cells
    }

    /// This spec with a grid cell's values set, resolved from the spec as
    /// read ([`Spec::source`]); the error names the key and the value.
    pub fn cell(&self, cell: &[(String, toml::Value)]) -> Result<Spec, GdaError> {
        if cell.is_empty() {
            return Ok(self.clone());
        }
        let mut table = match &self.source {
            Some(t) => t.clone(),
            None => toml::Table::try_from(self).expect("a spec always serialises"),
        };
        for (key, v) in cell {
            let parts: Vec<&str> = key.split('.').collect();
            let mut cur = &mut table;
            for part in &parts[..parts.len() - 1] {
                let entry = cur.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                cur = entry.as_table_mut().expect("a grid key names a leaf of a table");
            }
            cur.insert(parts[parts.len() - 1].to_string(), v.clone());
        }
        let at = cell.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ");
        let mut spec = Spec::from_table(table, &[], self.origin.clone()).map_err(|e| match e {
            GdaError::Spec { file, key, msg } => {
                let key = key.map(|k| if cell.iter().any(|(c, _)| *c == k) { format!("sweep.grid.{k}") } else { k });
                // A type error's text repeats the key on lines of its own.
                let msg = msg.lines().next().unwrap_or_default();
                GdaError::Spec { file, key, msg: format!("{msg} (in the grid cell {at})") }
            }
            other => other,
        })?;
        spec.sweep = self.sweep.clone();
        spec.seed = self.seed;
        spec.name = self.name.clone();
        spec.train.device = self.train.device.clone();
        spec.train.threads = self.train.threads;
        Ok(spec)
    }
}
