//! The per-run metrics CSV: header once, one complete line per logged step.
//! Each line is written with a single write and flushed, so a process killed
//! at any moment leaves at most a torn last line, which `open` drops.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::{input, io, GdaError};
use crate::report::table;
use crate::util::fs::atomic_write;

pub struct MetricsLog {
    file: File,
    path: PathBuf,
    width: usize,
}

/// Formats an optional number; missing values are empty cells.
pub fn cell(v: Option<f64>) -> String {
    v.map(|x| format!("{x}")).unwrap_or_default()
}

impl MetricsLog {
    /// Opens `path` for appending. Rows after `keep_through_step` (logged
    /// after the checkpoint a resumed run restarts from) and any torn last
    /// line are dropped; a fresh file gets the header.
    pub fn open(path: &Path, columns: &[String], keep_through_step: Option<usize>) -> Result<MetricsLog, GdaError> {
        let mut kept = table::line(columns);
        if let Some(keep) = keep_through_step {
            match table::read(path) {
                // An empty file has no rows to keep.
                Ok((header, _)) if header.is_empty() => {}
                Ok((header, rows)) => {
                    if header != columns {
                        return Err(input(format!(
                            "{} has columns that this run does not write; move it away to resume",
                            path.display()
                        )));
                    }
                    for row in rows {
                        let step: Option<usize> = row.first().and_then(|s| s.parse().ok());
                        if step.is_some_and(|s| s <= keep) {
                            kept.extend(table::line(&row));
                        }
                    }
                }
                // A run killed before its first row was logged.
                Err(GdaError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        atomic_write(path, &kept).map_err(io("cannot write", path))?;
        let file = OpenOptions::new().append(true).open(path).map_err(io("cannot write", path))?;
        Ok(MetricsLog { file, path: path.to_path_buf(), width: columns.len() })
    }

    pub fn row(&mut self, values: &[String]) -> Result<(), GdaError> {
        assert_eq!(values.len(), self.width, "a metrics row must fill every column");
        let line = table::line(values);
        self.file.write_all(&line).and_then(|_| self.file.flush()).map_err(io("cannot write", &self.path))
    }
}

/// (x, y) from two columns of a run's metrics.csv, for the rows where both
/// are filled, in step order.
pub fn column_pairs(run: &Path, x: &str, y: &str) -> Vec<(f64, f64)> {
    let Ok((header, data)) = table::read(&run.join("metrics.csv")) else { return Vec::new() };
    let (Some(xi), Some(yi)) = (header.iter().position(|h| h == x), header.iter().position(|h| h == y)) else {
        return Vec::new();
    };
    data.iter().filter_map(|row| Some((row.get(xi)?.parse().ok()?, row.get(yi)?.parse().ok()?))).collect()
}
