//! The Rust client SDK: one [`Client`] for a list of coordinator endpoints.
//!
//! Calls that must reach the leader go through [`Client::call_leader`]: it starts at the
//! leader it last saw (or the first endpoint), follows the `leasehold-leader` redirect that a
//! follower attaches to `UNAVAILABLE`, moves to the next endpoint when a node is down or knows
//! no leader, and backs off exponentially until the retry deadline. `UNAVAILABLE` is retried,
//! and so is a call whose connection broke while it was in flight (the leader died): such a
//! call may have run, so give DDL a `request_id`, which makes a retry return the first run's
//! outcome. Every other code is the server's answer and is returned as it is.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::status::redirect_target;
use crate::v1::cluster_client::ClusterClient;
use crate::v1::{GetLeaderRequest, LeaderInfo, WatchLeaderRequest};

/// Timeouts and retry policy of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long one TCP connect may take.
    pub connect_timeout: Duration,
    /// How long one call may take, end to end.
    pub request_timeout: Duration,
    /// How long a call keeps retrying `UNAVAILABLE` before it gives up.
    pub retry_deadline: Duration,
    /// The first pause between retries; it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest pause between retries.
    pub max_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            retry_deadline: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client was built without endpoints.
    #[error("no coordinator endpoints given")]
    NoEndpoints,
    /// An endpoint is not a valid `HOST:PORT`.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server answered with an error that is not worth retrying.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(Status),
    /// Every attempt until the retry deadline answered `UNAVAILABLE`.
    #[error("gave up after {attempts} attempts in {elapsed:?}; last error: {}: {}", last.code(), last.message())]
    RetriesExhausted {
        /// How many calls were made.
        attempts: u32,
        /// How long the client kept trying.
        elapsed: Duration,
        /// The last answer.
        last: Status,
    },
}

impl ClientError {
    /// The gRPC status behind this error, when the server answered.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Status(status) | Self::RetriesExhausted { last: status, .. } => Some(status),
            Self::NoEndpoints | Self::InvalidEndpoint { .. } => None,
        }
    }
}

/// A client for a Leasehold cluster. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    options: ClientOptions,
    channels: Mutex<HashMap<String, Channel>>,
    /// The endpoint that last answered a leader call successfully, or a redirect target.
    leader_hint: Mutex<Option<String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoints", &self.inner.endpoints).finish()
    }
}

impl Client {
    /// A client for `endpoints` (`HOST:PORT`, or a full `http://` URI). Connections are made
    /// lazily, on the first call that needs them.
    pub fn new<I, S>(endpoints: I, options: ClientOptions) -> Result<Self, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(Into::into)
            .map(|endpoint| endpoint.trim().to_owned())
            .filter(|endpoint| !endpoint.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let client = Self {
            inner: Arc::new(Inner {
                endpoints,
                options,
                channels: Mutex::new(HashMap::new()),
                leader_hint: Mutex::new(None),
            }),
        };
        for endpoint in &client.inner.endpoints {
            client.channel(endpoint)?;
        }
        Ok(client)
    }

