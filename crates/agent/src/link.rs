//! The agent's connection to the coordinators.
//!
//! Every call has one deadline (the heartbeat timeout). A follower's `NOT_LEADER` answer is
//! followed at once when its `leasehold-leader` names one of the configured endpoints; any
//! other failure moves on to the next endpoint, within the same deadline if time is left.
//! The endpoint that answered last is tried first next time.
//!
//! Heartbeats go on one long-lived `KeepAlive` stream to the endpoint that answers, with the
//! unary call's meaning per message: the agent takes `t_send` before it hands a message to the
//! stream, each message has the unary call's deadline, and an answer is taken only for the
//! request it echoes. A missed answer closes the stream (a late answer is never read) and the
//! next heartbeat goes to the next endpoint. A `resync` answer renews nothing: the heartbeat is
//! repeated as a unary call, which carries the snapshot. A coordinator without the stream
//! (UNIMPLEMENTED) gets unary calls from then on.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use leasehold::status::{error_reason, reason, redirect_target};
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{HeartbeatRequest, HeartbeatResponse, KeepAliveRequest, KeepAliveResponse};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};
use tokio_stream::wrappers::ReceiverStream;
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

/// How often an idle connection is pinged: a peer frozen with a stream open is noticed even
/// between heartbeats.
const KEEPALIVE_PING: Duration = Duration::from_secs(5);

/// The configured coordinator endpoints and their channels.
#[derive(Debug)]
pub struct CoordinatorLink {
    endpoints: Vec<String>,
    current: usize,
    timeout: Duration,
    channels: BTreeMap<String, Channel>,
    /// The open KeepAlive stream, if any.
    renewals: Option<Renewals>,
    /// Endpoints that answered UNIMPLEMENTED to KeepAlive: unary heartbeats only.
    unary_only: BTreeSet<String>,
}

/// A KeepAlive stream to one endpoint.
#[derive(Debug)]
struct Renewals {
    endpoint: String,
    requests: mpsc::Sender<KeepAliveRequest>,
    answers: tonic::Streaming<KeepAliveResponse>,
    sequence: u64,
}

/// How a heartbeat on the stream went.
enum OnStream {
    /// The leader's answer.
    Answered(HeartbeatResponse),
    /// No stream could carry it (none to open, closed, moved to another leader): send it as
    /// a unary call instead.
    Unary,
    /// It failed, as a unary call would have.
    Failed(LinkError),
}

/// The refusals a retry elsewhere cannot change.
fn final_refusal(status: &Status) -> Option<LinkError> {
    match error_reason(status).as_deref() {
        Some(reason::NOT_REGISTERED) => Some(LinkError::NotRegistered),
        Some(reason::INCARNATION_RETIRED) => Some(LinkError::IncarnationRetired),
        Some(reason::SUPERSEDED_ATTEMPT | reason::RESOURCE_CLEANING) => {
            Some(LinkError::Superseded(status.message().to_owned()))
        }
        _ => None,
    }
}

/// Whether another endpoint (or a later try) may answer where this one did not.
fn retryable(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded)
}

