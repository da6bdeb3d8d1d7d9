//! The agent's connection to the coordinators.
//!
//! Every call has one deadline (the heartbeat timeout). A follower's `NOT_LEADER` answer is
//! followed at once when its `leasehold-leader` names one of the configured endpoints; any
//! other failure moves on to the next endpoint, within the same deadline if time is left.
//! The endpoint that answered last is tried first next time.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use leasehold::status::{error_reason, reason, redirect_target};
use leasehold::v1::data_nodes_client::DataNodesClient;
use tokio::time::{Instant, timeout_at};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// The largest heartbeat answer an agent accepts: a resync carries the whole catalog.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Why a call to the coordinators failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The leader does not know this incarnation: register again.
    #[error("not registered with the leader")]
    NotRegistered,
    /// The leader retired this incarnation (evicted after a long silence): start a new one.
    #[error("the leader retired this incarnation")]
    IncarnationRetired,
    /// The leader refused this process for good: a later start attempt of its resource
    /// replaced it, or the resource is being cleaned up. It must stop.
    #[error("{0}")]
    Superseded(String),
    /// No endpoint answered in time, or every one refused.
    #[error("no coordinator answered: {0}")]
    Unreachable(String),
    /// The leader refused the request outright.
    #[error("{}: {}", .0.code(), .0.message())]
    Refused(Status),
}

/// The configured coordinator endpoints and their channels.
#[derive(Debug)]
pub struct CoordinatorLink {
    endpoints: Vec<String>,
    current: usize,
    timeout: Duration,
    channels: BTreeMap<String, Channel>,
}

impl CoordinatorLink {
    /// A link over `endpoints`; every call must finish within `timeout`.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Self {
        Self { endpoints, current: 0, timeout, channels: BTreeMap::new() }
    }

    /// The endpoint tried first.
    pub fn current(&self) -> &str {
        &self.endpoints[self.current]
    }

    fn client(&mut self, endpoint: &str) -> Result<DataNodesClient<Channel>, LinkError> {
        // A heartbeat answer may carry the whole catalog (a resync).
        let client = |channel: Channel| DataNodesClient::new(channel).max_decoding_message_size(MAX_ANSWER_BYTES);
        if let Some(channel) = self.channels.get(endpoint) {
            return Ok(client(channel.clone()));
        }
        let channel = Endpoint::from_shared(format!("http://{endpoint}"))
            .map_err(|error| LinkError::Unreachable(format!("{endpoint}: {error}")))?
            .connect_timeout(self.timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        self.channels.insert(endpoint.to_owned(), channel.clone());
        Ok(client(channel))
    }

    /// Runs `call` against the leader within one deadline.
    pub async fn call<T, F, Fut>(&mut self, mut call: F) -> Result<T, LinkError>
    where
        F: FnMut(DataNodesClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut last = String::from("no attempt");
        for _ in 0..self.endpoints.len() * 2 {
            let endpoint = self.endpoints[self.current].clone();
            let client = self.client(&endpoint)?;
            match timeout_at(deadline, call(client)).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => {
                    match error_reason(&status).as_deref() {
                        Some(reason::NOT_REGISTERED) => return Err(LinkError::NotRegistered),
                        Some(reason::INCARNATION_RETIRED) => return Err(LinkError::IncarnationRetired),
                        Some(reason::SUPERSEDED_ATTEMPT | reason::RESOURCE_CLEANING) => {
                            return Err(LinkError::Superseded(status.message().to_owned()));
                        }
                        _ => {}
                    }
                    if !matches!(
                        status.code(),
                        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
                    ) {
                        return Err(LinkError::Refused(status));
                    }
                    last = format!("{endpoint}: {}", status.message());
                    // A redirect is followed only to a configured endpoint: the address a
                    // follower names may not be reachable from here (a proxy, another network).
                    match redirect_target(&status).and_then(|leader| self.endpoints.iter().position(|e| *e == leader)) {
                        Some(index) if index != self.current => self.current = index,
                        _ => self.current = (self.current + 1) % self.endpoints.len(),
                    }
                }
                Err(_) => {
                    self.current = (self.current + 1) % self.endpoints.len();
                    return Err(LinkError::Unreachable(format!("{endpoint}: no answer within {:?}", self.timeout)));
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(LinkError::Unreachable(last))
    }
}