    /// The endpoints this client was built with.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// A (lazily connected) channel to one endpoint.
    pub fn channel(&self, endpoint: &str) -> Result<Channel, ClientError> {
        let mut channels = self.inner.channels.lock().expect("channel map poisoned");
        if let Some(channel) = channels.get(endpoint) {
            return Ok(channel.clone());
        }
        let uri = if endpoint.contains("://") { endpoint.to_owned() } else { format!("http://{endpoint}") };
        let channel = Endpoint::from_shared(uri)
            .map_err(|error| ClientError::InvalidEndpoint { endpoint: endpoint.to_owned(), reason: error.to_string() })?
            .connect_timeout(self.inner.options.connect_timeout)
            .timeout(self.inner.options.request_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(endpoint.to_owned(), channel.clone());
        Ok(channel)
    }

    /// A `Cluster` client bound to one endpoint.
    pub fn cluster_at(&self, endpoint: &str) -> Result<ClusterClient<Channel>, ClientError> {
        Ok(ClusterClient::new(self.channel(endpoint)?))
    }

    /// The current leader, asked of the endpoints in turn until one knows it.
    pub async fn leader(&self) -> Result<LeaderInfo, ClientError> {
        let mut backoff = Backoff::new(&self.inner.options);
        let mut last = Status::unavailable("no endpoint answered");
        loop {
            for endpoint in self.inner.endpoints.clone() {
                let mut cluster = self.cluster_at(&endpoint)?;
                match cluster.get_leader(GetLeaderRequest {}).await {
                    Ok(response) => {
                        let leader = response.into_inner().leader.unwrap_or_default();
                        if leader.known {
                            self.set_leader_hint(Some(leader.address.clone()));
                            return Ok(leader);
                        }
                        last = Status::unavailable(format!("{endpoint} knows no leader"));
                    }
                    Err(status) if status.code() == Code::Unavailable => last = status,
                    Err(status) => return Err(ClientError::Status(status)),
                }
            }
            if !backoff.wait().await {
                return Err(backoff.exhausted(last));
            }
        }
    }

    /// Runs `call` against the leader: follows redirects, moves on from nodes that are down,
    /// and retries `UNAVAILABLE` with backoff until the retry deadline.
    pub async fn call_leader<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut backoff = Backoff::new(&self.inner.options);
        let mut next_endpoint = 0usize;
        loop {
            let target = self.leader_hint().unwrap_or_else(|| {
                let endpoint = self.inner.endpoints[next_endpoint % self.inner.endpoints.len()].clone();
                next_endpoint += 1;
                endpoint
            });
            match call(self.channel(&target)?).await {
                Ok(response) => {
                    self.set_leader_hint(Some(target));
                    return Ok(response.into_inner());
                }
                Err(status) if status.code() == Code::Unavailable || connection_broke(&status) => {
                    let redirect = redirect_target(&status).filter(|leader| *leader != target);
                    tracing::debug!(endpoint = %target, redirect = ?redirect, message = status.message(), "leader call unavailable");
                    self.set_leader_hint(redirect.clone());
                    // A fresh redirect is followed at once; anything else waits a little, so
                    // that a cluster in the middle of a failover is not hammered.
                    if redirect.is_none() || backoff.attempts() > self.inner.endpoints.len() as u32 + 2 {
                        if !backoff.wait().await {
                            return Err(backoff.exhausted(status));
                        }
                    } else {
                        backoff.count_attempt();
                    }
                }
                Err(status) => return Err(ClientError::Status(status)),
            }
        }
    }

