use clap::Parser;

use gda::commands::{self, Cli};
use gda::error::GdaError;

fn main() {
    let cli = Cli::parse();
    gda::train::install_interrupt_handler();
    if let Err(err) = commands::run(cli) {
        eprintln!("error: {err:#}");
        let code = err.downcast_ref::<GdaError>().map(GdaError::exit_code).unwrap_or(1);
        std::process::exit(code);
    }
}
