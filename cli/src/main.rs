//! Entry point of `aftercase`; see `cli.rs`.

mod cli;
mod logging;

fn main() -> std::process::ExitCode {
    cli::main()
}
