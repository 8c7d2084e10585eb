//! The `tenantry` binary: the command line lives in the library's `cli` module.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tenantry::cli::main()
}
