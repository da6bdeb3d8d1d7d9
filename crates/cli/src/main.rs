//! The `leasehold` binary: parse, configure, run. Everything lives in the library.

fn main() -> std::process::ExitCode {
    leasehold_cli::main_entry()
}
