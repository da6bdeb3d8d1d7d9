//! One `leasehold` process (a coordinator or an agent) and its JSON logs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasehold::v1::HaState;
use leasehold::v1::cluster_client::ClusterClient;
use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
pub use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A running (or exited) `leasehold` process whose stderr carries JSON logs.
pub struct Node {
    /// The node id it was started with.
    pub node_id: String,
    /// Its gRPC address, once it serves.
    pub grpc: String,
    /// Its metrics address, once it serves.
    pub metrics: String,
    child: Child,
    exit: Option<ExitStatus>,
    logs: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("node_id", &self.node_id).field("grpc", &self.grpc).finish()
    }
}

impl Node {
    /// Starts `binary args…` with `env` added and every other `LEASEHOLD_*` variable removed.
    pub fn spawn(binary: &str, node_id: &str, args: &[String], env: &[(String, String)]) -> Node {
        let mut command = Command::new(binary);
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (key, _) in std::env::vars() {
            if key.starts_with("LEASEHOLD_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().map(|(key, value)| (key.as_str(), value.as_str())));
        let mut child = command.spawn().unwrap_or_else(|error| panic!("starting {binary}: {error}"));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stderr.take().expect("piped stderr")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().expect("piped stdout")),
        ] {
            let logs = logs.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    logs.lock().expect("log buffer poisoned").push(line);
                }
            }));
        }
        Node {
            node_id: node_id.to_owned(),
            grpc: String::new(),
            metrics: String::new(),
            child,
            exit: None,
            logs,
            readers,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the process logs "coordinator serving" (or "agent serving") and records its
    /// addresses; panics
    /// with its output when it exits first or `timeout` passes.
    pub async fn wait_serving(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            match self.serving() {
                Ok(true) => return,
                Ok(false) => {}
                Err(status) => panic!("{} exited with {status} before serving:\n{}", self.node_id, self.output()),
            }
            assert!(Instant::now() < deadline, "{} did not serve within {timeout:?}:\n{}", self.node_id, self.output());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process serves now (it logged "coordinator serving" or "agent serving"; its
    /// addresses are recorded then); the exit status when it exited instead.
    pub fn serving(&mut self) -> Result<bool, ExitStatus> {
        let serving = self
            .events("coordinator serving")
            .into_iter()
            .chain(self.events("agent serving"))
            .find(|event| event["node_id"] == self.node_id.as_str());
        if let Some(event) = serving {
            self.grpc = event["grpc"].as_str().expect("grpc address in the serving event").to_owned();
            self.metrics = event["metrics"].as_str().unwrap_or_default().to_owned();
            return Ok(true);
        }
        match self.try_exit() {
            Some(status) => Err(status),
            None => Ok(false),
        }
    }

    /// Waits for the process to exit, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("waiting for the child");
            if self.exit.is_some() {
                self.drain_output();
            }
        }
        self.exit
    }

    /// After an exit: waits until everything the process wrote has been read.
    fn drain_output(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32).expect("a valid pid");
        kill_process(pid, signal).expect("signalling the child");
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        if self.is_running() {
            self.signal(Signal::KILL);
            self.exit = Some(self.child.wait().expect("reaping the child"));
            self.drain_output();
        }
    }

    /// SIGSTOP: the process freezes, its sockets stay open.
    pub fn pause(&self) {
        self.signal(Signal::STOP);
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal(Signal::CONT);
    }

    /// SIGTERM: a graceful stop.
    pub fn terminate(&self) {
        self.signal(Signal::TERM);
    }

    /// A `Cluster` client for this node, with short timeouts.
    pub fn client(&self) -> ClusterClient<Channel> {
        ClusterClient::new(channel(&self.grpc))
    }

    /// This node's HA state.
    pub async fn state(&self) -> Result<HaState, tonic::Status> {
        self.client().get_ha_state(leasehold::v1::GetHaStateRequest {}).await.map(|response| response.into_inner())
    }

    /// The Prometheus text its `/metrics` endpoint serves now, or `None` if it does not answer.
    pub async fn scrape_metrics(&self) -> Option<String> {
        self.http_get("/metrics").await
    }

    /// The whole HTTP answer (status line, headers, body) of `GET path` on its metrics port,
    /// or `None` if it does not answer.
    pub async fn http_get(&self, path: &str) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let get = async {
            let mut stream = tokio::net::TcpStream::connect(&self.metrics).await.ok()?;
            let request = format!("GET {path} HTTP/1.1\r\nHost: leasehold\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut body = String::new();
            stream.read_to_string(&mut body).await.ok()?;
            Some(body)
        };
        tokio::time::timeout(Duration::from_secs(5), get).await.ok().flatten()
    }

    /// The HTTP status code of `GET path` on its metrics port (`/healthz`, `/readyz`).
    pub async fn probe(&self, path: &str) -> Option<u16> {
        self.http_get(path).await?.split_whitespace().nth(1)?.parse().ok()
    }

    /// What its gRPC health service says of `service` (`""` for the server as a whole).
    pub async fn health(&self, service: &str) -> Result<ServingStatus, tonic::Status> {
        let request = HealthCheckRequest { service: service.to_owned() };
        let answer = HealthClient::new(channel(&self.grpc)).check(request).await?.into_inner();
        Ok(answer.status())
    }

    /// Every JSON log event whose message is `message`.
    pub fn events(&self, message: &str) -> Vec<Value> {
        self.logs
            .lock()
            .expect("log buffer poisoned")
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["message"] == message)
            .collect()
    }

    /// The events logged with `message`, once there are at least `count` of them. A line
    /// reaches this buffer through a pipe and a reader thread, so an event the process logged
    /// before answering a call may still be on its way when the answer arrives.
    pub async fn wait_events(&self, message: &str, count: usize, timeout: Duration) -> Vec<Value> {
        let what = format!("{count} event(s) {message:?} from {}", self.node_id);
        crate::poll::eventually(&what, timeout, || async {
            let events = self.events(message);
            (events.len() >= count).then_some(events)
        })
        .await
    }

    /// Everything the process wrote so far.
    pub fn output(&self) -> String {
        self.logs.lock().expect("log buffer poisoned").join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== output of {} =====\n{}", self.node_id, self.output());
        }
        if self.is_running() {
            // A stopped process ignores SIGKILL's delivery until continued on some kernels.
            let _ = kill_process(Pid::from_raw(self.child.id() as i32).expect("pid"), Signal::CONT);
            self.kill();
        }
    }
}

/// A lazily connected channel with short timeouts.
pub fn channel(address: &str) -> Channel {
    Endpoint::from_shared(format!("http://{address}"))
        .expect("a valid address")
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(2))
        .connect_lazy()
}
