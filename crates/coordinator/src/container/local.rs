//! The `local` container: spawns a command template on this host.
//!
//! A process is found again by its pid *and* its start time and the boot id, so a pid that the
//! kernel gave to another process since is never signalled; signals go through a pidfd opened
//! after that check, which pins the process. Children run in their own process group and are
//! not killed with the coordinator: restarting a coordinator does not restart every resource.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
use tokio::process::Command;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{BoxFuture, Container, ContainerError, Launch, ProcessRecord};
use crate::config::ContainerConfig;

/// How often a stop checks whether the process has exited.
const EXIT_POLL: Duration = Duration::from_millis(20);
/// How long a stop waits after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Spawns processes from a command template (see `[containers.NAME]`).
#[derive(Debug, Clone)]
pub struct LocalContainer {
    config: ContainerConfig,
}

impl LocalContainer {
    /// A container of `config` (a `local` one, validated).
    pub fn new(config: ContainerConfig) -> Self {
        Self { config }
    }

    fn log_path(&self, resource_id: &str) -> PathBuf {
        self.config.log_directory.join(format!("{resource_id}.log"))
    }

    async fn spawn(&self, launch: &Launch) -> Result<ProcessRecord, ContainerError> {
        let command: Vec<String> =
            self.config.command.iter().map(|part| render(part, launch)).collect::<Result<_, _>>()?;
        let Some((program, args)) = command.split_first() else {
            return Err(ContainerError("the command is empty".into()));
        };
        std::fs::create_dir_all(&self.config.log_directory).map_err(|error| {
            ContainerError(format!("log directory {}: {error}", self.config.log_directory.display()))
        })?;
        let log_path = self.log_path(&launch.resource_id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|error| ContainerError(format!("log file {}: {error}", log_path.display())))?;
        let log_err = log.try_clone().map_err(|error| ContainerError(format!("log file: {error}")))?;
        let mut spawn = Command::new(program);
        spawn.args(args).stdin(Stdio::null()).stdout(log).stderr(log_err).process_group(0).kill_on_drop(false);
        for (name, value) in &self.config.environment {
            spawn.env(name, render(value, launch)?);
        }
        if let Some(directory) = &self.config.working_directory {
            spawn.current_dir(directory);
        }
        let mut child = spawn.spawn().map_err(|error| ContainerError(format!("cannot start {program:?}: {error}")))?;
        let pid = child.id().ok_or_else(|| ContainerError("the process exited before its pid was read".into()))?;
        let start = process_start(pid).unwrap_or_default();
        let resource = launch.resource_id.clone();
        // Reap it, so that an exited child never lingers as a zombie that looks alive.
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) => info!(resource = %resource, pid, %status, "resource process exited"),
                Err(error) => warn!(resource = %resource, pid, %error, "could not wait for a resource process"),
            }
        });
        let mut record = ProcessRecord::new();
        record.insert("pid".into(), pid.to_string());
        record.insert("pid_start".into(), start.to_string());
        record.insert("boot_id".into(), boot_id());
        record.insert("log".into(), log_path.display().to_string());
        Ok(record)
    }

    async fn terminate(&self, record: &ProcessRecord) -> Result<(), ContainerError> {
        let Some(pid) = record.get("pid").and_then(|pid| pid.parse::<i32>().ok()).and_then(Pid::from_raw) else {
            return Ok(());
        };
        if !self.is_alive(record) {
            return Ok(());
        }
        let Ok(pidfd) = pidfd_open(pid, PidfdFlags::empty()) else {
            // It exited between the check and the open.
            return Ok(());
        };
        // The pidfd pins whatever process has the pid now: check that it is still ours.
        if !self.is_alive(record) {
            return Ok(());
        }
        let _ = pidfd_send_signal(&pidfd, Signal::TERM);
        if self.exited_within(record, self.config.stop_grace).await {
            return Ok(());
        }
        warn!(pid = pid.as_raw_nonzero().get(), grace = ?self.config.stop_grace, "resource process ignored SIGTERM; sending SIGKILL");
        let _ = pidfd_send_signal(&pidfd, Signal::KILL);
        if self.exited_within(record, KILL_WAIT).await {
            return Ok(());
        }
        Err(ContainerError(format!("process {} still runs after SIGKILL", pid.as_raw_nonzero())))
    }

    async fn exited_within(&self, record: &ProcessRecord, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !self.is_alive(record) {
                return true;
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
        !self.is_alive(record)
    }
}

impl Container for LocalContainer {
    fn start<'a>(&'a self, launch: &'a Launch) -> BoxFuture<'a, Result<ProcessRecord, ContainerError>> {
        Box::pin(self.spawn(launch))
    }

    fn stop<'a>(&'a self, record: &'a ProcessRecord) -> BoxFuture<'a, Result<(), ContainerError>> {
        Box::pin(self.terminate(record))
    }

