//! CSV tables, through the `csv` crate: every table gda writes or reads
//! (metrics.csv, summary.csv, the eval tables) goes through here, so a cell
//! holding a comma, a quote or a line break is quoted on the way out and
//! read back as one cell.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

use crate::error::{input, io, GdaError};
use crate::util::fs::atomic_write;

/// A header and its rows, as read from a file.
struct Records {
    header: csv::StringRecord,
    rows: Vec<csv::StringRecord>,
}

/// Parses CSV text. Rows may have more or fewer cells than the header. A
/// last record without its line end is dropped: gda ends every record with
/// one, and metrics.csv is appended to row by row, so a process killed
/// mid-write leaves a torn last line whose cut-off numbers would read as
/// wrong ones (step 15 for 150).
fn parse(bytes: &[u8]) -> Result<Records, csv::Error> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut all = reader.records().collect::<Result<Vec<_>, _>>()?;
    if !bytes.ends_with(b"\n") {
        all.pop();
    }
    let mut all = all.into_iter();
    let header = all.next().unwrap_or_default();
    Ok(Records { header, rows: all.collect() })
}

fn load(path: &Path) -> Result<Records, GdaError> {
    let bytes = std::fs::read(path).map_err(io("cannot read", path))?;
    parse(&bytes).map_err(|e| input(format!("{} is not a readable CSV file: {e}", path.display())))
}

/// Reads a CSV file into a header and rows of cells (see [`parse`] for a
/// torn last line).
pub fn read(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>), GdaError> {
    let Records { header, rows } = load(path)?;
    let cells = |r: &csv::StringRecord| r.iter().map(String::from).collect();
    Ok((cells(&header), rows.iter().map(cells).collect()))
}

/// Reads a CSV file of fixed columns into row structs, matching cells to
/// fields by column name; an empty cell is `None` for an optional field.
pub fn read_rows<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, GdaError> {
    let Records { header, rows } = load(path)?;
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            r.deserialize(Some(&header)).map_err(|e| input(format!("{} line {}: {e}", path.display(), i + 2)))
        })
        .collect()
}

/// One CSV line (cells quoted where needed, then `\n`).
pub fn line<I>(cells: I) -> Vec<u8>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(cells).expect("writing to memory cannot fail");
    w.into_inner().expect("writing to memory cannot fail")
}

/// Replaces `path` by a CSV file of `rows` (header from the field names of
/// `T`), atomically.
pub fn write_rows<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), GdaError> {
    write_rows_with(path, rows, "", &[], |_| Vec::new())
}

/// [`write_rows`] with columns that vary from table to table (a scaling
/// grid's keys): `names` inserted after the column `after`, each row's
/// cells for them from `extra`.
pub fn write_rows_with<T: Serialize>(
    path: &Path,
    rows: &[T],
    after: &str,
    names: &[String],
    extra: impl Fn(&T) -> Vec<String>,
) -> Result<(), GdaError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).expect("a row struct serialises");
    }
    let bytes = w.into_inner().expect("writing to memory cannot fail");
    if names.is_empty() {
        return atomic_write(path, &bytes).map_err(io("cannot write", path));
    }
    let Records { header, rows: records } = parse(&bytes).expect("written just now");
    let at = header.iter().position(|h| h == after).map_or(0, |i| i + 1);
    let splice = |record: &csv::StringRecord, inserted: Vec<String>| {
        let mut cells: Vec<String> = record.iter().map(String::from).collect();
        cells.splice(at..at, inserted);
        line(cells)
    };
    let mut out = splice(&header, names.to_vec());
    for (record, r) in records.iter().zip(rows) {
        out.extend(splice(record, extra(r)));
    }
    atomic_write(path, &out).map_err(io("cannot write", path))
}

/// Writes a number as Rust's `{}` does (shortest round trip, no exponent),
/// as gda's tables always have; the csv crate's own format would write
/// `1e-7` and `1.0`. For `#[serde(serialize_with = "...")]`.
pub fn number<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// [`number`] for an optional value: `None` is an empty cell.
pub fn opt_number<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) => s.collect_str(x),
        None => s.serialize_none(),
    }
}

/// Text for a Markdown table cell: `|` would end the cell, `<` and `&`
/// start HTML, a newline the row (run labels and task names come from users).
pub fn md(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
        let Records { header, rows } = parse(text.as_bytes()).unwrap();
        let c = |r: &csv::StringRecord| r.iter().map(String::from).collect::<Vec<_>>();
        (c(&header), rows.iter().map(c).collect())
    }

    #[test]
    fn a_quoted_cell_reads_back_as_one_cell() {
        let text = String::from_utf8(line(["a,b \"c\"", "x\ny", "", "1.5"])).unwrap();
        assert_eq!(text, "\"a,b \"\"c\"\"\",\"x\ny\",,1.5\n");
        let (header, rows) = cells(&format!("run,note,empty,v\n{text}"));
        assert_eq!(header, ["run", "note", "empty", "v"]);
        assert_eq!(rows, [["a,b \"c\"", "x\ny", "", "1.5"]]);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_short_rows_are_kept() {
        let (header, rows) = cells("step,loss\n0,5.5\n10\n150,3.");
        assert_eq!(header, ["step", "loss"]);
        assert_eq!(rows, [vec!["0", "5.5"], vec!["10"]]);
        // Torn inside a quoted cell.
        assert_eq!(cells("step,loss\n0,5.5\n\"1,").1, [["0", "5.5"]]);
        // Only a torn header: nothing.
        assert_eq!(cells("ste"), (vec![], vec![]));
        assert_eq!(cells(""), (vec![], vec![]));
    }

    #[test]
    fn numbers_are_written_as_rust_formats_them() {
        #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
        struct R {
            #[serde(serialize_with = "number")]
            x: f64,
            #[serde(serialize_with = "opt_number")]
            y: Option<f64>,
        }
        let rows = [R { x: 1.0, y: Some(1.5e-7) }, R { x: 2.5e20, y: None }, R { x: f64::NAN, y: Some(-0.25) }];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        write_rows(&path, &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "x,y\n1,0.00000015\n250000000000000000000,\nNaN,-0.25\n");
        let back: Vec<R> = read_rows(&path).unwrap();
        assert_eq!(back[..2], rows[..2]);
        assert!(back[2].x.is_nan() && back[2].y == Some(-0.25));
    }
}
