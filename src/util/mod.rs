//! The bottom layer: file-system, host and stdout helpers with no knowledge of gda.

pub mod fs;
pub mod host;
pub mod out;