    fn is_alive(&self, record: &ProcessRecord) -> bool {
        let Some(pid) = record.get("pid").and_then(|pid| pid.parse::<u32>().ok()) else {
            return false;
        };
        if record.get("boot_id").is_some_and(|recorded| *recorded != boot_id()) {
            return false;
        }
        let recorded_start = record.get("pid_start").and_then(|start| start.parse::<u64>().ok());
        match read_stat(pid) {
            Some((state, start)) => {
                !matches!(state, 'Z' | 'X') && recorded_start.is_none_or(|recorded| recorded == start)
            }
            None => false,
        }
    }

    fn supports_auto_restart(&self) -> bool {
        true
    }

    fn node(&self) -> Option<&str> {
        self.config.node.as_deref()
    }
}

/// Fills the placeholders of `template` (see `[containers.NAME].command`).
pub(crate) fn render(template: &str, launch: &Launch) -> Result<String, ContainerError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(ContainerError(format!("{template:?}: '{{' without '}}'")));
        };
        let name = &after[..close];
        let value = match name {
            "resource_id" => launch.resource_id.as_str(),
            "attempt_id" => launch.attempt_id.as_str(),
            "group" => launch.group.as_str(),
            "coordinators" => launch.coordinators.as_str(),
            _ => match name.strip_prefix("prop:") {
                Some(key) => launch
                    .properties
                    .get(key)
                    .map(String::as_str)
                    .ok_or_else(|| ContainerError(format!("{template:?}: the resource has no property {key:?}")))?,
                None => return Err(ContainerError(format!("{template:?}: unknown placeholder {{{name}}}"))),
            },
        };
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The state letter and start time (clock ticks since boot) of process `pid`.
fn read_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

fn process_start(pid: u32) -> Option<u64> {
    read_stat(pid).map(|(_, start)| start)
}

/// This boot's id: a pid and start time recorded before a reboot name no process now. Read
/// once: a stop checks liveness every few milliseconds.
fn boot_id() -> String {
    static BOOT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|id| id.trim().to_owned())
                .unwrap_or_default()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::ContainerKind;

    fn launch() -> Launch {
        Launch {
            resource_id: "dn1".into(),
            group: "g".into(),
            attempt_id: "a7".into(),
            properties: [("port".to_owned(), "7501".to_owned())].into_iter().collect(),
            coordinators: "127.0.0.1:7400".into(),
        }
    }

    fn container(command: &[&str], logs: PathBuf) -> LocalContainer {
        LocalContainer::new(ContainerConfig {
            kind: ContainerKind::Local,
            node: Some("c1".into()),
            command: command.iter().map(|part| (*part).to_owned()).collect(),
            environment: BTreeMap::new(),
            working_directory: None,
            log_directory: logs,
            stop_grace: Duration::from_secs(5),
        })
    }

    /// Polls `dn1.log` under `logs` until it holds `line`.
    async fn wait_for_log(logs: &std::path::Path, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(logs.join("dn1.log")).unwrap_or_default().contains(line) {
            assert!(Instant::now() < deadline, "the process never wrote {line:?}");
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("leasehold-container-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn placeholders_are_filled_and_a_missing_property_is_an_error() {
        let rendered =
            render("--node-id={resource_id} --attempt {attempt_id} {group} {coordinators} {prop:port}", &launch());
        assert_eq!(rendered.unwrap(), "--node-id=dn1 --attempt a7 g 127.0.0.1:7400 7501");
        assert!(render("{prop:nope}", &launch()).unwrap_err().0.contains("no property \"nope\""));
    }

    #[tokio::test]
    async fn a_started_process_is_alive_until_stopped_and_writes_to_its_log() {
        let logs = temp_dir("stop");
        let container = container(&["sh", "-c", "echo started {resource_id}; exec sleep 60"], logs.clone());
        let record = container.start(&launch()).await.unwrap();
        assert!(container.is_alive(&record), "{record:?}");
        wait_for_log(&logs, "started dn1").await;
        container.stop(&record).await.unwrap();
        assert!(!container.is_alive(&record));
        let _ = std::fs::remove_dir_all(logs);
    }

    #[tokio::test]
    async fn a_process_that_ignores_sigterm_is_killed_after_the_grace() {
        let logs = temp_dir("kill");
        let mut container =
            container(&["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"], logs.clone());
        container.config.stop_grace = Duration::from_millis(300);
        let record = container.start(&launch()).await.unwrap();
        // Wait until the trap is set (the shell has printed), then stop.
        wait_for_log(&logs, "ready").await;
        container.stop(&record).await.unwrap();
        assert!(!container.is_alive(&record));
        let _ = std::fs::remove_dir_all(logs);
    }

    #[test]
    fn a_record_with_another_start_time_is_not_that_process() {
        let logs = temp_dir("reuse");
        let container = container(&["true"], logs);
        // This test's own process, under a start time it does not have: a reused pid.
        let mut record = ProcessRecord::new();
        record.insert("pid".into(), std::process::id().to_string());
        record.insert("boot_id".into(), boot_id());
        record.insert("pid_start".into(), (process_start(std::process::id()).unwrap() + 1).to_string());
        assert!(!container.is_alive(&record));
        record.insert("pid_start".into(), process_start(std::process::id()).unwrap().to_string());
        assert!(container.is_alive(&record));
        record.insert("boot_id".into(), "another-boot".into());
        assert!(!container.is_alive(&record));
    }
}
