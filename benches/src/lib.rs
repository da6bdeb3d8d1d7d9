//! Helpers shared by the load generators: percentiles, result tables, a fleet of simulated
//! agents, and the gRPC floor every heartbeat cost is read against.

pub mod fleet;
pub mod floor;

use std::time::Duration;

/// Latency samples of one operation.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    values: Vec<Duration>,
}

impl Samples {
    /// Records one sample.
    pub fn push(&mut self, value: Duration) {
        self.values.push(value);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: Samples) {
        self.values.extend(other.values);
    }

    /// The `q` quantile (0.0 to 1.0), nearest rank.
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.values.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    /// The largest sample.
    pub fn max(&self) -> Duration {
        self.values.iter().copied().max().unwrap_or_default()
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Microseconds with one decimal.
pub fn micros(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1e6)
}

/// Milliseconds with no decimals.
pub fn millis(duration: Duration) -> String {
    format!("{}", duration.as_millis())
}

/// The environment variable `name` parsed, or `default` when it is unset or does not parse.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|value| value.trim().parse().ok()).unwrap_or(default)
}

/// The comma-separated items of the environment variable `name` (of `default` when it is
/// unset), trimmed, empty ones left out.
pub fn env_list(name: &str, default: &str) -> Vec<String> {
    let list = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    list.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

/// `conns` HTTP/2 connections to `address`, each connected (within `deadline`) before it is
/// used, so that no measured call pays for a connection.
pub async fn connect(address: &str, conns: usize, deadline: Duration) -> Vec<tonic::transport::Channel> {
    let mut channels = Vec::with_capacity(conns);
    for _ in 0..conns {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .expect("address")
            .tcp_nodelay(true)
            .connect_timeout(deadline);
        let connected = tokio::time::timeout(deadline, endpoint.connect()).await;
        channels.push(connected.expect("connecting").expect("a connection"));
    }
    channels
}

/// Pins `pid` (every thread) to `core` with `taskset`; false when that is not possible.
pub fn pin(pid: u32, core: usize) -> bool {
    std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &core.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
