//! Entry point of `aftercase`: arguments in `args.rs`, commands in
//! `run.rs` and `cases.rs`, output in `out.rs`, `show.rs`, `list.rs` and
//! `progress.rs`.

mod args;
mod cases;
mod lang;
mod list;
mod logging;
mod out;
mod progress;
mod resolve;
mod run;
mod show;
mod sync;

/// Bytes in megabytes for people.
pub(crate) fn out_mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn main() -> std::process::ExitCode {
    run::main()
}
