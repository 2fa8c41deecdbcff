//! The bottom layer: file-system and host helpers with no knowledge of gda.

pub mod fs;
pub mod host;
