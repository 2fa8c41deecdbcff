//! CSV tables: reading and writing.

use std::fs;
use std::path::Path;

use crate::error::{io, GdaError};

/// Reads a CSV file into a header and rows of cells.
pub fn read(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>), GdaError> {
    let text = fs::read_to_string(path).map_err(io("cannot read", path))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().split(',').map(String::from).collect();
    let rows = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    Ok((header, rows))
}
