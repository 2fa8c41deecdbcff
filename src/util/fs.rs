//! Writing files so that a crash never leaves a half-written one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Replaces `path` by `bytes` atomically: a temporary file in the same
/// directory is written, fsynced and renamed over `path`, then the directory
/// is fsynced so the rename itself survives a power cut. A reader sees the
/// old file or the new one, never a mix. The temporary name is per file and
/// per process, so two writers of neighbouring files (a sweep finishing while
/// `--collect` runs) never rename each other's data.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Fsyncs the directory holding `path`, making a rename into it durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The absolute form of a path, without resolving symlinks (a batch script
/// must not depend on the directory it is submitted from).
pub fn absolute(p: &Path) -> io::Result<PathBuf> {
    std::path::absolute(p)
}
