//! `--set KEY=VALUE` and `--grid KEY=V1,V2,…` text, and `[sweep.grid]`
//! tables, into TOML values.

use serde::Deserialize;

use super::{key_err, KeyError};

/// A value as a spec would hold it: read as TOML, so `3`, `1e-3`, `true` and
/// `[1,2]` keep their types, and anything TOML does not read is a string.
fn toml_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Reads `[sweep.grid]`: nested tables (`model.d_model = [..]` under
/// `[sweep.grid]` is TOML for a table `model`) and quoted dotted keys both
/// become dotted keys; every leaf must be a list.
pub(super) fn flat_grid<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, Vec<toml::Value>>, D::Error> {
    fn walk(
        prefix: &str,
        t: toml::Table,
        out: &mut std::collections::BTreeMap<String, Vec<toml::Value>>,
    ) -> Result<(), String> {
        for (k, v) in t {
            let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(t) => walk(&key, t, out)?,
                toml::Value::Array(a) => {
                    if out.insert(key.clone(), a).is_some() {
                        return Err(format!("`{key}` is given twice"));
                    }
                }
                other => {
                    return Err(format!(
                        "`{key}` = {other} is not a list; allowed: a list of values, e.g. {key} = [{other}]"
                    ))
                }
            }
        }
        Ok(())
    }
    let table = toml::Table::deserialize(d)?;
    let mut out = Default::default();
    walk("", table, &mut out).map_err(serde::de::Error::custom)?;
    Ok(out)
}

/// One `--grid KEY=V1,V2,…` argument: the key and its values, each read as
/// a TOML value like a `--set` value (`64`, `1e-3`, `true`; anything else a
/// string). Commas inside brackets or quotes belong to their value, so a
/// list value reads whole (`model.lambda_init=[0.1,0.2],[0.3,0.4]`).
pub fn parse_grid_arg(arg: &str) -> Result<(String, Vec<toml::Value>), KeyError> {
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| key_err(arg, "a grid axis must look like KEY=V1,V2,..., e.g. --grid model.d_model=128,256"))?;
    let key = key.trim().to_string();
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut cur) = (0i32, None::<char>, String::new());
    for c in raw.chars() {
        match (c, quote) {
            ('"' | '\'', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            ('[' | '{', None) => depth += 1,
            (']' | '}', None) => depth -= 1,
            (',', None) if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    // A wholly empty list is left to the axis check ("has no values").
    let empty = parts.iter().position(|p| p.trim().is_empty()).filter(|_| parts.len() > 1);
    if let Some(i) = empty {
        return Err(key_err(
            &key,
            format!(
                "value {} of {raw:?} is empty; allowed: values separated by single commas, e.g. --grid {key}=1,2",
                i + 1
            ),
        ));
    }
    let values = parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).map(toml_value).collect();
    Ok((key, values))
}

/// A grid value as tables and names show it: a string without its quotes,
/// anything else as TOML writes it (`64`, `0.001`, `true`).
pub fn grid_value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Sets the dotted key of one `key=value` override in a TOML table (the
/// value read as TOML, else as a string).
pub fn apply_override(table: &mut toml::Table, ov: &str) -> Result<(), KeyError> {
    let (key, raw) = ov
        .split_once('=')
        .ok_or_else(|| key_err(ov, "an override must look like key=value, e.g. --set train.steps=100"))?;
    let key = key.trim();
    let value = toml_value(raw.trim());
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(key_err(key, "is not a valid key path; allowed: dotted names such as train.steps"));
    }
    let mut cur = table;
    for part in &parts[..parts.len() - 1] {
        let entry = cur.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| key_err(key, format!("`{part}` is a value, not a table")))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
