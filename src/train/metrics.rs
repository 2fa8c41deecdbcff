//! The per-run metrics CSV: header once, one complete line per logged step.
//! Each line is written with a single write and flushed, so a process killed
//! at any moment leaves at most a torn last line, which `open` drops.
//! Every row also goes to a TensorBoard event file in `tb/` beside it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{input, io, GdaError};
use crate::report::table;
use crate::report::tfevents::EventWriter;
use crate::util::fs::atomic_write;

pub struct MetricsLog {
    file: File,
    path: PathBuf,
    width: usize,
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
        let header = columns.join(",");
        let mut kept = format!("{header}\n");
        if let (Some(keep), Ok(old)) = (keep_through_step, fs::read_to_string(path)) {
            let mut lines = old.split_inclusive('\n');
            if let Some(first) = lines.next() {
                if first.trim_end() != header {
                    return Err(input(format!(
                        "{} has columns that this run does not write; move it away to resume",
                        path.display()
                    )));
                }
            }
            for line in lines.filter(|l| l.ends_with('\n')) {
                let step: Option<usize> = line.split(',').next().and_then(|s| s.parse().ok());
                if step.is_some_and(|s| s <= keep) {
                    kept.push_str(line);
                }
            }
        }
        atomic_write(path, kept.as_bytes()).map_err(io("cannot write", path))?;
        let file = OpenOptions::new().append(true).open(path).map_err(io("cannot write", path))?;
        // A new events file per process, opened with a restart marker just
        // past the kept rows, so TensorBoard drops the same rows as above.
        let start_step = keep_through_step.map_or(0, |k| k as u64 + 1);
        let mut tb = EventWriter::create(&path.with_file_name("tb"))?;
        tb.start(start_step)?;
        Ok(MetricsLog {
            file,
            path: path.to_path_buf(),
            width: columns.len(),
            columns: columns.to_vec(),
            tb,
            start_step,
        })
    }

    /// Shows `text` under `tag` in TensorBoard's TEXT tab, at the first step
    /// this process logs.
    pub fn text(&mut self, tag: &str, text: &str) -> Result<(), GdaError> {
        self.tb.text(self.start_step, tag, text)
    }

    pub fn row(&mut self, values: &[String]) -> Result<(), GdaError> {
        assert_eq!(values.len(), self.width, "a metrics row must fill every column");
        let line = format!("{}\n", values.join(","));
        self.file.write_all(line.as_bytes()).and_then(|_| self.file.flush()).map_err(io("cannot write", &self.path))?;
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
