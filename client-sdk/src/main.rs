//! Entry point of `aftercase`; see `aftercase_client::cli`.

fn main() -> std::process::ExitCode {
    aftercase_client::cli::main()
}
