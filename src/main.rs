//! The `mrgan` binary: parse the command line, run, report errors without a panic.

mod cli;

fn main() {
    if let Err(e) = cli::run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
