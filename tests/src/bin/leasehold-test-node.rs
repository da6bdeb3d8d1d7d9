//! The `leasehold` binary as the scenarios run it: the same entry point, with failpoints
//! compiled in (this package turns the coordinator's `failpoints` feature on).

fn main() -> std::process::ExitCode {
    leasehold_cli::main_entry()
}
