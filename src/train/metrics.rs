//! The per-run metrics CSV: header once, one complete line per logged step.
//! Each line is written with a single write and flushed, so a process killed
//! at any moment leaves at most a torn last line, which `open` drops.
//! Every row also goes to a TensorBoard event file in `tb/` beside it.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::{input, io, GdaError};
use crate::report::table;
use crate::report::tfevents::EventWriter;
use crate::util::fs::atomic_write;

pub struct MetricsLog {
    file: File,
    path: PathBuf,
    columns: Vec<String>,
    tb: EventWriter,
    /// First step this process logs: TensorBoard's restart marker and the spec text go there.
    start_step: u64,
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
        // A new events file per process, opened with a restart marker just
        // past the kept rows, so TensorBoard drops the same rows as above.
        let start_step = keep_through_step.map_or(0, |k| k as u64 + 1);
        let mut tb = EventWriter::create(&path.with_file_name("tb"))?;
        tb.start(start_step)?;
        Ok(MetricsLog { file, path: path.to_path_buf(), columns: columns.to_vec(), tb, start_step })
    }

    /// Shows `text` under `tag` in TensorBoard's TEXT tab, at the first step
    /// this process logs.
    pub fn text(&mut self, tag: &str, text: &str) -> Result<(), GdaError> {
        self.tb.text(self.start_step, tag, text)
    }

    pub fn row(&mut self, values: &[String]) -> Result<(), GdaError> {
        assert_eq!(values.len(), self.columns.len(), "a metrics row must fill every column");
        let line = table::line(values);
        self.file.write_all(&line).and_then(|_| self.file.flush()).map_err(io("cannot write", &self.path))?;
        let step = values[0].parse().expect("the first column is the step");
        let scalars: Vec<(&str, f32)> = self
            .columns
            .iter()
            .zip(values)
            .skip(1)
            .filter_map(|(c, v)| Some((c.as_str(), v.parse::<f64>().ok()? as f32)))
            .collect();
        self.tb.scalars(step, &scalars)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<String> {
        ["step", "loss", "note"].map(String::from).to_vec()
    }

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn resume_keeps_rows_through_the_checkpoint_and_drops_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let mut log = MetricsLog::open(&path, &columns(), None).unwrap();
        for r in [["0", "5.5", ""], ["10", "4.25", "a,b \"c\""], ["20", "3.5", ""]] {
            log.row(&row(&r)).unwrap();
        }
        drop(log);
        // A process killed in the middle of the step-30 row; its cut-off
        // step reads as 3, which a reader must not take for a row.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"3").unwrap();
        drop(f);
        let mut log = MetricsLog::open(&path, &columns(), Some(10)).unwrap();
        log.row(&row(&["20", "3.75", "x\ny"])).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "step,loss,note\n0,5.5,\n10,4.25,\"a,b \"\"c\"\"\"\n20,3.75,\"x\ny\"\n");
        let (header, rows) = table::read(&path).unwrap();
        assert_eq!(header, columns());
        assert_eq!(rows, [row(&["0", "5.5", ""]), row(&["10", "4.25", "a,b \"c\""]), row(&["20", "3.75", "x\ny"])]);
    }

    #[test]
    fn resume_refuses_other_columns_and_a_fresh_run_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        std::fs::write(&path, "step,loss\n0,5.5\n").unwrap();
        let err = MetricsLog::open(&path, &columns(), Some(0)).err().expect("other columns are refused");
        assert!(err.to_string().contains("has columns that this run does not write"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "step,loss\n0,5.5\n", "the file is left as it was");
        MetricsLog::open(&path, &columns(), None).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "step,loss,note\n");
        // A resume with no file yet (killed before the first row) starts one.
        let fresh = dir.path().join("new.csv");
        MetricsLog::open(&fresh, &columns(), Some(0)).unwrap();
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "step,loss,note\n");
    }
}
