//! The `leasehold` binary as the failover benchmark runs it.

fn main() -> std::process::ExitCode {
    leasehold_cli::main_entry()
}
