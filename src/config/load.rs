//! A spec from a file, a table or another spec: TOML read, `--set`
//! overrides applied, then resolved.

use std::path::Path;

use super::overrides::apply_override;
use super::{Spec, BUILTIN};
use crate::error::GdaError;

impl Spec {
    /// Reads a spec file, applies `--set key=value` overrides and resolves
    /// every derived default. `None` is the built-in default spec.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Spec, GdaError> {
        let origin = path.map(|p| p.display().to_string()).unwrap_or_else(|| BUILTIN.into());
        let spec_err = |msg: String| GdaError::Spec { file: origin.clone(), key: None, msg };
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| spec_err(format!("cannot read the spec: {e}")))?;
                text.parse::<toml::Table>().map_err(|e| spec_err(format!("not valid TOML: {e}")))?
            }
            None => toml::Table::new(),
        };
        // A spec file names its run after itself unless it says otherwise.
        if let Some(stem) = path.and_then(|p| p.file_stem()) {
            if !table.contains_key("name") {
                table.insert("name".into(), toml::Value::String(stem.to_string_lossy().into_owned()));
            }
        }
        Self::from_table(table, overrides, origin)
    }

    /// Whether the spec file at `path` (none: the built-in default) or one of
    /// `overrides` sets the dotted `key`, rather than leaving it to its
    /// default. A file that cannot be read sets nothing (`load` says why).
    pub fn sets(path: Option<&Path>, overrides: &[String], key: &str) -> bool {
        if overrides.iter().any(|ov| ov.split_once('=').is_some_and(|(k, _)| k.trim() == key)) {
            return true;
        }
        let Some(table) = path.and_then(|p| std::fs::read_to_string(p).ok()?.parse::<toml::Table>().ok()) else {
            return false;
        };
        let mut cur = &table;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            match cur.get(*part).and_then(toml::Value::as_table) {
                Some(t) => cur = t,
                None => return false,
            }
        }
        cur.contains_key(parts[parts.len() - 1])
    }
    /// A spec from a TOML table already read (a study preset's spec part),
    /// with `overrides` applied; `origin` names it in errors.
    pub fn from_toml(table: toml::Table, overrides: &[String], origin: &str) -> Result<Spec, GdaError> {
        Self::from_table(table, overrides, origin.to_string())
    }

    /// This spec with `--set key=value` overrides applied and resolved again.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Spec, GdaError> {
        let table = toml::Table::try_from(self).expect("a spec always serialises");
        Self::from_table(table, overrides, self.origin.clone())
    }

    pub(super) fn from_table(mut table: toml::Table, overrides: &[String], origin: String) -> Result<Spec, GdaError> {
        let spec_err = |key: Option<String>, msg: String| GdaError::Spec { file: origin.clone(), key, msg };
        for ov in overrides {
            apply_override(&mut table, ov).map_err(|e| spec_err(Some(e.key), e.msg))?;
        }
        let mut spec: Spec = serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
            let key = e.path().to_string();
            spec_err((key != ".").then_some(key), e.into_inner().to_string())
        })?;
        spec.origin = origin.clone();
        spec.source = Some(table);
        spec.resolve().map_err(|e| spec_err(Some(e.key), e.msg))?;
        Ok(spec)
    }
}