    /// Runs `call` against one endpoint, retrying `UNAVAILABLE` (the node restarting, say)
    /// with backoff until the retry deadline.
    pub async fn call_endpoint<T, F, Fut>(&self, endpoint: &str, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut backoff = Backoff::new(&self.inner.options);
        loop {
            match call(self.channel(endpoint)?).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if status.code() == Code::Unavailable && redirect_target(&status).is_none() => {
                    if !backoff.wait().await {
                        return Err(backoff.exhausted(status));
                    }
                }
                Err(status) => return Err(ClientError::Status(status)),
            }
        }
    }

    /// A stream of leader changes: the current leader first, then one item per change of
    /// leader or term. It survives the loss of any endpoint (it moves to the next one) and
    /// ends only when dropped.
    pub fn watch_leader(&self) -> ReceiverStream<LeaderInfo> {
        let (sender, receiver) = mpsc::channel(16);
        let client = self.clone();
        tokio::spawn(async move { client.forward_leader_changes(sender).await });
        ReceiverStream::new(receiver)
    }

    async fn forward_leader_changes(self, sender: mpsc::Sender<LeaderInfo>) {
        let mut last_sent: Option<(String, u64)> = None;
        let mut backoff_pause = self.inner.options.initial_backoff;
        for endpoint in self.inner.endpoints.iter().cycle() {
            let Ok(mut cluster) = self.cluster_at(endpoint) else {
                return;
            };
            if let Ok(response) = cluster.watch_leader(WatchLeaderRequest {}).await {
                let mut stream = response.into_inner();
                backoff_pause = self.inner.options.initial_backoff;
                while let Some(Ok(leader)) = stream.next().await {
                    let identity = (leader.node_id.clone(), leader.term);
                    if last_sent.as_ref() == Some(&identity) {
                        continue;
                    }
                    last_sent = Some(identity);
                    if sender.send(leader).await.is_err() {
                        return;
                    }
                }
            }
            if sender.is_closed() {
                return;
            }
            tokio::time::sleep(backoff_pause).await;
            backoff_pause = (backoff_pause * 2).min(self.inner.options.max_backoff);
        }
    }

    fn leader_hint(&self) -> Option<String> {
        self.inner.leader_hint.lock().expect("leader hint poisoned").clone()
    }

    fn set_leader_hint(&self, hint: Option<String>) {
        *self.inner.leader_hint.lock().expect("leader hint poisoned") = hint;
    }
}

/// Whether a call failed because its connection broke (the server went away mid-call), as
/// opposed to an answer from the server.
pub fn connection_broke(status: &Status) -> bool {
    matches!(status.code(), Code::Unknown | Code::Cancelled | Code::Internal)
        && std::error::Error::source(status).is_some_and(|source| source.is::<tonic::transport::Error>())
}

/// Exponential backoff under a deadline.
struct Backoff {
    started: Instant,
    deadline: Instant,
    pause: Duration,
    max_pause: Duration,
    attempts: u32,
}

impl Backoff {
    fn new(options: &ClientOptions) -> Self {
        let started = Instant::now();
        Self {
            started,
            deadline: started + options.retry_deadline,
            pause: options.initial_backoff,
            max_pause: options.max_backoff,
            attempts: 0,
        }
    }

    fn attempts(&self) -> u32 {
        self.attempts
    }

    fn count_attempt(&mut self) {
        self.attempts += 1;
    }

    /// Waits before the next attempt; false when the deadline leaves no room for one.
    async fn wait(&mut self) -> bool {
        self.attempts += 1;
        let now = Instant::now();
        if now + self.pause >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(self.max_pause);
        true
    }

    fn exhausted(&self, last: Status) -> ClientError {
        ClientError::RetriesExhausted { attempts: self.attempts, elapsed: self.started.elapsed(), last }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_refuses_an_empty_endpoint_list() {
        let error = Client::new(Vec::<String>::new(), ClientOptions::default()).unwrap_err();
        assert!(matches!(error, ClientError::NoEndpoints));
        let error = Client::new([" ", ""], ClientOptions::default()).unwrap_err();
        assert!(matches!(error, ClientError::NoEndpoints));
    }

    #[tokio::test]
    async fn new_refuses_a_malformed_endpoint() {
        let error = Client::new(["bad host:7400"], ClientOptions::default()).unwrap_err();
        assert!(matches!(error, ClientError::InvalidEndpoint { .. }), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_and_stops_at_the_deadline() {
        let options = ClientOptions {
            retry_deadline: Duration::from_millis(1000),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            ..ClientOptions::default()
        };
        let mut backoff = Backoff::new(&options);
        let start = Instant::now();
        let mut pauses = Vec::new();
        let mut before = start;
        while backoff.wait().await {
            pauses.push(before.elapsed().as_millis());
            before = Instant::now();
        }
        // 100 + 200 + 400 = 700 ms; the next 400 ms pause would cross the deadline.
        assert_eq!(pauses, vec![100, 200, 400]);
        assert_eq!(backoff.attempts(), 4);
    }
}
