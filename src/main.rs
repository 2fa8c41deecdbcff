use gda::commands;
use gda::error::GdaError;
use gda::util::out::err_line;

fn main() {
    let cli = commands::parse();
    if cli.command.trains() {
        // Ctrl-C, SIGTERM and SIGHUP checkpoint at the next step boundary;
        // stdout is written through util::out, which never panics.
        gda::train::install_interrupt_handler();
    } else {
        // A read-only command stops at Ctrl-C at once, and ends quietly when
        // its reader goes away (`gda report DIR | head`), as `cat` does:
        // SIGPIPE's default action instead of Rust's EPIPE, on which
        // println! panics. Its files are written atomically before it prints.
        // SAFETY: restores a signal's default disposition before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // A panic (a libtorch error, a bug) has printed its message; it exits 1,
    // the documented code for an unexpected failure, not Rust's 101.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commands::run(cli)));
    let code = match result {
        Ok(Ok(())) => return,
        Ok(Err(err)) => {
            // A gda error with no context around it says everything itself
            // (an I/O error its cause): the source chain of `{:#}` would
            // repeat it.
            let bare = err.chain().next().is_some_and(|e| e.is::<GdaError>());
            if bare {
                err_line(format_args!("error: {err}"));
            } else {
                err_line(format_args!("error: {err:#}"));
            }
            err.downcast_ref::<GdaError>().map(GdaError::exit_code).unwrap_or(1)
        }
        Err(_) => 1,
    };
    std::process::exit(code);
}
