//! The `tenantry` binary: the command line lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    tenantry::cli::main()
}