impl CoordinatorLink {
    /// A link over `endpoints`; every call must finish within `timeout`.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Self {
        Self { endpoints, current: 0, timeout, channels: BTreeMap::new(), renewals: None, unary_only: BTreeSet::new() }
    }

    /// One heartbeat: on the KeepAlive stream when the current endpoint has one (opened here
    /// when needed), otherwise as a unary call. A `resync` answer is followed at once by the
    /// unary call that carries the snapshot.
    pub async fn heartbeat(&mut self, request: &HeartbeatRequest) -> Result<HeartbeatResponse, LinkError> {
        match self.heartbeat_on_stream(request).await {
            OnStream::Answered(answer) if !answer.resync => return Ok(answer),
            OnStream::Answered(_) | OnStream::Unary => {}
            OnStream::Failed(error) => return Err(error),
        }
        self.call(|mut client| {
            let request = request.clone();
            async move { client.heartbeat(request).await }
        })
        .await
    }

    async fn heartbeat_on_stream(&mut self, request: &HeartbeatRequest) -> OnStream {
        let deadline = Instant::now() + self.timeout;
        let endpoint = self.endpoints[self.current].clone();
        if self.unary_only.contains(&endpoint) {
            return OnStream::Unary;
        }
        let sequence = match self.renewals.as_mut().filter(|renewals| renewals.endpoint == endpoint) {
            Some(renewals) => {
                renewals.sequence += 1;
                let message = KeepAliveRequest { sequence: renewals.sequence, heartbeat: Some(request.clone()) };
                if renewals.requests.send(message).await.is_err() {
                    self.renewals = None;
                    return OnStream::Unary;
                }
                renewals.sequence
            }
            None => {
                self.renewals = None;
                let Ok(mut client) = self.client(&endpoint) else { return OnStream::Unary };
                let (requests, outgoing) = mpsc::channel(4);
                // The first message goes with the stream's opening, not after its answer's
                // headers: a leader whose answers are lost still hears this heartbeat, as it
                // would a unary one.
                let first = KeepAliveRequest { sequence: 1, heartbeat: Some(request.clone()) };
                if requests.send(first).await.is_err() {
                    return OnStream::Unary;
                }
                match timeout_at(deadline, client.keep_alive(ReceiverStream::new(outgoing))).await {
                    Ok(Ok(answers)) => {
                        let answers = answers.into_inner();
                        self.renewals = Some(Renewals { endpoint: endpoint.clone(), requests, answers, sequence: 1 });
                    }
                    Ok(Err(status)) if status.code() == Code::Unimplemented => {
                        self.unary_only.insert(endpoint);
                        return OnStream::Unary;
                    }
                    // A follower, a leader still loading, a refusal: the unary call handles each.
                    Ok(Err(_)) => return OnStream::Unary,
                    Err(_) => return self.missed(&endpoint),
                }
                1
            }
        };
        loop {
            let renewals = self.renewals.as_mut().expect("open");
            match timeout_at(deadline, renewals.answers.message()).await {
                Ok(Ok(Some(answer))) if answer.sequence == sequence => {
                    return match answer.heartbeat {
                        Some(heartbeat) => OnStream::Answered(heartbeat),
                        None => {
                            self.renewals = None;
                            OnStream::Unary
                        }
                    };
                }
                // An answer to an earlier request: never taken for this one.
                Ok(Ok(Some(answer))) if answer.sequence < sequence => continue,
                Ok(Ok(_)) => {
                    self.renewals = None;
                    return OnStream::Unary;
                }
                Ok(Err(status)) => {
                    self.renewals = None;
                    if let Some(error) = final_refusal(&status) {
                        return OnStream::Failed(error);
                    }
                    if !retryable(&status) {
                        return OnStream::Failed(LinkError::Refused(status));
                    }
                    // The term ended or the stream broke: the unary call finds the leader.
                    if let Some(index) =
                        redirect_target(&status).and_then(|leader| self.endpoints.iter().position(|e| *e == leader))
                    {
                        self.current = index;
                    }
                    return OnStream::Unary;
                }
                Err(_) => return self.missed(&endpoint),
            }
        }
    }

    /// No answer in time: the stream is closed (a late answer is never read) and the next
    /// heartbeat tries the next endpoint.
    fn missed(&mut self, endpoint: &str) -> OnStream {
        self.renewals = None;
        self.current = (self.current + 1) % self.endpoints.len();
        OnStream::Failed(LinkError::Unreachable(format!("{endpoint}: no answer within {:?}", self.timeout)))
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
            .http2_keep_alive_interval(KEEPALIVE_PING)
            .keep_alive_timeout(self.timeout)
            .keep_alive_while_idle(true)
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
                    if let Some(error) = final_refusal(&status) {
                        return Err(error);
                    }
                    if !retryable(&status) {
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
