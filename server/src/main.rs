//! Entry point of `aftercase-relay`; see `aftercase_server::cli`.

fn main() -> std::process::ExitCode {
    aftercase_server::cli::main()
}
