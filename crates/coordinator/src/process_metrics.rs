//! The standard Prometheus process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`), read from `/proc` at scrape time on
//! Linux; elsewhere none are exported.

use std::fmt::Write;

/// Appends the process metrics, in the Prometheus text format, to `out`.
pub fn render_into(out: &mut String) {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        if let Some(cpu) = stat.as_deref().and_then(cpu_ticks) {
            let seconds = cpu as f64 / rustix::param::clock_ticks_per_second() as f64;
            sample(
                out,
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds",
                seconds,
            );
        }
        let statm = std::fs::read_to_string("/proc/self/statm").ok();
        if let Some(pages) = statm.as_deref().and_then(resident_pages) {
            let bytes = pages * rustix::param::page_size() as u64;
            sample(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes", bytes as f64);
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            // The directory's own descriptor, open while it is read, is not counted.
            let open = entries.count().saturating_sub(1);
            sample(out, "process_open_fds", "gauge", "Number of open file descriptors", open as f64);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = out;
}

fn sample(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
}

/// User plus system time in clock ticks, from `/proc/self/stat` (fields 14 and 15; the
/// command name, field 2, is in parentheses and may hold spaces, so fields count from the last
/// `)`).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Resident pages, from `/proc/self/statm` (its second field).
fn resident_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (lease (hold) d) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 125 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(375));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn resident_pages_are_the_second_field() {
        assert_eq!(resident_pages("5000 1234 300 10 0 800 0\n"), Some(1234));
        assert_eq!(resident_pages(""), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reports_all_three() {
        let mut out = String::from("leasehold_ha_term 0");
        render_into(&mut out);
        assert!(out.starts_with("leasehold_ha_term 0\n# HELP process_cpu_seconds_total"), "{out}");
        for name in ["process_cpu_seconds_total ", "process_resident_memory_bytes ", "process_open_fds "] {
            let value = out.lines().find_map(|line| line.strip_prefix(name)).unwrap_or_else(|| panic!("{name}: {out}"));
            assert!(value.parse::<f64>().unwrap() > 0.0 || name.starts_with("process_cpu"), "{name}{value}");
        }
    }
}
