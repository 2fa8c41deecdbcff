//! Standard output that may go away under a running command: a pipe whose
//! reader exited (`gda train | head -1`), a `tee` that died, a terminal
//! whose ssh session closed. `println!` panics then (Rust ignores SIGPIPE, so
//! the write fails with EPIPE); [`line`] reports it instead, and the training
//! loop treats a closed stdout like Ctrl-C (`train::interrupted`).

use std::fmt;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes one line to stdout and flushes it. Returns false once stdout can
/// no longer be written; from then on stdout is /dev/null, so that a later
/// write anywhere (a library's `println!`) cannot panic either.
pub fn line(args: fmt::Arguments) -> bool {
    if CLOSED.load(Ordering::SeqCst) {
        return false;
    }
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|_| out.write_all(b"\n")).and_then(|_| out.flush()).is_ok() {
        return true;
    }
    CLOSED.store(true, Ordering::SeqCst);
    // If /dev/null cannot be opened the next println! may panic; nothing
    // better is left to do with a stdout that is gone.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto fd 1 replaces the broken stdout; `out` still
        // holds the lock, so no other thread writes in between.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) };
    }
    // The failed line may still sit in the buffer: it now goes to /dev/null.
    let _ = out.flush();
    false
}

/// Writes one line to stderr, ignoring failure: `eprintln!` panics when
/// stderr is a closed pipe too (`gda train 2>&1 | head -1`), and a message
/// nobody can read is not worth a panic that would skip a checkpoint.
pub fn err_line(args: fmt::Arguments) {
    // stderr is unbuffered, so `write_fmt` would issue one write per piece of
    // the format and the ranks of a data-parallel run, sharing one stderr,
    // would interleave mid-line; one write of a whole line (under PIPE_BUF)
    // reaches a pipe intact.
    let mut text = fmt::format(args);
    text.push('\n');
    // Nowhere left to report a failure to write the report.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Whether a write to stdout has failed (see [`line`]).
pub fn closed() -> bool {
    CLOSED.load(Ordering::SeqCst)
}

/// `println!` through [`line`]: never panics; evaluates to false once stdout is gone.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::util::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// `eprintln!` through [`err_line`]: never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::util::out::err_line(format_args!($($arg)*))
    };
}
pub(crate) use errln;
