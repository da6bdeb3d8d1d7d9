//! The `leasehold` binary as the scenarios run it: the same entry point, with failpoints
//! compiled in (this package turns the coordinator's `failpoints` feature on).

fn main() -> std::process::ExitCode {
    // If the test process dies (a CI timeout, a kill), its coordinators and agents go with it
    // instead of holding ports and store rows. Test threads that spawn nodes outlive them.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    leasehold_cli::main_entry()
}
