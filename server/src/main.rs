//! Entry point of `aftercase-relay`; see `aftercase_server::cli`.

// See the `mimalloc` dependency in Cargo.toml for why.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    aftercase_server::cli::main()
}
